//! The trace commitment: a [`forge_engine::TraceSink`] that hashes every
//! layer's rows off the decode thread, and the Merkle commitment it yields.

mod commitment;
mod error;
mod opening;
mod recycle;
mod sink;
mod store;
mod worker;

pub use commitment::{CommitCost, Commitment};
pub use error::CommitError;
pub use opening::RangeOpening;
pub use sink::{CommitmentSink, SinkOptions};
