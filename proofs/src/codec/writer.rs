//! The canonical writer.

use super::EncodeError;

/// Appends fields in canonical form (little-endian, fixed width; vectors with
/// a `u32` length prefix checked against their maximum).
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The bytes written so far, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A little-endian `u128`.
    pub fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A fixed-size byte array, raw.
    pub fn array<const N: usize>(&mut self, v: &[u8; N]) {
        self.buf.extend_from_slice(v);
    }

    /// A list's element count (`u32`), checked against `max`. The caller then
    /// writes the elements.
    pub fn count(&mut self, field: &'static str, len: usize, max: u32) -> Result<(), EncodeError> {
        match u32::try_from(len) {
            Ok(n) if n <= max => {
                self.u32(n);
                Ok(())
            }
            _ => Err(EncodeError::Oversize { field, len: len as u64, max: max.into() }),
        }
    }

    /// A byte vector: `u32` length, then the bytes; at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, v: &[u8], max: u32) -> Result<(), EncodeError> {
        self.count(field, v.len(), max)?;
        self.buf.extend_from_slice(v);
        Ok(())
    }

    /// A UTF-8 string as a byte vector of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, v: &str, max: u32) -> Result<(), EncodeError> {
        self.bytes(field, v.as_bytes(), max)
    }
}
