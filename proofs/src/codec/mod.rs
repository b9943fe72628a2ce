//! Canonical binary encoding: a length-checked little-endian writer and reader.
//!
//! Every integer is little-endian and fixed width; byte arrays are written
//! raw; variable-length byte vectors and lists carry a `u32` length (count)
//! prefix and an explicit maximum. Decoding never panics and never allocates
//! more than the input could hold: each failure names the field at fault.

mod error;
mod reader;
mod writer;

pub use error::{DecodeError, EncodeError};
pub use reader::Reader;
pub use writer::Writer;
// The leaf hashes' rows go through it only on a big-endian machine.
#[cfg(not(target_endian = "little"))]
pub(crate) use writer::put_le_chunks;
