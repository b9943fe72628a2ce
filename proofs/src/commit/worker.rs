//! Leaf hashes and row storage, in recording order (run by the sink's
//! hashing jobs, off the decode path).

use super::CommitError;
use super::store::{RowStore, Slot};
use crate::merkle::{DType, Hash, KV_BLOCK, kv_leaf_hash, leaf_hash};

/// Which rows a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKind {
    /// A layer's output rows (`record`).
    Activation,
    /// A layer's `[k | v]` rows (`record_kv`).
    KeyValue,
}

/// Rows of one `record` or `record_kv` call.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) kind: RowKind,
    pub(crate) layer: usize,
    pub(crate) first_pos: usize,
    pub(crate) width: usize,
    pub(crate) rows: Vec<f32>,
}

/// What one layer received: positions `start..start + slots.len()`.
///
/// Output rows get one leaf each; key/value rows one leaf per block of
/// [`KV_BLOCK`] positions from `start`, hashed once the block is full (or
/// the trace ends), from the rows waiting in `pending`.
#[derive(Debug, Default)]
pub(crate) struct LayerTrace {
    pub(crate) start: usize,
    pub(crate) leaves: Vec<Hash>,
    pub(crate) slots: Vec<Slot>,
    pending: Vec<f32>,
}

impl LayerTrace {
    /// Positions recorded.
    pub(crate) fn positions(&self) -> usize {
        self.slots.len()
    }

    /// Hashes the waiting key/value rows (`width` floats each, the last at
    /// position `end - 1`) into a leaf.
    fn flush_kv(&mut self, layer: u32, dtype: DType, width: usize, end: usize) {
        if self.pending.is_empty() {
            return;
        }
        let n = self.pending.len() / width;
        // Positions fit in u32: `absorb` checked every batch's last one.
        let first = (end - n) as u32;
        let rows: Vec<&[f32]> = self.pending.chunks_exact(width).collect();
        self.leaves.push(kv_leaf_hash(layer, first, dtype, &rows));
        self.pending.clear();
    }
}

/// Everything the hashing jobs built.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) layers: Vec<LayerTrace>,
    pub(crate) kv_layers: Vec<LayerTrace>,
    /// Width of the key/value rows (the first `record_kv` call sets it).
    pub(crate) kv_width: Option<usize>,
    pub(crate) store: RowStore,
    /// The first error; batches after it are dropped.
    pub(crate) error: Option<CommitError>,
}

/// Takes batches in the order the engine recorded them and builds the
/// leaves and the row store.
#[derive(Debug)]
pub(crate) struct Absorber {
    out: Recorded,
    d: usize,
    dtype: DType,
}

impl Absorber {
    pub(crate) fn new(d: usize, dtype: DType, store: RowStore) -> Self {
        Self {
            out: Recorded {
                layers: Vec::new(),
                kv_layers: Vec::new(),
                kv_width: None,
                store,
                error: None,
            },
            d,
            dtype,
        }
    }

    /// Hashes and stores `batches`, the next ones in recording order.
    pub(crate) fn absorb(&mut self, batches: Vec<Batch>) {
        for batch in batches {
            if self.out.error.is_none()
                && let Err(e) = absorb(&mut self.out, self.d, self.dtype, batch)
            {
                self.out.error = Some(e);
            }
        }
    }

    /// Records that absorbing panicked; nothing after it is absorbed.
    pub(crate) fn poison(&mut self) {
        self.out.error.get_or_insert(CommitError::WorkerPanicked);
    }

    /// Hashes the key/value rows still waiting for a full block and seals
    /// the store: everything recorded is in.
    pub(crate) fn seal(mut self) -> Recorded {
        let out = &mut self.out;
        if let Some(width) = out.kv_width {
            for (layer, lt) in out.kv_layers.iter_mut().enumerate() {
                // Layers fit in u32: `absorb` checked each one.
                let end = lt.start + lt.positions();
                lt.flush_kv(layer as u32, self.dtype, width, end);
            }
        }
        if out.error.is_none()
            && let Err(e) = out.store.seal()
        {
            out.error = Some(CommitError::Spill(e));
        }
        self.out
    }
}

fn absorb(out: &mut Recorded, d: usize, dtype: DType, batch: Batch) -> Result<(), CommitError> {
    let Batch {
        kind,
        layer,
        first_pos,
        width,
        rows,
    } = batch;
    let (expected, traces) = match kind {
        RowKind::Activation => (d, &mut out.layers),
        RowKind::KeyValue => (*out.kv_width.get_or_insert(width), &mut out.kv_layers),
    };
    if expected == 0 || width != expected || rows.len() % expected != 0 {
        return Err(CommitError::RaggedRows {
            layer,
            len: rows.len(),
            width: expected,
        });
    }
    if traces.len() <= layer {
        traces.resize_with(layer + 1, LayerTrace::default);
    }
    let lt = &mut traces[layer];
    if lt.slots.is_empty() {
        lt.start = first_pos;
    } else if first_pos != lt.start + lt.positions() {
        return Err(CommitError::OutOfOrder {
            layer,
            expected: lt.start + lt.positions(),
            got: first_pos,
        });
    }
    let n = rows.len() / expected;
    let layer32 = u32::try_from(layer).map_err(|_| CommitError::TooLarge {
        layer,
        pos: first_pos,
    })?;
    let last = first_pos.checked_add(n).and_then(|e| u32::try_from(e).ok());
    if last.is_none() {
        return Err(CommitError::TooLarge {
            layer,
            pos: first_pos.saturating_add(n),
        });
    }
    for (i, row) in rows.chunks_exact(expected).enumerate() {
        match kind {
            RowKind::Activation => {
                let pos = (first_pos + i) as u32; // < `last`, which fits in u32
                lt.leaves.push(leaf_hash(layer32, pos, dtype, row));
            }
            RowKind::KeyValue => {
                lt.pending.extend_from_slice(row);
                if lt.pending.len() == KV_BLOCK * expected {
                    lt.flush_kv(layer32, dtype, expected, first_pos + i + 1);
                }
            }
        }
    }
    let slots = out
        .store
        .push_rows(rows, expected)
        .map_err(CommitError::Spill)?;
    lt.slots.extend(slots);
    Ok(())
}
