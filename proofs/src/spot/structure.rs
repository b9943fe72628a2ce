//! The part of a spot check that needs no weights: the opened tokens match
//! the receipt's hashes, the opened cells are the ones the seed selects, and
//! every opened row is in the committed tree. `forge-verify` runs it even
//! without `--model`; re-executing the cells is [`super::SpotChecker`]'s job.

use rayon::prelude::*;

use super::{CellOpening, SpotError, SpotOpenings, challenge_cells};
use crate::commit::RangeOpening;
use crate::digest::{output_hash, prompt_hash};
use crate::merkle::{RowGroup, rows_covering};
use crate::receipt::Receipt;

/// Check `openings` against `receipt` for the `count` cells `seed` selects,
/// without the model. Returns the number of cells whose openings verify.
pub fn verify_openings(
    receipt: &Receipt,
    seed: &[u8; 32],
    count: u32,
    openings: &SpotOpenings,
) -> Result<usize, SpotError> {
    receipt.check_shape().map_err(SpotError::Receipt)?;
    let q = &receipt.request;
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
    let cells = challenge_cells(receipt, seed, count)?;
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
    // Cells are independent; on error the reported one is the first failing
    // cell in challenge order, whichever thread finds which first.
    let results: Vec<Result<(), SpotError>> = openings
        .cells
        .par_iter()
        .map(|c| verify_cell_rows(receipt, c))
        .collect();
    results.into_iter().collect::<Result<(), SpotError>>()?;
    Ok(openings.cells.len())
}

/// One cell's openings have the shape its cell (l, t) asks for (the block of
/// output rows of layer `l` that holds `t`; the block of layer `l - 1` that
/// holds `t`, the input, unless `l = 0`; `[k | v]` rows of layer `l` from
/// the first forwarded position to the end of `t`'s block) and every row is
/// in the committed tree. `check_shape` must have passed.
pub(crate) fn verify_cell_rows(receipt: &Receipt, c: &CellOpening) -> Result<(), SpotError> {
    let (q, t) = (&receipt.request, &receipt.trace);
    let d = receipt.config.d_model as usize;
    let kv_width = 2 * receipt.config.kv_heads as usize * receipt.config.head_dim as usize;
    let (layer, pos) = (c.layer, c.pos);
    let malformed = |problem| SpotError::MalformedOpening {
        layer,
        pos,
        problem,
    };
    if layer >= t.layers || pos < q.forwarded.start || pos - q.forwarded.start >= t.positions {
        return Err(malformed("the cell is outside the trace"));
    }
    let verify = |o: &RangeOpening| {
        o.verify(&t.root, t.layers, q.forwarded.start, t.positions, t.dtype)
            .map_err(|source| SpotError::Opening { layer, pos, source })
    };
    let is = |o: &RangeOpening, group: u32, first: u32, n: usize, width: usize| {
        (o.layer, o.first_pos, o.rows.len()) == (group, first, n) && o.rows.width() == width
    };
    let (block_first, block_rows) = block_of(receipt, pos);
    if !is(&c.output, layer, block_first, block_rows, d) {
        return Err(malformed("the output opening is not t's block of layer l"));
    }
    verify(&c.output)?;
    match (layer, &c.input) {
        (0, None) => {}
        (l, Some(o)) if l > 0 => {
            if !is(o, l - 1, block_first, block_rows, d) {
                return Err(malformed("the input opening is not t's block of layer l-1"));
            }
            verify(o)?;
        }
        _ => {
            return Err(malformed(
                "layer 0 takes no input opening, other layers need one",
            ));
        }
    }
    if !is(
        &c.kv,
        t.layers + layer,
        q.forwarded.start,
        kv_rows_opened(receipt, pos),
        kv_width,
    ) {
        return Err(malformed(
            "the key/value opening is not rows 0..=t of layer l's keys and values, to the end of t's block",
        ));
    }
    verify(&c.kv)
}

/// Key/value rows a cell at `pos` opens: from the first forwarded position
/// to the end of `pos`'s block of [`crate::KV_BLOCK`] positions (or of the
/// trace). `pos` must lie in the trace.
pub(crate) fn kv_rows_opened(receipt: &Receipt, pos: u32) -> usize {
    let through_t = (pos - receipt.request.forwarded.start) as usize + 1;
    rows_covering(
        RowGroup::KeyValue,
        through_t,
        receipt.trace.positions as usize,
    )
}

/// The block of output positions that holds `pos`: its first position and
/// its rows (a whole [`crate::OUTPUT_BLOCK`], or the trace's shorter last
/// block). `pos` must lie in the trace.
fn block_of(receipt: &Receipt, pos: u32) -> (u32, usize) {
    let start = receipt.request.forwarded.start;
    let block = RowGroup::Output.block();
    let offset = (pos - start) as usize / block * block;
    let positions = receipt.trace.positions as usize;
    let rows = rows_covering(RowGroup::Output, offset + 1, positions) - offset;
    // offset <= pos - start, so it fits in u32.
    (start + offset as u32, rows)
}
