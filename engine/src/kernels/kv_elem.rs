//! What the key/value cache holds: f16 under the exact kernels, f32 under
//! the float reference.
//!
//! A decode step's attention reads every cached key and value of its
//! sequences; at eight sequences of a few hundred positions that is as many
//! bytes as the model's weights. Under [`super::Numerics::Int8`] the keys
//! (after RoPE) and values are rounded to f16 (IEEE binary16, round to
//! nearest even) as they enter the cache, halving those bytes; attention
//! widens them back to f32 exactly, so every later operation is the f32
//! one it was. The rounding is part of the arithmetic: a verifier's replay
//! rounds the same values the same way, and the trace's key/value rows are
//! the rounded ones (what attention read). [`super::Numerics::F32`], the
//! reference for receipts from the burn backends (whose caches are f32),
//! keeps f32.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// An element type of the key/value cache.
pub(crate) trait KvElem: Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// Whether this is f16 (so that the AVX-512 loads widen it).
    const HALF: bool;

    /// The element's value, exactly.
    fn widen(self) -> f32;

    /// Writes `src` rounded to this type into `dst` (the same length).
    fn narrow_into(src: &[f32], dst: &mut [Self]);

    /// Writes `src` widened to f32, exactly, into `dst` (the same length).
    fn widen_slice(src: &[Self], dst: &mut [f32]);

    /// Writes committed values `src` as this type into `dst` (the same
    /// length): what a replay does with an opened key/value prefix.
    fn from_committed<V: KvValue>(src: &[V], dst: &mut [Self]);
}

/// The element type of committed key/value rows that a replay reads
/// ([`crate::Model::replay_cell_rows_in`]): f32, or f16 as the CPU
/// engine's trace keeps them. A replay copies f16 rows into an f16 cache
/// as they are (no widening to f32 and rounding back) and rounds f32 rows
/// as the forward pass rounds its keys and values.
pub trait KvValue: Copy + Send + Sync + sealed::Sealed + 'static {
    /// Writes `src` into `dst` (the same length), rounded to nearest even.
    fn narrow_to_f16(src: &[Self], dst: &mut [f16]);

    /// Writes `src` into `dst` (the same length), exactly.
    fn widen_to_f32(src: &[Self], dst: &mut [f32]);
}

mod sealed {
    /// Only the engine's element types are [`super::KvValue`]s.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

impl KvValue for f32 {
    fn narrow_to_f16(src: &[Self], dst: &mut [f16]) {
        f16::narrow_into(src, dst);
    }

    fn widen_to_f32(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl KvValue for f16 {
    fn narrow_to_f16(src: &[Self], dst: &mut [f16]) {
        dst.copy_from_slice(src);
    }

    fn widen_to_f32(src: &[Self], dst: &mut [f32]) {
        widen_f16(src, dst);
    }
}

impl KvElem for f32 {
    const HALF: bool = false;

    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    fn narrow_into(src: &[f32], dst: &mut [Self]) {
        dst.copy_from_slice(src);
    }

    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn from_committed<V: KvValue>(src: &[V], dst: &mut [Self]) {
        V::widen_to_f32(src, dst);
    }
}

impl KvElem for f16 {
    const HALF: bool = true;

    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }

    /// Round to nearest even, as IEEE 754 defines the conversion: 16 at a
    /// time with AVX-512, `half`'s conversions otherwise (F16C's 8 at a
    /// time, or software): the same bits. A replay narrows its whole
    /// committed prefix (hundreds of thousands of values per cell of a
    /// long trace), where `half`'s call per 8 values showed.
    fn narrow_into(src: &[f32], dst: &mut [Self]) {
        assert_eq!(src.len(), dst.len(), "narrow_into: lengths differ");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the guard just checked AVX-512F; the lengths are equal.
            return unsafe { x86::narrow_avx512(src, dst) };
        }
        dst.convert_from_f32_slice(src);
    }

    fn widen_slice(src: &[Self], dst: &mut [f32]) {
        widen_f16(src, dst);
    }

    fn from_committed<V: KvValue>(src: &[V], dst: &mut [Self]) {
        V::narrow_to_f16(src, dst);
    }
}

/// `src` (f32 values) as f16 into `dst` (the same length), when every value
/// is an f16 value; else the index of the first that is not (and `dst`
/// partly written). What a verifier runs over the key/value rows of an
/// opening, hundreds of thousands of values per spot check: 16 at a time
/// with AVX-512 (round to f16 and back, compare the bits), 8 at a time
/// with AVX2 and F16C, the `half` conversions elsewhere (the same answer:
/// all round to nearest even).
pub fn narrow_f16_exact(src: &[f32], dst: &mut [f16]) -> Result<(), usize> {
    assert_eq!(src.len(), dst.len(), "narrow_f16_exact: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; the lengths are equal.
        return unsafe { x86::narrow_exact_avx512(src, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if super::isa::avx2_fma_f16c() {
        // SAFETY: the guard just checked AVX2 and F16C; the lengths are equal.
        return unsafe { x86::narrow_exact_f16c(src, dst) };
    }
    narrow_exact_portable(src, dst, 0)
}

/// `src` (f16) widened to f32 into `dst` (the same length), exactly.
pub fn widen_f16(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; the lengths are equal.
        return unsafe { x86::widen_avx512(src, dst) };
    }
    src.convert_to_f32_slice(dst);
}

/// [`narrow_f16_exact`] from element `from` on, with `half`'s conversions.
fn narrow_exact_portable(src: &[f32], dst: &mut [f16], from: usize) -> Result<(), usize> {
    dst[from..].convert_from_f32_slice(&src[from..]);
    match (from..src.len()).find(|&i| dst[i].to_f32().to_bits() != src[i].to_bits()) {
        Some(i) => Err(i),
        None => Ok(()),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, __m256i, _MM_FROUND_NO_EXC, _MM_FROUND_TO_NEAREST_INT, _mm_storeu_si128,
        _mm256_castps_si256, _mm256_castsi256_ps, _mm256_cmpeq_epi32, _mm256_cvtph_ps,
        _mm256_cvtps_ph, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_movemask_ps,
        _mm256_storeu_si256, _mm512_castps_si512, _mm512_cmpeq_epi32_mask, _mm512_cvtph_ps,
        _mm512_cvtps_ph, _mm512_loadu_ps, _mm512_storeu_ps,
    };

    use half::f16;

    /// # Safety
    /// AVX-512F; `src` and `dst` have the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn narrow_exact_avx512(src: &[f32], dst: &mut [f16]) -> Result<(), usize> {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: i + 16 <= whole <= src.len() = dst.len(); f16 is 2
            // bytes, so 16 of them are one unaligned 256-bit store.
            unsafe {
                let x = _mm512_loadu_ps(src.as_ptr().add(i));
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                let same = _mm512_cmpeq_epi32_mask(
                    _mm512_castps_si512(_mm512_cvtph_ps(h)),
                    _mm512_castps_si512(x),
                );
                if same != u16::MAX {
                    return Err(i + (!same).trailing_zeros() as usize);
                }
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast::<__m256i>(), h);
            }
        }
        super::narrow_exact_portable(src, dst, whole)
    }

    /// [`narrow_exact_avx512`] 8 at a time, for CPUs without AVX-512.
    ///
    /// # Safety
    /// AVX2 and F16C; `src` and `dst` have the same length.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) unsafe fn narrow_exact_f16c(src: &[f32], dst: &mut [f16]) -> Result<(), usize> {
        let whole = src.len() / 8 * 8;
        for i in (0..whole).step_by(8) {
            // SAFETY: i + 8 <= whole <= src.len() = dst.len(); 8 f16 are
            // one unaligned 128-bit store.
            unsafe {
                let x = _mm256_loadu_ps(src.as_ptr().add(i));
                // Round to nearest even (F16C's immediate has no bit for
                // exceptions, which are masked anyway).
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
                // Bits, not floats, are compared, as the portable loop does
                // (a NaN is exact when its bits come back).
                let same = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(
                    _mm256_castps_si256(_mm256_cvtph_ps(h)),
                    _mm256_castps_si256(x),
                )));
                if same != 0xFF {
                    return Err(i + (!same).trailing_zeros() as usize);
                }
                _mm_storeu_si128(dst.as_mut_ptr().add(i).cast::<__m128i>(), h);
            }
        }
        super::narrow_exact_portable(src, dst, whole)
    }

    /// # Safety
    /// AVX-512F; `src` and `dst` have the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn narrow_avx512(src: &[f32], dst: &mut [f16]) {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: i + 16 <= whole <= src.len() = dst.len().
            unsafe {
                let x = _mm512_loadu_ps(src.as_ptr().add(i));
                let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
                _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast::<__m256i>(), h);
            }
        }
        for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
            *d = f16::from_f32(*s);
        }
    }

    /// # Safety
    /// AVX-512F; `src` and `dst` have the same length.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn widen_avx512(src: &[f16], dst: &mut [f32]) {
        let whole = src.len() / 16 * 16;
        for i in (0..whole).step_by(16) {
            // SAFETY: i + 16 <= whole <= src.len() = dst.len().
            unsafe {
                let h = _mm256_loadu_si256(src.as_ptr().add(i).cast::<__m256i>());
                _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
            }
        }
        for (d, s) in dst[whole..].iter_mut().zip(&src[whole..]) {
            *d = f16::to_f32(*s);
        }
    }
}

/// `src` rounded to `T`, as a new vector.
pub(crate) fn narrowed<T: KvElem>(src: &[f32]) -> Vec<T> {
    let mut out = vec![T::default(); src.len()];
    T::narrow_into(src, &mut out);
    out
}

/// `src` widened to f32, appended to `out` (16 at a time with AVX-512).
pub(crate) fn widen_into<T: KvElem>(src: &[T], out: &mut Vec<f32>) {
    let at = out.len();
    out.resize(at + src.len(), 0.0);
    T::widen_slice(src, &mut out[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_narrowing_finds_the_first_value_that_is_not_an_f16() {
        // Longer than a vector, with a tail: both paths run.
        let xs: Vec<f32> = (0..37)
            .map(|i| f16::from_f32(i as f32 * 1.37 - 20.0).to_f32())
            .collect();
        let mut h = vec![f16::ZERO; xs.len()];
        assert_eq!(narrow_f16_exact(&xs, &mut h), Ok(()));
        let mut back = vec![0.0f32; xs.len()];
        widen_f16(&h, &mut back);
        assert_eq!(back, xs);
        assert_eq!(narrow_exact_portable(&xs, &mut h, 0), Ok(()));
        for bad in [3, 9, 16, 20, 36] {
            let mut ys = xs.clone();
            ys[bad] = f32::from_bits(ys[bad].to_bits() ^ 1);
            assert_eq!(narrow_f16_exact(&ys, &mut h), Err(bad));
            assert_eq!(narrow_exact_portable(&ys, &mut h, 0), Err(bad));
        }
        // A NaN whose bits survive the round trip is exact on every path,
        // one whose low payload bits do not is not.
        for (nan, want) in [(0x7FC0_0000u32, Ok(())), (0x7FC0_0001, Err(5))] {
            let mut ys = xs.clone();
            ys[5] = f32::from_bits(nan);
            assert_eq!(narrow_f16_exact(&ys, &mut h), want, "{nan:#x}");
            assert_eq!(narrow_exact_portable(&ys, &mut h, 0), want, "{nan:#x}");
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even_and_widens_exactly() {
        let xs = [
            1.0f32,
            1.0 + 1.0 / 2048.0, // halfway between two f16s: ties to even (1.0)
            1.0 + 3.0 / 2048.0, // halfway: ties to even (1 + 2/1024)
            -3.140_625,
            65504.0,
            1e-7, // below the smallest normal f16: a subnormal
            0.0,
            -0.0,
        ];
        let h: Vec<f16> = narrowed(&xs);
        assert_eq!(h[1].widen(), 1.0);
        assert_eq!(h[2].widen(), 1.0 + 2.0 / 1024.0);
        assert_eq!(h[3].widen(), -3.140_625);
        assert_eq!(h[4].widen(), 65504.0);
        // Two of the smallest subnormal (2^-24): 1e-7 is 1.68 of them.
        assert_eq!(h[5].widen(), 2.0 * 2f32.powi(-24));
        assert_eq!(h[7].widen().to_bits(), (-0.0f32).to_bits());
        // A vector's worth and a tail of values between f16s, ties, tiny
        // and huge ones: the vector path gives the software's bits.
        let many: Vec<f32> = (0..1000)
            .map(|i| ((i as f32) * 0.731 - 300.0) * 10f32.powi(i % 13 - 8))
            .chain([65520.0, -65520.0, 1e9, 3e-8, f32::INFINITY])
            .collect();
        let fast: Vec<f16> = narrowed(&many);
        for (x, y) in many.iter().zip(&fast) {
            assert_eq!(f16::from_f32_const(*x).to_bits(), y.to_bits(), "{x}");
        }
        // Element by element, the software conversion gives the same bits as
        // the slice conversion (F16C's where this CPU has it).
        for (x, y) in xs.iter().zip(&h) {
            assert_eq!(f16::from_f32_const(*x).to_bits(), y.to_bits(), "{x}");
        }
        let mut wide = Vec::new();
        widen_into(&h, &mut wide);
        let again: Vec<f16> = narrowed(&wide);
        assert_eq!(again, h);
    }
}
