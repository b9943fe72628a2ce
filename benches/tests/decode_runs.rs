//! `forge-bench decode` end to end on a tiny model, without the llama.cpp
//! reference: it must finish and write its table. (Regression: once the
//! trace also carried key/value rows, the run stopped with "the sink hashed
//! 2x rows, expected x" and nothing exercised it.) Nothing timed.

mod support;

#[test]
fn decode_runs_on_a_tiny_model_and_writes_its_table() {
    let (table, _json) = support::forge_bench_on_tiny_model(&[
        "decode",
        "--no-llama-cpp",
        "--max-tokens",
        "3",
        "--runs",
        "1",
    ]);
    assert!(table.contains("| prefill-500 |"), "{table}");
}
