//! `forge-bench decode` end to end on a tiny model, without the llama.cpp
//! reference: it must finish and write its table. (Regression: once the
//! trace also carried key/value rows, the run stopped with "the sink hashed
//! 2x rows, expected x" and nothing exercised it.) Nothing timed.

use std::process::Command;

use forge_engine::testing::{TinySpec, tiny_model_gguf};

#[test]
fn decode_runs_on_a_tiny_model_and_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(
        &model,
        tiny_model_gguf(&TinySpec {
            context_length: 8192,
            ..TinySpec::default()
        })
        .unwrap(),
    )
    .unwrap();
    let out_md = dir.path().join("decode.md");
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args([
            "decode",
            "--no-llama-cpp",
            "--max-tokens",
            "3",
            "--runs",
            "1",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out_md)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let table = std::fs::read_to_string(&out_md).unwrap();
    assert!(table.contains("| prefill-500 |"), "{table}");
    assert!(out_md.with_extension("json").is_file());
}
