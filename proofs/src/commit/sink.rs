//! The engine-facing sink: copies rows and hands them to hashing jobs on
//! the engine's rayon pool.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use forge_engine::TraceSink;

use super::store::RowStore;
use super::worker::{Absorber, Batch, RowKind};
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
    /// Groups of rows that may wait for a hashing job; past it, the
    /// recording thread hashes the waiting groups itself.
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

/// Rows buffered before they are handed over as one group (one hashing
/// job, about 30 microseconds of blake3 on SmolLM2). A job runs to the end
/// once a pool thread takes it, and the engine's next parallel step waits
/// for that thread, so jobs are kept short; 30 rows is half a decoded
/// token's rows on SmolLM2 (an output row and a key/value row per layer).
const FLUSH_ROWS: usize = 32;

/// A [`TraceSink`] that commits to every row it receives: each layer's
/// output rows and its key/value rows.
///
/// `record` only copies the rows; every [`FLUSH_ROWS`] rows it queues them
/// as a group and, unless one is pending, spawns a hashing job on the
/// current rayon pool (the engine's, so hashing shares its threads instead
/// of preempting them). A job absorbs one group in recording order (leaf
/// hashes, rows kept for later openings) and spawns the next if groups
/// remain. [`CommitmentSink::finish`] absorbs what is left and builds the
/// Merkle tree over the leaves in layer-major order.
#[derive(Debug)]
pub struct CommitmentSink {
    d_model: usize,
    shared: Arc<Shared>,
    pending: Vec<Batch>,
    pending_rows: usize,
    capacity: usize,
    /// Time spent in `record` and `record_kv` copying and handing over
    /// rows (absorbing a backlog there is counted in `inline_time`).
    engine_time: Duration,
    /// Time `record` and `record_kv` spent absorbing a backlog.
    inline_time: Duration,
}

/// What the sink and its hashing jobs share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Taken by `finish`. Groups are popped from the queue only while this
    /// lock is held, so they are absorbed in recording order.
    absorber: Mutex<Option<Absorber>>,
    /// Nanoseconds spent absorbing, on whichever thread ran it.
    hashing_ns: AtomicU64,
    /// Set when the sink is dropped unfinished: jobs stop absorbing.
    abandoned: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    groups: VecDeque<Vec<Batch>>,
    /// A hashing job is spawned and has not yet found the queue empty.
    scheduled: bool,
}

/// Locks `m`, also after a panic elsewhere (absorbing runs under
/// `catch_unwind`, so the data stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Absorbs the oldest waiting group, if any; false when none waited.
    fn absorb_next(&self, absorber: &mut Option<Absorber>) -> bool {
        let Some(group) = lock(&self.queue).groups.pop_front() else {
            return false;
        };
        let Some(a) = absorber.as_mut() else {
            return true;
        };
        if self.abandoned.load(Ordering::Relaxed) {
            return true;
        }
        let started = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| a.absorb(group))).is_err() {
            a.poison();
        }
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.hashing_ns.fetch_add(ns, Ordering::Relaxed);
        true
    }

    /// Absorbs every waiting group (on the calling thread).
    fn absorb_all(&self, absorber: &mut Option<Absorber>) {
        while self.absorb_next(absorber) {}
    }

    /// One hashing job: one group, then the next job if more wait.
    fn job(self: Arc<Self>) {
        self.absorb_next(&mut lock(&self.absorber));
        let mut q = lock(&self.queue);
        if q.groups.is_empty() {
            q.scheduled = false;
        } else {
            drop(q);
            rayon::spawn(move || self.job());
        }
    }
}

impl CommitmentSink {
    /// A sink for rows of `d_model` floats, with default options.
    pub fn new(d_model: usize) -> Result<Self, CommitError> {
        Self::with_options(d_model, SinkOptions::default())
    }

    /// A sink for rows of `d_model` floats.
    pub fn with_options(d_model: usize, opts: SinkOptions) -> Result<Self, CommitError> {
        let store = RowStore::new(opts.memory_limit, opts.spill_dir);
        Ok(Self {
            d_model,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                absorber: Mutex::new(Some(Absorber::new(d_model, DType::F32, store))),
                hashing_ns: AtomicU64::new(0),
                abandoned: AtomicBool::new(false),
            }),
            pending: Vec::new(),
            pending_rows: 0,
            capacity: opts.channel_capacity.max(1),
            engine_time: Duration::ZERO,
            inline_time: Duration::ZERO,
        })
    }

    /// Row width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Absorbs what the hashing jobs have not (on this thread) and builds
    /// the commitment.
    pub fn finish(mut self) -> Result<Commitment, CommitError> {
        let started = Instant::now();
        self.flush();
        let absorber = {
            let mut guard = lock(&self.shared.absorber);
            self.shared.absorb_all(&mut guard);
            guard.take()
        };
        let recorded = absorber.ok_or(CommitError::WorkerPanicked)?.seal();
        if let Some(e) = recorded.error {
            return Err(e);
        }
        let hashing = Duration::from_nanos(self.shared.hashing_ns.load(Ordering::Relaxed));
        let mut commitment = Commitment::build(self.d_model, DType::F32, recorded)?;
        commitment.set_cost(CommitCost {
            engine_thread: self.engine_time,
            hashing,
            hashing_inline: self.inline_time,
            finish: started.elapsed(),
        });
        Ok(commitment)
    }
}

impl Drop for CommitmentSink {
    fn drop(&mut self) {
        // Unfinished (a cancelled sequence): queued groups are not worth hashing.
        self.shared.abandoned.store(true, Ordering::Relaxed);
    }
}

impl CommitmentSink {
    /// Queues the buffered rows as one group, and spawns a hashing job
    /// unless one is pending. Past `capacity` waiting groups, absorbs them
    /// here: memory stays bounded, and a pool whose threads are all busy
    /// (or a one-thread pool running this very thread) cannot stall it.
    /// Returns the time spent absorbing a backlog here.
    fn flush(&mut self) -> Duration {
        if self.pending.is_empty() {
            return Duration::ZERO;
        }
        let group = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        let (spawn, backlog) = {
            let mut q = lock(&self.shared.queue);
            q.groups.push_back(group);
            (!std::mem::replace(&mut q.scheduled, true), q.groups.len())
        };
        if spawn {
            let shared = Arc::clone(&self.shared);
            rayon::spawn(move || shared.job());
        }
        if backlog <= self.capacity {
            return Duration::ZERO;
        }
        let started = Instant::now();
        self.shared.absorb_all(&mut lock(&self.shared.absorber));
        started.elapsed()
    }

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
        let inline = if self.pending_rows >= FLUSH_ROWS {
            self.flush()
        } else {
            Duration::ZERO
        };
        self.inline_time += inline;
        self.engine_time += started.elapsed().saturating_sub(inline);
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
