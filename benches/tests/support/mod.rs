//! What the benchmark tests share: a tiny model on disk and running
//! `forge-bench` on it.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_engine::testing::{TinySpec, tiny_model_gguf};

/// Runs `forge-bench` with `args` on a tiny random Llama (with a context
/// long enough for the 518-token prompt), checks that it exits 0, and
/// returns the Markdown table and the JSON it wrote.
pub(crate) fn forge_bench_on_tiny_model(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out_md = dir.path().join("results.md");
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(args)
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
    let json = std::fs::read_to_string(out_md.with_extension("json")).unwrap();
    (table, serde_json::from_str(&json).unwrap())
}

fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny.gguf");
    let spec = TinySpec {
        context_length: 8192,
        ..TinySpec::default()
    };
    std::fs::write(&model, tiny_model_gguf(&spec).unwrap()).unwrap();
    model
}
