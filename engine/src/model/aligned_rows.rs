//! A growable buffer of floats whose first element sits on a 64-byte
//! boundary: one layer's cached keys or values.

/// Bytes of a cache line, and of an AVX-512 register.
const ALIGN: usize = 64;

/// Floats, 64-byte aligned, that grow like a `Vec<f32>`.
///
/// The attention kernels load every cached key and value row in 64-byte
/// vectors. A `Vec<f32>` is only as aligned as the allocator makes it (16
/// bytes with glibc), and where a buffer lands depends on everything
/// allocated before it, so the same decode step could run with every load
/// split across two cache lines or with none. Here the data starts at the
/// first 64-byte boundary of a slightly larger `Vec`; growing copies into a
/// new one and finds its boundary again. SmolLM2's rows (192 floats per
/// position and head group of 64) then never straddle a line.
#[derive(Clone, Debug, Default)]
pub(crate) struct AlignedRows {
    buf: Vec<f32>,
    /// Index in `buf` of the first float (at a 64-byte boundary).
    start: usize,
    len: usize,
}

impl AlignedRows {
    /// Empty, with room for `capacity` floats before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut rows = Self::default();
        rows.grow_to(capacity);
        rows
    }

    /// The floats.
    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Keeps the first `len` floats.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `values`, growing (at least doubling) when they do not fit.
    pub(crate) fn extend_from_slice(&mut self, values: &[f32]) {
        let end = self.len + values.len();
        if self.start + end > self.buf.len() {
            self.grow_to(end.max(2 * self.len).max(ALIGN));
        }
        self.buf[self.start + self.len..self.start + end].copy_from_slice(values);
        self.len = end;
    }

    /// Moves the floats into a new buffer with room for `capacity`.
    fn grow_to(&mut self, capacity: usize) {
        let mut buf = vec![0.0f32; capacity + ALIGN / 4];
        // `align_offset` may decline (it never does for a plain pointer to
        // f32 on the targets we build); the data is then unaligned but
        // correct.
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN / 4);
        buf[start..start + self.len].copy_from_slice(self.as_slice());
        self.buf = buf;
        self.start = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_keeps_its_values_and_stays_aligned() {
        let mut rows = AlignedRows::default();
        let mut reference = Vec::new();
        for step in 0..200usize {
            let values: Vec<f32> = (0..(step % 7) * 31)
                .map(|i| (step * 1000 + i) as f32)
                .collect();
            rows.extend_from_slice(&values);
            reference.extend_from_slice(&values);
            if step % 50 == 49 {
                rows.truncate(reference.len() / 2);
                reference.truncate(reference.len() / 2);
            }
            assert_eq!(rows.as_slice(), &reference[..]);
            if !reference.is_empty() {
                assert_eq!(rows.as_slice().as_ptr() as usize % ALIGN, 0, "step {step}");
            }
        }
    }
}
