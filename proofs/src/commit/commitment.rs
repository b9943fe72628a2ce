//! The finished commitment: the Merkle tree and the rows behind it.

use std::time::Duration;

use super::store::{RowStore, Slot};
use super::worker::Recorded;
use super::{CommitError, RangeOpening};
use crate::merkle::{DType, Hash, KV_BLOCK, MerkleTree, RangeProof, kv_blocks, kv_rows_covering};

/// A Merkle commitment to every layer's output rows and every layer's key
/// and value rows at every forwarded position.
///
/// The tree has `2 L` row groups, layer-major: group `l < L` holds the `T`
/// output rows of layer `l`, one leaf each (leaf `l * T + (pos - start)`);
/// group `L + l` holds the `[k | v]` rows of layer `l`, one leaf per block
/// of [`KV_BLOCK`] positions from `start` (`B = ceil(T / KV_BLOCK)` leaves,
/// leaf `L * T + l * B + (pos - start) / KV_BLOCK`). The rows are kept (in
/// memory or spilled to a temp file) so that any range can be opened later.
#[derive(Debug)]
pub struct Commitment {
    tree: MerkleTree,
    layers: usize,
    start: usize,
    positions: usize,
    d_model: usize,
    kv_width: usize,
    dtype: DType,
    slots: Vec<Slot>,
    store: RowStore,
    cost: CommitCost,
}

/// What building a commitment cost, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCost {
    /// Time the engine's thread spent handing rows to the sink (copying
    /// and queueing them), not counting `hashing_inline`.
    pub engine_thread: Duration,
    /// Time spent hashing and storing rows (leaf hashes, row storage):
    /// the sum of every hashing job's run, on whichever thread ran it (the
    /// engine's rayon pool, or `finish`). Jobs are short, so this is close
    /// to their CPU time.
    pub hashing: Duration,
    /// Of `hashing`, what the engine's thread did itself inside `record`
    /// because more groups waited than the sink's capacity (a pool too busy,
    /// or with one thread). With `engine_thread`, the commitment's share of
    /// the decode loop's critical path; `engine_thread + hashing` is its
    /// whole cost.
    pub hashing_inline: Duration,
    /// Wall time of `CommitmentSink::finish`: absorbing what the jobs had
    /// not and building the Merkle tree, after the generation.
    pub finish: Duration,
}

impl Commitment {
    pub(crate) fn build(
        d_model: usize,
        dtype: DType,
        recorded: Recorded,
    ) -> Result<Self, CommitError> {
        let Recorded {
            layers,
            kv_layers,
            kv_width,
            store,
            ..
        } = recorded;
        let first = layers
            .first()
            .filter(|l| l.positions() > 0)
            .ok_or(CommitError::Empty)?;
        let (start, positions) = (first.start, first.positions());
        if kv_layers.len() != layers.len() {
            return Err(CommitError::MissingKeyValues {
                layers: layers.len(),
                kv_layers: kv_layers.len(),
            });
        }
        let groups = layers
            .iter()
            .map(|l| ("rows", l))
            .chain(kv_layers.iter().map(|l| ("keys/values", l)));
        for (i, (rows, lt)) in groups.enumerate() {
            if lt.start != start || lt.positions() != positions {
                return Err(CommitError::Uneven {
                    rows,
                    layer: i % layers.len(),
                    start: lt.start,
                    end: lt.start + lt.positions(),
                    expected_start: start,
                    expected_end: start + positions,
                });
            }
        }
        let n_layers = layers.len();
        let mut leaves = Vec::with_capacity(n_layers * (positions + kv_blocks(positions)));
        let mut slots = Vec::with_capacity(2 * n_layers * positions);
        for lt in layers.into_iter().chain(kv_layers) {
            leaves.extend(lt.leaves);
            slots.extend(lt.slots);
        }
        Ok(Self {
            tree: MerkleTree::from_leaves(leaves),
            layers: n_layers,
            start,
            positions,
            d_model,
            kv_width: kv_width.unwrap_or(0),
            dtype,
            slots,
            store,
            cost: CommitCost::default(),
        })
    }

    /// The activation root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Layers committed (L).
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Positions committed per layer (T).
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// First committed position (0 unless a cached prefix was reused).
    pub fn start(&self) -> usize {
        self.start
    }

    /// What building this commitment cost (zero for one not built by a sink).
    pub fn cost(&self) -> CommitCost {
        self.cost
    }

    pub(crate) fn set_cost(&mut self, cost: CommitCost) {
        self.cost = cost;
    }

    /// Row width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Width of the `[k | v]` rows (`2 * kv_dim`).
    pub fn kv_width(&self) -> usize {
        self.kv_width
    }

    /// Element type of the rows.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The Merkle tree over the leaves.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Rows that did not fit the memory bound and live in the spill file.
    pub fn spilled_rows(&self) -> u64 {
        self.store.spilled_rows()
    }

    /// Leaf index of row `pos` of `layer`'s output.
    pub fn leaf_index(&self, layer: usize, pos: usize) -> Result<usize, CommitError> {
        self.check(layer, pos, pos)?;
        Ok(layer * self.positions + (pos - self.start))
    }

    /// Leaf index of the key/value block that holds row `pos` of `layer`.
    pub fn kv_leaf_index(&self, layer: usize, pos: usize) -> Result<usize, CommitError> {
        self.check(layer, pos, pos)?;
        Ok(self.layers * self.positions
            + layer * kv_blocks(self.positions)
            + (pos - self.start) / KV_BLOCK)
    }

    /// The committed output row `pos` of `layer`.
    pub fn row(&self, layer: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        self.check(layer, pos, pos)?;
        self.read_row(layer, pos)
    }

    /// The committed `[k | v]` row `pos` of `layer`.
    pub fn kv_row(&self, layer: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        self.check(layer, pos, pos)?;
        self.read_row(self.layers + layer, pos)
    }

    /// Output rows `first_pos..=last_pos` of `layer` with the proof that
    /// they are the committed ones.
    pub fn open_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.check(layer, first_pos, last_pos)?;
        let a = self.leaf_index(layer, first_pos)?;
        let proof = self.tree.prove_range(a, a + (last_pos - first_pos))?;
        self.opening(layer, first_pos, last_pos, proof)
    }

    /// `[k | v]` rows `first_pos..=last_pos` of `layer`, widened to whole
    /// key/value blocks (from the start of `first_pos`'s block to the end of
    /// `last_pos`'s, or the trace's end), with the proof that they are the
    /// committed ones (row group `L + layer`).
    pub fn open_kv_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.check(layer, first_pos, last_pos)?;
        let first = self.start + (first_pos - self.start) / KV_BLOCK * KV_BLOCK;
        let last = self.start + kv_rows_covering(last_pos - self.start + 1, self.positions) - 1;
        let (a, b) = (
            self.kv_leaf_index(layer, first)?,
            self.kv_leaf_index(layer, last)?,
        );
        let proof = self.tree.prove_range(a, b)?;
        self.opening(self.layers + layer, first, last, proof)
    }

    /// Rows `first..=last` of row group `group` (its rows are stored one
    /// slot per position, group after group, like the groups of the tree).
    fn opening(
        &self,
        group: usize,
        first: usize,
        last: usize,
        proof: RangeProof,
    ) -> Result<RangeOpening, CommitError> {
        let rows = (first..=last)
            .map(|pos| self.read_row(group, pos))
            .collect::<Result<Vec<_>, _>>()?;
        // `check` bounded layer and positions by the committed ones, which
        // fit in u32, and groups are fewer than 2 L.
        Ok(RangeOpening {
            layer: group as u32,
            first_pos: first as u32,
            rows,
            proof,
        })
    }

    /// Row `pos` of row group `group`; `check` must have passed.
    fn read_row(&self, group: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        let width = if group < self.layers {
            self.d_model
        } else {
            self.kv_width
        };
        let slot = self.slots[group * self.positions + (pos - self.start)];
        self.store.read(slot, width).map_err(CommitError::Spill)
    }

    fn check(&self, layer: usize, first: usize, last: usize) -> Result<(), CommitError> {
        let end = self.start + self.positions;
        if layer < self.layers && first <= last && first >= self.start && last < end {
            Ok(())
        } else {
            Err(CommitError::NotCommitted {
                layer,
                first,
                last,
                layers: self.layers,
                start: self.start,
                end,
            })
        }
    }
}
