//! forge-proofs integration tests: one binary, one module per topic.

mod cli;
mod codec;
mod commit;
mod common;
mod key;
mod merkle;
mod receipt;
mod spot;
