//! The finished commitment: the Merkle tree and the rows behind it.

use super::store::{RowStore, Slot};
use super::worker::Recorded;
use super::{CommitError, RangeOpening};
use crate::merkle::{DType, Hash, MerkleTree};

/// A Merkle commitment to every layer's output rows and every layer's key
/// and value rows at every forwarded position.
///
/// The tree has `2 L` row groups of `T` leaves each, layer-major: group `l <
/// L` holds the output rows of layer `l`, group `L + l` the `[k | v]` rows
/// of layer `l`. Leaf `g * positions + (pos - start)` is row `pos` of group
/// `g`. The rows are kept (in memory or spilled to a temp file) so that any
/// range can be opened later.
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
            .filter(|l| !l.leaves.is_empty())
            .ok_or(CommitError::Empty)?;
        let (start, positions) = (first.start, first.leaves.len());
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
            if lt.start != start || lt.leaves.len() != positions {
                return Err(CommitError::Uneven {
                    rows,
                    layer: i % layers.len(),
                    start: lt.start,
                    end: lt.start + lt.leaves.len(),
                    expected_start: start,
                    expected_end: start + positions,
                });
            }
        }
        let n_layers = layers.len();
        let mut leaves = Vec::with_capacity(2 * n_layers * positions);
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

    /// The committed output row `pos` of `layer`.
    pub fn row(&self, layer: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        let i = self.leaf_index(layer, pos)?;
        self.store
            .read(self.slots[i], self.d_model)
            .map_err(CommitError::Spill)
    }

    /// The committed `[k | v]` row `pos` of `layer`.
    pub fn kv_row(&self, layer: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        let i = self.leaf_index(layer, pos)? + self.layers * self.positions;
        self.store
            .read(self.slots[i], self.kv_width)
            .map_err(CommitError::Spill)
    }

    /// Output rows `first_pos..=last_pos` of `layer` with the proof that
    /// they are the committed ones.
    pub fn open_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.open_group(layer, layer, first_pos, last_pos, self.d_model)
    }

    /// `[k | v]` rows `first_pos..=last_pos` of `layer` with the proof that
    /// they are the committed ones (row group `L + layer`).
    pub fn open_kv_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.open_group(
            layer,
            self.layers + layer,
            first_pos,
            last_pos,
            self.kv_width,
        )
    }

    fn open_group(
        &self,
        layer: usize,
        group: usize,
        first_pos: usize,
        last_pos: usize,
        width: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.check(layer, first_pos, last_pos)?;
        let a = group * self.positions + (first_pos - self.start);
        let b = a + (last_pos - first_pos);
        let proof = self.tree.prove_range(a, b)?;
        let rows = (a..=b)
            .map(|i| {
                self.store
                    .read(self.slots[i], width)
                    .map_err(CommitError::Spill)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // `check` bounded layer and positions by the committed ones, which fit in u32.
        Ok(RangeOpening {
            layer: group as u32,
            first_pos: first_pos as u32,
            rows,
            proof,
        })
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
