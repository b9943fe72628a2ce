//! The provider's side: opening the challenged cells.

use super::{CellOpening, SpotOpenings};
use crate::commit::{CommitError, Commitment};

/// Opens `cells` from `commitment`: for cell (l, t), row `t` of layer `l - 1`
/// (none for layer 0), the `[k | v]` rows `0..=t` of layer `l` (widened to
/// the end of `t`'s key/value block), and row `t` of layer `l`. `prompt` and
/// `output` are the request's token ids, which the verifier checks against
/// the receipt's hashes.
pub fn open_cells(
    commitment: &Commitment,
    prompt: &[u32],
    output: &[u32],
    cells: &[(u32, u32)],
) -> Result<SpotOpenings, CommitError> {
    let cells = cells
        .iter()
        .map(|&(layer, pos)| {
            let (l, t) = (layer as usize, pos as usize);
            let input = match l {
                0 => None,
                _ => Some(commitment.open_range(l - 1, t, t)?),
            };
            let kv = commitment.open_kv_range(l, commitment.start(), t)?;
            Ok(CellOpening {
                layer,
                pos,
                input,
                kv,
                output: commitment.open_range(l, t, t)?,
            })
        })
        .collect::<Result<Vec<_>, CommitError>>()?;
    Ok(SpotOpenings {
        prompt: prompt.to_vec(),
        output: output.to_vec(),
        cells,
    })
}
