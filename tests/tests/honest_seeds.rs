//! Honest receipts from 1,000 different sampling seeds all verify (issue 3):
//! each is generated, committed, signed, CU-proved, carries non-interactive
//! spot checks, survives the binary encoding, and passes the library
//! verifier (offline checks and re-execution of its spot checks against the
//! real weights); a handful also go through the `forge-verify` binary.
//!
//! `forge-verify` is spawned from `target/release/` (see tests/adversary.rs).
//! `FORGE_FUZZ_CORPUS=DIR` also writes a few receipts there as fuzz seeds.

use std::collections::BTreeSet;
use std::time::Instant;

use forge_engine::testing::TinySpec;
use forge_engine::{GenerateRequest, SamplingParams};
use forge_proofs::{Check, Receipt, ReceiptBuilder, SpotChecker, attach_self_audit};
use forge_tests::adversary::{World, cu_keys, recheck_audits, run};

const SEEDS: u64 = 1000;
/// Spot-check cells embedded in every receipt.
const CHECKS: u32 = 4;

/// The engine's default tiny model with another weight seed (a 1,000-seed
/// run takes about 10 s on two cores, mostly CU proving).
fn spec() -> TinySpec {
    TinySpec {
        layers: 3,
        d_model: 64,
        heads: 4,
        kv_heads: 2,
        ffn: 128,
        context_length: 64,
        seed: 5,
        untied_f16_head: false,
    }
}

const PROMPTS: [&str; 4] = [
    "hi",
    "the cat",
    "<|im_start|>user\nwhy?<|im_end|>",
    "in the end",
];

/// Request `i`: sampling seed `i`, and prompts, lengths and sampling
/// parameters that vary with it.
fn request(w: &World, i: u64) -> GenerateRequest {
    let j = i as usize;
    GenerateRequest {
        prompt: w
            .model
            .tokenizer()
            .encode(PROMPTS[j % PROMPTS.len()])
            .unwrap(),
        max_tokens: 1 + j % 5,
        sampling: SamplingParams {
            temperature: [0.7, 1.0, 1.3, 2.0][j / 4 % 4],
            top_k: [0, 20][j / 16 % 2],
            top_p: [1.0, 0.9][j / 32 % 2],
            seed: i,
            presence_penalty: [0.0, 0.5][j / 64 % 2],
            frequency_penalty: [0.0, 0.3][j / 128 % 2],
            logit_bias: if j.is_multiple_of(7) {
                vec![(40, 2.0)]
            } else {
                vec![]
            },
        },
        stop: vec![],
    }
}

/// Generates, commits, signs, proves and self-audits request `i`; returns
/// the encoded receipt and its output tokens.
fn serve(w: &World, i: u64) -> (Vec<u8>, Vec<u32>) {
    let req = request(w, i);
    let (generation, commitment) = run(&w.model, &req);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_le_bytes());
    let mut receipt = ReceiptBuilder::new(&w.model, &w.key, &cu_keys().0)
        .build(id, &req, &generation, &commitment)
        .unwrap();
    attach_self_audit(
        &mut receipt,
        &commitment,
        &req.prompt,
        &generation.tokens,
        &w.key,
        CHECKS,
    )
    .unwrap();
    (receipt.to_bytes().unwrap(), generation.tokens)
}

/// What a third party does with the bytes: decode, verify offline against
/// the pinned model and key, re-execute the embedded spot checks.
fn verify(w: &World, checker: &SpotChecker<'_>, bytes: &[u8], i: u64) {
    let r = Receipt::from_bytes(bytes).unwrap_or_else(|e| panic!("seed {i}: does not decode: {e}"));
    assert_eq!(r.to_bytes().unwrap(), bytes, "seed {i}: not canonical");
    assert_eq!(r.request.sampling.seed, i);
    let report = r
        .verify_offline(&w.anchor())
        .unwrap_or_else(|e| panic!("seed {i}: rejected offline: {e}"));
    assert_eq!(
        report.checks,
        [
            Check::Format,
            Check::Shape,
            Check::Model,
            Check::Flops,
            Check::Signature,
            Check::VerifyingKey,
            Check::CuProof,
            Check::AuditSignatures
        ],
        "seed {i}"
    );
    let cells =
        recheck_audits(&r, checker).unwrap_or_else(|e| panic!("seed {i}: spot check failed: {e}"));
    assert_eq!(cells, CHECKS as usize, "seed {i}");
}

#[test]
fn honest_receipts_from_a_thousand_seeds_all_verify() {
    let started = Instant::now();
    let w = &World::new(spec());
    let setup = started.elapsed();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    let results: Vec<(u64, Vec<u8>, Vec<u32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let checker = SpotChecker::new(&w.model);
                    (t..SEEDS)
                        .step_by(threads as usize)
                        .map(|i| {
                            let (bytes, tokens) = serve(w, i);
                            verify(w, &checker, &bytes, i);
                            (i, bytes, tokens)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    assert_eq!(results.len() as u64, SEEDS);
    let seeds: BTreeSet<u64> = results.iter().map(|r| r.0).collect();
    assert_eq!(seeds, (0..SEEDS).collect());

    // The seeds really sampled different answers (a fifth of the requests
    // generate a single token, so some answers repeat).
    let outputs: BTreeSet<(u64, &[u32])> = results
        .iter()
        .map(|r| (r.0 % PROMPTS.len() as u64, r.2.as_slice()))
        .collect();
    let tokens: usize = results.iter().map(|r| r.2.len()).sum();
    let bytes: usize = results.iter().map(|r| r.1.len()).sum();
    println!(
        "{SEEDS} honest receipts verified ({CHECKS} spot-checked cells each) in {:.1} s on {threads} threads \
         (plus {:.1} s for the CU setup); {} distinct (prompt, output) pairs, {tokens} tokens, mean receipt {} bytes",
        elapsed.as_secs_f64(),
        setup.as_secs_f64(),
        outputs.len(),
        bytes / results.len()
    );
    assert!(
        outputs.len() > 500,
        "only {} distinct (prompt, output) pairs",
        outputs.len()
    );

    // A handful through the binary, with the model: every check passes.
    for i in [0, 1, 2, 499, 998, 999] {
        let (_, b, _) = results.iter().find(|r| r.0 == i).unwrap();
        let run = w.verify_path(&w.write(&format!("seed-{i}.bin"), b), true);
        run.assert_verified(&format!("seed {i}"));
        assert!(
            run.stderr.contains(&format!(
                "{CHECKS} cells re-executed bit-exact; verdict pass confirmed"
            )),
            "{}",
            run.stderr
        );
    }

    if let Some(dir) = std::env::var_os("FORGE_FUZZ_CORPUS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in [0, 3, 7, 100] {
            let (_, b, _) = results.iter().find(|r| r.0 == i).unwrap();
            std::fs::write(dir.join(format!("honest-seed-{i}.bin")), b).unwrap();
            let plain = Receipt::from_bytes(b).map(|mut r| {
                r.audits.clear();
                r.to_bytes().unwrap()
            });
            std::fs::write(
                dir.join(format!("honest-seed-{i}-no-audit.bin")),
                plain.unwrap(),
            )
            .unwrap();
        }
        println!("wrote fuzz seeds to {}", dir.display());
    }
}
