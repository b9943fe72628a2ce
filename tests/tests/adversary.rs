//! Cheating must fail (issue 3): dishonest receipts signed with a valid key
//! are rejected by `forge-verify` at the check that names the cheat, and
//! spot checks catch partial cheats at the rate 1-(1-f)^k.
//!
//! `forge-verify` is spawned from `target/release/`: `cargo test --workspace
//! --release` builds it; for this crate alone run
//! `cargo build --release -p forge-proofs --bin forge-verify` first.
//! `FORGE_WRITE_RESULTS=1` also writes `papers/results/detection.md`.

use std::collections::{BTreeMap, BTreeSet};

use forge_engine::GenerateRequest;
use forge_engine::testing::TinySpec;
use forge_proofs::{OpenedRows, Receipt, SpotChecker, SpotError, challenge_cells};
use forge_tests::adversary::{
    Cheat, CheckId, DetectionRow, Served, World, challenge_seed, detection_markdown, embedded_seed,
    measure_detection, provider_key, reprove, resign,
};

/// Four layers, so one layer is f = 1/4 of the cells.
fn spec() -> TinySpec {
    TinySpec {
        layers: 4,
        d_model: 64,
        heads: 4,
        kv_heads: 2,
        ffn: 128,
        context_length: 128,
        seed: 1,
        untied_f16_head: false,
    }
}

/// A fresh world per test (its temp dir goes with it); the CU keys are made
/// once per binary.
fn world() -> World {
    World::new(spec())
}

fn request(w: &World) -> GenerateRequest {
    w.request("who cheats?", 10, 7)
}

/// Cells per embedded challenge in the binary tests.
const K: u32 = 4;

/// The first challenge seed (of family `family`) whose `k` cells satisfy `pred`.
fn find_seed(
    served: &Served,
    family: u64,
    k: u32,
    pred: impl Fn(&[(u32, u32)]) -> bool,
) -> [u8; 32] {
    (0..10_000)
        .map(|i| challenge_seed(family, i))
        .find(|seed| pred(&challenge_cells(&served.receipt, seed, k).unwrap()))
        .expect("a seed within 10000 tries")
}

/// Ground truth: the cells whose one-cell spot check fails, and the errors.
fn tampered(w: &World, served: &Served) -> (BTreeSet<(u32, u32)>, Vec<SpotError>) {
    let failing = served.failing_cells(&SpotChecker::new(&w.model));
    let cells = failing.iter().map(|f| f.0).collect();
    (cells, failing.into_iter().map(|f| f.1).collect())
}

fn layer_cells(served: &Served, layers: impl Fn(u32) -> bool) -> BTreeSet<(u32, u32)> {
    served
        .all_cells()
        .into_iter()
        .filter(|&(l, _)| layers(l))
        .collect()
}

/// A cheat that touches only `tampered` cells: the offline checks pass; a
/// challenge that samples a tampered cell fails `forge-verify --model` at
/// `expected` naming such a cell; one that samples none passes.
fn assert_caught_only_when_sampled(
    w: &World,
    name: &str,
    served: &Served,
    tampered: &BTreeSet<(u32, u32)>,
    expected: CheckId,
) {
    served
        .receipt
        .verify_offline(&w.anchor())
        .unwrap_or_else(|e| panic!("{name}: offline checks should pass: {e}"));
    let family = name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let hit = find_seed(served, family, K, |cells| {
        cells.iter().any(|c| tampered.contains(c))
    });
    let receipt = served.with_audit(hit, K, &provider_key());
    let run = w.verify(&format!("{name}-hit.bin"), &receipt, true);
    let line = run.assert_fails_with(expected, name);
    let cell = run
        .failed_cell()
        .unwrap_or_else(|| panic!("{name}: no cell named with `{line}`"));
    assert!(
        tampered.contains(&cell),
        "{name}: `{line}` names an untampered cell"
    );
    let first_hit = challenge_cells(&served.receipt, &hit, K)
        .unwrap()
        .into_iter()
        .find(|c| tampered.contains(c));
    assert_eq!(
        Some(cell),
        first_hit,
        "{name}: the first tampered challenged cell is reported"
    );

    let miss = find_seed(served, family, K, |cells| {
        cells.iter().all(|c| !tampered.contains(c))
    });
    let receipt = served.with_audit(miss, K, &provider_key());
    w.verify(&format!("{name}-miss.bin"), &receipt, true)
        .assert_verified(&format!("{name}, untampered cells only"));
}

#[test]
fn a_different_model_claiming_the_honest_id_fails_every_cell() {
    let w = &world();
    let served = w.cheat(&Cheat::OtherModel { seed: 2 }, &request(w));
    assert_eq!(served.receipt.request.model_id, w.model.model_id());
    served
        .receipt
        .verify_offline(&w.anchor())
        .expect("offline checks cannot see the model");
    let (cells, errors) = tampered(w, &served);
    assert_eq!(
        cells,
        served.all_cells().into_iter().collect(),
        "every cell fails"
    );
    assert!(
        errors.iter().all(|e| matches!(
            e,
            SpotError::ReplayMismatch { .. } | SpotError::TokenMismatch { .. }
        )),
        "{errors:?}"
    );

    // Any embedded challenge catches it.
    let receipt = served.with_embedded_checks(K, &provider_key());
    let run = w.verify("other-model.bin", &receipt, true);
    run.assert_fails_with(CheckId::SpotReplay, "other model");
    assert_eq!(
        run.failed_cell(),
        Some(challenge_cells(&served.receipt, &embedded_seed(&served.receipt), K).unwrap()[0])
    );
    // Without the weights nothing can be re-executed, and forge-verify says so.
    let run = w.verify("other-model.bin", &receipt, false);
    run.assert_verified("other model, no --model");
    assert!(
        run.stderr.contains("re-executed") && run.stderr.contains("--model"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_skipped_layer_fails_exactly_its_cells() {
    let w = &world();
    let layer = 2;
    let served = w.cheat(
        &Cheat::SkippedLayer {
            layer: layer as usize,
        },
        &request(w),
    );
    // The skip is real: layer 2's committed rows are layer 1's, bit for bit.
    let t = served.commitment.positions() - 1;
    let rows = |l| served.commitment.open_range(l, 0, t).unwrap().rows;
    let bits = |rows: OpenedRows| {
        rows.to_f32_rows()
            .concat()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(rows(2)), bits(rows(1)));
    let (cells, errors) = tampered(w, &served);
    assert_eq!(
        cells,
        layer_cells(&served, |l| l == layer),
        "only layer {layer}'s cells fail"
    );
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, SpotError::ReplayMismatch { layer: 2, .. })),
        "{errors:?}"
    );
    assert_caught_only_when_sampled(w, "skipped-layer", &served, &cells, CheckId::SpotReplay);
}

#[test]
fn a_layer_with_coarser_weights_fails_exactly_its_cells() {
    let w = &world();
    let layer = 1;
    let served = w.cheat(
        &Cheat::CoarseLayer {
            layer: layer as usize,
        },
        &request(w),
    );
    let (cells, errors) = tampered(w, &served);
    assert_eq!(
        cells,
        layer_cells(&served, |l| l == layer),
        "only layer {layer}'s cells fail"
    );
    assert!(
        errors.iter().all(
            |e| matches!(e, SpotError::ReplayMismatch { layer: 1, rel_l2, .. } if *rel_l2 > 1e-3)
        ),
        "{errors:?}"
    );
    assert_caught_only_when_sampled(w, "coarse-layer", &served, &cells, CheckId::SpotReplay);
}

#[test]
fn inflated_flops_fail_the_flops_check() {
    let w = &world();
    let served = w.cheat(&Cheat::InflatedFlops { factor: 2 }, &request(w));
    for with_model in [false, true] {
        let line = w
            .verify("flops.bin", &served.receipt, with_model)
            .assert_fails_with(CheckId::Flops, "FLOPs x2");
        let honest = served.receipt.cost.flops / 2;
        assert_eq!(
            line,
            format!("FLOPs: expected {honest}, receipt claims {}", honest * 2)
        );
    }
    // Re-proving cannot help: the circuit enforces the formula.
    let stmt = served
        .receipt
        .cu_statement(served.receipt.header_hash().unwrap());
    assert!(
        forge_circuits::constraints_satisfied(&stmt).map_or(true, |ok| !ok),
        "the circuit accepts inflated FLOPs"
    );
}

#[test]
fn inflated_n_gen_with_a_stale_proof_fails_the_cu_proof() {
    let w = &world();
    let served = w.cheat(&Cheat::InflatedNGenStaleProof { extra: 5 }, &request(w));
    let line = w
        .verify("ngen.bin", &served.receipt, false)
        .assert_fails_with(CheckId::CuProof, "n_gen +5");
    assert_eq!(line, "CU proof rejected for this receipt's statement");
    // Without fixing the derived fields it fails earlier, at the shape.
    let mut r = w.honest(&request(w)).receipt;
    r.request.n_gen += 5;
    resign(&mut r, &w.key);
    let line = w
        .verify("ngen-raw.bin", &r, false)
        .assert_fails_with(CheckId::Shape, "raw n_gen +5");
    assert!(line.starts_with("`request.forwarded.end`"), "{line}");
}

#[test]
fn inflated_n_gen_with_a_padded_trace_fails_at_the_padded_cells() {
    let w = &world();
    let req = request(w);
    let honest = w.honest(&req);
    let extra = 4;
    let served = w.cheat(&Cheat::InflatedNGenPadded { extra }, &req);
    assert_eq!(
        served.receipt.request.n_gen,
        honest.receipt.request.n_gen + extra
    );
    assert!(served.receipt.cost.flops > honest.receipt.cost.flops);
    let real = honest.receipt.trace.positions;
    let (cells, errors) = tampered(w, &served);
    let padded: BTreeSet<_> = served
        .all_cells()
        .into_iter()
        .filter(|&(_, t)| t >= real)
        .collect();
    assert_eq!(
        cells, padded,
        "exactly the padded positions fail, at every layer"
    );
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, SpotError::ReplayMismatch { .. })),
        "{errors:?}"
    );
    // Offline it is a perfect receipt (signed, consistent, CU-proved) ...
    w.verify("padded.bin", &served.receipt, false)
        .assert_verified("padded, no audit");
    // ... only a spot check that samples a padded cell sees the cheat.
    assert_caught_only_when_sampled(w, "padded-n-gen", &served, &cells, CheckId::SpotReplay);
}

#[test]
fn a_forged_token_with_a_stale_proof_fails_the_cu_proof() {
    let w = &world();
    let served = w.cheat(&Cheat::ForgedTokenStaleProof, &request(w));
    let line = w
        .verify("token-stale.bin", &served.receipt, false)
        .assert_fails_with(CheckId::CuProof, "forged token");
    assert_eq!(line, "CU proof rejected for this receipt's statement");
    // The old signature no longer covers the header either.
    let mut r = served.receipt.clone();
    r.provider.signature = w.honest(&request(w)).receipt.provider.signature;
    w.verify("token-unsigned.bin", &r, false)
        .assert_fails_with(CheckId::Signature, "forged token, old signature");
}

#[test]
fn a_forged_token_fails_the_token_check_of_its_step() {
    let w = &world();
    let served = w.cheat(&Cheat::ForgedToken, &request(w));
    let (cells, errors) = tampered(w, &served);
    let last = (
        served.receipt.trace.layers - 1,
        served.receipt.trace.positions - 1,
    );
    assert_eq!(
        cells,
        BTreeSet::from([last]),
        "only the cell that samples the last token fails"
    );
    let step = served.receipt.request.n_gen - 1;
    assert!(
        matches!(errors[..], [SpotError::TokenMismatch { step: s, .. }] if s == step),
        "{errors:?}"
    );
    assert_caught_only_when_sampled(w, "forged-token", &served, &cells, CheckId::SpotToken);
}

/// A deterministic xorshift generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The failing line the library implies for `bytes` (what forge-verify
/// without `--model` must print first), or `None` if it verifies.
fn library_failure(bytes: &[u8]) -> Option<(CheckId, String)> {
    let anchor = forge_proofs::TrustAnchor::new(forge_tests::adversary::cu_keys().1.clone());
    match Receipt::from_bytes(bytes) {
        Err(e) => Some((CheckId::Format, format!("canonical encoding: {e}"))),
        Ok(r) => r
            .verify_offline(&anchor)
            .err()
            .map(|e| (e.check_id(), e.to_string())),
    }
}

/// (f) Every truncation and a flip at every byte of an honest receipt, and
/// random flips and cuts of one with embedded checks, through the binary.
#[test]
fn byte_flips_and_truncations_anywhere_are_rejected() {
    let w = &world();
    let served = w.honest(&request(w));
    let plain = served.receipt.to_bytes().unwrap();
    let audited = served
        .with_embedded_checks(2, &provider_key())
        .to_bytes()
        .unwrap();
    w.verify_path(&w.write("plain.bin", &plain), false)
        .assert_verified("honest");
    w.verify_path(&w.write("audited.bin", &audited), true)
        .assert_verified("honest with checks");

    // (bytes, with_model, what)
    let mut cases: Vec<(Vec<u8>, bool, String)> = Vec::new();
    let mut rng = XorShift(0x00f1_1ab5_eed5);
    for cut in 0..plain.len() {
        cases.push((plain[..cut].to_vec(), false, format!("plain cut at {cut}")));
    }
    for at in 0..plain.len() {
        let mut b = plain.clone();
        b[at] ^= (rng.next() % 255 + 1) as u8;
        cases.push((b, false, format!("plain flip at {at}")));
    }
    for _ in 0..150 {
        let mut b = audited.clone();
        let at = (rng.next() % b.len() as u64) as usize;
        b[at] ^= (rng.next() % 255 + 1) as u8;
        cases.push((b, true, format!("audited flip at {at}")));
    }
    for _ in 0..50 {
        let cut = (rng.next() % audited.len() as u64) as usize;
        cases.push((
            audited[..cut].to_vec(),
            true,
            format!("audited cut at {cut}"),
        ));
    }
    cases.push((
        [plain.clone(), vec![0]].concat(),
        false,
        "trailing byte".into(),
    ));

    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let tally: BTreeMap<CheckId, usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|worker| {
                let cases = &cases;
                s.spawn(move || {
                    let mut tally = BTreeMap::new();
                    for (i, (bytes, with_model, what)) in
                        cases.iter().enumerate().skip(worker).step_by(threads)
                    {
                        let path = w.write(&format!("mut-{i}.bin"), bytes);
                        let run = w.verify_path(&path, *with_model);
                        run.assert_rejected(what);
                        let (id, line) = run
                            .failed_check()
                            .unwrap_or_else(|| panic!("{what}: unnamed failure:\n{}", run.stderr));
                        if !*with_model {
                            let expected = library_failure(bytes)
                                .unwrap_or_else(|| panic!("{what}: the library accepts it"));
                            assert_eq!(
                                (id, line.clone()),
                                expected,
                                "{what}: forge-verify and the library disagree"
                            );
                        }
                        *tally.entry(id).or_insert(0) += 1;
                        std::fs::remove_file(path).unwrap();
                    }
                    tally
                })
            })
            .collect();
        let mut total = BTreeMap::new();
        for h in handles {
            for (id, n) in h.join().unwrap() {
                *total.entry(id).or_insert(0) += n;
            }
        }
        total
    });
    let summary: Vec<String> = tally
        .iter()
        .map(|(id, n)| format!("{}: {n}", id.as_str()))
        .collect();
    println!(
        "{} mutated receipts rejected; first failing check: {}",
        cases.len(),
        summary.join(", ")
    );
    assert_eq!(tally.values().sum::<usize>(), cases.len());
    // Truncations are decode errors; a flipped header byte breaks the signature.
    assert!(
        tally[&CheckId::Format] >= plain.len() && tally[&CheckId::Signature] > plain.len() / 3,
        "{summary:?}"
    );
}

/// The detection experiment: `N` fresh challenges per `k`, each through the
/// real spot checker, for every partial cheat.
const N: u32 = 400;
const KS: [u32; 5] = [1, 2, 4, 8, 16];

fn detection_rows(w: &World, cheat: &Cheat) -> Vec<DetectionRow> {
    let served = w.cheat(cheat, &request(w));
    let (cells, _) = tampered(w, &served);
    measure_detection(
        &cheat.label(),
        &served,
        &SpotChecker::new(&w.model),
        &cells,
        &KS,
        N,
    )
}

#[test]
fn detection_rate_matches_one_minus_one_minus_f_to_the_k() {
    let w = &world();
    let cheats = [
        Cheat::OtherModel { seed: 2 },
        Cheat::SkippedLayer { layer: 2 },
        Cheat::CoarseLayer { layer: 1 },
        Cheat::InflatedNGenPadded { extra: 4 },
        Cheat::ForgedToken,
    ];
    let rows: Vec<DetectionRow> = std::thread::scope(|s| {
        let handles: Vec<_> = cheats
            .iter()
            .map(|c| s.spawn(move || detection_rows(w, c)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let table = detection_markdown(&rows);
    println!("{table}");
    if std::env::var_os("FORGE_WRITE_RESULTS").is_some() {
        write_results(w, &table);
    }
    for r in &rows {
        assert!(
            r.z() <= 4.0,
            "{}: k = {}: measured {:.4}, expected {:.4} ({:.1} standard errors)",
            r.cheat,
            r.k,
            r.measured,
            r.expected,
            r.z()
        );
    }
    // The fractions are what the cheats touch: all cells, one layer in four,
    // the padded positions, one cell.
    let f = |label: &str| rows.iter().find(|r| r.cheat.starts_with(label)).unwrap().f;
    assert_eq!(f("(a)"), 1.0);
    assert_eq!((f("(b)"), f("(c)")), (0.25, 0.25));
    assert!(f("(e)") > 0.0 && f("(e)") < 0.05);
}

fn write_results(w: &World, table: &str) {
    let r = w.honest(&request(w)).receipt;
    let cells = r.trace.layers * r.trace.positions;
    let doc = format!(
        "# Spot-check detection rates\n\n\
         Produced by `FORGE_WRITE_RESULTS=1 cargo test --release -p forge-tests --test adversary detection_rate -- --nocapture`\n\
         (the same test asserts every row in CI).\n\n\
         Tiny random Llama (`forge_engine::testing::TinySpec`: {} layers, d_model {}, ffn {}), one sampled request of\n\
         {} prompt + {} generated tokens: a trace of L x T = {} x {} = {} cells. Each cheat is signed with a valid\n\
         node key and CU-proved, so it passes every offline check; f is the fraction of cells whose one-cell\n\
         spot check fails (found by checking every cell). Each challenge is a fresh 32-byte auditor seed; its k\n\
         cells are drawn from the merlin transcript (with replacement) and verified with `SpotChecker` against\n\
         the honest weights. The test also checks that a challenge fails exactly when it samples a tampered cell.\n\
         z = |measured - expected| / sqrt(expected (1 - expected) / n); CI fails above 4.\n\n{table}\n\
         Cheats: (a) another model's weights under the honest model id; (b) layer 2's residual updates zeroed in\n\
         the GGUF, so the layer is really skipped; (c) layer 1's Q4_1 weights rounded to 4 levels (2 bits);\n\
         (d) n_gen + 4 with fake tokens and the trace padded by copying each layer's last row, re-proved;\n\
         (e) the last output token replaced and the receipt re-built. Cheats that fail offline (inflated FLOPs,\n\
         stale CU proofs, byte flips) are rejected with certainty and are not in this table.\n\n\
         A provider that chooses the seed of its own embedded checks (or grinds the request id that the\n\
         embedded seed hashes) passes them at will: the rates above hold for challenges the provider cannot\n\
         choose, i.e. interactive audits with a fresh seed after the receipt is published. Measured in\n\
         `embedded_checks_can_be_ground_but_a_fresh_audit_catches_the_cheat`: with cheat (b) and k = 8 embedded\n\
         cells, changing the request id and re-signing found a passing Fiat-Shamir seed in 30 tries (expected\n\
         1/(3/4)^8 = 10), after which `forge-verify --model` accepts the receipt; a fresh audit then rejects it.\n",
        w.spec.layers,
        w.spec.d_model,
        w.spec.ffn,
        r.request.n_prompt,
        r.request.n_gen,
        r.trace.layers,
        r.trace.positions,
        cells
    );
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../papers/results/detection.md");
    std::fs::write(&path, doc).unwrap();
    println!("wrote {}", path.display());
}

/// The grinding caveat (DESIGN.md section 6), measured: embedded checks
/// whose seed hashes the signed header can be re-drawn for the price of a
/// signature by changing the request id, so a cheater publishes a receipt
/// whose embedded checks pass. A fresh auditor seed still catches it.
#[test]
fn embedded_checks_can_be_ground_but_a_fresh_audit_catches_the_cheat() {
    let w = &world();
    let mut served = w.cheat(&Cheat::SkippedLayer { layer: 2 }, &request(w));
    let k = 8;
    let mut tries = 0u32;
    loop {
        tries += 1;
        served.receipt.request.id[..4].copy_from_slice(&tries.to_le_bytes());
        resign(&mut served.receipt, &w.key);
        let cells = challenge_cells(&served.receipt, &embedded_seed(&served.receipt), k).unwrap();
        if cells.iter().all(|&(l, _)| l != 2) {
            break;
        }
        assert!(tries < 10_000, "grinding did not converge");
    }
    reprove(&mut served.receipt);
    let ground = served.with_embedded_checks(k, &provider_key());
    // Expected tries: 1 / (3/4)^8 = 10.
    println!("ground the request id in {tries} tries for k = {k} embedded cells");
    w.verify("ground.bin", &ground, true)
        .assert_verified("ground embedded checks");
    // The auditor's fresh seed, drawn after publication.
    let hit = find_seed(&served, 99, k, |cells| cells.iter().any(|&(l, _)| l == 2));
    let mut audited = ground.clone();
    audited.audits.push(
        served
            .with_audit(hit, k, &forge_proofs::NodeKey::from_secret(&[9; 32]))
            .audits
            .remove(0),
    );
    w.verify("audited.bin", &audited, true)
        .assert_fails_with(CheckId::SpotReplay, "fresh audit");
}
