//! The scheduler: one engine thread doing continuous batching, fed by a
//! bounded queue, and receipt workers behind it.

mod admission;
mod engine;
mod finisher;
mod job;

use std::sync::mpsc::{Sender, channel, sync_channel};
use std::sync::{Arc, Mutex};

pub(crate) use finisher::{Finisher, charge_for, hex};
pub(crate) use job::{Done, Event, Events, Job};

use admission::Admission;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Sizes of the scheduler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_concurrent: usize,
    pub(crate) max_queue: usize,
    pub(crate) receipt_workers: usize,
    pub(crate) retry_after_secs: u64,
}

/// The handlers' side of the scheduler.
pub(crate) struct Scheduler {
    /// One message per request: its `n` jobs, queued together so a request
    /// is either wholly queued or refused (never some of its choices).
    /// Unbounded: `admission` bounds what is sent.
    tx: Sender<Vec<Job>>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    retry_after_secs: u64,
    max_concurrent: usize,
}

impl Scheduler {
    /// Starts the engine thread and the receipt workers.
    pub(crate) fn start(finisher: Finisher, limits: Limits) -> std::io::Result<Self> {
        let metrics = Arc::clone(&finisher.metrics);
        let model = Arc::clone(&finisher.model);
        let max_concurrent = limits.max_concurrent.max(1);
        let admission = Arc::new(Admission::new(max_concurrent + limits.max_queue));
        let (tx, rx) = channel::<Vec<Job>>();
        let (ftx, frx) = sync_channel(limits.max_concurrent + limits.max_queue);
        let frx = Arc::new(Mutex::new(frx));
        let finisher = Arc::new(finisher);
        for i in 0..limits.receipt_workers.max(1) {
            let (f, rx) = (Arc::clone(&finisher), Arc::clone(&frx));
            std::thread::Builder::new()
                .name(format!("forge-receipts-{i}"))
                .spawn(move || f.run(&rx))?;
        }
        let m = Arc::clone(&metrics);
        let slots = Arc::clone(&admission);
        std::thread::Builder::new()
            .name("forge-engine".into())
            .spawn(move || engine::run(model, rx, ftx, max_concurrent, &slots, m))?;
        Ok(Self {
            tx,
            admission,
            metrics,
            retry_after_secs: limits.retry_after_secs,
            max_concurrent,
        })
    }

    /// Sequences running or queued now, and how many run together: the
    /// load a price is quoted on.
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.admission.held(), self.max_concurrent)
    }

    /// Queues a request's jobs (one per choice), or answers 429 when the
    /// generation slots and the wait queue together cannot take them all.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        let n = jobs.len();
        if !self.admission.try_take(n) {
            self.metrics.rejected_full.inc();
            return Err(ApiError::overloaded(self.retry_after_secs));
        }
        // Counted before sending: the engine thread decrements per admitted job.
        (0..n).for_each(|_| self.metrics.queue_depth.inc());
        if self.tx.send(jobs).is_err() {
            (0..n).for_each(|_| self.metrics.queue_depth.dec());
            self.admission.give_back(n);
            return Err(ApiError::internal("the engine thread has stopped"));
        }
        Ok(())
    }
}
