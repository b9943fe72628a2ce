//! The trace commitment: a [`forge_engine::TraceSink`] that hashes every
//! layer's rows off the decode thread, and the Merkle commitment it yields.

mod commitment;
mod error;
mod opened_rows;
mod opening;
mod recycle;
mod sink;
mod store;
mod worker;

pub use commitment::{CommitCost, Commitment};
pub use error::CommitError;
pub(crate) use opened_rows::Values;
pub use opened_rows::{OpenedRows, RowsRef};
pub use opening::RangeOpening;
pub use sink::{CommitmentSink, SinkOptions};

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, also after a panic elsewhere: absorbing runs under
/// `catch_unwind`, and the block pool's lists stay valid whatever panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
