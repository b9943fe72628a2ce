//! Where a commitment's wall-clock cost on decoding comes from: decode
//! steps of SmolLM2 with no sink against the same steps with one of three
//! sinks, in alternating pairs (which side runs first alternates too), many
//! pairs, the median and interquartile range of the per-pair overhead.
//!
//! - `noop`: a sink that takes the rows and does nothing (the engine's
//!   side: building `[k | v]` rows, the calls);
//! - `copy`: a sink that keeps a copy of every row (what retaining the rows
//!   for openings costs, without hashing);
//! - `blocks`, `pooled`: a sink that copies every row into its layer's
//!   block of 16 positions, as the commitment sink does, without hashing:
//!   into fresh buffers, or into buffers reused across runs;
//! - `commit`: forge-proofs' `CommitmentSink`, `finish` included (dropping
//!   the rows a sink holds is not timed), timing its own calls
//!   (`SinkOptions::timed`); also prints the sink's own account per decode
//!   step: the time in the sink's `record` calls (made beside the next
//!   layer's products, on whichever pool thread is free) and the hashing jobs' time
//!   (medians over runs);
//! - `plain`: the same sink as servers run it, not timing its calls (so
//!   its account has hashing only);
//! - `none`: no sink on either side, a control: what the method reads when
//!   there is nothing to find.
//!
//! Besides the median it prints a 95% confidence interval for it, the sign
//! test's (`util::median_ci`), which holds whatever the noise's shape as
//! long as pairs are independent. Every 250 pairs it prints the summary so
//! far to stderr.
//!
//! `MODE:BASE` (say `commit:plain`) sets MODE's sink against BASE's in
//! each pair instead of against no sink.
//!
//! An argument `raw=PATH` (anywhere) also writes each pair's two times to
//! PATH as it goes (a header line, then `seconds-without seconds-with` per
//! pair); `commit_ab pool PATH...` prints the summary of several such runs
//! taken together, and of each, so that runs made hours apart (the
//! machine's other tenants change what a step costs) are read as one
//! sample as well as apart.
//!
//! `cargo run --release -p forge-benches --example commit_ab -- MODE[:BASE]
//! [PAIRS] [STEPS] [AT] [traced-prefill]`: PAIRS pairs (default 200) of STEPS decode
//! steps (default 32) after a prompt of AT tokens (default 64); with
//! `traced-prefill` the sink also takes the prompt's rows (the prefill runs
//! in every measurement, outside the timed steps).

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use forge_benches::pair_times::{self, PairTimes};
use forge_benches::util::{
    default_model_path, median, median_ci, positional_arg, synthetic_prompt,
};
use forge_engine::{Backend, Model, TraceSink, argmax};
use forge_proofs::{CommitmentSink, SinkOptions};

struct Noop;

impl TraceSink for Noop {
    fn record(&mut self, _: usize, _: usize, rows: &[f32]) {
        std::hint::black_box(rows);
    }
    fn record_kv(&mut self, _: usize, _: usize, _: usize, rows: &[f32]) {
        std::hint::black_box(rows);
    }
}

struct Copy(Vec<Vec<f32>>);

impl TraceSink for Copy {
    fn record(&mut self, _: usize, _: usize, rows: &[f32]) {
        self.0.push(rows.to_vec());
    }
    fn record_kv(&mut self, _: usize, _: usize, _: usize, rows: &[f32]) {
        self.0.push(rows.to_vec());
    }
}

/// Copies rows into per-layer blocks of 16 positions, as the commitment
/// sink does, without hashing: into fresh buffers (`blocks`), or into
/// buffers reused from earlier runs (`pooled`), whose pages are faulted in.
#[derive(Default)]
struct Blocks {
    /// Width of the output rows.
    d: usize,
    open: Vec<Vec<f32>>,
    full: Vec<Vec<f32>>,
    pooled: bool,
}

/// Buffers `pooled` sinks hand back when they finish.
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

impl Blocks {
    fn take(&mut self, group: usize, rows: &[f32], width: usize) {
        if self.open.len() <= group {
            self.open.resize_with(group + 1, Vec::new);
        }
        for row in rows.chunks_exact(width) {
            let b = &mut self.open[group];
            if b.capacity() == 0 {
                let reused = self.pooled.then(|| POOL.lock().ok()?.pop()).flatten();
                *b = reused.unwrap_or_default();
                b.reserve_exact(16 * width);
            }
            b.extend_from_slice(row);
            if b.len() == 16 * width {
                self.full.push(std::mem::take(b));
            }
        }
    }

    fn finish(mut self) -> Vec<Vec<f32>> {
        self.full.append(&mut self.open);
        if self.pooled
            && let Ok(mut pool) = POOL.lock()
        {
            for mut b in self.full.drain(..) {
                b.clear();
                pool.push(b);
            }
        }
        self.full
    }
}

impl TraceSink for Blocks {
    fn record(&mut self, layer: usize, _: usize, rows: &[f32]) {
        self.take(2 * layer, rows, self.d);
    }
    fn record_kv(&mut self, layer: usize, _: usize, width: usize, rows: &[f32]) {
        self.take(2 * layer + 1, rows, width);
    }
}

/// Each `commit` run's engine-thread and hashing times, in run order.
static COSTS: Mutex<Vec<(std::time::Duration, std::time::Duration)>> = Mutex::new(Vec::new());

/// The sink under test.
enum Sink {
    Noop(Noop),
    Copy(Copy),
    Blocks(Blocks),
    Commit(CommitmentSink),
}

impl Sink {
    fn new(mode: &str, d: usize) -> Result<Self> {
        Ok(match mode {
            "noop" => Self::Noop(Noop),
            "copy" => Self::Copy(Copy(Vec::new())),
            "blocks" | "pooled" => Self::Blocks(Blocks {
                d,
                pooled: mode == "pooled",
                ..Blocks::default()
            }),
            _ => Self::Commit(CommitmentSink::with_options(
                d,
                SinkOptions {
                    timed: mode == "commit",
                    ..SinkOptions::default()
                },
            )?),
        })
    }

    fn attached(&mut self) -> &mut dyn TraceSink {
        match self {
            Self::Noop(s) => s,
            Self::Copy(s) => s,
            Self::Blocks(s) => s,
            Self::Commit(s) => s,
        }
    }

    /// Ends the trace: the commitment's `finish` (hashing left over, the
    /// Merkle tree). Returns what the sink holds, for the caller to drop
    /// after its clock stops (freeing a long trace's rows takes
    /// milliseconds, which a server spends after the answer). A commitment's
    /// own account goes to `COSTS` when `account` (MODE's side, not BASE's).
    fn finish(self, account: bool) -> Result<Box<dyn std::any::Any>> {
        Ok(match self {
            Self::Commit(s) => {
                let c = s.finish()?;
                let cost = c.cost();
                if let (true, Ok(mut costs)) = (account, COSTS.lock()) {
                    costs.push((cost.engine_thread, cost.hashing));
                }
                Box::new(c)
            }
            Self::Copy(s) => Box::new(s.0),
            Self::Blocks(s) => Box::new(s.finish()),
            Self::Noop(s) => Box::new(s),
        })
    }
}

/// Pairs between the running summaries printed to stderr: a long run
/// (thousands of pairs, an hour) stopped early for lack of time still
/// leaves a summary of the pairs it did, its interval included (stopping
/// on the clock, never on what the summary says).
const PROGRESS_EVERY: usize = 250;

/// The summary line of the pairs `times`: `label` (what ran, their count
/// included), the median overhead, its 95% confidence interval, the
/// interquartile range, the overhead of the summed times and the mean
/// step time on the other side (no sink, or BASE's).
fn summary(label: &str, times: &PairTimes) -> String {
    let mut sorted = times.overheads();
    sorted.sort_by(f64::total_cmp);
    let (off_total, on_total) = times.totals();
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f).round() as usize];
    format!(
        "{}: overhead median {:+.2}%{} (interquartile {:+.2}% to {:+.2}%), of the summed times \
         {:+.2}%; {:.2} ms per step on the other side",
        label,
        q(0.5),
        median_ci(&sorted, 0.95)
            .map(|(lo, hi)| format!(", 95% confidence interval {lo:+.2}% to {hi:+.2}%"))
            .unwrap_or_default(),
        q(0.25),
        q(0.75),
        100.0 * (on_total / off_total - 1.0),
        1e3 * off_total / (sorted.len() * times.steps) as f64,
    )
}

/// The sinks a run can attach.
const MODES: [&str; 7] = [
    "noop", "copy", "blocks", "pooled", "commit", "plain", "none",
];

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "pool") {
        return pool_runs(&args[1..]);
    }
    let raw_path = args
        .iter()
        .position(|a| a.starts_with("raw="))
        .map(|i| args.remove(i)[4..].to_string());
    // MODE, or MODE:BASE to measure MODE against BASE's sink instead of
    // none.
    let spec = args.first().map(String::as_str).unwrap_or("commit");
    let (mode, base) = spec.split_once(':').unwrap_or((spec, "none"));
    for m in [mode, base] {
        if !MODES.contains(&m) {
            bail!(
                "MODE is one of {} (or MODE:BASE, two of them)",
                MODES.join(", ")
            );
        }
    }
    let pairs: usize = positional_arg(&args, 1, 200)?;
    if pairs == 0 {
        bail!("PAIRS must be at least 1");
    }
    let steps: usize = positional_arg(&args, 2, 32)?;
    let at: usize = positional_arg(&args, 3, 64)?;
    let traced_prefill = args.get(4).is_some_and(|a| a == "traced-prefill");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let path = default_model_path().context("no model cache")?;
    let model = Model::load(&path, Backend::Cpu)?;
    // As `forge-node serve` runs it.
    model.use_huge_pages();
    let (d, vocab) = (model.config().d_model, model.config().vocab);
    let prompt = synthetic_prompt(at, vocab);
    let mut session = model.session();
    let mut run = |with_sink: bool| -> Result<f64> {
        pool.install(|| {
            let which = if with_sink { mode } else { base };
            let new_sink = || (which != "none").then(|| Sink::new(which, d)).transpose();
            session.truncate(0);
            let mut sink = if traced_prefill { new_sink()? } else { None };
            let rows = model.forward(&mut session, &prompt, sink.as_mut().map(Sink::attached))?;
            let mut tok = argmax(&model.logits(&rows[rows.len() - d..]));
            if !traced_prefill {
                // The trace starts at the first decoded position.
                sink = new_sink()?;
            }
            let started = Instant::now();
            for _ in 0..steps {
                let row = model.forward(&mut session, &[tok], sink.as_mut().map(Sink::attached))?;
                tok = argmax(&model.logits(&row));
            }
            let held = sink.map(|s| s.finish(with_sink)).transpose()?;
            let secs = started.elapsed().as_secs_f64();
            drop(held);
            Ok(secs)
        })
    };
    run(false)?;
    run(true)?;
    let mut raw = raw_path
        .map(|p| {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&p).with_context(|| format!("creating {p}"))?,
            );
            pair_times::write_header(&mut f, &format!("commit_ab {}", args.join(" ")), steps)?;
            anyhow::Ok(f)
        })
        .transpose()?;
    let mut times = PairTimes {
        steps,
        pairs: Vec::with_capacity(pairs),
    };
    let label = |n: usize| {
        let traced = if traced_prefill {
            " (prefill traced)"
        } else {
            ""
        };
        let against = if base == "none" {
            String::new()
        } else {
            format!(" against {base}")
        };
        format!("{mode}{against}: {n} pairs of {steps} steps after {at} tokens{traced}")
    };
    for i in 0..pairs {
        let (off, on) = if i % 2 == 0 {
            let off = run(false)?;
            (off, run(true)?)
        } else {
            let on = run(true)?;
            (run(false)?, on)
        };
        times.pairs.push((off, on));
        if let Some(f) = raw.as_mut() {
            pair_times::write_pair(f, off, on)?;
            f.flush()?;
        }
        let done = i + 1;
        if done % PROGRESS_EVERY == 0 && done < pairs {
            let so_far = summary(&label(done), &times);
            eprintln!("so far, {so_far}");
        }
    }
    println!("{}", summary(&label(pairs), &times));
    let costs = COSTS.lock().map(|c| c.clone()).unwrap_or_default();
    if !costs.is_empty() {
        let per_step = |f: &dyn Fn(&(std::time::Duration, std::time::Duration)) -> f64| {
            let v: Vec<f64> = costs.iter().map(|c| 1e6 * f(c) / steps as f64).collect();
            median(&v).unwrap_or(f64::NAN)
        };
        println!(
            "{mode}: per step, sink calls {:.1} us, hashing {:.1} us (medians over runs)",
            per_step(&|c| c.0.as_secs_f64()),
            per_step(&|c| c.1.as_secs_f64()),
        );
    }
    Ok(())
}

/// `pool PATH...`: the summary of each `raw=` file and of all their pairs
/// together (every file must hold pairs of the same step count).
fn pool_runs(paths: &[String]) -> Result<()> {
    let mut all: Option<PairTimes> = None;
    for path in paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let run = pair_times::parse(path, &text)?;
        println!(
            "{}",
            summary(&format!("{path}: {} pairs", run.pairs.len()), &run)
        );
        match all.as_mut() {
            None => all = Some(run),
            Some(all) if all.steps == run.steps => all.pairs.extend(run.pairs),
            Some(_) => bail!(
                "{path}: {} steps per run, the files before it had another count",
                run.steps
            ),
        }
    }
    let all = all.context("pool needs at least one file written with raw=PATH")?;
    let label = format!("pooled, {} files: {} pairs", paths.len(), all.pairs.len());
    println!("{}", summary(&label, &all));
    Ok(())
}
