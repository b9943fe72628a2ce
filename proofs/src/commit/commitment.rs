//! The finished commitment: the Merkle tree and the rows behind it.

use std::borrow::Cow;
use std::time::Duration;

use half::slice::HalfBitsSliceExt;

use super::recycle;
use super::store::{BlockStore, StoredBlock};
use super::worker::{HashedGroup, Recorded};
use super::{CommitError, OpenedRows, RangeOpening, Values};
use crate::merkle::{DType, Elem, Hash, MerkleTree, RowGroup, TreeLayout, rows_covering};

/// A Merkle commitment to every layer's output rows and every layer's key
/// and value rows at every forwarded position.
///
/// The tree has `2 L` row groups, layer-major: group `l < L` holds the `T`
/// output rows of layer `l`, group `L + l` its `[k | v]` rows. Each group
/// has one leaf per block of its kind's [`RowGroup::block`] positions from
/// `start` ([`crate::OUTPUT_BLOCK`] for output rows, [`crate::KV_BLOCK`] for
/// keys and values): `B_o = ceil(T / 16)` leaves per output group, then
/// `B_kv = ceil(T / 64)` per key/value group, so row `pos` of output group
/// `l` is in leaf `l * B_o + (pos - start) / 16` and key/value row `pos` of
/// layer `l` in leaf `L * B_o + l * B_kv + (pos - start) / 64`. The rows are
/// kept (in memory or spilled to a temp file) so that any range can be
/// opened later.
#[derive(Debug)]
pub struct Commitment {
    tree: MerkleTree,
    layers: usize,
    start: usize,
    positions: usize,
    d_model: usize,
    kv_width: usize,
    dtype: DType,
    /// Every group's blocks, in leaf order.
    blocks: Vec<StoredBlock>,
    layout: TreeLayout,
    store: BlockStore,
    cost: CommitCost,
}

/// What the sink received: the row widths and, per layer, the positions
/// `start..end` of its output rows and of its key/value rows.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) d_model: usize,
    pub(crate) kv_width: usize,
    pub(crate) outputs: Vec<(usize, usize)>,
    pub(crate) key_values: Vec<(usize, usize)>,
}

/// What building a commitment cost, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCost {
    /// Time spent in the sink's calls that hand rows over (copying and
    /// queueing them), not counting `hashing_inline`; zero unless the sink
    /// was [`crate::SinkOptions::timed`]. The name is older than the CPU
    /// engine's hand-over beside the next layer's products: the calls now
    /// run on whichever pool thread is free, so this is the engine's
    /// critical path only where no thread was.
    pub engine_thread: Duration,
    /// Time spent hashing and storing rows (leaf hashes, row storage):
    /// the sum of every hashing job's run, on whichever thread ran it (the
    /// engine's rayon pool, or `finish`). Jobs are short, so this is close
    /// to their CPU time.
    pub hashing: Duration,
    /// Of `hashing`, what the recording thread did itself inside `record`
    /// because more groups waited than the sink's capacity (a pool too busy,
    /// or with one thread). `engine_thread + hashing` is the commitment's
    /// whole CPU cost.
    pub hashing_inline: Duration,
    /// Wall time of `CommitmentSink::finish`: absorbing what the jobs had
    /// not and building the Merkle tree, after the generation.
    pub finish: Duration,
    /// Of `engine_thread` (so zero unless timed), the calls that handed
    /// over one position's rows:
    /// a decode step's. A prompt comes in one call per layer (per layer
    /// and chunk when a server splits it), so only a one-position prompt,
    /// or chunk, counts here too.
    pub decode_engine_thread: Duration,
    /// Of `hashing`, the decode rows' share: each block's hashing time in
    /// the proportion of its rows handed over one position at a time.
    /// With `decode_engine_thread`, what committing the decode steps cost,
    /// measured apart from the prompt's rows.
    pub decode_hashing: Duration,
}

impl Commitment {
    pub(crate) fn build(
        shape: Shape,
        dtype: DType,
        recorded: Recorded,
    ) -> Result<Self, CommitError> {
        let Recorded {
            mut outputs,
            mut key_values,
            store,
            ..
        } = recorded;
        let (start, end) = shape
            .outputs
            .first()
            .copied()
            .filter(|&(s, e)| e > s)
            .ok_or(CommitError::Empty)?;
        if shape.key_values.len() != shape.outputs.len() {
            return Err(CommitError::MissingKeyValues {
                layers: shape.outputs.len(),
                kv_layers: shape.key_values.len(),
            });
        }
        let spans = (shape.outputs.iter().map(|s| ("rows", s)))
            .chain(shape.key_values.iter().map(|s| ("keys/values", s)));
        for (i, (rows, &(s, e))) in spans.enumerate() {
            if (s, e) != (start, end) {
                return Err(CommitError::Uneven {
                    rows,
                    layer: i % shape.outputs.len(),
                    start: s,
                    end: e,
                    expected_start: start,
                    expected_end: end,
                });
            }
        }
        let (n_layers, positions) = (shape.outputs.len(), end - start);
        let layout = TreeLayout::new(n_layers, positions);
        // Fewer leaves than layers times positions, both usize.
        let n_leaves = layout.n_leaves() as usize;
        let mut leaves = Vec::with_capacity(n_leaves);
        let mut blocks = Vec::with_capacity(n_leaves);
        // A layer no block of reached has an empty group, which fails below.
        outputs.resize_with(n_layers, HashedGroup::default);
        key_values.resize_with(n_layers, HashedGroup::default);
        let kinds = std::iter::repeat_n(RowGroup::Output, n_layers)
            .chain(std::iter::repeat_n(RowGroup::KeyValue, n_layers));
        for (kind, group) in kinds.zip(outputs.into_iter().chain(key_values)) {
            let HashedGroup {
                leaves: l,
                blocks: b,
            } = group;
            // Every group received the same positions, so only a failed
            // job (reported above) leaves one short.
            let per_group = layout.leaves_per_group(kind) as usize;
            if l.len() != per_group || b.len() != per_group {
                return Err(CommitError::WorkerPanicked);
            }
            leaves.extend(l);
            blocks.extend(b);
        }
        Ok(Self {
            tree: MerkleTree::from_leaves(leaves),
            layers: n_layers,
            start,
            positions,
            d_model: shape.d_model,
            kv_width: shape.kv_width,
            dtype,
            blocks,
            layout,
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

    /// Bytes the committed rows take as kept (output rows and key/value
    /// rows of every layer at every position, each in its element type):
    /// what a store of commitments for auditors holds per commitment.
    pub fn row_bytes(&self) -> u64 {
        let (out, kv) = (
            self.dtype.elem(RowGroup::Output),
            self.dtype.elem(RowGroup::KeyValue),
        );
        let per_position = self.d_model * out.size() + self.kv_width * kv.size();
        (self.layers * self.positions * per_position) as u64
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

    /// Leaf index of the block that holds output row `pos` of `layer`.
    pub fn leaf_index(&self, layer: usize, pos: usize) -> Result<usize, CommitError> {
        self.check(layer, pos, pos)?;
        Ok(self.block_index(layer, pos))
    }

    /// Leaf index of the block that holds `[k | v]` row `pos` of `layer`.
    pub fn kv_leaf_index(&self, layer: usize, pos: usize) -> Result<usize, CommitError> {
        self.check(layer, pos, pos)?;
        Ok(self.block_index(self.layers + layer, pos))
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

    /// Output rows `first_pos..=last_pos` of `layer`, widened to whole
    /// blocks (from the start of `first_pos`'s block to the end of
    /// `last_pos`'s, or the trace's end), with the proof that they are the
    /// committed ones.
    pub fn open_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.check(layer, first_pos, last_pos)?;
        self.opening(layer, first_pos, last_pos)
    }

    /// `[k | v]` rows `first_pos..=last_pos` of `layer`, widened to whole
    /// blocks like [`Commitment::open_range`] (row group `L + layer`).
    pub fn open_kv_range(
        &self,
        layer: usize,
        first_pos: usize,
        last_pos: usize,
    ) -> Result<RangeOpening, CommitError> {
        self.check(layer, first_pos, last_pos)?;
        self.opening(self.layers + layer, first_pos, last_pos)
    }

    /// The leaf (and stored block) of row `pos` of row group `group`.
    fn block_index(&self, group: usize, pos: usize) -> usize {
        let block = (pos - self.start) / self.kind(group).block();
        // Below `n_leaves`, which `build` held in a usize.
        self.layout.leaf(group as u64, block as u64) as usize
    }

    /// Which rows group `group` holds.
    fn kind(&self, group: usize) -> RowGroup {
        if group < self.layers {
            RowGroup::Output
        } else {
            RowGroup::KeyValue
        }
    }

    /// Group `group`'s row width and element type.
    fn shape(&self, group: usize) -> (usize, Elem) {
        let kind = self.kind(group);
        let width = match kind {
            RowGroup::Output => self.d_model,
            RowGroup::KeyValue => self.kv_width,
        };
        (width, self.dtype.elem(kind))
    }

    /// Rows `range` of `block` (of group `group`), row after row, in the
    /// element type the group is kept in.
    fn read_rows(
        &self,
        group: usize,
        block: &StoredBlock,
        range: std::ops::Range<usize>,
        into: &mut Values,
    ) -> Result<(), CommitError> {
        let (width, elem) = self.shape(group);
        self.store
            .read_with(block, elem.words(width), range, |words| match into {
                Values::F32(v) => v.extend_from_slice(words),
                // Two f16 to a word, as the sink packed them.
                Values::F16(v) => {
                    v.extend_from_slice(bytemuck::cast_slice::<f32, u16>(words).reinterpret_cast())
                }
            })
            .map_err(CommitError::Spill)
    }

    /// The whole blocks of row group `group` around rows `first..=last`;
    /// `check` must have passed.
    fn opening(
        &self,
        group: usize,
        first: usize,
        last: usize,
    ) -> Result<RangeOpening, CommitError> {
        let kind = self.kind(group);
        let block = kind.block();
        let first = self.start + (first - self.start) / block * block;
        let last = self.start + rows_covering(kind, last - self.start + 1, self.positions) - 1;
        let (a, b) = (
            self.block_index(group, first),
            self.block_index(group, last),
        );
        let proof = self.tree.prove_range(a, b)?;
        let (width, elem) = self.shape(group);
        let mut rows = Values::with_capacity(elem, (last - first + 1) * width);
        for (i, stored) in self.blocks[a..=b].iter().enumerate() {
            let block_first = first + i * block;
            let n = (last + 1 - block_first).min(block);
            self.read_rows(group, stored, 0..n, &mut rows)?;
        }
        // `check` bounded layer and positions by the committed ones, which
        // fit in u32, and groups are fewer than 2 L.
        Ok(RangeOpening {
            layer: group as u32,
            first_pos: first as u32,
            rows: OpenedRows::new(width, rows)?,
            proof,
        })
    }

    /// Row `pos` of row group `group`, as f32 values; `check` must have
    /// passed.
    fn read_row(&self, group: usize, pos: usize) -> Result<Vec<f32>, CommitError> {
        let at = (pos - self.start) % self.kind(group).block();
        let block = &self.blocks[self.block_index(group, pos)];
        let (width, elem) = self.shape(group);
        let mut row = Values::with_capacity(elem, width);
        self.read_rows(group, block, at..at + 1, &mut row)?;
        OpenedRows::new(width, row)?
            .row_f32(0)
            .map(Cow::into_owned)
            .ok_or(CommitError::Spill(std::io::Error::other("empty block")))
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

impl Drop for Commitment {
    /// Hands the blocks kept in memory back to the pool of block buffers,
    /// for the next sinks to fill without faulting in fresh pages.
    fn drop(&mut self) {
        recycle::give(self.blocks.drain(..).filter_map(|b| match b {
            StoredBlock::Memory(rows) => Some(rows),
            StoredBlock::Disk(_) => None,
        }));
    }
}
