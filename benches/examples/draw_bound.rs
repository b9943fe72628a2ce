//! Why a spot-check draw that holds a last-layer cell costs more than
//! 0.5% of a 64-token generation on SmolLM2, measured side by side in one
//! run on a 2-thread pool:
//!
//! - the weight bytes the draw must read: the LM head (the last-layer
//!   check re-derives a sampled token from the full logits, so it reads
//!   every row once) and one layer's matrices per cell, against the bytes
//!   a decode step reads (every matrix once, the LM head included);
//! - the most this machine streams: the best of 20 reads of a 512 MiB
//!   buffer on both threads, or of the LM head's reads below if faster;
//! - the generation: a 27-token prompt (the proofs benchmark's shortest)
//!   then 64 greedy tokens, no sink, median of 10;
//! - the LM head alone on a cold cache (256 MiB of other memory read
//!   first, as in a verifier's process), least and median of 30.
//!
//! A draw cannot take less than its bytes over the machine's bandwidth, so
//! `(LM head + 8 layers) / bandwidth / generation` bounds its share from
//! below, whatever its kernels do. Decode steps stream the same weights at
//! the same bandwidth, so the bound hardly moves with the machine.
//!
//! `cargo run --release -p forge-benches --example draw_bound -- [TOKENS]`
//! (default 64 generated tokens).

use std::time::Instant;

use anyhow::{Context, Result};
use forge_benches::util::{default_model_path, median, positional_arg, synthetic_prompt};
use forge_engine::{Backend, Model, Numerics, argmax};
use rayon::prelude::*;

/// Cells a receipt's draw holds (the node's default).
const CELLS: usize = 8;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokens: usize = positional_arg(&args, 0, 64)?;
    let path = default_model_path().context("no model: run `forge-node pull` first")?;
    let model = Model::load(&path, Backend::Cpu)?;
    // As the proofs benchmark and `forge-node serve` run it.
    model.use_huge_pages();
    let cfg = model.config().clone();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;

    let step = model.weight_bytes_per_token() as f64;
    let head = model.lm_head_bytes() as f64;
    let layer = (step - head) / cfg.layers as f64;
    let draw = head + CELLS as f64 * layer;

    let mut buffer = vec![1u64; (512 << 20) / 8];
    let mut bandwidth = 0.0f64;
    for _ in 0..20 {
        let started = Instant::now();
        std::hint::black_box(sweep(&pool, &buffer));
        let secs = started.elapsed().as_secs_f64();
        bandwidth = bandwidth.max((buffer.len() * 8) as f64 / secs);
    }
    buffer.truncate((256 << 20) / 8);

    let prompt = synthetic_prompt(27, cfg.vocab);
    let mut session = model.session();
    let mut generation = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        pool.install(|| -> Result<()> {
            session.truncate(0);
            let rows = model.forward(&mut session, &prompt, None)?;
            let mut tok = argmax(&model.logits(&rows[rows.len() - cfg.d_model..]));
            for _ in 1..tokens {
                let row = model.forward(&mut session, &[tok], None)?;
                tok = argmax(&model.logits(&row));
            }
            Ok(())
        })?;
        generation.push(started.elapsed().as_secs_f64());
    }
    let generation = median(&generation).context("no runs")?;

    let row: Vec<f32> = (0..cfg.d_model).map(|i| (i % 17) as f32 / 17.0).collect();
    let mut cold = Vec::new();
    for _ in 0..30 {
        std::hint::black_box(sweep(&pool, &buffer));
        let started = Instant::now();
        pool.install(|| std::hint::black_box(model.logits_in(Numerics::Int8, &row)));
        cold.push(started.elapsed().as_secs_f64());
    }
    cold.sort_by(f64::total_cmp);
    let (cold_least, cold_median) = (cold[0], median(&cold).context("no runs")?);
    // The LM head's own best read is a bandwidth too (it can beat the
    // buffer's, on huge pages): the bound takes the faster.
    let bandwidth = bandwidth.max(head / cold_least);

    let mb = |b: f64| b / 1e6;
    println!(
        "weights: LM head {:.1} MB, a layer {:.2} MB, a decode step {:.1} MB; a draw of {CELLS} cells with a last-layer one reads {:.1} MB ({:.2} decode steps)",
        mb(head),
        mb(layer),
        mb(step),
        mb(draw),
        draw / step
    );
    println!(
        "bandwidth: best {:.1} GB/s (2 threads; the buffer's or the LM head's)",
        bandwidth / 1e9
    );
    println!(
        "generation: 27-token prompt + {tokens} tokens, median {:.1} ms ({:.2} ms per token)",
        generation * 1e3,
        generation * 1e3 / tokens as f64
    );
    println!(
        "LM head, cold: least {:.3} ms, median {:.3} ms ({:.2}% / {:.2}% of the generation)",
        cold_least * 1e3,
        cold_median * 1e3,
        100.0 * cold_least / generation,
        100.0 * cold_median / generation,
    );
    println!(
        "bound: the draw reads its {:.1} MB in at least {:.3} ms: {:.2}% of the generation (target 0.5%)",
        mb(draw),
        draw / bandwidth * 1e3,
        100.0 * draw / bandwidth / generation
    );
    Ok(())
}

/// Reads all of `buffer` on `pool`'s threads (its sum, so the reads stay).
fn sweep(pool: &rayon::ThreadPool, buffer: &[u64]) -> u64 {
    pool.install(|| {
        buffer
            .par_chunks(1 << 16)
            .map(|c| c.iter().sum::<u64>())
            .sum()
    })
}
