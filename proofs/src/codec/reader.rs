//! The canonical reader.

use super::DecodeError;

/// Reads fields in canonical form from a byte slice. Every read names its
/// field, so an error says where the input went wrong.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Succeeds only if every byte was read.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes { count: n as u64 }),
        }
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A fixed-size byte array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A little-endian `u128`.
    pub fn u128(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        self.array(field).map(u128::from_le_bytes)
    }

    /// `n` little-endian `f32`s (bit patterns kept, NaNs included), read in
    /// one slice: openings carry megabytes of them.
    pub fn f32s(&mut self, field: &'static str, n: usize) -> Result<Vec<f32>, DecodeError> {
        Ok(self
            .take_elems(field, n, 4)?
            .chunks_exact(4)
            .map(|b| f32::from_bits(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            .collect())
    }

    /// `n` little-endian `u16`s, read in one slice (f16 rows of openings).
    pub fn u16s(&mut self, field: &'static str, n: usize) -> Result<Vec<u16>, DecodeError> {
        Ok(self
            .take_elems(field, n, 2)?
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect())
    }

    /// The bytes of `n` elements of `size` bytes.
    fn take_elems(
        &mut self,
        field: &'static str,
        n: usize,
        size: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len = n.checked_mul(size).ok_or(DecodeError::Truncated {
            field,
            needed: u64::MAX,
            available: self.remaining() as u64,
        })?;
        self.take(field, len)
    }

    /// A list's element count, at most `max`; each element must take at least
    /// `min_elem_bytes`, so a count the input cannot hold is refused before the
    /// caller allocates for it.
    pub fn count(
        &mut self,
        field: &'static str,
        max: u32,
        min_elem_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.u32(field)?;
        if n > max {
            return Err(DecodeError::Oversize {
                field,
                len: n.into(),
                max: max.into(),
            });
        }
        let n = n as usize;
        let needed = n.saturating_mul(min_elem_bytes);
        if needed > self.remaining() {
            return Err(DecodeError::Truncated {
                field,
                needed: needed as u64,
                available: self.remaining() as u64,
            });
        }
        Ok(n)
    }

    /// A length-prefixed byte vector of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: u32) -> Result<&'a [u8], DecodeError> {
        let n = self.count(field, max, 1)?;
        self.take(field, n)
    }

    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, field: &'static str, max: u32) -> Result<&'a str, DecodeError> {
        let raw = self.bytes(field, max)?;
        std::str::from_utf8(raw).map_err(|e| DecodeError::InvalidValue {
            field,
            problem: e.to_string(),
        })
    }

    /// A 4-byte magic that must equal `expected`.
    pub fn magic(&mut self, expected: [u8; 4]) -> Result<(), DecodeError> {
        let avail = self.remaining().min(4);
        let mut found = [0u8; 4];
        found[..avail].copy_from_slice(&self.buf[self.pos..self.pos + avail]);
        if found[..avail] != expected[..avail] {
            return Err(DecodeError::BadMagic { expected, found });
        }
        self.take("magic", 4)?;
        Ok(())
    }

    /// A `u16` version that must equal `supported`.
    pub fn version(&mut self, supported: u16) -> Result<(), DecodeError> {
        match self.u16("version")? {
            v if v == supported => Ok(()),
            found => Err(DecodeError::UnknownVersion { supported, found }),
        }
    }
}
