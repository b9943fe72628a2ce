//! `forge-bench tolerance`: how far a backend that is not batch-invariant
//! (burn's `flex`, or `wgpu`/`cuda` when built) lands from the CPU's float
//! reference ([`Numerics::F32`]) on one layer, the error a spot check of its
//! receipts must allow.
//!
//! For each prompt it generates on the backend under test with a
//! [`TraceRecorder`] attached, then re-executes every cell (l, t) the way a
//! spot check does ([`Model::replay_cell_in`] on the float reference, from the
//! committed input row and the committed keys and values of 0..t) and
//! records the relative L2 error of the replayed output row and of the
//! replayed key/value row against the committed ones. The published bound is
//! the largest error seen, times a safety factor, rounded up to a power of
//! ten; `SpotChecker`'s default tolerance is set from it.

use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use forge_engine::{
    Backend, GenerateRequest, Model, Numerics, SamplingParams, TraceRecorder, generate,
};
use forge_proofs::relative_l2;
use serde::Serialize;

use crate::prompts::prompt_set;
use crate::util;

/// Arguments of `forge-bench tolerance`.
#[derive(Debug, Args)]
pub struct ToleranceArgs {
    /// GGUF model (default: the pulled SmolLM2 under $FORGE_HOME/models).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The backend whose receipts need a tolerance (`flex`, `wgpu`, `cuda`).
    #[arg(long, default_value = "flex")]
    pub backend: Backend,
    /// Tokens generated per prompt (greedy).
    #[arg(long, default_value_t = 24)]
    pub max_tokens: usize,
    /// rayon threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The published bound is the worst error seen times this factor,
    /// rounded up to a power of ten.
    #[arg(long, default_value_t = 10.0)]
    pub safety: f64,
    /// Markdown output (the JSON goes next to it).
    #[arg(long, default_value = "papers/results/tolerance.md")]
    pub out: PathBuf,
}

/// Error statistics of one kind of row over many cells.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ErrorStats {
    /// Cells measured.
    pub cells: usize,
    /// Cells whose replay had the same bits.
    pub bit_exact: usize,
    /// Median relative L2 error.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl ErrorStats {
    /// Statistics of `errors` (relative L2 errors; 0 = bit-exact).
    pub fn of(errors: &[f64]) -> Self {
        let mut sorted: Vec<f64> = errors.iter().copied().filter(|e| e.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        Self {
            cells: errors.len(),
            bit_exact: errors.iter().filter(|&&e| e == 0.0).count(),
            median: at(0.5),
            p99: at(0.99),
            // A non-finite error (NaN row) is the worst possible.
            max: if sorted.len() < errors.len() {
                f64::INFINITY
            } else {
                sorted.last().copied().unwrap_or(0.0)
            },
        }
    }
}

/// `worst * safety` rounded up to a power of ten (at least 1e-7).
pub fn published_bound(worst: f64, safety: f64) -> f64 {
    let x = (worst * safety).max(1e-7);
    // The epsilon keeps exact powers of ten (1e-5 * 10) from rounding up a decade.
    10f64.powi((x.log10() - 1e-9).ceil() as i32)
}

/// One prompt's figures.
#[derive(Debug, Serialize)]
pub struct ToleranceRow {
    prompt: String,
    positions: usize,
    output: ErrorStats,
    kv: ErrorStats,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct ToleranceReport {
    backend: String,
    rows: Vec<ToleranceRow>,
    output: ErrorStats,
    kv: ErrorStats,
    worst: f64,
    safety: f64,
    bound: f64,
    date: String,
    command: String,
}

/// Run the measurement and write its table.
pub fn run(args: &ToleranceArgs) -> Result<ToleranceReport> {
    if args.backend == Backend::Cpu {
        bail!(
            "the cpu backend is batch-invariant and verified bit for bit: pick flex, wgpu or cuda"
        );
    }
    let path = crate::decode::model_path(args.model.as_deref())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("rayon pool")?;
    let exact =
        Model::load(&path, Backend::Cpu).with_context(|| format!("loading {}", path.display()))?;
    let tested = Model::load(&path, args.backend)
        .with_context(|| format!("loading {} on {}", path.display(), args.backend))?;
    let (layers, d) = (exact.config().layers, exact.config().d_model);
    let (mut rows, mut all_out, mut all_kv) = (Vec::new(), Vec::new(), Vec::new());
    for p in prompt_set() {
        let req = GenerateRequest {
            prompt: exact.tokenizer().encode(&p.render(&exact)?)?,
            max_tokens: args.max_tokens,
            sampling: SamplingParams::greedy(),
            stop: vec![],
        };
        let mut rec = TraceRecorder::new(d);
        let g = pool
            .install(|| generate(&tested, &req, Some(&mut rec), |_| ControlFlow::Continue(())))?;
        let tokens: Vec<u32> = req.prompt.iter().chain(&g.tokens).copied().collect();
        let end = g.work.end as usize;
        let (mut out_err, mut kv_err) = (Vec::new(), Vec::new());
        for l in 0..layers {
            let kv_rows: Vec<&[f32]> = (0..end)
                .map(|t| {
                    rec.kv_row(l, t)
                        .context("the backend recorded no keys/values")
                })
                .collect::<Result<_>>()?;
            let prefix: Vec<f32> = kv_rows.concat();
            let w = kv_rows.first().map_or(0, |r| r.len());
            let errs = pool.install(|| {
                use rayon::prelude::*;
                (0..end)
                    .into_par_iter()
                    .map(|t| -> Result<(f64, f64)> {
                        let input = match l {
                            0 => exact.embedding(tokens[t])?,
                            _ => rec.row(l - 1, t).context("missing row")?.to_vec(),
                        };
                        let cell =
                            exact.replay_cell_in(Numerics::F32, l, &input, &prefix[..t * w])?;
                        let committed = rec.row(l, t).context("missing row")?;
                        Ok((
                            relative_l2(&cell.output, committed),
                            relative_l2(&cell.kv, kv_rows[t]),
                        ))
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            for (o, k) in errs {
                out_err.push(o);
                kv_err.push(k);
            }
        }
        tracing::info!(prompt = p.name, cells = out_err.len(), "replayed");
        rows.push(ToleranceRow {
            prompt: p.name.to_string(),
            positions: end,
            output: ErrorStats::of(&out_err),
            kv: ErrorStats::of(&kv_err),
        });
        all_out.extend(out_err);
        all_kv.extend(kv_err);
    }
    let (output, kv) = (ErrorStats::of(&all_out), ErrorStats::of(&all_kv));
    let worst = output.max.max(kv.max);
    let report = ToleranceReport {
        backend: args.backend.to_string(),
        rows,
        output,
        kv,
        worst,
        safety: args.safety,
        bound: published_bound(worst, args.safety),
        date: util::utc_now(),
        command: util::command_line(),
    };
    write(args, &report)?;
    Ok(report)
}

fn write(args: &ToleranceArgs, r: &ToleranceReport) -> Result<()> {
    let mut md = format!(
        "# One-layer error of the `{}` backend against the CPU's float reference\n\n",
        r.backend
    );
    md += &format!(
        "SmolLM2-135M-Instruct (Q4_1), greedy, every cell (layer, position) of every prompt re-executed as a spot check of this backend's receipts does, on `Numerics::F32` (f32 activations times the dequantised weights, in the float kernels' fixed order; the exact kernels' 8-bit activations are for `cpu-i8-kv16` receipts). {}\n\n",
        r.date
    );
    md += "| prompt | positions | cells | output: bit-exact | median | p99 | max | keys/values: bit-exact | median | p99 | max |\n";
    md += "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    let line = |name: &str, positions: String, o: &ErrorStats, k: &ErrorStats| {
        format!(
            "| {name} | {positions} | {} | {} | {:.2e} | {:.2e} | {:.2e} | {} | {:.2e} | {:.2e} | {:.2e} |\n",
            o.cells, o.bit_exact, o.median, o.p99, o.max, k.bit_exact, k.median, k.p99, k.max
        )
    };
    for x in &r.rows {
        md += &line(&x.prompt, x.positions.to_string(), &x.output, &x.kv);
    }
    md += &line("**all**", String::new(), &r.output, &r.kv);
    md += &format!(
        "\nWorst relative L2 error: {:.3e}. Published bound (worst x {}, rounded up to a power of ten): **{:.0e}**.\n\n",
        r.worst, r.safety, r.bound
    );
    md += "Error = ‖replayed − committed‖ / ‖committed‖ for the layer's output row and for its own key/value row, \
           the quantities `SpotChecker` compares for receipts whose backend is not batch-invariant.\n\n";
    md += &format!("Command: `{}`\n", r.command);
    println!("{md}");
    util::write_results(&args.out, &md, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_is_zero_only_for_equal_bits() {
        assert_eq!(relative_l2(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!(relative_l2(&[1.0, 2.0 + 1e-6], &[1.0, 2.0]) > 0.0);
        assert_eq!(relative_l2(&[3.0, 4.0], &[0.0, 0.0]), f64::INFINITY);
        assert_eq!(relative_l2(&[0.0, 0.0], &[0.0, 0.0]), 0.0);
        assert!((relative_l2(&[1.1, 0.0], &[1.0, 0.0]) - 0.1).abs() < 1e-6);
        assert_eq!(relative_l2(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    }

    #[test]
    fn stats_and_bound() {
        let s = ErrorStats::of(&[0.0, 0.0, 1e-6, 3e-6, 2e-7]);
        assert_eq!((s.cells, s.bit_exact), (5, 2));
        assert_eq!(s.max, 3e-6);
        assert_eq!(s.median, 2e-7);
        assert_eq!(
            ErrorStats::of(&[1e-6, f64::NAN]).max,
            f64::INFINITY,
            "a NaN row is the worst"
        );
        assert_eq!(published_bound(3e-6, 10.0), 1e-4);
        assert_eq!(published_bound(1e-5, 10.0), 1e-4);
        assert_eq!(published_bound(0.0, 10.0), 1e-7);
    }
}
