//! What `forge-verify` does without the model, and its parts, on SmolLM2
//! receipts with large openings: the proofs benchmark's prefill prompt
//! (about 520 tokens, then MAX_TOKENS greedy ones) is generated and
//! committed, a receipt is signed with a fixed key, and the draws of the
//! first SEEDS seeds (blake3 of 0, 1, ... as u64; 8 cells each) are
//! opened. Then, on a 2-thread pool, the median of ITERS calls each:
//!
//! - `offline`: `Receipt::verify_offline` (format, signature, CU proof);
//! - per draw, `decode`: `SpotOpenings::from_bytes` of its openings, and
//!   `verify`: `verify_openings` (shapes and Merkle range proofs), with
//!   the openings' size.
//!
//! A draw's total is `offline + decode + verify` one after the other. The
//! receipt with its own (non-interactive) audit is then checked as
//! `forge-verify` checks it without the model: the offline checks beside
//! the audit's openings. With a fourth argument PATH, that receipt is
//! written there (to time the `forge-verify` process on it).
//!
//! `cargo run --release -p forge-benches --example verify_timing -- [ITERS]
//! [SEEDS] [MAX_TOKENS] [PATH]` (defaults 50, 8 and 64).

use anyhow::{Context, Result};
use forge_benches::prompts::prompt_set;
use forge_benches::proofs::verify_without_model;
use forge_benches::receipted::{Receipted, receipted};
use forge_benches::util::{positional_arg, sorted_ms_on};
use forge_proofs::{
    Receipt, SpotOpenings, TrustAnchor, attach_self_audit, challenge_cells, open_cells,
    verify_openings,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iters: usize = positional_arg(&args, 0, 50)?;
    let seeds: u64 = positional_arg(&args, 1, 8)?;
    let max_tokens: usize = positional_arg(&args, 2, 64)?;
    let prompt = prompt_set().pop().context("the prompt set is empty")?;
    let Receipted {
        pool,
        key,
        req,
        generation: g,
        commitment,
        receipt,
        ..
    } = receipted(&prompt, max_tokens)?;
    let anchor = TrustAnchor::new(forge_circuits::canonical_vk().clone());
    println!(
        "{} prompt tokens ({}), {} generated",
        req.prompt.len(),
        prompt.name,
        g.tokens.len()
    );
    let median_ms = |f: &(dyn Fn() + Sync)| {
        let ms = sorted_ms_on(&pool, iters, f);
        ms[ms.len() / 2]
    };
    receipt
        .verify_offline(&anchor)
        .context("the honest receipt must verify")?;
    let offline = median_ms(&|| drop(receipt.verify_offline(&anchor)));
    println!("offline: {offline:.3} ms");
    // Its parts, one after the other (the offline check runs the receipt's
    // hash beside the header's checks).
    let header = receipt.header_hash()?;
    let stmt = receipt.cu_statement(header);
    let vk = forge_circuits::canonical_vk();
    let proof = forge_circuits::CuProof::from_bytes(&receipt.cu_proof)?;
    let parts: [(&str, &(dyn Fn() + Sync)); 5] = [
        ("header hash", &|| drop(receipt.header_hash())),
        ("receipt hash", &|| drop(receipt.hash())),
        ("vk hash", &|| {
            std::hint::black_box(forge_circuits::vk_hash(vk));
        }),
        ("proof decode", &|| {
            drop(forge_circuits::CuProof::from_bytes(&receipt.cu_proof))
        }),
        ("pairing check", &|| {
            drop(forge_circuits::verify(vk, &stmt, &proof))
        }),
    ];
    for (what, f) in parts {
        println!("  {what}: {:.3} ms", median_ms(f));
    }
    // The receipt with its non-interactive audit, as `forge-node generate
    // --receipt` writes it, checked as `forge-verify` does without the
    // model (the proofs benchmark's "verify without model").
    let mut audited = receipt.clone();
    attach_self_audit(&mut audited, &commitment, &req.prompt, &g.tokens, &key, 8)?;
    let bytes = audited.to_bytes()?;
    let decoded = Receipt::from_bytes(&bytes)?;
    let whole = || verify_without_model(&decoded, &anchor, 8);
    pool.install(whole)
        .context("the audited receipt must verify")?;
    println!(
        "audited receipt ({:.2} MB): checked without the model in {:.3} ms",
        bytes.len() as f64 / 1e6,
        median_ms(&|| drop(whole()))
    );
    if let Some(path) = args.get(3) {
        std::fs::write(path, &bytes).with_context(|| format!("writing {path}"))?;
        println!("written to {path}");
    }
    for s in 0..seeds {
        let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
        let cells = challenge_cells(&receipt, &seed, 8)?;
        let bytes = open_cells(&commitment, &req.prompt, &g.tokens, &cells)?.to_bytes()?;
        let openings = SpotOpenings::from_bytes(&bytes)?;
        verify_openings(&receipt, &seed, 8, &openings).context("the honest draw must verify")?;
        let decode = median_ms(&|| drop(SpotOpenings::from_bytes(&bytes)));
        let verify = median_ms(&|| drop(verify_openings(&receipt, &seed, 8, &openings)));
        println!(
            "seed {s}: {:.2} MB, decode {decode:.3} ms, verify {verify:.3} ms, total {:.3} ms",
            bytes.len() as f64 / 1e6,
            offline + decode + verify
        );
    }
    Ok(())
}
