//! Criterion benches of forge-proofs' trace commitment.
//!
//! - `commit/token@smollm2`: what a `CommitmentSink` costs per decoded
//!   token in CPU time, on rows of SmolLM2-135M's shapes (30 layers, output
//!   rows of 576 floats, key/value rows of 384): 64 tokens recorded one
//!   position at a time, as a decode loop hands them over, then `finish`
//!   (the Merkle tree); per token. Everything runs on a one-thread rayon
//!   pool, so the hashing jobs' time is in the measurement. Against one
//!   decode step's CPU time (`engine`'s `smollm2/decode_step@64` wall time
//!   times its threads) it is the commitment's share of decoding.
//!
//! - `commit/decode_16@64` and `commit/decode_16@64_committed`: 16 greedy
//!   decode steps of SmolLM2-135M-Instruct from position 64, without and
//!   with a `CommitmentSink` (created before the first step, finished after
//!   the last: its whole cost), on the engine's rayon pool of
//!   `FORGE_BENCH_THREADS` threads (default 2). Their ratio, measured side
//!   by side, is the commitment's wall-clock overhead on decoding. Skipped
//!   with a message when `$FORGE_HOME/models` lacks the model.
//!
//! - `commit/open_kv@smollm2_768`: what a node spends answering one
//!   spot-check cell's key/value opening: the `[k | v]` rows of one layer
//!   at positions 0..=767 (a 518-token prompt and 250 generated tokens;
//!   f16 rows, 590 KB) with their Merkle range proof, from a commitment
//!   over SmolLM2-shaped rows kept in memory.
//!
//! `cargo bench -p forge-benches --bench commit`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forge_benches::util::{bench_threads, default_model_path, synthetic_prompt};
use forge_engine::{Backend, Model, TraceSink, argmax};
use forge_proofs::CommitmentSink;

const LAYERS: usize = 30;
const D_MODEL: usize = 576;
const KV_WIDTH: usize = 384;
const TOKENS: usize = 64;

fn rows(width: usize, seed: usize) -> Vec<f32> {
    (0..width)
        .map(|i| ((i * 31 + seed * 17) % 1009) as f32 / 97.0 - 5.0)
        .collect()
}

/// SmolLM2-shaped rows per layer: output rows, and key/value rows rounded
/// to f16 (the sink keeps those in f16, as the CPU engine's cache does,
/// and refuses a value that is not one).
fn layer_rows() -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let out = (0..LAYERS).map(|l| rows(D_MODEL, l)).collect();
    let kv = (0..LAYERS)
        .map(|l| {
            rows(KV_WIDTH, l + 100)
                .into_iter()
                .map(|x| forge_engine::f16::from_f32(x).to_f32())
                .collect()
        })
        .collect();
    (out, kv)
}

/// A sink with every layer's rows at positions `0..positions`, recorded
/// one position at a time as a decode loop hands them over.
fn recorded(positions: usize, out: &[Vec<f32>], kv: &[Vec<f32>]) -> CommitmentSink {
    let mut sink = CommitmentSink::new(D_MODEL).expect("sink");
    for pos in 0..positions {
        for l in 0..LAYERS {
            sink.record_kv(l, pos, KV_WIDTH, &kv[l]);
            sink.record(l, pos, &out[l]);
        }
    }
    sink
}

fn token(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("one-thread pool");
    let (out, kv) = layer_rows();
    let mut g = c.benchmark_group("commit");
    g.throughput(Throughput::Elements(TOKENS as u64));
    g.bench_function("token@smollm2", |b| {
        b.iter(|| {
            pool.install(|| {
                let sink = recorded(TOKENS, &out, &kv);
                black_box(sink.finish().expect("commitment").root())
            })
        })
    });
    g.finish();
}

/// 16 decode steps from position 64, without and with a commitment.
fn decode(c: &mut Criterion) {
    let Some(path) = default_model_path().filter(|p| p.is_file()) else {
        eprintln!(
            "commit/decode_16@64: skipped, SmolLM2 not found under $FORGE_HOME/models \
             (fetch it with `cargo run --release -p forge-node -- pull`)"
        );
        return;
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(bench_threads())
        .build()
        .expect("engine pool");
    let model = Model::load(&path, Backend::Cpu).expect("load SmolLM2");
    let (at, steps) = (64, 16);
    let vocab = model.config().vocab;
    let prompt = synthetic_prompt(at, vocab);
    let mut session = model.session();
    let first = pool.install(|| {
        let rows = model.forward(&mut session, &prompt, None).expect("prefill");
        argmax(&model.logits(&rows[rows.len() - model.config().d_model..]))
    });
    let mut g = c.benchmark_group("commit");
    g.throughput(Throughput::Elements(steps as u64));
    for committed in [false, true] {
        let name = if committed {
            "decode_16@64_committed"
        } else {
            "decode_16@64"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                pool.install(|| {
                    session.truncate(at);
                    let mut sink = committed
                        .then(|| CommitmentSink::new(model.config().d_model).expect("sink"));
                    let mut tok = first;
                    for _ in 0..steps {
                        let row = model
                            .forward(
                                &mut session,
                                &[tok],
                                sink.as_mut().map(|s| s as &mut dyn TraceSink),
                            )
                            .expect("decode step");
                        tok = argmax(&model.logits(&row));
                    }
                    black_box(sink.map(|s| s.finish().expect("commitment").root()));
                    tok
                })
            })
        });
    }
    g.finish();
}

/// One layer's key/value prefix opened from a 768-position commitment.
fn open(c: &mut Criterion) {
    const POSITIONS: usize = 768;
    let (out, kv) = layer_rows();
    let commitment = recorded(POSITIONS, &out, &kv).finish().expect("commitment");
    let mut g = c.benchmark_group("commit");
    g.throughput(Throughput::Bytes((POSITIONS * KV_WIDTH * 2) as u64));
    g.bench_function("open_kv@smollm2_768", |b| {
        b.iter(|| {
            black_box(
                commitment
                    .open_kv_range(15, 0, POSITIONS - 1)
                    .expect("opening"),
            )
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = token, decode, open
}
criterion_main!(benches);
