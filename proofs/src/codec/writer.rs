//! The canonical writer.

use super::EncodeError;

/// Appends fields in canonical form (little-endian, fixed width; vectors with
/// a `u32` length prefix checked against their maximum), into a buffer or,
/// for hashes over an encoding, straight into a blake3 hasher: a receipt
/// with openings is megabytes, and hashing it should not copy it first.
#[derive(Debug, Clone)]
pub struct Writer {
    sink: Sink,
}

#[derive(Debug, Clone)]
enum Sink {
    Buf(Vec<u8>),
    Hash(Box<blake3::Hasher>),
}

/// Byte strings at least this long are hashed with blake3's rayon split.
const RAYON_HASH_MIN: usize = 256 << 10;

impl Default for Writer {
    fn default() -> Self {
        Self {
            sink: Sink::Buf(Vec::new()),
        }
    }
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that feeds `hasher` instead of keeping the bytes
    /// ([`Writer::into_bytes`] and [`Writer::as_bytes`] are then empty).
    pub fn hashing(hasher: blake3::Hasher) -> Self {
        Self {
            sink: Sink::Hash(Box::new(hasher)),
        }
    }

    /// The hash of everything written: the hasher's output for a
    /// [`Writer::hashing`] writer, plain blake3 of the bytes otherwise.
    pub fn finalize(&self) -> [u8; 32] {
        match &self.sink {
            Sink::Hash(h) => h.finalize().into(),
            Sink::Buf(b) => blake3::hash(b).into(),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.sink {
            Sink::Buf(b) => b,
            Sink::Hash(_) => Vec::new(),
        }
    }

    /// The bytes written so far, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.sink {
            Sink::Buf(b) => b,
            Sink::Hash(_) => &[],
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        match &mut self.sink {
            Sink::Buf(b) => b.extend_from_slice(bytes),
            // Megabytes of openings: split into subtrees that idle pool
            // threads can take (a verifier hashes them beside other checks).
            Sink::Hash(h) if bytes.len() >= RAYON_HASH_MIN => {
                h.update_rayon(bytes);
            }
            Sink::Hash(h) => {
                h.update(bytes);
            }
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    /// A little-endian `u128`.
    pub fn u128(&mut self, v: u128) {
        self.put(&v.to_le_bytes());
    }

    /// `f32`s as little-endian bit patterns, raw (the count is the caller's).
    pub fn f32s(&mut self, v: &[f32]) {
        self.les(v, |x| x.to_bits().to_le_bytes());
    }

    /// `u16`s little-endian, raw (the count is the caller's).
    pub fn u16s(&mut self, v: &[u16]) {
        self.les(v, u16::to_le_bytes);
    }

    /// Each of `v` as its `N` little-endian bytes ([`put_le_chunks`]).
    fn les<T: Copy, const N: usize>(&mut self, v: &[T], le: fn(T) -> [u8; N]) {
        put_le_chunks(v, le, |bytes| self.put(bytes));
    }

    /// A fixed-size byte array, raw.
    pub fn array<const N: usize>(&mut self, v: &[u8; N]) {
        self.put(v);
    }

    /// A list's element count (`u32`), checked against `max`. The caller then
    /// writes the elements.
    pub fn count(&mut self, field: &'static str, len: usize, max: u32) -> Result<(), EncodeError> {
        match u32::try_from(len) {
            Ok(n) if n <= max => {
                self.u32(n);
                Ok(())
            }
            _ => Err(EncodeError::Oversize {
                field,
                len: len as u64,
                max: max.into(),
            }),
        }
    }

    /// A byte vector: `u32` length, then the bytes; at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, v: &[u8], max: u32) -> Result<(), EncodeError> {
        self.count(field, v.len(), max)?;
        self.put(v);
        Ok(())
    }

    /// A UTF-8 string as a byte vector of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, v: &str, max: u32) -> Result<(), EncodeError> {
        self.bytes(field, v.as_bytes(), max)
    }
}

/// Hands `put` each of `v` as its `N` little-endian bytes, through a 16 KiB
/// buffer (openings carry megabytes of values; blake3 hashes 16 KiB inputs
/// with all its lanes): the writer's bulk values, and the leaf hashes' rows
/// on a big-endian machine.
pub(crate) fn put_le_chunks<T: Copy, const N: usize>(
    v: &[T],
    le: fn(T) -> [u8; N],
    mut put: impl FnMut(&[u8]),
) {
    let mut chunk = [0u8; 16384];
    for part in v.chunks(chunk.len() / N) {
        for (dst, x) in chunk.chunks_exact_mut(N).zip(part) {
            dst.copy_from_slice(&le(*x));
        }
        put(&chunk[..part.len() * N]);
    }
}
