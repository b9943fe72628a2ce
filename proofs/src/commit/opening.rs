//! Opened rows with their range proof.

use rayon::prelude::*;
use serde::Serialize;

use crate::merkle::{DType, Hash, MerkleError, RangeProof, kv_leaf_hash, leaf_hash, verify_range};

/// Openings of at least this many rows hash their leaves on the rayon pool.
const PARALLEL_ROWS: usize = 64;

/// Rows `first_pos..first_pos + rows.len()` of one row group, with the
/// Merkle range proof that ties them to an activation root.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeOpening {
    /// The row group opened: `l < L` is layer `l`'s output rows, `L + l` its
    /// `[k | v]` rows (see [`crate::Commitment`]).
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
    /// positions `start..start + positions` (the receipt's signed shape):
    /// a tree of `2 * layers` row groups.
    pub fn verify(
        &self,
        root: &Hash,
        layers: u32,
        start: u32,
        positions: u32,
        dtype: DType,
    ) -> Result<(), MerkleError> {
        let n = self.rows.len() as u64;
        let (first, group) = (u64::from(self.first_pos), u64::from(self.layer));
        let (start, t, groups) = (
            u64::from(start),
            u64::from(positions),
            2 * u64::from(layers),
        );
        let out_of_bounds = MerkleError::OutOfBounds {
            first,
            last: first + n.saturating_sub(1),
            n_leaves: groups * t,
        };
        // Positions are u32 in receipts, so `start + positions` fits in u32 too.
        if group >= groups
            || first < start
            || first + n > start + t
            || start + t > u64::from(u32::MAX)
        {
            return Err(out_of_bounds);
        }
        let leaf = |(i, row): (usize, &Vec<f32>)| {
            let pos = self.first_pos + i as u32; // first + n <= start + t, which fits in u32 (checked above)
            match self.layer.checked_sub(layers) {
                None => leaf_hash(self.layer, pos, dtype, row),
                Some(kv_layer) => kv_leaf_hash(kv_layer, pos, dtype, row),
            }
        };
        // A spot check's key/value openings run to hundreds of rows: hashing
        // them is most of an offline verification, and it parallelises.
        let leaves: Vec<Hash> = if self.rows.len() >= PARALLEL_ROWS {
            self.rows.par_iter().enumerate().map(leaf).collect()
        } else {
            self.rows.iter().enumerate().map(leaf).collect()
        };
        let index =
            usize::try_from(group * t + first - start).map_err(|_| out_of_bounds.clone())?;
        let n_leaves = usize::try_from(groups * t).map_err(|_| out_of_bounds)?;
        verify_range(root, n_leaves, index, &leaves, &self.proof)
    }
}
