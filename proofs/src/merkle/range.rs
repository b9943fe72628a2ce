//! Range proofs: verifying a contiguous run of leaves against a root.

use serde::Serialize;

use super::{Hash, MerkleError, boundary, node_hash};

/// The sibling hashes that, with a contiguous run of leaves, recompute a
/// root. Produced by [`super::MerkleTree::prove_range`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RangeProof {
    /// Sibling hashes, level by level from the leaves up, left before right.
    #[serde(serialize_with = "crate::hex::serialize_hashes")]
    pub siblings: Vec<Hash>,
}

/// Checks that `leaves` are leaves `first..first + leaves.len()` of the tree
/// of `n_leaves` leaves whose root is `root`. Rejects a wrong position,
/// a wrong leaf count, and missing or extra siblings.
///
/// `n_leaves` must come from a trusted source (a receipt's signed `L·T`):
/// because an odd last node is promoted, trees of different sizes can share
/// a range's path to the root, so a proof alone does not fix the size. Leaf
/// hashes bind their own (layer, position), which keeps openings unambiguous.
pub fn verify_range(
    root: &Hash,
    n_leaves: usize,
    first: usize,
    leaves: &[Hash],
    proof: &RangeProof,
) -> Result<(), MerkleError> {
    if n_leaves == 0 {
        return Err(MerkleError::EmptyTree);
    }
    if leaves.is_empty() {
        return Err(MerkleError::EmptyRange);
    }
    let last = first
        .checked_add(leaves.len() - 1)
        .filter(|&l| l < n_leaves);
    let Some(last) = last else {
        return Err(MerkleError::OutOfBounds {
            first: first as u64,
            last: (first as u64).saturating_add(leaves.len() as u64 - 1),
            n_leaves: n_leaves as u64,
        });
    };
    let mut siblings = proof.siblings.iter();
    let mut next = || {
        siblings
            .next()
            .copied()
            .ok_or(MerkleError::MissingSiblings {
                provided: proof.siblings.len() as u64,
            })
    };
    let (mut lo, mut hi, mut n) = (first, last, n_leaves);
    let mut cur = leaves.to_vec();
    while n > 1 {
        let (left, right) = boundary(lo, hi, n);
        let mut run = Vec::with_capacity(cur.len() + 2);
        if left.is_some() {
            run.push(next()?);
        }
        run.append(&mut cur);
        if right.is_some() {
            run.push(next()?);
        }
        // `run` starts at an even index, so chunks are sibling pairs; a lone
        // last chunk is the promoted last node of an odd level.
        cur = run
            .chunks(2)
            .map(|c| c.get(1).map_or(c[0], |r| node_hash(&c[0], r)))
            .collect();
        (lo, hi, n) = (lo / 2, hi / 2, n.div_ceil(2));
    }
    let extra = siblings.len();
    if extra > 0 {
        return Err(MerkleError::ExtraSiblings {
            extra: extra as u64,
        });
    }
    // A level of one node holds one hash.
    let computed = cur[0];
    if computed == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch {
            expected: *root,
            computed,
        })
    }
}
