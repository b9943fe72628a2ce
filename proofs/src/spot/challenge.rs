//! Which cells a challenge seed selects.

use merlin::Transcript;

use crate::codec::EncodeError;
use crate::receipt::Receipt;

/// The merlin transcript label of spot-check challenges.
pub const SPOT_TRANSCRIPT_LABEL: &[u8] = b"forge.spot.v1";

/// The `count` cells (layer, position) that `seed` challenges on `receipt`.
///
/// A merlin transcript absorbs the receipt's header hash (the signed hash,
/// which stays the same as audits are appended), the seed and the trace
/// shape; each cell is a 128-bit challenge reduced modulo `L·T`, then split
/// into a layer and a forwarded position. Cells may repeat. The receipt's
/// shape is taken as is: check it ([`Receipt::verify_offline`]) first.
pub fn challenge_cells(
    receipt: &Receipt,
    seed: &[u8; 32],
    count: u32,
) -> Result<Vec<(u32, u32)>, EncodeError> {
    let header = receipt.header_hash()?;
    let (layers, positions) = (receipt.trace.layers, receipt.trace.positions);
    let start = receipt.request.forwarded.start;
    let mut t = Transcript::new(SPOT_TRANSCRIPT_LABEL);
    t.append_message(b"receipt", &header);
    t.append_message(b"seed", seed);
    t.append_u64(b"layers", layers.into());
    t.append_u64(b"start", start.into());
    t.append_u64(b"positions", positions.into());
    t.append_u64(b"count", count.into());
    let cells = u128::from(layers) * u128::from(positions);
    if cells == 0 {
        return Ok(Vec::new());
    }
    Ok((0..count)
        .map(|_| {
            let mut b = [0u8; 16];
            t.challenge_bytes(b"cell", &mut b);
            let i = u128::from_le_bytes(b) % cells;
            // i < layers * positions, so both parts fit in u32.
            (
                (i / u128::from(positions)) as u32,
                start.saturating_add((i % u128::from(positions)) as u32),
            )
        })
        .collect())
}
