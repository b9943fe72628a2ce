//! A Merkle tree kept whole, so that any range can be proved.

use rayon::prelude::*;

use super::{Hash, MerkleError, RangeProof, boundary, empty_root, node_hash};

/// Levels at least this wide are hashed in parallel.
const PAR_LEVEL: usize = 8192;

/// A binary Merkle tree with every level kept (leaves first, root last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (already hashed, in leaf order).
    pub fn from_leaves(leaves: Vec<Hash>) -> Self {
        let mut levels = vec![leaves];
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            levels.push(parent_level(level));
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        &self.levels[0]
    }

    /// The root ([`empty_root`] for a tree with no leaves).
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|l| l.first()) {
            Some(root) => *root,
            None => empty_root(),
        }
    }

    /// The minimal sibling set that recomputes the root from leaves
    /// `first..=last`, in the order [`super::verify_range`] consumes it:
    /// level by level from the leaves up, left neighbour before right.
    pub fn prove_range(&self, first: usize, last: usize) -> Result<RangeProof, MerkleError> {
        let n = self.len();
        if n == 0 {
            return Err(MerkleError::EmptyTree);
        }
        if last < first {
            return Err(MerkleError::EmptyRange);
        }
        if last >= n {
            return Err(MerkleError::OutOfBounds {
                first: first as u64,
                last: last as u64,
                n_leaves: n as u64,
            });
        }
        let (mut lo, mut hi) = (first, last);
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            let (left, right) = boundary(lo, hi, level.len());
            siblings.extend(left.into_iter().chain(right).map(|i| level[i]));
            lo /= 2;
            hi /= 2;
        }
        Ok(RangeProof { siblings })
    }
}

/// The next level up: pairs hashed, an odd last node promoted.
fn parent_level(level: &[Hash]) -> Vec<Hash> {
    let pair = |c: &[Hash]| c.get(1).map_or(c[0], |r| node_hash(&c[0], r));
    if level.len() >= PAR_LEVEL {
        level.par_chunks(2).map(pair).collect()
    } else {
        level.chunks(2).map(pair).collect()
    }
}
