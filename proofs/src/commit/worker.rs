//! Leaf hashes and row storage, a block of rows at a time, in the order
//! the sink completed the blocks (run by the sink's hashing jobs, off the
//! decode path).

use std::time::{Duration, Instant};

use super::CommitError;
use super::store::{BlockStore, StoredBlock};
use crate::merkle::{DType, Hash, RowGroup, leaf_hash_words};

/// A full block of [`crate::RowGroup::block`] rows of one layer's row group, or
/// the shorter last block of a trace: what one leaf hashes.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) group: RowGroup,
    pub(crate) layer: u32,
    pub(crate) first_pos: u32,
    /// 32-bit words per row (f16 rows take half their width).
    pub(crate) width: usize,
    /// The rows, one after the other, as the group's element type keeps
    /// them (f32 values, or f16 two to a word).
    pub(crate) rows: Vec<f32>,
    /// How many of them were recorded one position at a time (a decode
    /// step's rows), for [`super::CommitCost`]'s decode shares.
    pub(crate) decode_rows: usize,
}

/// One layer's row group, as hashed so far: a leaf and a stored block per
/// block of positions, in position order.
#[derive(Debug, Default)]
pub(crate) struct HashedGroup {
    pub(crate) leaves: Vec<Hash>,
    pub(crate) blocks: Vec<StoredBlock>,
}

/// Everything the hashing jobs built.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// Output rows, per layer.
    pub(crate) outputs: Vec<HashedGroup>,
    /// Key/value rows, per layer.
    pub(crate) key_values: Vec<HashedGroup>,
    pub(crate) store: BlockStore,
    /// The first error; blocks after it are dropped.
    pub(crate) error: Option<CommitError>,
}

/// Takes blocks in the order the sink completed them and builds the leaves
/// and the block store.
#[derive(Debug)]
pub(crate) struct Absorber {
    out: Recorded,
    dtype: DType,
}

impl Absorber {
    pub(crate) fn new(dtype: DType, store: BlockStore) -> Self {
        Self {
            out: Recorded {
                outputs: Vec::new(),
                key_values: Vec::new(),
                store,
                error: None,
            },
            dtype,
        }
    }

    /// Hashes and stores `blocks`, the next ones in completion order (each
    /// row group's blocks arrive in position order). Returns the decode
    /// rows' share of the time it took: each block's time in the
    /// proportion of its rows recorded one position at a time.
    pub(crate) fn absorb(&mut self, blocks: Vec<Block>) -> Duration {
        let mut decode = Duration::ZERO;
        for block in blocks {
            if self.out.error.is_some() {
                break;
            }
            let started = Instant::now();
            let count = block.rows.len() / block.width.max(1);
            let decode_rows = block.decode_rows.min(count);
            // At most a block of rows (64).
            let leaf = leaf_hash_words(
                block.group,
                block.layer,
                block.first_pos,
                count as u32,
                self.dtype,
                &block.rows,
            );
            let groups = match block.group {
                RowGroup::Output => &mut self.out.outputs,
                RowGroup::KeyValue => &mut self.out.key_values,
            };
            let layer = block.layer as usize;
            if groups.len() <= layer {
                groups.resize_with(layer + 1, HashedGroup::default);
            }
            match self.out.store.push(block.rows, block.width) {
                Ok(stored) => {
                    groups[layer].leaves.push(leaf);
                    groups[layer].blocks.push(stored);
                }
                Err(e) => self.out.error = Some(CommitError::Spill(e)),
            }
            if decode_rows > 0 {
                // At most a block of rows: the factors fit in u32.
                decode += started.elapsed() * decode_rows as u32 / count as u32;
            }
        }
        decode
    }

    /// Records that absorbing panicked; nothing after it is absorbed.
    pub(crate) fn poison(&mut self) {
        self.out.error.get_or_insert(CommitError::WorkerPanicked);
    }

    /// Seals the store: everything recorded is in.
    pub(crate) fn seal(mut self) -> Recorded {
        if self.out.error.is_none()
            && let Err(e) = self.out.store.seal()
        {
            self.out.error = Some(CommitError::Spill(e));
        }
        self.out
    }
}
