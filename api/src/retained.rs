//! Commitments kept after their answers, so that auditors can challenge
//! them later (`POST /v1/receipts/{id}/openings`).
//!
//! A receipt's embedded spot checks draw their cells from a seed derived
//! from the receipt itself, which the provider chose; an auditor's fresh
//! seed, sent after the answer, cannot have been anticipated. Answering it
//! needs the committed rows, so the receipt workers keep each request's
//! commitment here, and the oldest are dropped once the rows kept pass a
//! byte bound (rows past a commitment's memory bound already live in its
//! spill file). Nothing here survives a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use forge_proofs::{Commitment, Receipt};

use crate::metrics::Metrics;

/// One answered request's commitment and what opening its cells needs.
#[derive(Debug)]
pub(crate) struct Retained {
    pub(crate) receipt: Receipt,
    pub(crate) prompt: Vec<u32>,
    pub(crate) output: Vec<u32>,
    pub(crate) commitment: Commitment,
}

impl Retained {
    /// Bytes of committed rows (output and key/value rows of every layer),
    /// as the commitment keeps them.
    fn bytes(&self) -> u64 {
        self.commitment.row_bytes()
    }
}

/// Retained commitments by receipt id, oldest dropped first.
#[derive(Debug)]
pub(crate) struct RetainedCommitments {
    max_bytes: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<[u8; 16]>,
    by_id: HashMap<[u8; 16], (Arc<Retained>, u64)>,
    bytes: u64,
}

impl RetainedCommitments {
    /// A store that keeps at most `max_bytes` of committed rows (0 keeps none).
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps `r` under receipt id `id`, dropping the oldest past the bound,
    /// and sets `metrics`' audit gauges to how many commitments are kept and
    /// their bytes of rows. A commitment larger than the whole bound is not
    /// kept.
    pub(crate) fn insert(&self, id: [u8; 16], r: Retained, metrics: &Metrics) {
        let size = r.bytes();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if size <= self.max_bytes {
            inner.keep(id, r, size, self.max_bytes);
        } else {
            tracing::debug!(
                bytes = size,
                "commitment larger than the audit bound: not kept"
            );
        }
        // Set while the lock is held: receipt workers inserting side by
        // side would otherwise set them in either order, and the last
        // word could be an earlier insert's.
        metrics.audit_commitments.set(inner.by_id.len() as i64);
        metrics
            .audit_bytes
            .set(i64::try_from(inner.bytes).unwrap_or(i64::MAX));
    }

    /// The commitment of receipt `id`, if it is still kept.
    pub(crate) fn get(&self, id: &[u8; 16]) -> Option<Arc<Retained>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_id.get(id).map(|(r, _)| Arc::clone(r))
    }
}

impl Inner {
    /// Keeps `r` (`size` bytes of rows), then drops the oldest until the
    /// rows kept are within `max_bytes`.
    fn keep(&mut self, id: [u8; 16], r: Retained, size: u64, max_bytes: u64) {
        if let Some((_, old)) = self.by_id.insert(id, (Arc::new(r), size)) {
            // The same id again (not expected: ids are random): replace.
            self.bytes -= old;
            self.order.retain(|k| k != &id);
        }
        self.order.push_back(id);
        self.bytes += size;
        while self.bytes > max_bytes {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = self.by_id.remove(&oldest) {
                self.bytes -= b;
            }
        }
    }
}
