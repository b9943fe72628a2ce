//! The GGUF container: reading (header, metadata, tensor table, data) and
//! writing (used to build test models through the same loading path).

mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, TensorInfo};
pub use value::GgufValue;
pub use writer::GgufWriter;

/// `b"GGUF"` as a little-endian u32.
pub(crate) const GGUF_MAGIC: u32 = 0x4655_4747;
/// Default data alignment when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: usize = 32;
