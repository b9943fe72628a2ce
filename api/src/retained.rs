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

/// One answered request's commitment and what opening its cells needs.
#[derive(Debug)]
pub(crate) struct Retained {
    pub(crate) receipt: Receipt,
    pub(crate) prompt: Vec<u32>,
    pub(crate) output: Vec<u32>,
    pub(crate) commitment: Commitment,
}

impl Retained {
    /// Bytes of committed rows (output and key/value rows of every layer).
    fn bytes(&self) -> u64 {
        let c = &self.commitment;
        let rows = (c.layers() * c.positions()) as u64;
        rows * (c.d_model() + c.kv_width()) as u64 * 4
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
    /// and returns how many commitments are kept and their bytes of rows.
    /// A commitment larger than the whole bound is not kept.
    pub(crate) fn insert(&self, id: [u8; 16], r: Retained) -> (usize, u64) {
        let size = r.bytes();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if size > self.max_bytes {
            tracing::debug!(
                bytes = size,
                "commitment larger than the audit bound: not kept"
            );
            return (inner.by_id.len(), inner.bytes);
        }
        if let Some((_, old)) = inner.by_id.insert(id, (Arc::new(r), size)) {
            // The same id again (not expected: ids are random): replace.
            inner.bytes -= old;
            inner.order.retain(|k| k != &id);
        }
        inner.order.push_back(id);
        inner.bytes += size;
        while inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some((_, b)) = inner.by_id.remove(&oldest) {
                inner.bytes -= b;
            }
        }
        (inner.by_id.len(), inner.bytes)
    }

    /// The commitment of receipt `id`, if it is still kept.
    pub(crate) fn get(&self, id: &[u8; 16]) -> Option<Arc<Retained>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_id.get(id).map(|(r, _)| Arc::clone(r))
    }
}
