//! What one spot-check draw costs on SmolLM2, and its parts: the short
//! benchmark prompt (the proofs benchmark's first, 64 greedy tokens) is
//! generated and committed, a receipt is signed with a fixed key, and the
//! first seed (blake3 of 0, 1, ... as u64) whose 8 cells hold exactly
//! LAST last-layer cells at generated positions is drawn. Then, on a
//! 2-thread pool, least and median of ITERS calls each:
//!
//! - `check_cells`: the whole check, as `forge-verify --model` runs it;
//! - `verify_openings`: the openings' shapes and Merkle proofs alone;
//! - `LM head`: one row's logits (back to back, so as warm as the caches
//!   allow);
//! - `replays`: the 8 cells' layer replays side by side.
//!
//! `cargo run --release -p forge-benches --example draw_timing -- [ITERS]
//! [LAST]` (defaults 200 and 1). To time an earlier commit's checker, copy
//! this file there (papers/results/draw-ab.md).

use anyhow::{Context, Result};
use forge_benches::prompts::prompt_set;
use forge_benches::receipted::{Receipted, receipted};
use forge_benches::util::{positional_arg, sorted_ms_on};
use forge_engine::{Numerics, f16};
use forge_proofs::{RowsRef, SpotChecker, challenge_cells, open_cells, verify_openings};
use rayon::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iters: usize = positional_arg(&args, 0, 200)?;
    let last: usize = positional_arg(&args, 1, 1)?;
    // As the proofs benchmark generates it.
    let Receipted {
        model,
        pool,
        key: _,
        req,
        generation: g,
        commitment,
        receipt,
    } = receipted(&prompt_set()[0], 64)?;
    let (layers, n_prompt) = (receipt.trace.layers, receipt.request.n_prompt);
    let samples_token = |&(l, p): &(u32, u32)| l + 1 == layers && p + 1 >= n_prompt;
    let seed = (0u64..10_000)
        .map(|s| *blake3::hash(&s.to_le_bytes()).as_bytes())
        .find(|seed| {
            challenge_cells(&receipt, seed, 8)
                .is_ok_and(|c| c.iter().filter(|c| samples_token(c)).count() == last)
        })
        .context("no seed in 10,000 draws that many last-layer cells")?;
    let cells = challenge_cells(&receipt, &seed, 8)?;
    let openings = open_cells(&commitment, &req.prompt, &g.tokens, &cells)?;
    let generation_ms = (g.prefill_secs + g.decode_secs) * 1e3;
    println!(
        "{} prompt tokens, {} generated in {generation_ms:.1} ms; cells {cells:?}",
        req.prompt.len(),
        g.tokens.len()
    );

    let time = |what: &str, f: &(dyn Fn() + Sync)| {
        let ms = sorted_ms_on(&pool, iters, f);
        let (least, median) = (ms[0], ms[ms.len() / 2]);
        println!(
            "{what}: least {least:.3} ms, median {median:.3} ms ({:.2}% of the generation)",
            100.0 * median / generation_ms
        );
    };
    let checker = SpotChecker::new(&model);
    checker
        .check_cells(&receipt, &cells, &openings)
        .context("the honest draw must pass")?;
    time("check_cells", &|| {
        drop(checker.check_cells(&receipt, &cells, &openings));
    });
    time("verify_openings", &|| {
        drop(verify_openings(&receipt, &seed, 8, &openings));
    });
    let row = vec![0.1f32; model.config().d_model];
    time("LM head", &|| drop(model.logits_in(Numerics::Int8, &row)));
    time("replays", &|| {
        openings.cells.par_iter().for_each(|c| {
            let t = c.pos as usize;
            let input = vec![0.1f32; model.config().d_model];
            let (layer, w) = (c.layer as usize, c.kv.rows.width());
            drop(match c.kv.rows.rows(0..t) {
                Some(RowsRef::F16(v)) => {
                    let rows: Vec<&[f16]> = v.chunks_exact(w).collect();
                    model.replay_cell_rows_in(Numerics::Int8, layer, &input, &rows)
                }
                Some(RowsRef::F32(v)) => {
                    let rows: Vec<&[f32]> = v.chunks_exact(w).collect();
                    model.replay_cell_rows_in(Numerics::Int8, layer, &input, &rows)
                }
                None => return,
            });
        });
    });
    Ok(())
}
