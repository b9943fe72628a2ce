//! Forge's CPU kernels: batch-invariant by construction.
//!
//! Every output element is reduced in one fixed order (fixed 16-lane
//! accumulators, blocks in file order, a fixed final tree), whatever the number
//! of rows computed together or the number of threads: work is split across
//! output elements only, never along a reduction. Only IEEE operations with
//! one defined rounding are used: multiply, add, and in the matmul explicit
//! fused multiply-add (`f32::mul_add`; Rust never contracts a separate
//! multiply and add into one), so the SIMD width chosen at run time changes
//! speed, not bits. This is what lets a verifier re-execute one
//! layer for one position and get the very bits the provider committed to.

mod attention;
mod attention_avx2;
mod attention_avx512;
mod exp;
mod int8_acts;
mod int8_amx;
mod int8_avx2;
mod int8_matmul;
mod int8_vnni;
mod int8_weights;
mod isa;
mod kv_elem;
mod matmul;
mod rowops;
mod tile_avx512;

pub(crate) use attention::{AttnSeq, AttnShape, attention, attention_many};
pub(crate) use exp::{exp_f32, exp_f64};
pub use isa::Isa;
pub(crate) use kv_elem::{KvElem, narrowed, widen_into};
pub use kv_elem::{KvValue, narrow_f16_exact, widen_f16};
pub use matmul::Numerics;
pub(crate) use matmul::QMatrix;
pub(crate) use rowops::{RopeTable, add_in_place, rms_norm, rope_in_place, silu_mul};

/// Asks for the cache lines of `data[from..from + len]` to be brought into
/// the cache (`prefetcht0`), when that range lies within `data`: a hint,
/// which changes no value. The kernels ask for what they will read a few
/// blocks or keys ahead, where the hardware's prefetchers did not run ahead
/// far enough (papers/results/prefetch-ab.md).
#[inline(always)]
pub(crate) fn prefetch<T>(data: &[T], from: usize, len: usize) {
    if let Some(part) = from.checked_add(len).and_then(|end| data.get(from..end)) {
        prefetch_offsets(part, (0..std::mem::size_of_val(part)).step_by(64));
    }
}

/// Asks for every cache line that `part` touches to be brought into the
/// cache (`prefetcht0`): a hint, which changes no value. Public for
/// callers outside the kernels that know what they will touch next, such
/// as a trace sink writing each layer's rows into its own cold buffer while
/// the weights stream through the cache (`part` may be a `Vec`'s spare
/// capacity, as `MaybeUninit`s: a prefetch reads nothing).
#[inline(always)]
pub fn prefetch_lines<T>(part: &[T]) {
    prefetch_offsets(part, line_offsets(std::mem::size_of_val(part)));
}

/// Byte offsets, each below `size`, that touch every 64-byte line of a
/// `size`-byte range wherever it starts: every 64 bytes from the start,
/// and the last byte (the line a small or unaligned range ends in).
fn line_offsets(size: usize) -> impl Iterator<Item = usize> {
    (0..size).step_by(64).chain(size.checked_sub(1))
}

/// `prefetcht0` at each byte offset of `part`; both callers pass offsets
/// below `size_of_val(part)`.
#[inline(always)]
fn prefetch_offsets<T>(part: &[T], offsets: impl Iterator<Item = usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = part.as_ptr().cast::<i8>();
        for off in offsets {
            debug_assert!(off < std::mem::size_of_val(part));
            // SAFETY: a prefetch reads and writes nothing architecturally
            // and cannot fault; the address lies within `part` (the callers'
            // offsets are below its size). SSE is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (part, offsets);
}

/// Accumulator lanes of every reduction.
pub(crate) const LANES: usize = 16;

/// Sum of the lanes in a fixed tree order.
#[inline(always)]
pub(crate) fn hsum(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// [`hsum`] of an AVX-512 vector: the same tree (lanes j and j + 8, then
/// j and j + 4, j and j + 2, then 0 and 1), in four shuffles and adds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn hsum512(a: std::arch::x86_64::__m512) -> f32 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_cvtss_f32, _mm512_shuffle_f32x4, _mm512_shuffle_ps,
    };
    // 0b11_10_11_10 moves 128-bit lanes 2, 3 down to 0, 1; 0b01 lane 1 to 0.
    let a = _mm512_add_ps(a, _mm512_shuffle_f32x4::<0b11_10_11_10>(a, a));
    let a = _mm512_add_ps(a, _mm512_shuffle_f32x4::<0b01>(a, a));
    // Within 128 bits: elements 2, 3 down to 0, 1; then element 1 to 0.
    let a = _mm512_add_ps(a, _mm512_shuffle_ps::<0b11_10_11_10>(a, a));
    let a = _mm512_add_ps(a, _mm512_shuffle_ps::<0b01>(a, a));
    _mm512_cvtss_f32(a)
}

/// Dot product in the fixed lane order (tail elements go to lanes in order).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let (x, y) = (
            &a[c * LANES..(c + 1) * LANES],
            &b[c * LANES..(c + 1) * LANES],
        );
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    for (j, i) in (chunks * LANES..a.len()).enumerate() {
        acc[j] += a[i] * b[i];
    }
    hsum(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line a range touches gets an offset, and no offset leaves the
    /// range (what the prefetch's safety rests on), at every start within
    /// a line and for empty, tiny and line-sized ranges.
    #[test]
    fn line_offsets_cover_every_line_and_stay_in_range() {
        for size in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 2304] {
            let offsets: Vec<usize> = line_offsets(size).collect();
            assert!(offsets.iter().all(|&o| o < size), "size {size}");
            for start in 0..64 {
                let lines = |o: usize| (start + o) / 64;
                let touched: Vec<usize> = (0..size).map(lines).collect();
                for line in touched {
                    assert!(
                        offsets.iter().any(|&o| lines(o) == line),
                        "size {size}, start {start}: line {line} missed"
                    );
                }
            }
        }
        // Ranges of any element type, uninitialised ones included.
        prefetch_lines::<u8>(&[]);
        prefetch_lines(&[(); 3]);
        prefetch_lines(&Vec::<f32>::with_capacity(100).spare_capacity_mut()[..100]);
    }
}
