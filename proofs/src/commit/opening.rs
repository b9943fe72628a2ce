//! Opened rows with their range proof.

use rayon::prelude::*;
use serde::Serialize;

use crate::merkle::{
    DType, Hash, KV_BLOCK, MerkleError, RangeProof, kv_leaf_hash, leaf_hash, verify_range,
};

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
    /// a tree of `2 * layers` row groups (see [`crate::Commitment`]). A
    /// key/value opening must cover whole blocks of [`KV_BLOCK`] positions
    /// (the last block of the trace may be shorter).
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
        let (start, t, layers64) = (u64::from(start), u64::from(positions), u64::from(layers));
        let blocks = t.div_ceil(KV_BLOCK as u64);
        let n_leaves = layers64 * (t + blocks);
        let out_of_bounds = MerkleError::OutOfBounds {
            first,
            last: first + n.saturating_sub(1),
            n_leaves,
        };
        // Positions are u32 in receipts, so `start + positions` fits in u32 too.
        if group >= 2 * layers64
            || first < start
            || first + n > start + t
            || start + t > u64::from(u32::MAX)
        {
            return Err(out_of_bounds);
        }
        let (index, leaves): (u64, Vec<Hash>) = match self.layer.checked_sub(layers) {
            None => {
                let leaf = |(i, row): (usize, &Vec<f32>)| {
                    // first + n <= start + t, which fits in u32 (checked above)
                    leaf_hash(self.layer, self.first_pos + i as u32, dtype, row)
                };
                let leaves = self.rows.iter().enumerate().map(leaf).collect();
                (group * t + first - start, leaves)
            }
            Some(kv_layer) => {
                let block = KV_BLOCK as u64;
                let end = first + n;
                if !(first - start).is_multiple_of(block)
                    || (!(end - start).is_multiple_of(block) && end != start + t)
                {
                    return Err(MerkleError::Unaligned {
                        first,
                        rows: n,
                        block,
                    });
                }
                // A spot check's key/value openings run to hundreds of rows:
                // hashing them is most of an offline verification, and the
                // blocks hash in parallel.
                let leaves = self
                    .rows
                    .par_chunks(KV_BLOCK)
                    .enumerate()
                    .map(|(b, rows)| {
                        let pos = self.first_pos + (b * KV_BLOCK) as u32; // < start + t
                        kv_leaf_hash(kv_layer, pos, dtype, rows)
                    })
                    .collect();
                (
                    layers64 * t + u64::from(kv_layer) * blocks + (first - start) / block,
                    leaves,
                )
            }
        };
        let index = usize::try_from(index).map_err(|_| out_of_bounds.clone())?;
        let n_leaves = usize::try_from(n_leaves).map_err(|_| out_of_bounds)?;
        verify_range(root, n_leaves, index, &leaves, &self.proof)
    }
}
