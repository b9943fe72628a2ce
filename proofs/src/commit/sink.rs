//! The engine-facing sink: copies rows into a bounded channel.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use forge_engine::TraceSink;

use super::store::RowStore;
use super::worker::{self, Batch, Recorded, RowKind};
use super::{CommitCost, CommitError, Commitment};
use crate::merkle::DType;

/// How a [`CommitmentSink`] buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Bytes of raw rows kept in memory for openings; rows beyond it are
    /// spilled to an anonymous temp file.
    pub memory_limit: usize,
    /// Directory of the spill file (the system temp dir when `None`).
    pub spill_dir: Option<PathBuf>,
    /// `record` calls that may wait in the channel before `record` blocks.
    pub channel_capacity: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            memory_limit: 256 << 20,
            spill_dir: None,
            channel_capacity: 64,
        }
    }
}

/// Rows buffered before one hand-over to the worker. One message per
/// `record` call (30 per decoded token on SmolLM2) wakes the worker that
/// often, and on two busy cores each wake-up costs the engine its core
/// (measured by `forge-bench decode`: 3-13% of decode time); batches of 256
/// rows bring that to about 1%.
const FLUSH_ROWS: usize = 256;

/// A [`TraceSink`] that commits to every row it receives: each layer's
/// output rows and its key/value rows.
///
/// `record` only copies the rows into a bounded channel; a worker thread
/// computes the leaf hashes and keeps the rows for later openings.
/// [`CommitmentSink::finish`] joins it and builds the Merkle tree over the
/// leaves in layer-major order.
#[derive(Debug)]
pub struct CommitmentSink {
    d_model: usize,
    tx: Option<SyncSender<Vec<Batch>>>,
    worker: Option<JoinHandle<Recorded>>,
    disconnected: bool,
    pending: Vec<Batch>,
    pending_rows: usize,
    /// Time spent in `record` and `record_kv` (copying, handing over).
    engine_time: Duration,
}

impl CommitmentSink {
    /// A sink for rows of `d_model` floats, with default options.
    pub fn new(d_model: usize) -> Result<Self, CommitError> {
        Self::with_options(d_model, SinkOptions::default())
    }

    /// A sink for rows of `d_model` floats.
    pub fn with_options(d_model: usize, opts: SinkOptions) -> Result<Self, CommitError> {
        let (tx, rx) = sync_channel(opts.channel_capacity);
        let store = RowStore::new(opts.memory_limit, opts.spill_dir);
        let worker = std::thread::Builder::new()
            .name("forge-commit".into())
            .spawn(move || worker::run(rx, d_model, DType::F32, store))
            .map_err(CommitError::Spawn)?;
        Ok(Self {
            d_model,
            tx: Some(tx),
            worker: Some(worker),
            disconnected: false,
            pending: Vec::new(),
            pending_rows: 0,
            engine_time: Duration::ZERO,
        })
    }

    /// Row width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Waits for the worker and builds the commitment.
    pub fn finish(mut self) -> Result<Commitment, CommitError> {
        let started = Instant::now();
        self.flush();
        drop(self.tx.take());
        let recorded = match self.worker.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) | None => return Err(CommitError::WorkerPanicked),
        };
        if let Some(e) = recorded.error {
            return Err(e);
        }
        if self.disconnected {
            return Err(CommitError::WorkerPanicked);
        }
        let worker_cpu = recorded.cpu;
        let mut commitment = Commitment::build(self.d_model, DType::F32, recorded)?;
        commitment.set_cost(CommitCost {
            engine_thread: self.engine_time,
            worker_cpu,
            finish: started.elapsed(),
        });
        Ok(commitment)
    }
}

impl CommitmentSink {
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batches = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        if let Some(tx) = &self.tx
            && tx.send(batches).is_err()
        {
            self.disconnected = true;
        }
    }
}

impl CommitmentSink {
    fn push(&mut self, kind: RowKind, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        let started = Instant::now();
        self.pending.push(Batch {
            kind,
            layer,
            first_pos,
            width,
            rows: rows.to_vec(),
        });
        self.pending_rows += rows.len() / width.max(1);
        if self.pending_rows >= FLUSH_ROWS {
            self.flush();
        }
        self.engine_time += started.elapsed();
    }
}

impl TraceSink for CommitmentSink {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        self.push(RowKind::Activation, layer, first_pos, self.d_model, rows);
    }

    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        self.push(RowKind::KeyValue, layer, first_pos, width, rows);
    }
}
