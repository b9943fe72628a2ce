//! Errors of Merkle trees and range proofs.

use thiserror::Error;

use super::Hash;

/// Why a range could not be proved or a range proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MerkleError {
    /// The tree (or the claimed tree) has no leaves.
    #[error("the tree has no leaves")]
    EmptyTree,
    /// The range holds no leaves.
    #[error("the range is empty")]
    EmptyRange,
    /// The range does not lie inside the tree.
    #[error("range {first}..={last} is outside a tree of {n_leaves} leaves")]
    OutOfBounds {
        /// First leaf index of the range.
        first: u64,
        /// Last leaf index of the range.
        last: u64,
        /// Leaves in the tree.
        n_leaves: u64,
    },
    /// An opening does not cover whole blocks of positions.
    #[error("rows from position {first} ({rows} rows) are not whole blocks of {block} positions")]
    Unaligned {
        /// Position of the first row.
        first: u64,
        /// Rows opened.
        rows: u64,
        /// Positions per leaf of the opened row group.
        block: u64,
    },
    /// The proof has fewer sibling hashes than the range needs.
    #[error("the proof is missing sibling hashes (it has {provided})")]
    MissingSiblings {
        /// Siblings in the proof.
        provided: u64,
    },
    /// The proof has more sibling hashes than the range needs.
    #[error("the proof has {extra} sibling hashes too many")]
    ExtraSiblings {
        /// Siblings left over.
        extra: u64,
    },
    /// The opening's element type is not the one the receipt's dtype keeps
    /// its row group in.
    #[error("rows opened as {received:?}, the trace keeps this group as {expected:?}")]
    WrongElem {
        /// The dtype's element type for the group.
        expected: super::Elem,
        /// The opening's.
        received: super::Elem,
    },
    /// A row of a group kept in f16 holds a value that no f16 widens to.
    #[error("element {index} of the rows is not an f16 value (the group is kept in f16)")]
    NotF16 {
        /// Index of the element among the rows' values.
        index: u64,
    },
    /// Opened rows whose values are not whole rows of their width (or of
    /// width 0).
    #[error("{values} values are not whole rows of {width}")]
    RaggedRows {
        /// Values given.
        values: u64,
        /// Values per row.
        width: u64,
    },
    /// The recomputed root differs from the expected one.
    #[error(
        "root mismatch: expected {}, computed {}",
        crate::hex::encode(expected),
        crate::hex::encode(computed)
    )]
    RootMismatch {
        /// The root the verifier trusts.
        expected: Hash,
        /// The root the range and proof give.
        computed: Hash,
    },
}
