//! A growable buffer of numbers whose first element sits on a 64-byte
//! boundary: one layer's cached keys or values.

/// Bytes of a cache line, and of an AVX-512 register.
const ALIGN: usize = 64;

/// Numbers (f16 or f32), 64-byte aligned, that grow like a `Vec`.
///
/// The attention kernels load every cached key and value row in 64-byte
/// vectors. A `Vec<f32>` is only as aligned as the allocator makes it (16
/// bytes with glibc), and where a buffer lands depends on everything
/// allocated before it, so the same decode step could run with every load
/// split across two cache lines or with none. Here the data starts at the
/// first 64-byte boundary of a slightly larger `Vec`; growing copies into a
/// new one and finds its boundary again. SmolLM2's rows (192 numbers per
/// position and head group of 64) then never straddle a line.
#[derive(Clone, Debug, Default)]
pub(crate) struct AlignedRows<T> {
    buf: Vec<T>,
    /// Index in `buf` of the first element (at a 64-byte boundary).
    start: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedRows<T> {
    /// Elements in one 64-byte line.
    const PER_LINE: usize = ALIGN / std::mem::size_of::<T>();

    /// Empty, with room for `capacity` floats before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut rows = Self::default();
        rows.grow_to(capacity);
        rows
    }

    /// The elements.
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Keeps the first `len` elements.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends `n` elements that `fill` writes (into a slice of `n`),
    /// growing (at least doubling) when they do not fit.
    pub(crate) fn extend_with(&mut self, n: usize, fill: impl FnOnce(&mut [T])) {
        let end = self.len + n;
        if self.start + end > self.buf.len() {
            self.grow_to(end.max(2 * self.len).max(ALIGN));
        }
        fill(&mut self.buf[self.start + self.len..self.start + end]);
        self.len = end;
    }

    /// Moves the elements into a new buffer with room for `capacity`.
    fn grow_to(&mut self, capacity: usize) {
        let mut buf = vec![T::default(); capacity + Self::PER_LINE];
        // `align_offset` may decline (it never does for a plain pointer to
        // f32 or f16 on the targets we build); the data is then unaligned
        // but correct.
        let start = buf.as_ptr().align_offset(ALIGN).min(Self::PER_LINE);
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
        let mut rows = AlignedRows::<f32>::default();
        let mut reference = Vec::new();
        for step in 0..200usize {
            let values: Vec<f32> = (0..(step % 7) * 31)
                .map(|i| (step * 1000 + i) as f32)
                .collect();
            rows.extend_with(values.len(), |dst| dst.copy_from_slice(&values));
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
