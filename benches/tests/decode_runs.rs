//! `forge-bench decode` end to end on a tiny model, without the llama.cpp
//! reference: it must finish and write its table. (Regression: once the
//! trace also carried key/value rows, the run stopped with "the sink hashed
//! 2x rows, expected x" and nothing exercised it.) Nothing timed.

mod support;

#[test]
fn decode_runs_on_a_tiny_model_and_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let model = support::tiny_model(dir.path());
    let out_md = dir.path().join("decode.md");
    let out = support::forge_bench(
        &[
            "decode",
            "--no-llama-cpp",
            "--max-tokens",
            "3",
            "--runs",
            "1",
        ],
        &model,
        &out_md,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let table = std::fs::read_to_string(&out_md).unwrap();
    assert!(table.contains("| prefill-500 |"), "{table}");
    assert!(out_md.with_extension("json").is_file());
}
