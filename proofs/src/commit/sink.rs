//! The engine-facing sink: copies rows and hands them to hashing jobs on
//! the engine's rayon pool.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forge_engine::{TraceSink, f16, prefetch_lines, push_kv_rows};
use half::slice::HalfFloatSliceExt;

use super::commitment::Shape;
use super::store::BlockStore;
use super::worker::{Absorber, Block};
use super::{CommitCost, CommitError, Commitment, lock, recycle};
use crate::merkle::{DType, Elem, RowGroup, pack_f16};

/// How a [`CommitmentSink`] buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Bytes of raw rows kept in memory for openings; rows beyond it are
    /// spilled to an anonymous temp file.
    pub memory_limit: usize,
    /// Directory of the spill file (the system temp dir when `None`).
    pub spill_dir: Option<PathBuf>,
    /// Groups of blocks that may wait for a hashing job; past it, the
    /// recording thread hashes the waiting groups itself.
    pub channel_capacity: usize,
    /// Element types of the rows: the engine backend's trace dtype
    /// ([`DType::of_backend`]; [`CommitmentSink::for_model`] sets it). The
    /// default is the CPU engine's, [`DType::F32KvF16`]: key/value rows
    /// that come as f32 ([`TraceSink::record_kv`]) must then be f16 values,
    /// or `finish` fails with [`CommitError::NotF16`].
    pub dtype: DType,
    /// Whether `record` and `record_kv` time themselves, for
    /// [`CommitCost`]'s engine-thread figures (otherwise zero): two clock
    /// reads per call, 60 calls per SmolLM2 decode step, about 3 us of the
    /// engine thread's 16 per step here, which only benchmarks read. Off by
    /// default. Hashing jobs and `finish` time themselves either way (a few
    /// reads per block).
    pub timed: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            memory_limit: 256 << 20,
            spill_dir: None,
            channel_capacity: 64,
            dtype: DType::F32KvF16,
            timed: false,
        }
    }
}

/// Full blocks handed to one hashing job: about 20 microseconds of blake3
/// on SmolLM2. A job runs to the end once a pool thread takes it, and the
/// engine's next parallel step waits for that thread, so jobs are kept
/// short.
const FLUSH_BLOCKS: usize = 4;

/// A [`TraceSink`] that commits to every row it receives: each layer's
/// output rows and its key/value rows.
///
/// `record` copies the rows into the open block of their layer's row group
/// (blocks of [`RowGroup::block`] positions, one leaf each; block buffers come
/// from a pool that dropped commitments refill, so that their pages are
/// already faulted in). Every
/// `FLUSH_BLOCKS` (4) full blocks it queues them as a group and, unless one is
/// pending, spawns a hashing job on the current rayon pool (the engine's,
/// so hashing shares its threads instead of preempting them). A job absorbs
/// one group in order (leaf hashes; the blocks are kept for later openings)
/// and spawns the next if groups remain. [`CommitmentSink::finish`] closes
/// the last, shorter blocks, absorbs what is left and builds the Merkle tree
/// over the leaves in layer-major order.
#[derive(Debug)]
pub struct CommitmentSink {
    d_model: usize,
    dtype: DType,
    shared: Arc<Shared>,
    /// Each layer's output rows.
    outputs: Vec<OpenGroup>,
    /// Each layer's key/value rows.
    key_values: Vec<OpenGroup>,
    /// Width of the key/value rows (the first `record_kv` call sets it).
    kv_width: Option<usize>,
    /// Full blocks not yet queued.
    ready: Vec<Block>,
    /// The first malformed recording; everything after it is ignored and
    /// `finish` returns it.
    error: Option<CommitError>,
    capacity: usize,
    /// Whether `record` and `record_kv` time themselves
    /// ([`SinkOptions::timed`]).
    timed: bool,
    /// Time spent in `record` and `record_kv` copying and handing over
    /// rows (absorbing a backlog there is counted in `inline_time`), when
    /// timed.
    engine_time: Duration,
    /// Time `record` and `record_kv` spent absorbing a backlog.
    inline_time: Duration,
    /// Of `engine_time`, the calls that handed over one position's rows.
    decode_engine_time: Duration,
}

/// One layer's row group while recording: the positions it has received,
/// and its open block (the rows since the last full one).
#[derive(Debug, Default)]
struct OpenGroup {
    /// First position received (`None` before the first rows).
    start: Option<usize>,
    /// One past the last position received.
    next: usize,
    block: Vec<f32>,
    /// Rows of `block` that came one position at a time.
    decode_rows: usize,
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
    /// Of `hashing_ns`, the decode rows' share (`Absorber::absorb`).
    decode_hashing_ns: AtomicU64,
    /// Set when the sink is dropped unfinished: jobs stop absorbing.
    abandoned: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    groups: VecDeque<Vec<Block>>,
    /// A hashing job is spawned and has not yet found the queue empty.
    scheduled: bool,
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
        match catch_unwind(AssertUnwindSafe(|| a.absorb(group))) {
            Ok(decode) => {
                self.decode_hashing_ns
                    .fetch_add(nanos(decode), Ordering::Relaxed);
            }
            Err(_) => a.poison(),
        }
        self.hashing_ns
            .fetch_add(nanos(started.elapsed()), Ordering::Relaxed);
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

/// `d` in whole nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl CommitmentSink {
    /// A sink for rows of `d_model` floats, with default options (the CPU
    /// engine's element types).
    pub fn new(d_model: usize) -> Result<Self, CommitError> {
        Self::with_options(d_model, SinkOptions::default())
    }

    /// A sink for `model`'s trace, with default options but the element
    /// types of its backend's trace ([`DType::of_backend`]).
    pub fn for_model(model: &forge_engine::Model) -> Result<Self, CommitError> {
        let opts = SinkOptions {
            dtype: DType::of_backend(model.backend()),
            ..SinkOptions::default()
        };
        Self::with_options(model.config().d_model, opts)
    }

    /// A sink for rows of `d_model` floats.
    pub fn with_options(d_model: usize, opts: SinkOptions) -> Result<Self, CommitError> {
        let store = BlockStore::new(opts.memory_limit, opts.spill_dir);
        Ok(Self {
            d_model,
            dtype: opts.dtype,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                absorber: Mutex::new(Some(Absorber::new(opts.dtype, store))),
                hashing_ns: AtomicU64::new(0),
                decode_hashing_ns: AtomicU64::new(0),
                abandoned: AtomicBool::new(false),
            }),
            outputs: Vec::new(),
            key_values: Vec::new(),
            kv_width: None,
            ready: Vec::new(),
            error: None,
            capacity: opts.channel_capacity.max(1),
            timed: opts.timed,
            engine_time: Duration::ZERO,
            inline_time: Duration::ZERO,
            decode_engine_time: Duration::ZERO,
        })
    }

    /// Row width.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// Time the recording thread has spent in `record` and `record_kv` so
    /// far: copying rows and queueing blocks (counted only by a sink with
    /// [`SinkOptions::timed`]), and hashing a backlog itself.
    pub fn record_time(&self) -> Duration {
        self.engine_time + self.inline_time
    }

    /// Absorbs what the hashing jobs have not (on this thread) and builds
    /// the commitment.
    pub fn finish(mut self) -> Result<Commitment, CommitError> {
        let started = Instant::now();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.close_blocks();
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
        let spans = |groups: &[OpenGroup]| {
            groups
                .iter()
                .map(|g| g.start.map_or((0, 0), |s| (s, g.next)))
                .collect::<Vec<_>>()
        };
        let shape = Shape {
            d_model: self.d_model,
            kv_width: self.kv_width.unwrap_or(0),
            outputs: spans(&self.outputs),
            key_values: spans(&self.key_values),
        };
        let mut commitment = Commitment::build(shape, self.dtype, recorded)?;
        commitment.set_cost(CommitCost {
            engine_thread: self.engine_time,
            hashing,
            hashing_inline: self.inline_time,
            finish: started.elapsed(),
            decode_engine_thread: self.decode_engine_time,
            decode_hashing: Duration::from_nanos(
                self.shared.decode_hashing_ns.load(Ordering::Relaxed),
            ),
        });
        Ok(commitment)
    }
}

impl Drop for CommitmentSink {
    fn drop(&mut self) {
        // Unfinished (a cancelled sequence): queued groups are not worth
        // hashing, and the open blocks' buffers can serve the next sink.
        self.shared.abandoned.store(true, Ordering::Relaxed);
        let open = self.outputs.iter_mut().chain(&mut self.key_values);
        recycle::give(open.map(|g| std::mem::take(&mut g.block)));
        recycle::give(self.ready.drain(..).map(|b| b.rows));
    }
}

impl CommitmentSink {
    /// Queues the full blocks in groups of [`FLUSH_BLOCKS`], and spawns a
    /// hashing job unless one is pending. Past `capacity` waiting groups,
    /// absorbs them here: memory stays bounded, and a pool whose threads are
    /// all busy (or a one-thread pool running this very thread) cannot stall
    /// it. Returns the time spent absorbing a backlog here.
    fn flush(&mut self) -> Duration {
        if self.ready.is_empty() {
            return Duration::ZERO;
        }
        let (spawn, backlog) = {
            let mut q = lock(&self.shared.queue);
            while !self.ready.is_empty() {
                let rest = self.ready.split_off(self.ready.len().min(FLUSH_BLOCKS));
                q.groups.push_back(std::mem::replace(&mut self.ready, rest));
            }
            (!std::mem::replace(&mut q.scheduled, true), q.groups.len())
        };
        if spawn {
            let shared = Arc::clone(&self.shared);
            rayon::spawn(move || shared.job());
        }
        if backlog <= self.capacity {
            return Duration::ZERO;
        }
        // Counted as the hashing it did (what `hashing` adds up), so that it
        // is a part of `hashing`: nothing else absorbs while the lock is held.
        let mut absorber = lock(&self.shared.absorber);
        let before = self.shared.hashing_ns.load(Ordering::Relaxed);
        self.shared.absorb_all(&mut absorber);
        let after = self.shared.hashing_ns.load(Ordering::Relaxed);
        Duration::from_nanos(after - before)
    }

    /// 32-bit words a key/value row takes in its block (none before the
    /// first key/value rows).
    fn kv_row_words(&self) -> usize {
        self.dtype
            .elem(RowGroup::KeyValue)
            .words(self.kv_width.unwrap_or(0))
    }

    /// Closes every open block (the trace's last, shorter blocks).
    fn close_blocks(&mut self) {
        let kv_words = self.kv_row_words();
        let groups = [
            (RowGroup::Output, &mut self.outputs, self.d_model),
            (RowGroup::KeyValue, &mut self.key_values, kv_words),
        ];
        for (group, open, width) in groups {
            for (layer, g) in open.iter_mut().enumerate() {
                if !g.block.is_empty() {
                    self.ready.push(take_block(group, layer, g, width));
                }
            }
        }
    }

    fn push(
        &mut self,
        group: RowGroup,
        layer: usize,
        first_pos: usize,
        width: usize,
        rows: Rows<'_>,
    ) {
        let started = self.timed.then(Instant::now);
        let taken = if self.error.is_some() {
            0
        } else {
            self.take_rows(group, layer, first_pos, width, rows)
                .unwrap_or_else(|e| {
                    self.error = Some(e);
                    0
                })
        };
        let inline = if self.ready.len() >= FLUSH_BLOCKS {
            self.flush()
        } else {
            Duration::ZERO
        };
        if taken > 0 && group == RowGroup::Output {
            self.prefetch_next(layer);
        }
        self.inline_time += inline;
        if let Some(started) = started {
            let spent = started.elapsed().saturating_sub(inline);
            self.engine_time += spent;
            if taken == 1 {
                self.decode_engine_time += spent;
            }
        }
    }

    /// Called after a layer's output rows: asks the cache for what the next
    /// layer's two calls will touch: both open blocks' lines that their rows
    /// go to, and the state of the layer after that. The engine records a
    /// layer's keys and values, then its output, once it has computed the
    /// layer, so a whole layer's weights stream through the cache between
    /// one layer's calls and the next's, and every call waited on memory
    /// several times over: for its group's state, its block's address, and
    /// each line of its row (a profile put four fifths of the sink's time on
    /// the engine thread there). After the last layer, the next calls are
    /// the first layer's, at the next position.
    fn prefetch_next(&mut self, layer: usize) {
        let layers = self.outputs.len().max(1);
        let (next, after) = ((layer + 1) % layers, (layer + 2) % layers);
        let kv_words = self.kv_row_words();
        let groups = [
            (&mut self.key_values, kv_words),
            (&mut self.outputs, self.d_model),
        ];
        for (open, words) in groups {
            if let Some(g) = open.get(after) {
                prefetch_lines(std::slice::from_ref(g));
            }
            if let Some(g) = open.get_mut(next) {
                let spare = g.block.spare_capacity_mut();
                prefetch_lines(&spare[..words.min(spare.len())]);
            }
        }
    }

    /// Copies `rows` into `layer`'s open block of `group` (as the group's
    /// element type: see [`Rows::append`]), moving each block that fills to
    /// `ready`; returns how many rows it took.
    fn take_rows(
        &mut self,
        group: RowGroup,
        layer: usize,
        first_pos: usize,
        width: usize,
        rows: Rows<'_>,
    ) -> Result<usize, CommitError> {
        let (expected, open) = match group {
            RowGroup::Output => (self.d_model, &mut self.outputs),
            RowGroup::KeyValue => (*self.kv_width.get_or_insert(width), &mut self.key_values),
        };
        let elem = self.dtype.elem(group);
        let n = match rows.count(expected) {
            Some(n) if width == expected && elem.words(expected) * 4 == expected * elem.size() => n,
            _ => {
                return Err(CommitError::RaggedRows {
                    layer,
                    len: rows.len(),
                    width: expected,
                });
            }
        };
        // Leaves and receipts carry layers and positions as u32.
        let end = first_pos
            .checked_add(n)
            .filter(|&e| u32::try_from(e).is_ok());
        if u32::try_from(layer).is_err() || end.is_none() {
            return Err(CommitError::TooLarge {
                layer,
                pos: first_pos.saturating_add(n),
            });
        }
        if open.len() <= layer {
            open.resize_with(layer + 1, OpenGroup::default);
        }
        // Each row takes `words` 32-bit words in its block.
        let words = elem.words(expected);
        let g = &mut open[layer];
        if g.start.is_none() {
            g.start = Some(first_pos);
            g.next = first_pos;
        } else if first_pos != g.next {
            return Err(CommitError::OutOfOrder {
                layer,
                expected: g.next,
                got: first_pos,
            });
        }
        let block_rows = group.block();
        let mut done = 0;
        while done < n {
            if g.block.capacity() == 0 {
                g.block = recycle::take(block_rows * words);
            }
            let room = block_rows - g.block.len() / words;
            let now = room.min(n - done);
            if let Err(e) = rows.append(expected, elem, done, now, &mut g.block) {
                return Err(CommitError::NotF16 {
                    layer,
                    pos: first_pos + done,
                    source: e,
                });
            }
            if n == 1 {
                g.decode_rows += 1;
            }
            g.next += now;
            done += now;
            if g.block.len() == block_rows * words {
                self.ready.push(take_block(group, layer, g, words));
            }
        }
        Ok(n)
    }
}

/// Moves `g`'s open block (rows of `width` words) out as a [`Block`] of
/// `layer`'s `group`.
fn take_block(group: RowGroup, layer: usize, g: &mut OpenGroup, width: usize) -> Block {
    let rows = std::mem::take(&mut g.block);
    let count = rows.len() / width.max(1);
    // `take_rows` checked that layers and positions fit in u32.
    Block {
        group,
        layer: layer as u32,
        first_pos: (g.next - count) as u32,
        width,
        rows,
        decode_rows: std::mem::take(&mut g.decode_rows),
    }
}

/// Rows handed to the sink: one array of whole rows, or keys and values in
/// two arrays of half rows (a row is `[keys[i] | values[i]]`), copied into
/// the blocks without an interleaved copy first.
#[derive(Clone, Copy)]
enum Rows<'a> {
    Whole(&'a [f32]),
    Split { keys: &'a [f16], values: &'a [f16] },
}

impl Rows<'_> {
    /// Floats in all.
    fn len(self) -> usize {
        match self {
            Self::Whole(rows) => rows.len(),
            Self::Split { keys, values } => keys.len() + values.len(),
        }
    }

    /// How many rows of `width` these are; None if not whole rows (or two
    /// halves of different lengths).
    fn count(self, width: usize) -> Option<usize> {
        let whole = |len: usize, width: usize| {
            (width > 0 && len.is_multiple_of(width)).then(|| len / width)
        };
        match self {
            Self::Whole(rows) => whole(rows.len(), width),
            Self::Split { keys, values }
                if keys.len() == values.len() && width.is_multiple_of(2) =>
            {
                whole(keys.len(), width / 2)
            }
            Self::Split { .. } => None,
        }
    }

    /// Appends rows `from..from + n`, `width` values each (as `count`
    /// checked), to `block` as `elem`s: f32 values one to a word, or f16
    /// two to a word (the engine's f16 keys and values copied as they are;
    /// f32 rows narrowed, failing on a value that is not an f16).
    fn append(
        self,
        width: usize,
        elem: Elem,
        from: usize,
        n: usize,
        block: &mut Vec<f32>,
    ) -> Result<(), crate::MerkleError> {
        match (self, elem) {
            (Self::Whole(rows), Elem::F32) => {
                block.extend_from_slice(&rows[from * width..(from + n) * width]);
            }
            (Self::Whole(rows), Elem::F16) => {
                block.extend(pack_f16(&rows[from * width..(from + n) * width])?);
            }
            (Self::Split { keys, values }, Elem::F32) => {
                let half = width / 2;
                let range = from * half..(from + n) * half;
                push_kv_rows(&keys[range.clone()], &values[range], half, block);
            }
            (Self::Split { keys, values }, Elem::F16) => {
                let half = width / 2;
                let (keys, values) = (
                    &keys[from * half..(from + n) * half],
                    &values[from * half..(from + n) * half],
                );
                // The engine's cache rows are whole words (an even width,
                // aligned): copied straight into the block, without zeroing
                // its cold lines first.
                fn as_words(h: &[f16]) -> Result<&[f32], bytemuck::PodCastError> {
                    let bits: &[u16] = h.reinterpret_cast();
                    bytemuck::try_cast_slice(bits)
                }
                if let (Ok(k), Ok(v), true) =
                    (as_words(keys), as_words(values), half.is_multiple_of(2))
                {
                    for (k, v) in k.chunks_exact(half / 2).zip(v.chunks_exact(half / 2)) {
                        block.extend_from_slice(k);
                        block.extend_from_slice(v);
                    }
                    return Ok(());
                }
                let at = block.len();
                block.resize(at + n * half, 0.0);
                let dst: &mut [u16] = bytemuck::cast_slice_mut(&mut block[at..]);
                let rows = keys.chunks_exact(half).zip(values.chunks_exact(half));
                // Plain copies of the f16 bits (an element loop over a
                // chain of the two halves did not vectorise: 10 us more per
                // SmolLM2 decode step on the engine thread).
                for (row, (k, v)) in dst.chunks_exact_mut(width).zip(rows) {
                    let (dk, dv) = row.split_at_mut(half);
                    dk.copy_from_slice(k.reinterpret_cast());
                    dv.copy_from_slice(v.reinterpret_cast());
                }
            }
        }
        Ok(())
    }
}

impl TraceSink for CommitmentSink {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        self.push(
            RowGroup::Output,
            layer,
            first_pos,
            self.d_model,
            Rows::Whole(rows),
        );
    }

    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        self.push(
            RowGroup::KeyValue,
            layer,
            first_pos,
            width,
            Rows::Whole(rows),
        );
    }

    fn record_keys_values(
        &mut self,
        layer: usize,
        first_pos: usize,
        kv_dim: usize,
        keys: &[f16],
        values: &[f16],
    ) {
        let rows = Rows::Split { keys, values };
        self.push(RowGroup::KeyValue, layer, first_pos, 2 * kv_dim, rows);
    }
}
