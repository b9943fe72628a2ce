//! What committing costs a batched decode step, as `forge-node serve` runs
//! it: N sequences stepped together with `forge_engine::step` (forward
//! pass, LM head, greedy sampling with a logit bias, detokenising), once
//! with no sinks and once with a `CommitmentSink` per sequence (timing its
//! calls for the account below: two clock reads a call, which servers
//! skip), in
//! alternating rounds (which side runs first alternates too). Prints each
//! side's mean step time per round, their ratio, and the sinks' own
//! account per step (the engine thread's time in `record`, the hashing
//! jobs' time), summed over the sequences.
//!
//! `cargo run --release -p forge-benches --example batch_commit -- [N]
//! [ROUNDS] [TOKENS]`: N sequences (default 8) with synthetic prompts of
//! 40 to 40 + N - 1 tokens, each generating TOKENS tokens (default 128) after
//! its prefill, ROUNDS rounds (default 5); 2 pool threads.

use std::time::Instant;

use anyhow::{Context, Result};
use forge_benches::util::{default_model_path, median, positional_arg, synthetic_prompt};
use forge_engine::{Backend, GenerateRequest, Model, SamplingParams, Sequence, step};
use forge_proofs::{CommitmentSink, SinkOptions};

/// Mean decode step (ms) of one round, and the sinks' engine-thread and
/// hashing time per step (ms), summed over the sequences.
struct Round {
    step_ms: f64,
    engine_ms: f64,
    hashing_ms: f64,
}

fn round(model: &Model, n: usize, tokens: usize, commit: bool) -> Result<Round> {
    let (vocab, d) = (model.config().vocab, model.config().d_model);
    let mut seqs = (0..n)
        .map(|i| {
            let req = GenerateRequest {
                prompt: synthetic_prompt(40 + i, vocab),
                max_tokens: tokens + 1,
                // As `forge-bench serve` sends: greedy, the end-of-turn
                // tokens banned so that every sequence runs to the end.
                sampling: SamplingParams {
                    temperature: 0.0,
                    logit_bias: vec![(0, -100.0), (2, -100.0)],
                    ..SamplingParams::default()
                },
                stop: Vec::new(),
            };
            let opts = SinkOptions {
                timed: true,
                ..SinkOptions::default()
            };
            let sink = commit
                .then(|| CommitmentSink::with_options(d, opts))
                .transpose()?;
            Ok(Sequence::new(model, req, sink)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut refs: Vec<&mut Sequence<CommitmentSink>> = seqs.iter_mut().collect();
    // The prefill, untimed.
    step(model, &mut refs)?;
    let started = Instant::now();
    let mut steps = 0;
    while refs.iter().any(|s| !s.is_done()) {
        step(model, &mut refs)?;
        steps += 1;
    }
    let step_ms = 1e3 * started.elapsed().as_secs_f64() / steps.max(1) as f64;
    drop(refs);
    let (mut engine, mut hashing) = (0.0, 0.0);
    for s in seqs {
        if let (_, Some(sink)) = s.into_result(model) {
            let c = sink.finish()?;
            engine += c.cost().engine_thread.as_secs_f64();
            hashing += c.cost().hashing.as_secs_f64();
        }
    }
    let per_step = |secs: f64| 1e3 * secs / steps.max(1) as f64;
    Ok(Round {
        step_ms,
        engine_ms: per_step(engine),
        hashing_ms: per_step(hashing),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| positional_arg(&args, i, default).map(|v| v.max(1));
    let (n, rounds, tokens) = (arg(0, 8)?, arg(1, 5)?, arg(2, 128)?);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let path = default_model_path().context("no model cache (run `forge-node pull`)")?;
    let model = Model::load(&path, Backend::Cpu)?;
    // As `forge-node serve` runs it.
    model.use_huge_pages();
    pool.install(|| -> Result<()> {
        // Warm-up: fills the commitment's buffer pool, as a server's
        // earlier requests do.
        round(&model, n, tokens, true)?;
        let (mut ratios, mut engine, mut hashing) = (Vec::new(), Vec::new(), Vec::new());
        println!("{n} sequences, {tokens} tokens each after the prefill; ms per step");
        for r in 0..rounds {
            let (off, on) = if r % 2 == 0 {
                let off = round(&model, n, tokens, false)?;
                (off, round(&model, n, tokens, true)?)
            } else {
                let on = round(&model, n, tokens, true)?;
                (round(&model, n, tokens, false)?, on)
            };
            let overhead = 100.0 * (on.step_ms / off.step_ms - 1.0);
            println!(
                "round {}: no sinks {:.2}, commitment sinks {:.2} ({overhead:+.1}%); sinks' own account: engine thread {:.3}, hashing {:.3}",
                r + 1,
                off.step_ms,
                on.step_ms,
                on.engine_ms,
                on.hashing_ms,
            );
            ratios.push(overhead);
            engine.push(on.engine_ms);
            hashing.push(on.hashing_ms);
        }
        println!(
            "median: commitment sinks {:+.1}% per step; engine thread {:.3} ms, hashing {:.3} ms per step",
            median(&ratios).unwrap_or(f64::NAN),
            median(&engine).unwrap_or(f64::NAN),
            median(&hashing).unwrap_or(f64::NAN),
        );
        Ok(())
    })
}
