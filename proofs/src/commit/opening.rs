//! Opened rows with their range proof.

use serde::Serialize;

use crate::merkle::{DType, Hash, MerkleError, RangeProof, leaf_hash, verify_range};

/// Rows `first_pos..first_pos + rows.len()` of one layer, with the Merkle
/// range proof that ties them to an activation root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeOpening {
    /// The layer opened.
    pub layer: u32,
    /// Position of the first row.
    pub first_pos: u32,
    /// The rows, in position order.
    pub rows: Vec<Vec<f32>>,
    /// Sibling hashes from these leaves to the root.
    pub proof: RangeProof,
}

impl RangeOpening {
    /// Checks the rows against `root`, for a trace of `layers` layers over
    /// positions `start..start + positions` (the receipt's signed shape).
    pub fn verify(&self, root: &Hash, layers: u32, start: u32, positions: u32, dtype: DType) -> Result<(), MerkleError> {
        let n = self.rows.len() as u64;
        let (first, layer) = (u64::from(self.first_pos), u64::from(self.layer));
        let (start, t) = (u64::from(start), u64::from(positions));
        let out_of_bounds = MerkleError::OutOfBounds {
            first,
            last: first + n.saturating_sub(1),
            n_leaves: u64::from(layers) * t,
        };
        // Positions are u32 in receipts, so `start + positions` fits in u32 too.
        if layer >= u64::from(layers) || first < start || first + n > start + t || start + t > u64::from(u32::MAX) {
            return Err(out_of_bounds);
        }
        let leaves: Vec<Hash> = self
            .rows
            .iter()
            .zip(self.first_pos..)
            .map(|(row, pos)| leaf_hash(self.layer, pos, dtype, row))
            .collect();
        let index = usize::try_from(layer * t + first - start).map_err(|_| out_of_bounds.clone())?;
        let n_leaves = usize::try_from(u64::from(layers) * t).map_err(|_| out_of_bounds)?;
        verify_range(root, n_leaves, index, &leaves, &self.proof)
    }
}
