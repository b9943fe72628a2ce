//! `forge-bench proofs` end to end on a tiny model: it must finish, find a
//! spot-check draw with a last-layer cell, check every receipt, and write
//! its table with the commitment's measured cost. Nothing timed.

mod support;

#[test]
fn proofs_runs_on_a_tiny_model_and_writes_its_table() {
    let (table, json) =
        support::forge_bench_on_tiny_model(&["proofs", "--max-tokens", "4", "--runs", "2"]);
    assert!(table.contains("| prefill-500 |"), "{table}");
    assert!(table.contains("with a last-layer cell"), "{table}");
    for row in json["rows"].as_array().unwrap() {
        // The costliest draw was found and timed; the commitment's share is
        // a number, or null where a tiny model's decode step is too cheap
        // for the CPU clocks to resolve.
        assert!(row["spot_lm_ms_total"].as_f64().unwrap() > 0.0, "{row}");
        let share = &row["commit_cpu_pct_of_decode"];
        assert!(share.is_null() || share.as_f64().unwrap() >= 0.0, "{row}");
    }
}
