//! Criterion benches of forge-engine's CPU backend.
//!
//! - `tiny/*`: a tiny random Llama (`forge_engine::testing`, 4 layers,
//!   d=128, FFN 384) written as a real GGUF in memory: one decode step
//!   (forward of one token at position 32, plus its logits) and a 64-token
//!   prefill;
//! - `smollm2/decode_step@64`: one decode step on SmolLM2-135M-Instruct Q4_1
//!   when `$FORGE_HOME/models` has it (skipped with a message otherwise; fetch
//!   it with `cargo run --release -p forge-node -- pull`);
//! - `smollm2/decode_step@512`: the same step after 512 positions, where
//!   attention over the cache is a large part of it;
//! - `smollm2/decode_batch_{2,4,8}@64`: one batched decode step of that many
//!   sequences (what the server's scheduler runs per step); its time per
//!   element against `decode_step@64` is what batching saves per token;
//! - `smollm2/decode_batch_8@256`: the same at a longer context, where
//!   attention weighs more;
//! - `smollm2/prefill_512`: one forward pass over a 512-token prompt (its
//!   attention grows with the square of the length);
//! - `smollm2/detokenize_2048/{whole,incremental}`: the text of a 2,048-token
//!   answer as generation produces it, one token at a time: decoding the
//!   whole list at every token, and with a `Detokenizer`, which decodes only
//!   the tokens since the last whole character.
//!
//! rayon runs on `FORGE_BENCH_THREADS` threads (default 2). Sample counts are
//! small: the whole bench takes under two minutes on two cores (1 min 49 s
//! at stop 19).
//!
//! `cargo bench -p forge-benches --bench engine`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forge_benches::util::{bench_threads, default_model_path, synthetic_prompt as prompt};
use forge_engine::gguf::GgufFile;
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{Backend, BatchItem, Detokenizer, Model, SamplingParams, sample};

fn pin_threads() {
    // Fails only if the global pool already exists (a second bench function).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(bench_threads())
        .build_global();
}

/// One decode step at position `at`: the session keeps `at` positions of
/// prompt; each iteration forwards one more token and takes its logits.
fn decode_step(c: &mut Criterion, group: &str, name: &str, model: &Model, at: usize) {
    let vocab = model.config().vocab;
    let mut session = model.session();
    model
        .forward(&mut session, &prompt(at, vocab), None)
        .expect("prefill");
    let tok = prompt(at + 1, vocab)[at];
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter(|| {
            session.truncate(at);
            let row = model
                .forward(&mut session, &[tok], None)
                .expect("decode step");
            black_box(model.logits(&row))
        })
    });
    g.finish();
}

/// One batched decode step of `n` sequences at position `at`: each keeps
/// `at` positions of its own prompt and forwards one more token, and all
/// rows go through the LM head together.
fn decode_batch(c: &mut Criterion, group: &str, model: &Model, n: usize, at: usize) {
    let vocab = model.config().vocab;
    let prompts: Vec<Vec<u32>> = (0..n)
        .map(|s| prompt(at + 1 + s, vocab)[s..].to_vec())
        .collect();
    let mut sessions: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut session = model.session();
            model
                .forward(&mut session, &p[..at], None)
                .expect("prefill");
            session
        })
        .collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("decode_batch_{n}@{at}"), |b| {
        b.iter(|| {
            let mut items: Vec<BatchItem<'_>> = sessions
                .iter_mut()
                .zip(&prompts)
                .map(|(session, p)| {
                    session.truncate(at);
                    BatchItem {
                        session,
                        tokens: &p[at..],
                        sink: None,
                    }
                })
                .collect();
            let rows = model.forward_batch(&mut items).expect("batched step");
            let last: Vec<f32> = rows.into_iter().flatten().collect();
            black_box(model.logits_batch(&last))
        })
    });
    g.finish();
}

fn tiny(c: &mut Criterion) {
    pin_threads();
    let spec = TinySpec {
        layers: 4,
        d_model: 128,
        heads: 4,
        kv_heads: 2,
        ffn: 384,
        ..TinySpec::default()
    };
    let file =
        GgufFile::parse(tiny_model_gguf(&spec).expect("tiny model")).expect("tiny GGUF parses");
    let model = Model::from_gguf(&file, Backend::Cpu).expect("tiny model loads");
    decode_step(c, "tiny", "decode_step@32", &model, 32);
    prefill(c, "tiny", &model, 64);
}

/// One forward pass over a prompt of `len` tokens (`prefill_{len}`).
fn prefill(c: &mut Criterion, group: &str, model: &Model, len: usize) {
    let p = prompt(len, model.config().vocab);
    let mut session = model.session();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(p.len() as u64));
    g.bench_function(format!("prefill_{len}"), |b| {
        b.iter(|| {
            session.truncate(0);
            black_box(model.forward(&mut session, &p, None).expect("prefill"))
        })
    });
    g.finish();
}

fn smollm2(c: &mut Criterion) {
    pin_threads();
    let Some(path) = default_model_path().filter(|p| p.is_file()) else {
        eprintln!(
            "smollm2/decode_step@64: skipped, SmolLM2 not found under $FORGE_HOME/models \
             (fetch it with `cargo run --release -p forge-node -- pull`)"
        );
        return;
    };
    let model = Model::load(&path, Backend::Cpu).expect("load SmolLM2");
    // As `forge-node serve` runs it.
    model.use_huge_pages();
    decode_step(c, "smollm2", "decode_step@64", &model, 64);
    decode_step(c, "smollm2", "decode_step@512", &model, 512);
    for n in [2, 4, 8] {
        decode_batch(c, "smollm2", &model, n, 64);
    }
    decode_batch(c, "smollm2", &model, 8, 256);
    prefill(c, "smollm2", &model, 512);
    detokenize(c, &model, 2048);
}

/// The text of an `n`-token answer, one token at a time (`step` decodes
/// after every token it samples).
fn detokenize(c: &mut Criterion, model: &Model, n: usize) {
    let tok = model.tokenizer();
    let text =
        "Forge commits to every layer's activations, and a receipt proves the work. ".repeat(n / 8);
    let ids = tok.encode(&text).expect("encode");
    let ids = &ids[..n.min(ids.len())];
    let mut g = c.benchmark_group(format!("smollm2/detokenize_{n}"));
    g.sample_size(10);
    g.bench_function("whole", |b| {
        b.iter(|| {
            for end in 1..=ids.len() {
                black_box(tok.decode(&ids[..end]).expect("decode"));
            }
        });
    });
    g.bench_function("incremental", |b| {
        b.iter(|| {
            let mut d = Detokenizer::default();
            for end in 1..=ids.len() {
                black_box(d.decode(tok, &ids[..end]).expect("decode"));
            }
        });
    });
    g.finish();
}

/// One draw from a vocabulary-sized row (SmolLM2's 49,152 tokens), per
/// sampling mode: what each sampled token costs on top of the forward pass.
fn sampler(c: &mut Criterion) {
    let vocab = 49_152u64;
    let logits: Vec<f32> = (0..vocab)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 10_007) as f32 / 500.0 - 10.0)
        .collect();
    let sampled = |temperature, top_p, top_k| SamplingParams {
        temperature,
        top_p,
        top_k,
        seed: 3,
        ..SamplingParams::default()
    };
    let mut g = c.benchmark_group("sampler");
    for (name, params) in [
        ("greedy", SamplingParams::greedy()),
        ("temperature_1", sampled(1.0, 1.0, 0)),
        ("temperature_0.8_top_p_0.95", sampled(0.8, 0.95, 0)),
        ("temperature_1_top_k_40", sampled(1.0, 1.0, 40)),
    ] {
        let mut step = 0u64;
        g.bench_function(format!("{name}@49152"), |b| {
            b.iter(|| {
                step += 1;
                black_box(sample(black_box(&logits), &params, &[], step))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = tiny, smollm2, sampler
}
criterion_main!(benches);
