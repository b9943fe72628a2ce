//! The hashing thread: leaf hashes and row storage, off the decode path.

use std::sync::mpsc::Receiver;
use std::time::Duration;

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

/// Everything the thread built.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) layers: Vec<LayerTrace>,
    pub(crate) kv_layers: Vec<LayerTrace>,
    /// Width of the key/value rows (the first `record_kv` call sets it).
    pub(crate) kv_width: Option<usize>,
    pub(crate) store: RowStore,
    /// The first error; batches after it are drained and dropped.
    pub(crate) error: Option<CommitError>,
    /// CPU time of this thread, where the OS reports it.
    pub(crate) cpu: Option<Duration>,
}

/// CPU time the calling thread has run, from Linux's
/// `/proc/thread-self/schedstat` (nanoseconds); `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = stat.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs until every sender is gone.
pub(crate) fn run(rx: Receiver<Vec<Batch>>, d: usize, dtype: DType, store: RowStore) -> Recorded {
    let cpu_at_start = thread_cpu();
    let mut out = Recorded {
        layers: Vec::new(),
        kv_layers: Vec::new(),
        kv_width: None,
        store,
        error: None,
        cpu: None,
    };
    for batch in rx.into_iter().flatten() {
        if out.error.is_none()
            && let Err(e) = absorb(&mut out, d, dtype, batch)
        {
            out.error = Some(e);
        }
    }
    if let Some(width) = out.kv_width {
        for (layer, lt) in out.kv_layers.iter_mut().enumerate() {
            // Layers fit in u32: `absorb` checked each one.
            let end = lt.start + lt.positions();
            lt.flush_kv(layer as u32, dtype, width, end);
        }
    }
    if out.error.is_none()
        && let Err(e) = out.store.seal()
    {
        out.error = Some(CommitError::Spill(e));
    }
    out.cpu = cpu_at_start
        .zip(thread_cpu())
        .map(|(a, b)| b.saturating_sub(a));
    out
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
