//! Binary blake3 Merkle trees over activation rows, with range proofs.
//!
//! Leaves and internal nodes are hashed under different blake3 keys
//! (`forge.act.v3`, `forge.kv.v3`, `forge.node.v1`), so a leaf can never
//! pass for a node, nor a key/value leaf for an output row.
//! A level with an odd number of nodes promotes its last node unchanged.

mod error;
mod hash;
mod layout;
mod range;
mod tree;

pub use error::MerkleError;
pub use hash::{
    DType, Elem, Hash, KV_BLOCK, OUTPUT_BLOCK, RowGroup, empty_root, leaf_hash, node_hash,
    row_blocks,
};
pub(crate) use hash::{leaf_hash_f16, leaf_hash_words, pack_f16, rows_covering};
pub(crate) use layout::TreeLayout;
pub use range::{RangeProof, verify_range};
pub use tree::MerkleTree;

/// The siblings that a contiguous range `lo..=hi` of a level of `n` nodes
/// needs to compute its parents: the left neighbour of an odd `lo`, and the
/// right neighbour of an even `hi` unless `hi` is the level's promoted last
/// node.
fn boundary(lo: usize, hi: usize, n: usize) -> (Option<usize>, Option<usize>) {
    let left = (lo % 2 == 1).then(|| lo - 1);
    let right = (hi.is_multiple_of(2) && hi + 1 < n).then_some(hi + 1);
    (left, right)
}
