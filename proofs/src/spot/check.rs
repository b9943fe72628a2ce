//! The verifier's side: re-executing challenged cells with the real weights.

use forge_engine::{Backend, CellReplay, KvValue, Model, Numerics, sample};
use rayon::prelude::*;
use serde::Serialize;

use super::structure::verify_cell_rows;
use super::{CellOpening, SpotError, SpotOpenings, challenge_cells};
use crate::commit::{RangeOpening, RowsRef};
use crate::digest::{output_hash, prompt_hash};
use crate::receipt::{ModelDims, Receipt};

/// What a passed spot check established, per cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpotReport {
    /// Whether rows had to match bit for bit (a batch-invariant backend).
    pub exact: bool,
    /// One entry per checked cell.
    pub cells: Vec<CellResult>,
}

/// The outcome of one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellResult {
    /// Layer.
    pub layer: u32,
    /// Position.
    pub pos: u32,
    /// ‖replayed − committed‖ / ‖committed‖ of the output row (0 when
    /// bit-identical).
    pub rel_l2: f64,
    /// The generation step whose token was re-sampled, for a last-layer
    /// cell that produced one.
    pub token_step: Option<u32>,
}

/// Checks a provider's openings against the verifier's copy of the model.
#[derive(Debug)]
pub struct SpotChecker<'a> {
    model: &'a Model,
    tolerance: f64,
}

/// The relative-L2 error allowed, per replayed row, for receipts from
/// backends that are not batch-invariant, whose cells replay on the CPU's
/// float reference ([`Numerics::F32`]). Calibrated by `forge-bench
/// tolerance` (`papers/results/tolerance.md`): this is burn-flex's worst
/// error over 22,440 SmolLM2 cells times ten, rounded up to a power of ten.
/// GPU backends are not calibrated.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

impl<'a> SpotChecker<'a> {
    /// A checker with the real weights (any backend: replay always runs on
    /// the engine's exact CPU kernels) and a relative-L2 tolerance of
    /// [`DEFAULT_TOLERANCE`] for receipts from backends that are not
    /// batch-invariant.
    pub fn new(model: &'a Model) -> Self {
        Self {
            model,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Sets the tolerance for receipts from non-batch-invariant backends.
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Derives the cells `seed` challenges and checks `openings` against them.
    pub fn check(
        &self,
        receipt: &Receipt,
        seed: &[u8; 32],
        count: u32,
        openings: &SpotOpenings,
    ) -> Result<SpotReport, SpotError> {
        let cells = challenge_cells(receipt, seed, count)?;
        self.check_cells(receipt, &cells, openings)
    }

    /// Checks `openings` for the given cells.
    pub fn check_cells(
        &self,
        receipt: &Receipt,
        cells: &[(u32, u32)],
        openings: &SpotOpenings,
    ) -> Result<SpotReport, SpotError> {
        self.check_receipt(receipt, openings)?;
        for index in 0..cells.len().max(openings.cells.len()) {
            let expected = cells.get(index).copied();
            let received = openings.cells.get(index).map(|c| (c.layer, c.pos));
            if expected != received {
                return Err(SpotError::CellsMismatch {
                    index,
                    expected,
                    received,
                });
            }
        }
        // Rows of the batch-invariant CPU kernels replay exactly; any other
        // tag (the burn backends, or `cpu-f32` from the float kernels before
        // 8-bit activations) within the tolerance.
        let exact = receipt.request.backend == Backend::Cpu.tag();
        let tokens: Vec<u32> = openings
            .prompt
            .iter()
            .chain(&openings.output)
            .copied()
            .collect();
        // Cells are independent: check them side by side, then report the
        // first failure in challenge order (deterministic whatever the
        // thread timing). The token checks of last-layer cells need only
        // their committed output rows, not the replays: they run beside
        // the replays, their rows through LM head passes of
        // `TOKEN_BATCH` (the LM head, 30 MB on SmolLM2, is the largest
        // thing a draw reads, and each row's logits have the bits they
        // have alone).
        // (index in the draw, generation step, cell) of each token check.
        let token_cells: Vec<(usize, u32, &CellOpening)> = openings
            .cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| token_step(receipt, c).map(|step| (i, step, c)))
            .collect();
        let (tokens_checked, results) = rayon::join(
            || {
                token_cells
                    .chunks(TOKEN_BATCH)
                    .flat_map(|batch| {
                        self.check_token_batch(receipt, &openings.output, batch, exact)
                    })
                    .collect::<Vec<_>>()
            },
            || {
                openings
                    .cells
                    .par_iter()
                    .map(|c| self.check_cell(receipt, &tokens, c, exact))
                    .collect::<Vec<Result<CellResult, SpotError>>>()
            },
        );
        let mut cells = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        // Every cell's rows passed, so each token check read a committed
        // row: its failure is the first in challenge order now.
        for (i, checked) in tokens_checked {
            cells[i].token_step = Some(checked?);
        }
        Ok(SpotReport { exact, cells })
    }

    /// Model identity, token hashes, and a committed prefix.
    fn check_receipt(&self, receipt: &Receipt, openings: &SpotOpenings) -> Result<(), SpotError> {
        receipt.check_shape().map_err(SpotError::Receipt)?;
        let (q, model) = (&receipt.request, self.model);
        if q.model_id != model.model_id() {
            return Err(SpotError::WrongModel {
                expected: model.model_id(),
                received: q.model_id,
            });
        }
        let dims = ModelDims::from_engine(model.config());
        if dims != Some(receipt.config) {
            let expected = dims.unwrap_or(receipt.config);
            return Err(SpotError::ConfigMismatch {
                expected,
                received: receipt.config,
            });
        }
        if openings.prompt.len() != q.n_prompt as usize
            || prompt_hash(&openings.prompt) != q.prompt_hash
        {
            return Err(SpotError::TokensMismatch { which: "prompt" });
        }
        if openings.output.len() != q.n_gen as usize
            || output_hash(&openings.output) != receipt.output.tokens_hash
        {
            return Err(SpotError::TokensMismatch { which: "output" });
        }
        if q.forwarded.start != 0 {
            return Err(SpotError::PrefixNotCommitted {
                start: q.forwarded.start,
            });
        }
        Ok(())
    }

    /// Layer `layer` at the position after `prefix` (rows of `width`
    /// committed keys and values), from its input row.
    fn replay<V: KvValue>(
        &self,
        numerics: Numerics,
        layer: u32,
        input: &[f32],
        prefix: &[V],
        width: usize,
    ) -> Result<CellReplay, SpotError> {
        let rows: Vec<&[V]> = prefix.chunks_exact(width.max(1)).collect();
        Ok(self
            .model
            .replay_cell_rows_in(numerics, layer as usize, input, &rows)?)
    }

    fn check_cell(
        &self,
        receipt: &Receipt,
        tokens: &[u32],
        c: &CellOpening,
        exact: bool,
    ) -> Result<CellResult, SpotError> {
        let numerics = replay_numerics(exact);
        let tolerance = if exact { 0.0 } else { self.tolerance };
        let (layer, pos) = (c.layer, c.pos);
        verify_cell_rows(receipt, c)?;
        // `verify_cell_rows` checked that the openings hold row t.
        let input = match &c.input {
            Some(o) => opened(o, pos).to_vec(),
            None => self.model.embedding(tokens[pos as usize])?,
        };
        // Rows past t (the rest of t's key/value block) are only hashed.
        let through_t = (pos - receipt.request.forwarded.start) as usize + 1;
        let kv = &c.kv.rows;
        let replayed = match kv.rows(0..through_t - 1) {
            Some(RowsRef::F32(prefix)) => self.replay(numerics, layer, &input, prefix, kv.width()),
            Some(RowsRef::F16(prefix)) => self.replay(numerics, layer, &input, prefix, kv.width()),
            None => {
                return Err(SpotError::MalformedOpening {
                    layer,
                    pos,
                    problem: "the key/value opening does not hold the prefix",
                });
            }
        }?;
        let kv_t = kv.row_f32(through_t - 1).unwrap_or_default();
        let committed = opened(&c.output, pos);
        let compare = |what: &'static str, row: &[f32], want: &[f32]| {
            let rel_l2 = relative_l2(row, want);
            let same_bits = row
                .iter()
                .zip(want)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            if same_bits || (tolerance > 0.0 && rel_l2 <= tolerance) {
                Ok(rel_l2)
            } else {
                Err(SpotError::ReplayMismatch {
                    layer,
                    pos,
                    what,
                    rel_l2,
                    tolerance,
                })
            }
        };
        compare("keys/values", &replayed.kv, &kv_t)?;
        let rel_l2 = compare("output", &replayed.output, committed)?;
        Ok(CellResult {
            layer,
            pos,
            rel_l2,
            token_step: None,
        })
    }

    /// Re-derives the tokens that last-layer cells' committed output rows
    /// sampled (final norm, LM head, sampler) in one LM head pass, and
    /// compares each with the output at its step; returns each cell's
    /// index with its step, in order. Meaningful only once the cells' rows
    /// passed [`Self::check_cell`], which the caller checks first (here a
    /// missing row or step reads as a mismatch of token 0).
    fn check_token_batch(
        &self,
        receipt: &Receipt,
        output: &[u32],
        cells: &[(usize, u32, &CellOpening)],
        exact: bool,
    ) -> Vec<(usize, Result<u32, SpotError>)> {
        let numerics = replay_numerics(exact);
        let cfg = self.model.config();
        // Each cell's committed row, if it is one and its step is in the output.
        let rows: Vec<Option<&[f32]>> = cells
            .iter()
            .map(|&(_, step, c)| {
                let row = opened(&c.output, c.pos);
                (row.len() == cfg.d_model && (step as usize) < output.len()).then_some(row)
            })
            .collect();
        let batch: Vec<f32> = rows
            .iter()
            .flatten()
            .flat_map(|r| r.iter().copied())
            .collect();
        let logits = if batch.is_empty() {
            Vec::new()
        } else {
            self.model.logits_in(numerics, &batch)
        };
        let mut next = logits.chunks_exact(cfg.vocab.max(1));
        let sampling = receipt.request.sampling.to_engine();
        cells
            .iter()
            .zip(&rows)
            .map(|(&(i, step, _), row)| {
                let received = output.get(step as usize).copied().unwrap_or(0);
                // Cells without a row have no logits (they take no chunk)
                // and fail with token 0 expected.
                let logits = row.and_then(|_| next.next());
                let expected = logits.map_or(0, |l| {
                    sample(l, &sampling, &output[..step as usize], step.into())
                });
                let checked = if logits.is_some() && expected == received {
                    Ok(step)
                } else {
                    Err(SpotError::TokenMismatch {
                        step,
                        expected,
                        received,
                    })
                };
                (i, checked)
            })
            .collect()
    }
}

/// The arithmetic a receipt is re-executed in: exact receipts on the
/// kernels that made them; the burn backends' on the float reference,
/// which does their arithmetic.
fn replay_numerics(exact: bool) -> Numerics {
    if exact { Numerics::Int8 } else { Numerics::F32 }
}

/// Rows of one LM head pass of the token checks: the activation rows the
/// integer kernels keep in registers, so the pass reads the LM head once
/// for all of them; a receipt with many last-layer cells costs a verifier
/// a vocabulary's logits for this many rows at a time, not for all of them.
const TOKEN_BATCH: usize = 8;

/// The generation step whose token `c`'s row sampled, if `c` is a
/// last-layer cell at such a position: the last layer's row at position p
/// samples the token at p + 1, a generated one from p = n_prompt - 1 on.
/// Checked arithmetic: it runs before the cell's rows are verified, on
/// whatever layer and position a caller names.
fn token_step(receipt: &Receipt, c: &CellOpening) -> Option<u32> {
    if c.layer.checked_add(1) != Some(receipt.trace.layers) {
        return None;
    }
    let step = (u64::from(c.pos) + 1).checked_sub(u64::from(receipt.request.n_prompt))?;
    u32::try_from(step).ok()
}

/// The error [`SpotChecker`] compares with its tolerance: ‖a − b‖ / ‖b‖ in
/// f64 (0 when equal, infinite when `b` is zero and `a` is not or when the
/// lengths differ; NaN-safe: any NaN gives infinity). `forge-bench
/// tolerance` calibrates [`DEFAULT_TOLERANCE`] with this same function.
pub fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let diff = f64::from(*x) - f64::from(*y);
        num += diff * diff;
        den += f64::from(*y) * f64::from(*y);
    }
    let r = (num / den).sqrt();
    if r.is_nan() {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        r
    }
}

/// Output row `pos` of an opening that `verify_cell_rows` checked holds
/// it (output rows are f32 under every dtype).
fn opened(o: &RangeOpening, pos: u32) -> &[f32] {
    let i = pos.checked_sub(o.first_pos).map(|i| i as usize);
    match i.and_then(|i| o.rows.rows(i..i + 1)) {
        Some(RowsRef::F32(row)) => row,
        _ => &[],
    }
}
