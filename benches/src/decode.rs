//! `forge-bench decode`: forge-engine vs llama.cpp on the same GGUF.
//!
//! For every prompt of [`crate::prompts::prompt_set`] and every run, our
//! engine (CPU backend, rayon pinned to `--threads`) forwards the prompt
//! (prefill) and then decodes exactly `--max-tokens` greedy tokens, stop
//! tokens ignored; one decode step = argmax of the current logits, forward
//! of that token, logits of its row. Each run does this twice, with no trace
//! sink and with forge-proofs' [`CommitmentSink`] attached to prefill and
//! decode (the order alternates between runs); the trace-on decode time
//! includes `finish` (the hashing left over, and the Merkle tree). llama.cpp runs the same steps on the same GGUF in a child
//! process (`llama_cpp_bench.py --serve`), driven prompt by prompt between
//! our runs so both engines see the same machine load. Rates are medians
//! over runs.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use forge_engine::{Backend, Isa, Model, TraceSink, argmax};
use forge_proofs::{CommitCost, CommitmentSink, SinkOptions};
use serde::Serialize;

use crate::llama_cpp::{self, LlamaConfig, LlamaReport, LlamaServer, ScriptPrompt};
use crate::mem;
use crate::prompts::{BenchPrompt, prompt_set};
use crate::util::{self, median, rate};

/// Context size given to llama.cpp.
pub const LLAMA_N_CTX: usize = 2048;
/// Decode steps of the warm-up run (not reported).
const WARMUP_TOKENS: usize = 8;

/// Arguments of `forge-bench decode`.
#[derive(Clone, Debug, clap::Args)]
pub struct DecodeArgs {
    /// The GGUF model [default: $FORGE_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf,
    /// FORGE_HOME defaulting to ~/.forge]
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Threads for our engine (its rayon pool) and for llama.cpp.
    #[arg(long, default_value = "2", value_name = "N")]
    pub threads: NonZeroUsize,
    /// Tokens decoded per prompt and run (exactly this many; stop tokens are ignored).
    #[arg(long, default_value = "128", value_name = "N")]
    pub max_tokens: NonZeroUsize,
    /// Timed runs per prompt; tables show the median.
    #[arg(long, default_value = "3", value_name = "N")]
    pub runs: NonZeroUsize,
    /// Python with llama-cpp-python (benches/setup_llama_cpp.sh installs one)
    /// [default: .venv-bench/bin/python if it exists, else python3]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Skip the llama.cpp reference (the table says so; no ratios).
    #[arg(long)]
    pub no_llama_cpp: bool,
    /// Groups of blocks the commitment sink lets wait for a hashing job
    /// before the engine's thread hashes them itself [default: the sink's].
    #[arg(long, value_name = "N")]
    pub trace_channel: Option<NonZeroUsize>,
    /// Markdown output; the JSON goes next to it with the extension `.json`.
    #[arg(long, default_value = "papers/results/decode.md", value_name = "PATH")]
    pub out: PathBuf,
    /// A free-text note printed under the table (e.g. "machine shared with builds").
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
    /// Environment variable for the llama.cpp process, recorded in the report
    /// (repeatable), e.g. OMP_WAIT_POLICY=PASSIVE: llama.cpp's OpenMP threads
    /// spin while waiting, which collapses its speed when the cores are shared.
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::util::parse_env)]
    pub llama_env: Vec<(String, String)>,
}

/// One timed run of our engine on one prompt.
#[derive(Clone, Debug, Serialize)]
pub struct OurRun {
    /// Prefill seconds, no sink.
    pub prefill_secs: f64,
    /// Decode seconds, no sink.
    pub decode_secs: f64,
    /// Prefill seconds with the hashing sink attached.
    pub prefill_secs_trace: f64,
    /// Decode seconds with the sink, its `finish` included.
    pub decode_secs_trace: f64,
    /// Of which: the sink's `finish` (hashing left over, the Merkle tree).
    pub drain_secs: f64,
    /// Seconds the hashing jobs spent hashing and storing (prefill and
    /// decode rows), on whichever thread.
    pub hash_secs: f64,
    /// Seconds the engine's thread spent in the sink's `record` during
    /// prefill (copying rows, queueing blocks, hashing a backlog).
    pub record_secs_prefill: f64,
    /// The same during decode.
    pub record_secs_decode: f64,
    /// Rows committed.
    pub leaves: usize,
    /// Whether the traced run produced the same tokens.
    pub trace_tokens_match: bool,
}

/// Our engine's results for one prompt.
#[derive(Clone, Debug, Serialize)]
pub struct OurPrompt {
    /// Prompt name.
    pub name: String,
    /// Prompt length in our tokens.
    pub prompt_tokens: usize,
    /// Our token ids of the prompt.
    pub prompt_ids: Vec<u32>,
    /// Timed runs.
    pub runs: Vec<OurRun>,
    /// Greedy tokens (first run, no sink).
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
}

/// Medians for one row of the table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rates {
    /// Our prefill tokens/s.
    pub prefill_tps: f64,
    /// Our decode tokens/s.
    pub decode_tps: f64,
    /// Our prefill tokens/s with the sink.
    pub prefill_tps_trace: f64,
    /// Our decode tokens/s with the sink.
    pub decode_tps_trace: f64,
    /// Extra decode time with the sink, percent.
    pub decode_overhead_pct: f64,
    /// Extra prefill time with the sink, percent.
    pub prefill_overhead_pct: f64,
    /// Time in the sink's `record` on the engine's thread, percent of the
    /// traced decode time (median over runs).
    pub decode_sink_thread_pct: f64,
    /// The same for prefill.
    pub prefill_sink_thread_pct: f64,
    /// llama.cpp prefill tokens/s.
    pub llama_prefill_tps: Option<f64>,
    /// llama.cpp decode tokens/s.
    pub llama_decode_tps: Option<f64>,
    /// Ours / llama.cpp, prefill.
    pub prefill_ratio: Option<f64>,
    /// Ours / llama.cpp, decode.
    pub decode_ratio: Option<f64>,
    /// Leading greedy tokens identical in both engines (when the prompt ids are).
    pub greedy_match: Option<usize>,
    /// Whether both engines tokenized the prompt identically.
    pub same_prompt_ids: Option<bool>,
    /// llama.cpp's prompt length.
    pub llama_prompt_tokens: Option<usize>,
}

/// One row of the table.
#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    /// Prompt name, or `all`.
    pub prompt: String,
    /// The figures.
    #[serde(flatten)]
    pub rates: Rates,
}

/// Facts about the model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// Path of the GGUF.
    pub path: String,
    /// File size.
    pub file_bytes: u64,
    /// Layers.
    pub layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Weight bytes read per decode step.
    pub weight_bytes_per_token: usize,
    /// Seconds to load it into our engine.
    pub load_secs: f64,
}

/// Everything `forge-bench decode` measured; written as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeReport {
    /// The command line.
    pub command: String,
    /// When it ran.
    pub date: String,
    /// `forge_engine::Isa::detect().name()`.
    pub isa: String,
    /// CPU model.
    pub cpu: Option<String>,
    /// Threads.
    pub threads: usize,
    /// Decode steps per run.
    pub max_tokens: usize,
    /// Runs per prompt.
    pub runs: usize,
    /// Groups of blocks the commitment sink lets wait for a hashing job.
    pub trace_channel: usize,
    /// 1-minute load average before and after.
    pub load_average: (Option<f64>, Option<f64>),
    /// The model.
    pub model: ModelInfo,
    /// Our peak RSS after loading the model.
    pub peak_rss_after_load: Option<u64>,
    /// Our peak RSS after all generation.
    pub peak_rss_after_generate: Option<u64>,
    /// Our current RSS after all generation (`VmRSS`).
    pub rss_after_generate: Option<u64>,
    /// Our raw results.
    pub ours: Vec<OurPrompt>,
    /// llama.cpp's raw results, when it ran.
    pub llama_cpp: Option<LlamaReport>,
    /// Why llama.cpp did not run.
    pub llama_cpp_unavailable: Option<String>,
    /// Table rows: one per prompt, then "all" (tokens over summed time).
    pub rows: Vec<TableRow>,
    /// Wall time of the whole command.
    pub wall_secs: f64,
    /// Free-text note.
    pub note: Option<String>,
    /// Extra environment given to llama.cpp (`--llama-env`).
    pub llama_env: Vec<(String, String)>,
}

struct Measured {
    prefill_secs: f64,
    decode_secs: f64,
    tokens: Vec<u32>,
    /// With a sink: what the commitment cost, and the rows it holds.
    commit: Option<(CommitCost, usize)>,
    /// Time in the sink's `record` during prefill.
    record_prefill: f64,
}

/// Prefill `prompt`, then decode exactly `n` greedy tokens; with a
/// commitment sink on both when `trace` gives its options.
fn measure(
    model: &Model,
    prompt: &[u32],
    n: usize,
    trace: Option<&SinkOptions>,
) -> Result<Measured> {
    let d = model.config().d_model;
    let mut sink = trace
        .map(|opts| CommitmentSink::with_options(d, opts.clone()))
        .transpose()?;
    let mut session = model.session();
    let t0 = Instant::now();
    let rows = model.forward(
        &mut session,
        prompt,
        sink.as_mut().map(|s| s as &mut dyn TraceSink),
    )?;
    let mut logits = model.logits(&rows[rows.len() - d..]);
    let prefill_secs = t0.elapsed().as_secs_f64();
    let record_prefill = sink.as_ref().map_or(0.0, |s| s.record_time().as_secs_f64());
    let mut tokens = Vec::with_capacity(n);
    let t1 = Instant::now();
    for _ in 0..n {
        let tok = argmax(&logits);
        tokens.push(tok);
        let row = model.forward(
            &mut session,
            &[tok],
            sink.as_mut().map(|s| s as &mut dyn TraceSink),
        )?;
        logits = model.logits(&row);
    }
    let commit = sink
        .map(|s| {
            let c = s.finish()?;
            anyhow::Ok((c.cost(), 2 * c.layers() * c.positions()))
        })
        .transpose()?;
    let decode_secs = t1.elapsed().as_secs_f64();
    Ok(Measured {
        prefill_secs,
        decode_secs,
        tokens,
        commit,
        record_prefill,
    })
}

/// Resolve `--model`, or the default path; a clear error when missing.
pub(crate) fn model_path(arg: Option<&Path>) -> Result<PathBuf> {
    let path = match arg {
        Some(p) => p.to_path_buf(),
        None => util::default_model_path()
            .context("cannot find the model cache: set FORGE_HOME or HOME, or pass --model")?,
    };
    if !path.is_file() {
        bail!(
            "model not found at {}: fetch it with `cargo run --release -p forge-node -- pull` (or pass --model PATH)",
            path.display()
        );
    }
    Ok(path)
}

/// Run the benchmark, print the Markdown table, write it and the JSON.
pub fn run(args: &DecodeArgs) -> Result<DecodeReport> {
    let started = Instant::now();
    let load_start = util::load_average();
    let threads = args.threads.get();
    let n = args.max_tokens.get();
    let runs = args.runs.get();
    let sink_options = SinkOptions {
        channel_capacity: args
            .trace_channel
            .map_or(SinkOptions::default().channel_capacity, NonZeroUsize::get),
        // Its report gives the engine thread's time in the sink.
        timed: true,
        ..SinkOptions::default()
    };
    let trace_channel = sink_options.channel_capacity;
    let path = model_path(args.model.as_deref())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("forge-bench-{i}"))
        .build()
        .context("cannot build the rayon pool")?;

    tracing::info!(model = %path.display(), threads, "loading the model");
    let t = Instant::now();
    let model = Model::load(&path, Backend::Cpu)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let load_secs = t.elapsed().as_secs_f64();
    // As `forge-node serve` runs it (not counted in the load time).
    model.use_huge_pages();
    let peak_rss_after_load = mem::peak_rss_bytes();
    let cfg = model.config().clone();

    let prompts: Vec<BenchPrompt> = prompt_set();
    let mut rendered = Vec::new();
    let mut ours = Vec::new();
    for p in &prompts {
        let text = p.render(&model)?;
        let ids = model.tokenizer().encode(&text)?;
        // llama.cpp's context bounds the prompts only when it runs.
        let llama_ctx = if args.no_llama_cpp {
            usize::MAX
        } else {
            LLAMA_N_CTX
        };
        ensure!(
            ids.len() + n <= cfg.context_length && ids.len() + n <= llama_ctx,
            "prompt `{}`: {} tokens + {n} decode steps exceed the context ({} ours, {LLAMA_N_CTX} llama.cpp)",
            p.name,
            ids.len(),
            cfg.context_length
        );
        rendered.push(ScriptPrompt {
            name: p.name.into(),
            text,
        });
        ours.push(OurPrompt {
            name: p.name.into(),
            prompt_tokens: ids.len(),
            prompt_ids: ids,
            runs: Vec::new(),
            tokens: Vec::new(),
            text: String::new(),
        });
    }

    // llama.cpp runs in its own process, started now and driven prompt by
    // prompt between our runs, so both engines see the same machine load.
    let mut llama: Option<LlamaServer> = None;
    let mut llama_unavailable: Option<String> = None;
    if args.no_llama_cpp {
        llama_unavailable = Some("skipped (--no-llama-cpp)".into());
    } else {
        let python = llama_cpp::resolve_python(args.python.as_deref());
        let lc = LlamaConfig {
            model: &path,
            max_tokens: n,
            threads,
            n_ctx: LLAMA_N_CTX,
            env: &args.llama_env,
        };
        match LlamaServer::start(&python, &lc, &rendered) {
            Ok(server) => llama = Some(server),
            Err(why) => {
                tracing::warn!(%why, "llama.cpp reference unavailable");
                llama_unavailable = Some(format!(
                    "{why}; python: {}; install it with benches/setup_llama_cpp.sh",
                    python.display()
                ));
            }
        }
    }
    // A failure of llama.cpp midway drops its results (no partial ratios).
    let mut llama_step = |f: &dyn Fn(&mut LlamaServer) -> Result<(), String>| {
        if let Some(server) = llama.as_mut()
            && let Err(why) = f(server)
        {
            tracing::warn!(%why, "llama.cpp reference failed");
            llama_unavailable = Some(format!("llama.cpp failed during the benchmark: {why}"));
            llama = None;
        }
    };

    pool.install(|| -> Result<()> {
        // Warm up on the longest prompt: its buffers are the largest, so the
        // allocator has them ready before the first timed run.
        tracing::info!("warm-up");
        let longest = ours
            .iter()
            .max_by_key(|p| p.prompt_tokens)
            .map(|p| p.prompt_ids.clone())
            .unwrap_or_default();
        measure(&model, &longest, WARMUP_TOKENS, None)?;
        measure(&model, &longest, WARMUP_TOKENS, Some(&sink_options))?;
        llama_step(&|s| s.warmup());
        for r in 0..runs {
            for (i, p) in ours.iter_mut().enumerate() {
                // Alternate the order (ours untraced, ours traced, llama.cpp)
                // so that drift does not favour one.
                let (off, on) = if (r + i) % 2 == 0 {
                    let off = measure(&model, &p.prompt_ids, n, None)?;
                    let on = measure(&model, &p.prompt_ids, n, Some(&sink_options))?;
                    llama_step(&|s| s.run(i).map(|_| ()));
                    (off, on)
                } else {
                    llama_step(&|s| s.run(i).map(|_| ()));
                    let on = measure(&model, &p.prompt_ids, n, Some(&sink_options))?;
                    (measure(&model, &p.prompt_ids, n, None)?, on)
                };
                let (cost, rows) = on.commit.context("traced run without a commitment")?;
                // Every layer's output row and key/value row at every position.
                let expected = 2 * cfg.layers * (p.prompt_tokens + n);
                ensure!(
                    rows == expected,
                    "the commitment holds {rows} rows, expected {expected}"
                );
                let run = OurRun {
                    prefill_secs: off.prefill_secs,
                    decode_secs: off.decode_secs,
                    prefill_secs_trace: on.prefill_secs,
                    decode_secs_trace: on.decode_secs,
                    drain_secs: cost.finish.as_secs_f64(),
                    hash_secs: cost.hashing.as_secs_f64(),
                    record_secs_prefill: on.record_prefill,
                    record_secs_decode: (cost.engine_thread + cost.hashing_inline).as_secs_f64()
                        - on.record_prefill,
                    leaves: rows,
                    trace_tokens_match: on.tokens == off.tokens,
                };
                tracing::info!(
                    run = r + 1,
                    prompt = %p.name,
                    prefill_tps = format!("{:.1}", rate(p.prompt_tokens, run.prefill_secs)),
                    decode_tps = format!("{:.1}", rate(n, run.decode_secs)),
                    decode_tps_trace = format!("{:.1}", rate(n, run.decode_secs_trace)),
                    "ours"
                );
                if p.tokens.is_empty() {
                    p.text = model.tokenizer().decode(&off.tokens)?;
                    p.tokens = off.tokens;
                }
                p.runs.push(run);
            }
        }
        Ok(())
    })?;
    let peak_rss_after_generate = mem::peak_rss_bytes();
    let rss_after_generate = mem::rss_bytes();
    let llama = llama.map(LlamaServer::finish);

    let rows = table_rows(&ours, llama.as_ref(), n);
    let report = DecodeReport {
        command: util::command_line(),
        date: util::utc_now(),
        isa: Isa::detect().name().into(),
        cpu: util::cpu_model(),
        threads,
        max_tokens: n,
        runs,
        trace_channel,
        load_average: (load_start, util::load_average()),
        model: ModelInfo {
            path: path.display().to_string(),
            file_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            layers: cfg.layers,
            d_model: cfg.d_model,
            vocab: cfg.vocab,
            weight_bytes_per_token: model.weight_bytes_per_token(),
            load_secs,
        },
        peak_rss_after_load,
        peak_rss_after_generate,
        rss_after_generate,
        ours,
        llama_cpp: llama,
        llama_cpp_unavailable: llama_unavailable,
        rows,
        wall_secs: started.elapsed().as_secs_f64(),
        note: args.note.clone(),
        llama_env: args.llama_env.clone(),
    };

    let md = render_markdown(&report);
    print!("{md}");
    crate::util::write_results(&args.out, &md, &report)?;
    Ok(report)
}

fn overhead_pct(off: f64, on: f64) -> f64 {
    if off > 0.0 {
        (on / off - 1.0) * 100.0
    } else {
        0.0
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

fn ratio(ours: f64, theirs: Option<f64>) -> Option<f64> {
    theirs.filter(|t| *t > 0.0).map(|t| ours / t)
}

fn med(xs: impl Iterator<Item = f64>) -> f64 {
    median(&xs.collect::<Vec<_>>()).unwrap_or(0.0)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One row per prompt (medians of per-run times), then `all`: per run, all
/// prompts' tokens over their summed time, median over runs.
fn table_rows(ours: &[OurPrompt], llama: Option<&LlamaReport>, n: usize) -> Vec<TableRow> {
    let mut rows = Vec::new();
    for (i, p) in ours.iter().enumerate() {
        let lp = llama.and_then(|l| l.prompts.get(i));
        let (pf, dc) = (
            med(p.runs.iter().map(|r| r.prefill_secs)),
            med(p.runs.iter().map(|r| r.decode_secs)),
        );
        let (pf_t, dc_t) = (
            med(p.runs.iter().map(|r| r.prefill_secs_trace)),
            med(p.runs.iter().map(|r| r.decode_secs_trace)),
        );
        let l_pf = lp.map(|l| rate(l.prompt_tokens, med(l.runs.iter().map(|r| r.prefill_secs))));
        let l_dc = lp.map(|l| rate(n, med(l.runs.iter().map(|r| r.decode_secs))));
        let same = lp.map(|l| l.prompt_ids == p.prompt_ids);
        let greedy = lp
            .filter(|_| same == Some(true))
            .and_then(|l| l.tokens.as_ref())
            .map(|t| common_prefix(t, &p.tokens));
        let r = Rates {
            prefill_tps: rate(p.prompt_tokens, pf),
            decode_tps: rate(n, dc),
            prefill_tps_trace: rate(p.prompt_tokens, pf_t),
            decode_tps_trace: rate(n, dc_t),
            decode_overhead_pct: overhead_pct(dc, dc_t),
            prefill_overhead_pct: overhead_pct(pf, pf_t),
            decode_sink_thread_pct: med(p
                .runs
                .iter()
                .map(|r| pct(r.record_secs_decode, r.decode_secs_trace))),
            prefill_sink_thread_pct: med(p
                .runs
                .iter()
                .map(|r| pct(r.record_secs_prefill, r.prefill_secs_trace))),
            llama_prefill_tps: l_pf,
            llama_decode_tps: l_dc,
            prefill_ratio: None,
            decode_ratio: None,
            greedy_match: greedy,
            same_prompt_ids: same,
            llama_prompt_tokens: lp.map(|l| l.prompt_tokens),
        };
        rows.push(TableRow {
            prompt: p.name.clone(),
            rates: with_ratios(r),
        });
    }
    // Totals.
    let runs = ours.iter().map(|p| p.runs.len()).min().unwrap_or(0);
    let sum_tok: usize = ours.iter().map(|p| p.prompt_tokens).sum();
    let dec_tok = n * ours.len();
    let per_run = |f: &dyn Fn(&OurRun) -> f64| -> Vec<f64> {
        (0..runs)
            .map(|r| ours.iter().map(|p| f(&p.runs[r])).sum())
            .collect()
    };
    let (pf, dc) = (per_run(&|r| r.prefill_secs), per_run(&|r| r.decode_secs));
    let (pf_t, dc_t) = (
        per_run(&|r| r.prefill_secs_trace),
        per_run(&|r| r.decode_secs_trace),
    );
    let m = |v: &[f64]| median(v).unwrap_or(0.0);
    let (rec_pf, rec_dc) = (
        per_run(&|r| r.record_secs_prefill),
        per_run(&|r| r.record_secs_decode),
    );
    let sink_pct = |rec: &[f64], tot: &[f64]| {
        m(&rec
            .iter()
            .zip(tot)
            .map(|(a, b)| pct(*a, *b))
            .collect::<Vec<_>>())
    };
    let mut all = Rates {
        prefill_tps: rate(sum_tok, m(&pf)),
        decode_tps: rate(dec_tok, m(&dc)),
        prefill_tps_trace: rate(sum_tok, m(&pf_t)),
        decode_tps_trace: rate(dec_tok, m(&dc_t)),
        decode_overhead_pct: overhead_pct(m(&dc), m(&dc_t)),
        prefill_overhead_pct: overhead_pct(m(&pf), m(&pf_t)),
        decode_sink_thread_pct: sink_pct(&rec_dc, &dc_t),
        prefill_sink_thread_pct: sink_pct(&rec_pf, &pf_t),
        ..Rates::default()
    };
    if let Some(l) = llama.filter(|l| l.prompts.len() == ours.len()) {
        let lruns = l.prompts.iter().map(|p| p.runs.len()).min().unwrap_or(0);
        let l_tok: usize = l.prompts.iter().map(|p| p.prompt_tokens).sum();
        let lpf: Vec<f64> = (0..lruns)
            .map(|r| l.prompts.iter().map(|p| p.runs[r].prefill_secs).sum())
            .collect();
        let ldc: Vec<f64> = (0..lruns)
            .map(|r| l.prompts.iter().map(|p| p.runs[r].decode_secs).sum())
            .collect();
        all.llama_prefill_tps = Some(rate(l_tok, m(&lpf)));
        all.llama_decode_tps = Some(rate(dec_tok, m(&ldc)));
        all.llama_prompt_tokens = Some(l_tok);
    }
    rows.push(TableRow {
        prompt: "all".into(),
        rates: with_ratios(all),
    });
    rows
}

fn with_ratios(mut r: Rates) -> Rates {
    r.prefill_ratio = ratio(r.prefill_tps, r.llama_prefill_tps);
    r.decode_ratio = ratio(r.decode_tps, r.llama_decode_tps);
    r
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

/// The report as Markdown: the table, then memory, settings and notes.
pub fn render_markdown(r: &DecodeReport) -> String {
    let mut s = String::new();
    let have_llama = r.llama_cpp.is_some();
    let _ = writeln!(s, "# Decode benchmark: forge-engine vs llama.cpp\n");
    let _ = writeln!(
        s,
        "Model `{}` ({} layers, d={}, vocab {}); {} thread(s); ISA `{}`; {} greedy decode steps per prompt \
         (stop tokens ignored); median of {} run(s). {}\n",
        Path::new(&r.model.path)
            .file_name()
            .map_or(r.model.path.clone(), |f| f.to_string_lossy().into_owned()),
        r.model.layers,
        r.model.d_model,
        r.model.vocab,
        r.threads,
        r.isa,
        r.max_tokens,
        r.runs,
        r.date
    );
    if let Some(why) = &r.llama_cpp_unavailable {
        let _ = writeln!(
            s,
            "**llama.cpp: not available** ({why}); its columns read n/a and no ratios are given.\n"
        );
    }
    let _ = writeln!(
        s,
        "| prompt | prompt tokens (ours / llama.cpp) | prefill tok/s ours | prefill tok/s llama.cpp | prefill ours/llama.cpp \
         | decode tok/s ours | decode tok/s llama.cpp | decode ours/llama.cpp | decode tok/s, trace on | trace overhead (decode) \
         | sink on engine thread (decode) | trace overhead (prefill) | sink on engine thread (prefill) | greedy tokens equal |"
    );
    let _ = writeln!(
        s,
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    for TableRow {
        prompt: name,
        rates: x,
    } in &r.rows
    {
        let ours_tok: usize = if name == "all" {
            r.ours.iter().map(|p| p.prompt_tokens).sum()
        } else {
            r.ours
                .iter()
                .find(|p| &p.name == name)
                .map_or(0, |p| p.prompt_tokens)
        };
        let toks = format!(
            "{ours_tok} / {}",
            x.llama_prompt_tokens
                .map_or("n/a".into(), |t| t.to_string())
        );
        let greedy = match (x.same_prompt_ids, x.greedy_match) {
            (_, Some(k)) => format!("{k}/{}", r.max_tokens),
            (Some(false), _) => "prompt ids differ".into(),
            _ if name == "all" => String::new(),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "| {name} | {toks} | {:.1} | {} | {} | {:.1} | {} | {} | {:.1} | {:+.2}% | {:.3}% | {:+.2}% | {:.3}% | {greedy} |",
            x.prefill_tps,
            opt(x.llama_prefill_tps, |v| format!("{v:.1}")),
            opt(x.prefill_ratio, |v| format!("{v:.2}x")),
            x.decode_tps,
            opt(x.llama_decode_tps, |v| format!("{v:.1}")),
            opt(x.decode_ratio, |v| format!("{v:.2}x")),
            x.decode_tps_trace,
            x.decode_overhead_pct,
            x.decode_sink_thread_pct,
            x.prefill_overhead_pct,
            x.prefill_sink_thread_pct,
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "| memory | ours | llama.cpp |");
    let _ = writeln!(s, "|---|--:|--:|");
    let _ = writeln!(
        s,
        "| peak RSS after loading (VmHWM) | {} | n/a |",
        mem::fmt_mib(r.peak_rss_after_load)
    );
    let _ = writeln!(
        s,
        "| peak RSS after generating (VmHWM) | {} | {} |",
        mem::fmt_mib(r.peak_rss_after_generate),
        if have_llama {
            format!(
                "{} (whole Python process)",
                mem::fmt_mib(r.llama_cpp.as_ref().and_then(|l| l.peak_rss_bytes))
            )
        } else {
            "n/a".into()
        }
    );
    let _ = writeln!(
        s,
        "| RSS after generating (VmRSS) | {} | n/a |",
        mem::fmt_mib(r.rss_after_generate)
    );
    let _ = writeln!(
        s,
        "| model load | {:.2} s | {} |\n",
        r.model.load_secs,
        opt(r.llama_cpp.as_ref().and_then(|l| l.load_secs), |v| format!(
            "{v:.2} s"
        ))
    );

    let leaves: usize = r
        .ours
        .iter()
        .filter_map(|p| p.runs.first())
        .map(|x| x.leaves)
        .sum();
    let drain = med(r
        .ours
        .iter()
        .flat_map(|p| p.runs.iter().map(|x| x.drain_secs)));
    let runs = r.ours.iter().map(|p| p.runs.len()).min().unwrap_or(0);
    let worker_ms =
        1e3 * med((0..runs).map(|i| r.ours.iter().map(|p| p.runs[i].hash_secs).sum::<f64>()));
    let all_match = r
        .ours
        .iter()
        .all(|p| p.runs.iter().all(|x| x.trace_tokens_match));
    let _ = writeln!(s, "Notes:\n");
    let _ = writeln!(
        s,
        "- Prefill = forward of the whole prompt plus the last position's logits; decode step = argmax, forward of \
         one token, its logits. llama.cpp does the same through llama-cpp-python (`eval`, `llama_get_logits_ith`, \
         numpy argmax), tokenizing the same rendered ChatML text itself (no BOS)."
    );
    let _ = writeln!(
        s,
        "- Trace on: forge-proofs' `CommitmentSink` (the one every receipt comes from) attached to prefill and \
         decode: the sink's calls (made beside the next layer's products, from whichever pool thread is free) copy each row into its layer's open block of 16 positions; full blocks go, 4 \
         at a time, to hashing jobs on the engine's own rayon pool (past {} waiting groups the engine's thread hashes \
         them itself). Trace-on decode time includes `finish`: hashing what the jobs had not reached, and the \
         Merkle tree (median {:.3} ms). Trace overhead = extra wall time of the traced run over the untraced one \
         (noisy when the machine is busy); sink on engine thread = time spent in the sink's `record` calls \
         (copying, queueing, hashing a backlog; on the engine's thread only when no other was free) as a share of the traced time. One run commits {} rows over all \
         prompts, hashed in {:.1} ms of job time (median) on the engine's threads; traced tokens {} the untraced \
         ones.",
        r.trace_channel,
        drain * 1e3,
        leaves,
        worker_ms,
        if all_match { "equal" } else { "DIFFER FROM" }
    );
    let _ = writeln!(
        s,
        "- Threads: our rayon pool has {t} thread(s) (the hashing jobs run on it); llama.cpp n_threads = \
         n_threads_batch = {t}, n_ctx = {LLAMA_N_CTX}. llama.cpp runs in a child process, one prompt at a time between our runs (never at the same time as ours), so both engines see the same machine load.",
        t = r.threads
    );
    let _ = writeln!(
        s,
        "- Rows: per prompt, the median over runs; `all` = all prompts' tokens over their summed time (median over runs). \
         Greedy tokens equal = leading generated tokens identical in both engines."
    );
    if let Some(l) = &r.llama_cpp {
        let _ = writeln!(
            s,
            "- llama.cpp: llama-cpp-python {} ({}); system info: `{}`; extra environment: {}.",
            l.llama_cpp_python.as_deref().unwrap_or("?"),
            l.python.as_deref().unwrap_or("?"),
            l.system_info.as_deref().unwrap_or("?"),
            if r.llama_env.is_empty() {
                "none (llama.cpp defaults)".to_string()
            } else {
                r.llama_env
                    .iter()
                    .map(|(k, v)| format!("`{k}={v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    let _ = writeln!(
        s,
        "- CPU: {}; 1-min load average {} before, {} after.",
        r.cpu.as_deref().unwrap_or("unknown"),
        opt(r.load_average.0, |v| format!("{v:.2}")),
        opt(r.load_average.1, |v| format!("{v:.2}"))
    );
    if let Some(note) = &r.note {
        let _ = writeln!(s, "- {note}");
    }
    let _ = writeln!(
        s,
        "- Date: {}. Wall time of the command: {:.1} s.",
        r.date, r.wall_secs
    );
    let _ = writeln!(s, "- Command: `{}`", r.command);
    s
}
