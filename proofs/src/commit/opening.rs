//! Opened rows with their range proof.

use std::borrow::Cow;

use rayon::prelude::*;
use serde::Serialize;

use super::{OpenedRows, RowsRef};
use crate::merkle::{
    DType, Hash, MerkleError, RangeProof, TreeLayout, leaf_hash_f16, leaf_hash_words, verify_range,
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
    /// The rows, in position order, in the element type the group's rows
    /// are kept and hashed in (the receipt's dtype decides it;
    /// [`RangeOpening::verify`] checks).
    pub rows: OpenedRows,
    /// Sibling hashes from these leaves to the root.
    pub proof: RangeProof,
}

impl RangeOpening {
    /// The opened row at position `pos` as f32 values (an f16 row widened),
    /// if the opening holds it.
    pub fn row_at(&self, pos: u32) -> Option<Cow<'_, [f32]>> {
        let i = pos.checked_sub(self.first_pos)?;
        self.rows.row_f32(i as usize)
    }

    /// Checks the rows against `root`, for a trace of `layers` layers over
    /// positions `start..start + positions` (the receipt's signed shape):
    /// a tree of `2 * layers` row groups (see [`crate::Commitment`]). The
    /// opening must cover whole blocks of its group's
    /// [`crate::RowGroup::block`] positions (the last block of the trace may
    /// be shorter).
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
        let (start, t) = (u64::from(start), u64::from(positions));
        let layout = TreeLayout::new(layers as usize, positions as usize);
        let n_leaves = layout.n_leaves();
        let out_of_bounds = MerkleError::OutOfBounds {
            first,
            last: first + n.saturating_sub(1),
            n_leaves,
        };
        // Positions are u32 in receipts, so `start + positions` fits in u32 too.
        let (kind, layer) = match layout.group(group) {
            // The layer is below `layers`, a u32.
            Some((kind, layer))
                if first >= start && first + n <= start + t && start + t <= u64::from(u32::MAX) =>
            {
                (kind, layer as u32)
            }
            _ => return Err(out_of_bounds),
        };
        let rows_per_leaf = kind.block();
        let block = rows_per_leaf as u64;
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
        if self.rows.elem() != dtype.elem(kind) {
            return Err(MerkleError::WrongElem {
                expected: dtype.elem(kind),
                received: self.rows.elem(),
            });
        }
        // A spot check's key/value openings run to thousands of rows:
        // hashing them is most of an offline verification, and the blocks
        // hash in parallel, each where its rows lie.
        let leaves = (0..self.rows.len().div_ceil(rows_per_leaf))
            .into_par_iter()
            .map(|b| {
                let from = b * rows_per_leaf;
                let to = (from + rows_per_leaf).min(self.rows.len());
                // < start + t, which fits in u32; at most a block of rows.
                let (pos, count) = (self.first_pos + from as u32, (to - from) as u32);
                match self.rows.rows(from..to) {
                    Some(RowsRef::F32(rows)) => {
                        Ok(leaf_hash_words(kind, layer, pos, count, dtype, rows))
                    }
                    Some(RowsRef::F16(rows)) => {
                        Ok(leaf_hash_f16(kind, layer, pos, count, dtype, rows))
                    }
                    None => Err(MerkleError::EmptyRange),
                }
            })
            .collect::<Result<Vec<Hash>, MerkleError>>()?;
        let index = layout.leaf(group, (first - start) / block);
        let index = usize::try_from(index).map_err(|_| out_of_bounds.clone())?;
        let n_leaves = usize::try_from(n_leaves).map_err(|_| out_of_bounds)?;
        verify_range(root, n_leaves, index, &leaves, &self.proof)
    }
}
