//! `forge-bench proofs`: what receipts cost on SmolLM2: commitment overhead
//! on decode, CU proof prove/verify, receipt sizes, offline verification,
//! spot-check re-execution.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use forge_engine::{Backend, GenerateRequest, Generation, Model, TraceSink, generate};
use forge_proofs::{
    Commitment, CommitmentSink, NodeKey, Receipt, ReceiptBuilder, SinkOptions, SpotChecker,
    SpotOpenings, TrustAnchor, attach_self_audit, challenge_cells, open_cells, verify_openings,
};
use serde::Serialize;

use crate::prompts::prompt_set;
use crate::util::{self, median, quantile};

/// Arguments of `forge-bench proofs`.
#[derive(Debug, Args)]
pub struct ProofsArgs {
    /// GGUF model (default: the pulled SmolLM2 under $FORGE_HOME/models).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// rayon threads for the engine.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Tokens generated per prompt (greedy).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Spot-check cells embedded per receipt.
    #[arg(long, default_value_t = 8)]
    pub checks: u32,
    /// Repetitions of each timed step; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Markdown output (the JSON goes next to it).
    #[arg(long, default_value = "papers/results/proofs.md")]
    pub out: PathBuf,
}

/// One prompt's figures.
#[derive(Debug, Serialize)]
pub struct ProofsRow {
    prompt: String,
    prompt_tokens: usize,
    generated: usize,
    decode_tps_off: f64,
    decode_tps_on: f64,
    /// Median over runs of one run pair's (untraced tok/s / traced tok/s - 1), percent.
    commit_overhead_pct: f64,
    /// Its interquartile range over the pairs, percent.
    commit_overhead_iqr_pct: [f64; 2],
    /// Every pair's figure, percent.
    commit_overhead_pairs_pct: Vec<f64>,
    /// CPU time of committing one decode step's rows (the decode rows'
    /// share of the hashing jobs plus the one-position hand-overs), over
    /// the CPU time of a decode step without a sink, percent.
    commit_cpu_pct_of_decode: f64,
    /// The hand-over's time per decoded token over the wall time of a
    /// decode step without a sink, percent (made beside the next layer's
    /// products, so on the critical path only when no thread was free).
    commit_engine_pct_of_decode: f64,
    commit_finish_ms: f64,
    receipt_bytes: usize,
    receipt_bytes_with_openings: usize,
    build_ms: f64,
    verify_offline_ms: f64,
    spot_ms_total: f64,
    spot_ms_per_cell: f64,
    spot_pct_of_generation: f64,
    /// The same for a draw whose cells include a last-layer cell at a
    /// generated position (which also re-derives that token through the LM
    /// head): the costliest kind of draw.
    spot_lm_ms_total: f64,
    spot_lm_pct_of_generation: f64,
    /// CPU seconds of the spot checks over CPU seconds of the generation
    /// (without a sink): steadier than wall time on a loaded machine.
    spot_cpu_pct_of_generation: f64,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct ProofsReport {
    rows: Vec<ProofsRow>,
    /// The pairs of every prompt together: median and interquartile range
    /// of the commitment's wall overhead, percent.
    commit_overhead_all_pairs_pct: f64,
    commit_overhead_all_pairs_iqr_pct: [f64; 2],
    /// A 95% confidence interval for that median (`util::median_ci`);
    /// `None` with fewer than 6 pairs.
    commit_overhead_all_pairs_ci95_pct: Option<[f64; 2]>,
    cu_prove_ms: f64,
    cu_verify_ms: f64,
    threads: usize,
    checks: u32,
    date: String,
    /// CPU model (`util::cpu_model`).
    cpu: Option<String>,
    command: String,
}

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// What `forge-verify` does without the model: the receipt's offline checks
/// and, beside them, decoding every audit's openings (of `checks` cells)
/// and checking their cells and Merkle range proofs against the root.
pub fn verify_without_model(receipt: &Receipt, anchor: &TrustAnchor, checks: u32) -> Result<()> {
    let (offline, audits) = rayon::join(
        || receipt.verify_offline(anchor),
        || {
            receipt.audits.iter().try_for_each(|a| -> Result<()> {
                let o = SpotOpenings::from_bytes(&a.openings)?;
                verify_openings(receipt, &a.seed, checks, &o)?;
                Ok(())
            })
        },
    );
    offline?;
    audits
}

/// Run the benchmark and write its table.
pub fn run(args: &ProofsArgs) -> Result<ProofsReport> {
    let path = crate::decode::model_path(args.model.as_deref())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("rayon pool")?;
    let model =
        Model::load(&path, Backend::Cpu).with_context(|| format!("loading {}", path.display()))?;
    // As `forge-node serve` runs it.
    model.use_huge_pages();
    let key_dir = tempfile::tempdir()?;
    let key = NodeKey::load_or_create(key_dir.path())?;
    let pk = forge_circuits::canonical_pk();
    let anchor = TrustAnchor::new(forge_circuits::canonical_vk().clone());
    let mut rows = Vec::new();
    let mut prove = Vec::new();
    let mut verify = Vec::new();
    for p in prompt_set() {
        let req = p.full_length_request(&model, args.max_tokens)?;
        let (mut off, mut on, mut fin, mut gen_cpu, mut dec_cpu) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut full_cost = Vec::new();
        let mut last = None;
        for run in 0..args.runs {
            // Untraced then traced on even runs, the other way round on odd
            // ones, so that neither side always runs second.
            let mut untraced_run = || -> Result<()> {
                let (g, cpu) = untraced(&pool, &model, &req)?;
                gen_cpu.push(cpu.whole);
                dec_cpu.push(cpu.decode);
                off.push(g.decode_tps());
                Ok(())
            };
            if run % 2 == 0 {
                untraced_run()?;
            }
            // The sink as servers run it, not timing its calls.
            let (g, c) = traced(&pool, &model, &req, false)?;
            fin.push(c.cost().finish.as_secs_f64() * 1e3);
            on.push(g.decode_tps());
            last = Some((g, c));
            if run % 2 == 1 {
                untraced_run()?;
            }
            // Its own account, from a third generation outside the pair
            // with a sink that times its calls (two clock reads a call).
            let (_, timed) = traced(&pool, &model, &req, true)?;
            full_cost.push(decode_cost_secs(&timed));
        }
        let (g, commitment) = last.context("--runs must be at least 1")?;
        let gen_secs = g.prefill_secs + g.decode_secs;
        let t = Instant::now();
        let receipt =
            ReceiptBuilder::new(&model, &key, pk).build([7; 16], &req, &g, &commitment)?;
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let plain = receipt.to_bytes()?;
        let header = receipt.header_hash()?;
        let stmt = receipt.cu_statement(header);
        let mut rng =
            <forge_circuits::ChaCha20Rng as forge_circuits::rand_core::SeedableRng>::from_seed(
                [1; 32],
            );
        for _ in 0..args.runs.max(5) {
            prove.push(ms(|| drop(forge_circuits::prove(pk, &stmt, &mut rng))));
        }
        let proof = forge_circuits::CuProof::from_bytes(&receipt.cu_proof)?;
        for _ in 0..args.runs.max(20) {
            verify.push(ms(|| {
                drop(forge_circuits::verify(
                    forge_circuits::canonical_vk(),
                    &stmt,
                    &proof,
                ))
            }));
        }
        let mut audited = receipt.clone();
        attach_self_audit(
            &mut audited,
            &commitment,
            &req.prompt,
            &g.tokens,
            &key,
            args.checks,
        )?;
        let full = audited.to_bytes()?;
        let decoded = Receipt::from_bytes(&full)?;
        let audit = &decoded.audits[0];
        let openings = SpotOpenings::from_bytes(&audit.openings)?;
        let verify_no_model = || verify_without_model(&decoded, &anchor, args.checks);
        verify_no_model().context("the honest receipt must verify")?;
        let verify_offline_ms = median_ms(&pool, args.runs.max(5), || drop(verify_no_model()));
        let checker = SpotChecker::new(&model);
        let (spot, spot_cpu): (Vec<f64>, Vec<f64>) = (0..args.runs)
            .map(|_| {
                util::cpu_timed(|| {
                    pool.install(|| {
                        ms(|| drop(checker.check(&decoded, &audit.seed, args.checks, &openings)))
                    })
                })
            })
            .unzip();
        checker
            .check(&decoded, &audit.seed, args.checks, &openings)
            .context("the honest spot check must pass")?;
        let spot_ms_total = median(&spot).unwrap_or(0.0);
        // The costliest kind of draw: search seeds for one whose challenge
        // holds a last-layer cell at a generated position.
        let (layers, n_prompt) = (receipt.trace.layers, receipt.request.n_prompt);
        let lm_cells = (0u64..10_000)
            .map(|s| *blake3::hash(&s.to_le_bytes()).as_bytes())
            .map(|seed| challenge_cells(&receipt, &seed, args.checks))
            .find(|cells| {
                cells
                    .as_ref()
                    .is_ok_and(|c| c.iter().any(|&(l, p)| l + 1 == layers && p + 1 >= n_prompt))
            })
            .context("no seed in 10,000 challenged a last-layer cell")??;
        let lm_openings = open_cells(&commitment, &req.prompt, &g.tokens, &lm_cells)?;
        checker
            .check_cells(&receipt, &lm_cells, &lm_openings)
            .context("the honest spot check with a last-layer cell must pass")?;
        let spot_lm_ms_total = median_ms(&pool, args.runs, || {
            drop(checker.check_cells(&receipt, &lm_cells, &lm_openings))
        });
        let pairs: Vec<f64> = off
            .iter()
            .zip(&on)
            .filter(|&(_, &b)| b > 0.0)
            .map(|(a, b)| (a / b - 1.0) * 100.0)
            .collect();
        let (off, on) = (median(&off).unwrap_or(0.0), median(&on).unwrap_or(0.0));
        let steps = g.tokens.len().saturating_sub(1).max(1) as f64;
        let per_step = |v: &[f64]| median(v).unwrap_or(0.0) / steps;
        let decode_cpu = per_step(&dec_cpu);
        let commit_cpu = per_step(&pick(&full_cost, |c| c.0 + c.1));
        let commit_engine = per_step(&pick(&full_cost, |c| c.0));
        rows.push(ProofsRow {
            prompt: p.name.to_string(),
            prompt_tokens: req.prompt.len(),
            generated: g.tokens.len(),
            decode_tps_off: off,
            decode_tps_on: on,
            commit_overhead_pct: median(&pairs).unwrap_or(0.0),
            commit_overhead_iqr_pct: iqr(&pairs),
            commit_overhead_pairs_pct: pairs,
            // NaN (JSON null, "n/a" in the table) when a decode step is too
            // cheap for the CPU clocks to resolve (tiny models).
            commit_cpu_pct_of_decode: if decode_cpu > 0.0 {
                commit_cpu / decode_cpu * 100.0
            } else {
                f64::NAN
            },
            commit_engine_pct_of_decode: commit_engine * off * 100.0,
            commit_finish_ms: median(&fin).unwrap_or(0.0),
            receipt_bytes: plain.len(),
            receipt_bytes_with_openings: full.len(),
            build_ms,
            verify_offline_ms,
            spot_ms_total,
            spot_ms_per_cell: spot_ms_total / f64::from(args.checks.max(1)),
            spot_pct_of_generation: spot_ms_total / (gen_secs * 1e3) * 100.0,
            spot_lm_ms_total,
            spot_lm_pct_of_generation: spot_lm_ms_total / (gen_secs * 1e3) * 100.0,
            spot_cpu_pct_of_generation: median(&spot_cpu).unwrap_or(0.0)
                / median(&gen_cpu).unwrap_or(f64::INFINITY)
                * 100.0,
        });
    }
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.commit_overhead_pairs_pct.iter().copied())
        .collect();
    let report = ProofsReport {
        commit_overhead_all_pairs_pct: median(&all).unwrap_or(0.0),
        commit_overhead_all_pairs_iqr_pct: iqr(&all),
        commit_overhead_all_pairs_ci95_pct: util::median_ci(&all, 0.95).map(|(lo, hi)| [lo, hi]),
        rows,
        cu_prove_ms: median(&prove).unwrap_or(0.0),
        cu_verify_ms: median(&verify).unwrap_or(0.0),
        threads: args.threads,
        checks: args.checks,
        date: util::utc_now(),
        cpu: util::cpu_model(),
        command: util::command_line(),
    };
    write(args, &report)?;
    Ok(report)
}

/// The 25th and 75th percentiles of `xs` (0 when empty).
fn iqr(xs: &[f64]) -> [f64; 2] {
    [0.25, 0.75].map(|q| quantile(xs, q).unwrap_or(0.0))
}

/// (seconds in the sink's calls, seconds of hashing) of one traced run's
/// decode steps: `CommitCost::decode_engine_thread` and `decode_hashing`.
fn decode_cost_secs(c: &Commitment) -> (f64, f64) {
    let cost = c.cost();
    (
        cost.decode_engine_thread.as_secs_f64(),
        cost.decode_hashing.as_secs_f64(),
    )
}

/// `v`'s `f` of each element.
fn pick(v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

/// CPU seconds of a generation (all of the process's threads).
struct GenerationCpu {
    whole: f64,
    /// From the first token on: the decode steps'.
    decode: f64,
}

/// `req` generated without a sink, and the CPU seconds it took.
fn untraced(
    pool: &rayon::ThreadPool,
    model: &Model,
    req: &GenerateRequest,
) -> Result<(Generation, GenerationCpu)> {
    let mut first_token = None;
    let (g, whole) = util::cpu_timed(|| {
        pool.install(|| {
            generate(model, req, None, |_| {
                if first_token.is_none() {
                    first_token = util::process_cpu_secs();
                }
                ControlFlow::Continue(())
            })
        })
    });
    let decode = first_token
        .zip(util::process_cpu_secs())
        .map_or(0.0, |(a, b)| (b - a).max(0.0));
    Ok((g?, GenerationCpu { whole, decode }))
}

/// `req` generated with a `CommitmentSink` attached, and its commitment
/// (whose `cost` includes the time `finish` took); `timed`: the sink times
/// its calls for the account of their time (`SinkOptions::timed`).
fn traced(
    pool: &rayon::ThreadPool,
    model: &Model,
    req: &GenerateRequest,
    timed: bool,
) -> Result<(Generation, Commitment)> {
    let opts = SinkOptions {
        timed,
        ..SinkOptions::default()
    };
    let mut sink = CommitmentSink::with_options(model.config().d_model, opts)?;
    let g = pool.install(|| {
        generate(model, req, Some(&mut sink as &mut dyn TraceSink), |_| {
            ControlFlow::Continue(())
        })
    })?;
    Ok((g, sink.finish()?))
}

/// Median wall milliseconds of `runs` calls of `f` on the pool.
fn median_ms(pool: &rayon::ThreadPool, runs: usize, f: impl Fn() + Sync) -> f64 {
    let times: Vec<f64> = (0..runs).map(|_| pool.install(|| ms(&f))).collect();
    median(&times).unwrap_or(0.0)
}

fn write(args: &ProofsArgs, r: &ProofsReport) -> Result<()> {
    let mut md = String::from("# Receipt costs on SmolLM2-135M-Instruct (Q4_1)\n\n");
    md += &format!(
        "{} engine threads, greedy, {} spot-check cells per receipt, medians. {}\n\nCPU: {}.\n\n",
        r.threads,
        r.checks,
        r.date,
        r.cpu.as_deref().unwrap_or("unknown")
    );
    md += "| prompt | prompt tok | generated | decode tok/s off | decode tok/s on | commitment overhead (wall) | its IQR | commitment CPU / decode CPU | sink calls / decode | commit finish (ms) | receipt bytes | with openings | build + sign + prove (ms) | verify, no model (ms) | spot checks (ms) | per cell (ms) | % of generation (wall) | % of generation (CPU) | with a last-layer cell (ms) | its % of generation (wall) |\n";
    md += "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for x in &r.rows {
        md += &format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:+.2}% | {:+.2}..{:+.2}% | {} | {:.2}% | {:.2} | {} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2}% | {:.2}% | {:.1} | {:.2}% |\n",
            x.prompt,
            x.prompt_tokens,
            x.generated,
            x.decode_tps_off,
            x.decode_tps_on,
            x.commit_overhead_pct,
            x.commit_overhead_iqr_pct[0],
            x.commit_overhead_iqr_pct[1],
            if x.commit_cpu_pct_of_decode.is_nan() {
                "n/a".to_string()
            } else {
                format!("{:.2}%", x.commit_cpu_pct_of_decode)
            },
            x.commit_engine_pct_of_decode,
            x.commit_finish_ms,
            x.receipt_bytes,
            x.receipt_bytes_with_openings,
            x.build_ms,
            x.verify_offline_ms,
            x.spot_ms_total,
            x.spot_ms_per_cell,
            x.spot_pct_of_generation,
            x.spot_cpu_pct_of_generation,
            x.spot_lm_ms_total,
            x.spot_lm_pct_of_generation
        );
    }
    md += &format!(
        "\nCU proof (Groth16, BN254, {} constraints): prove {:.2} ms, verify {:.2} ms (medians).\n\n",
        forge_circuits::num_constraints(),
        r.cu_prove_ms,
        r.cu_verify_ms
    );
    md += &format!(
        "Commitment overhead (wall), all prompts' {} run pairs together: median {:+.2}%{}, interquartile range {:+.2}% to {:+.2}%.\n\n",
        r.rows
            .iter()
            .map(|x| x.commit_overhead_pairs_pct.len())
            .sum::<usize>(),
        r.commit_overhead_all_pairs_pct,
        r.commit_overhead_all_pairs_ci95_pct
            .map(|[lo, hi]| format!(" (95% confidence interval {lo:+.2}% to {hi:+.2}%)"))
            .unwrap_or_default(),
        r.commit_overhead_all_pairs_iqr_pct[0],
        r.commit_overhead_all_pairs_iqr_pct[1]
    );
    md += "Commitment overhead (wall) = per run pair (one generation without a sink, one with forge-proofs' `CommitmentSink` attached as servers run it, not timing its calls; the two alternate which runs first), decode tok/s without over decode tok/s with, minus 1; the median over pairs, and its interquartile range (wall time on a shared machine: noisy); the confidence interval for the median is the sign test's (`util::median_ci`: order statistics, no assumption on the noise's shape beyond pairs being independent and, as the order alternates, symmetric about the effect). ";
    md += "Commitment CPU / decode CPU = what committing a decode step's rows costs in CPU time (the time in the sink's `record` calls that handed over one position, plus the decode rows' share of the hashing jobs: each block's hashing time in the proportion of its rows that came one position at a time; the sink's `CommitCost::decode_*`, from a third generation per run, outside the pair, with a sink that times its calls: `SinkOptions::timed`), over the CPU time of a decode step without a sink (all threads of the process, from the first token's callback to the end of the generation); both per step are medians over runs divided by (generated - 1). It measures the commitment's own work rather than a difference of two noisy wall times, and the decode steps' apart from the prompt's. Sink calls / decode = the time in those one-position `record` calls (copying rows and queueing blocks; a backlog hashed inside them, only when more than 64 groups wait for the pool, counts as hashing) per decoded token over a decode step's wall time; the engine makes the calls beside the next layer's products from whichever pool thread is free, so this is CPU time, on the critical path only when no thread was free. ";
    md += "Verify, no model = what `forge-verify` does without `--model`: `Receipt::verify_offline` (encoding, FLOPs, signature, CU proof, audit signatures) and, beside it (`rayon::join`, as `forge-verify` runs them since stop 31), decoding every audit's openings and checking their cells and Merkle range proofs (`verify_openings`); in process, so without the binary's start (loading the key, reading the file). ";
    md += "Spot checks = re-executing every embedded cell with the real weights (`SpotChecker`), as a share of the generation's wall time, \
           and of its CPU time (all threads of the process, from `/proc/self/task/*/schedstat`; the generation without a sink). \
           The cells come from the receipt's own non-interactive seed, so which layers they hit changes with the receipt. \
           With a last-layer cell = the same check for the first seed (blake3 of 0, 1, ... as u64) whose 8 cells include a cell of the last layer at a generated position, \
           which also re-derives that token through the final norm, the LM head and the sampler: the costliest kind of draw.\n\n";
    md += &format!("Command: `{}`\n", r.command);
    println!("{md}");
    util::write_results(&args.out, &md, r)
}
