//! [`BenchHashSink`]: the benchmark's stand-in for `forge-proofs`'
//! `CommitmentSink`.
//!
//! It does the work that dominates a trace commitment (DESIGN.md section 4)
//! so that `forge-bench` can measure what attaching one costs the decode
//! loop: every row the engine hands over is copied onto a bounded
//! [`std::sync::mpsc::sync_channel`] and a worker thread hashes each row into
//! a leaf. Rows are sent in batches of at least [`FLUSH_ROWS`] rows (a
//! prefill's layer, or several decode steps), so that waking the worker is
//! rare, and the worker hands the emptied buffers back for reuse, so that
//! copying rows does not page-fault fresh memory. Leaf = `blake3` in derive-key mode with the context [`LEAF_CONTEXT`] over
//! `(row bytes, layer u32 LE, position u64 LE, dtype name)`, the row first as in
//! the real leaf. It builds no
//! Merkle tree and its leaf encoding is not normative. Like the real sink it
//! also takes every layer's key/value rows (`record_kv`); their leaves mark
//! the layer with [`KV_LAYER_FLAG`].

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forge_engine::{TRACE_DTYPE, TraceSink};

/// Domain of the stand-in's leaf hashes (blake3 derive-key context).
pub const LEAF_CONTEXT: &str = "forge.act.v2";

/// Set in the layer field of a key/value row's leaf.
pub const KV_LAYER_FLAG: u32 = 1 << 31;

/// Default bound of the channel, in batches.
pub const DEFAULT_CHANNEL_BOUND: usize = 64;

/// Pending rows that trigger a send: about 8 decode steps of a 30-layer
/// model; a prefill of more rows than this is sent layer by layer.
pub const FLUSH_ROWS: usize = 256;

/// Rows of several `record` calls: `(layer, first_pos, rows, width)`
/// segments over one flat buffer.
/// Leaves, bytes hashed, time spent hashing.
type WorkerResult = (Vec<[u8; 32]>, u64, Duration);

#[derive(Default)]
struct Batch {
    segments: Vec<(u32, u64, usize, usize)>,
    rows: Vec<f32>,
}

/// What the worker did, returned by [`BenchHashSink::finish`].
#[derive(Clone, Debug)]
pub struct HashSummary {
    /// Rows hashed (leaves).
    pub leaves: usize,
    /// Bytes of rows hashed.
    pub bytes: u64,
    /// blake3 of all leaves in arrival order (a checksum, not a Merkle root).
    pub digest: [u8; 32],
    /// Time the worker spent hashing.
    pub hash_time: Duration,
    /// Time [`BenchHashSink::finish`] waited for the worker to drain.
    pub drain_time: Duration,
    /// Time spent in [`TraceSink::record`] on the engine's thread (copying
    /// rows, sending, waiting on a full channel): the sink's cost on the
    /// critical path.
    pub record_time: Duration,
}

/// A [`TraceSink`] that hashes every row on a worker thread (see the module
/// docs). Dropping it without [`finish`](Self::finish) still joins the worker.
pub struct BenchHashSink {
    d_model: usize,
    pending: Batch,
    recycled: Receiver<Vec<f32>>,
    tx: Option<SyncSender<Batch>>,
    worker: Option<JoinHandle<WorkerResult>>,
    record_time: Duration,
}

impl std::fmt::Debug for BenchHashSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchHashSink")
            .field("d_model", &self.d_model)
            .finish_non_exhaustive()
    }
}

impl BenchHashSink {
    /// A sink for rows of `d_model` floats whose channel holds at most
    /// `bound` batches (a full channel blocks the engine).
    pub fn new(d_model: usize, bound: usize) -> Self {
        assert!(d_model > 0, "d_model must be positive");
        let (tx, rx) = sync_channel::<Batch>(bound);
        let (back_tx, recycled) = channel::<Vec<f32>>();
        let worker = std::thread::Builder::new()
            .name("bench-hash-sink".into())
            .spawn(move || hash_worker(rx, back_tx, d_model))
            .expect("spawn the hashing thread");
        Self {
            d_model,
            pending: Batch::default(),
            recycled,
            tx: Some(tx),
            worker: Some(worker),
            record_time: Duration::ZERO,
        }
    }

    /// Time spent in `record` so far (see [`HashSummary::record_time`]).
    pub fn record_time(&self) -> Duration {
        self.record_time
    }

    /// Close the channel, wait for the worker to hash what is pending, and
    /// report.
    pub fn finish(mut self) -> HashSummary {
        let t = Instant::now();
        self.flush();
        drop(self.tx.take());
        let (leaves, bytes, hash_time) = self
            .worker
            .take()
            .map(|w| w.join().expect("hashing thread panicked"))
            .unwrap_or_default();
        let drain_time = t.elapsed();
        let mut h = blake3::Hasher::new();
        leaves.iter().for_each(|l| {
            h.update(l);
        });
        HashSummary {
            leaves: leaves.len(),
            bytes,
            digest: *h.finalize().as_bytes(),
            hash_time,
            drain_time,
            record_time: self.record_time,
        }
    }
}

impl BenchHashSink {
    fn flush(&mut self) {
        if self.pending.segments.is_empty() {
            return;
        }
        let rows = self.recycled.try_recv().unwrap_or_default();
        let batch = std::mem::replace(
            &mut self.pending,
            Batch {
                segments: Vec::new(),
                rows,
            },
        );
        if let Some(tx) = &self.tx {
            // A send fails only if the worker died; `finish` reports that.
            let _ = tx.send(batch);
        }
    }
}

impl Drop for BenchHashSink {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl TraceSink for BenchHashSink {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        self.push(layer as u32, first_pos, self.d_model, rows);
    }

    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        self.push(layer as u32 | KV_LAYER_FLAG, first_pos, width, rows);
    }
}

impl BenchHashSink {
    fn push(&mut self, layer: u32, first_pos: usize, width: usize, rows: &[f32]) {
        debug_assert!(width > 0 && rows.len().is_multiple_of(width));
        let t = Instant::now();
        self.pending
            .segments
            .push((layer, first_pos as u64, rows.len() / width.max(1), width));
        self.pending.rows.extend_from_slice(rows);
        if self.pending.rows.len() >= FLUSH_ROWS * self.d_model {
            self.flush();
        }
        self.record_time += t.elapsed();
    }
}

/// The leaf of one row (see the module docs).
pub fn leaf_hash(layer: u32, pos: u64, row: &[f32], scratch: &mut Vec<u8>) -> [u8; 32] {
    scratch.clear();
    for x in row {
        scratch.extend_from_slice(&x.to_le_bytes());
    }
    scratch.extend_from_slice(&layer.to_le_bytes());
    scratch.extend_from_slice(&pos.to_le_bytes());
    scratch.extend_from_slice(TRACE_DTYPE.as_bytes());
    let mut h = blake3::Hasher::new_derive_key(LEAF_CONTEXT);
    h.update(scratch);
    *h.finalize().as_bytes()
}

fn hash_worker(rx: Receiver<Batch>, back: Sender<Vec<f32>>, d_model: usize) -> WorkerResult {
    let mut leaves = Vec::new();
    let mut bytes = 0u64;
    let mut busy = Duration::ZERO;
    let mut scratch = Vec::with_capacity(16 + d_model * 4);
    for batch in rx {
        let t = Instant::now();
        let mut offset = 0;
        for (layer, first_pos, n, width) in batch.segments {
            let segment = &batch.rows[offset..offset + n * width];
            offset += n * width;
            for (i, row) in segment.chunks_exact(width).enumerate() {
                leaves.push(leaf_hash(layer, first_pos + i as u64, row, &mut scratch));
                bytes += (row.len() * 4) as u64;
            }
        }
        let mut rows = batch.rows;
        rows.clear();
        // The sink may be gone already (finish); then the buffer is dropped.
        let _ = back.send(rows);
        busy += t.elapsed();
    }
    (leaves, bytes, busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_every_row_in_order() {
        let d = 4;
        let mut sink = BenchHashSink::new(d, 2);
        // A prefill of 300 rows per layer, then decode steps of one row.
        let block: Vec<f32> = (0..300 * d).map(|i| i as f32).collect();
        for layer in 0..5 {
            sink.record(layer, 0, &block);
        }
        for pos in 300..400 {
            for layer in 0..5 {
                sink.record(layer, pos, &[pos as f32 + layer as f32; 4]);
            }
        }
        let s = sink.finish();
        assert_eq!(s.leaves, 5 * 400);
        assert_eq!(s.bytes, 5 * 400 * 16);
        let mut scratch = Vec::new();
        let mut h = blake3::Hasher::new();
        for layer in 0..5u32 {
            for (i, r) in block.chunks_exact(d).enumerate() {
                h.update(&leaf_hash(layer, i as u64, r, &mut scratch));
            }
        }
        for pos in 300..400u64 {
            for layer in 0..5u32 {
                h.update(&leaf_hash(
                    layer,
                    pos,
                    &[pos as f32 + layer as f32; 4],
                    &mut scratch,
                ));
            }
        }
        assert_eq!(s.digest, *h.finalize().as_bytes());
    }

    #[test]
    fn key_value_rows_of_another_width_are_hashed_too() {
        let mut sink = BenchHashSink::new(4, 2);
        for pos in 0..3 {
            sink.record_kv(0, pos, 6, &[pos as f32; 6]);
            sink.record(0, pos, &[pos as f32; 4]);
        }
        let s = sink.finish();
        assert_eq!((s.leaves, s.bytes), (6, 3 * (6 + 4) * 4));
        let mut scratch = Vec::new();
        let mut h = blake3::Hasher::new();
        for pos in 0..3u64 {
            h.update(&leaf_hash(
                KV_LAYER_FLAG,
                pos,
                &[pos as f32; 6],
                &mut scratch,
            ));
            h.update(&leaf_hash(0, pos, &[pos as f32; 4], &mut scratch));
        }
        assert_eq!(s.digest, *h.finalize().as_bytes());
    }

    #[test]
    fn leaves_depend_on_position_and_layer() {
        let mut s = Vec::new();
        let row = [1.0f32; 4];
        let a = leaf_hash(0, 0, &row, &mut s);
        assert_ne!(a, leaf_hash(1, 0, &row, &mut s));
        assert_ne!(a, leaf_hash(0, 1, &row, &mut s));
    }
}
