//! The part of a spot check that needs no weights: the opened tokens match
//! the receipt's hashes, the opened cells are the ones the seed selects, and
//! every opened row is in the committed tree. `forge-verify` runs it even
//! without `--model`; re-executing the cells is [`super::SpotChecker`]'s job.

use super::{SpotError, SpotOpenings, challenge_cells};
use crate::commit::RangeOpening;
use crate::digest::{output_hash, prompt_hash};
use crate::receipt::Receipt;

/// Check `openings` against `receipt` for the `count` cells `seed` selects,
/// without the model. Returns the number of cells whose openings verify.
pub fn verify_openings(receipt: &Receipt, seed: &[u8; 32], count: u32, openings: &SpotOpenings) -> Result<usize, SpotError> {
    receipt.check_shape().map_err(SpotError::Receipt)?;
    let q = &receipt.request;
    if openings.prompt.len() != q.n_prompt as usize || prompt_hash(&openings.prompt) != q.prompt_hash {
        return Err(SpotError::TokensMismatch { which: "prompt" });
    }
    if openings.output.len() != q.n_gen as usize || output_hash(&openings.output) != receipt.output.tokens_hash {
        return Err(SpotError::TokensMismatch { which: "output" });
    }
    let cells = challenge_cells(receipt, seed, count)?;
    for index in 0..cells.len().max(openings.cells.len()) {
        let expected = cells.get(index).copied();
        let received = openings.cells.get(index).map(|c| (c.layer, c.pos));
        if expected != received {
            return Err(SpotError::CellsMismatch { index, expected, received });
        }
    }
    let t = &receipt.trace;
    let d = receipt.config.d_model as usize;
    for c in &openings.cells {
        let (layer, pos) = (c.layer, c.pos);
        let malformed = |problem| SpotError::MalformedOpening { layer, pos, problem };
        let verify = |o: &RangeOpening| {
            o.verify(&t.root, t.layers, q.forwarded.start, t.positions, t.dtype)
                .map_err(|source| SpotError::Opening { layer, pos, source })
        };
        let out = &c.output;
        if (out.layer, out.first_pos, out.rows.len()) != (layer, pos, 1) || out.rows[0].len() != d {
            return Err(malformed("the output opening is not row t of layer l"));
        }
        verify(out)?;
        match (layer, &c.inputs) {
            (0, None) => {}
            (l, Some(o)) if l > 0 => {
                if (o.layer, o.first_pos, o.rows.len()) != (l - 1, q.forwarded.start, (pos - q.forwarded.start) as usize + 1)
                    || o.rows.iter().any(|r| r.len() != d)
                {
                    return Err(malformed("the input opening is not rows 0..=t of layer l-1"));
                }
                verify(o)?;
            }
            _ => return Err(malformed("layer 0 takes no input opening, other layers need one")),
        }
    }
    Ok(openings.cells.len())
}
