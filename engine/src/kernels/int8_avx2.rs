//! The integer matmul in AVX2, for x86-64 CPUs without AVX-512 VNNI (AMD
//! Zen 1 to 3, Intel cores before Ice Lake): `vpmaddubsw` multiplies
//! unsigned weight bytes by signed activation bytes and adds neighbouring
//! products into i16, and `vpmaddwd` by ones adds those pairs into the i32
//! sums of 4 bytes that VNNI's `vpdpbusd` makes in one instruction. A
//! 256-bit register holds 8 of a group's 16 rows, so a group takes two
//! passes of 8 rows; the second finds the group's weights in the cache.
//!
//! The i16 step saturates at 32767, which neither format reaches:
//! - Q4_1 (quants 0 to 15): a pair is at most 2 · 15 · 127 = 3810, and the
//!   eight pairs a lane gathers over a block's eight runs at most 30480,
//!   so they are summed in i16 and widened once per block.
//! - Q8_0 (stored as `q + 128`, up to 255): 2 · 255 · 127 would saturate,
//!   so the kernel turns the bytes back into signed q and multiplies |q|
//!   (at most 128) by the activation with q's sign: at most 2 · 128 · 127
//!   = 32512 a pair, widened per run. That sum is Σ q·x itself, the value
//!   the other kernels reach by subtracting `128 · Σ qx`.
//!
//! Every integer sum is exact and the float chain is `int8_matmul`'s, so
//! the outputs have the portable loop's bits.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256, __m256i, _mm_loadu_si128, _mm256_add_epi16, _mm256_add_epi32, _mm256_and_si256,
    _mm256_cvtepi32_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_si256, _mm256_madd_epi16,
    _mm256_maddubs_epi16, _mm256_mul_ps, _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_epi32,
    _mm256_set1_ps, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_sign_epi8, _mm256_srli_epi16,
    _mm256_storeu_ps, _mm256_xor_si256,
};

use super::int8_matmul::{Job, OutRows};
#[cfg(target_arch = "x86_64")]
use super::int8_vnni::{PREFETCH_AHEAD, prefetch_block};
#[cfg(target_arch = "x86_64")]
use super::int8_weights::{Format, GROUP, Int8Weights, Q4_GROUP_BLOCK, Q8_GROUP_BLOCK};
use super::isa::avx2_fma_f16c;
#[cfg(target_arch = "x86_64")]
use crate::quant::QK;

/// Activation rows one pass keeps in registers: with a block's 8 weight
/// vectors, 4 accumulators fill the 16 AVX2 registers.
const ROWS: usize = 4;

/// Rows of a group in one 256-bit register of i32 or f32.
#[cfg(target_arch = "x86_64")]
const HALF: usize = GROUP / 2;

/// Groups `first..first + count` of the job into `out`; false (nothing
/// written) without AVX2 or when the arrays do not hold them.
pub(super) fn avx2_groups(job: &Job<'_>, first: usize, count: usize, out: &OutRows) -> bool {
    if !avx2_fma_f16c() || !job.takes(first, count) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        job.passes(first, count, ROWS, |g, i0, rows| {
            // SAFETY: AVX2, FMA and F16C were checked above; `takes`
            // vouches for every array read; rows i0..i0 + rows < n and this
            // task alone writes group g (the caller's contract).
            unsafe {
                match (job.w.format, rows) {
                    (Format::Q4_1, 1) => group::<true, 1>(job, g, i0, out),
                    (Format::Q4_1, 2) => group::<true, 2>(job, g, i0, out),
                    (Format::Q4_1, 3) => group::<true, 3>(job, g, i0, out),
                    (Format::Q4_1, _) => group::<true, 4>(job, g, i0, out),
                    (Format::Q8_0, 1) => group::<false, 1>(job, g, i0, out),
                    (Format::Q8_0, 2) => group::<false, 2>(job, g, i0, out),
                    (Format::Q8_0, 3) => group::<false, 3>(job, g, i0, out),
                    (Format::Q8_0, _) => group::<false, 4>(job, g, i0, out),
                }
            }
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Rows `8h..8h + 8` of group block `at` as 8 vectors of bytes: vector k
/// holds elements `4k..4k+4` of each of the 8 rows, unsigned quants for
/// Q4_1, signed q for Q8_0.
///
/// # Safety
/// AVX2; the group's block lies within `qs`; h is 0 or 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn weight_half<const Q4: bool>(qs: *const u8, at: usize, h: usize) -> [__m256i; 8] {
    let mut v = [_mm256_setzero_si256(); 8];
    if Q4 {
        let mask = _mm256_set1_epi8(0x0F);
        for p in 0..4 {
            // SAFETY: run p of the block lies within `qs` (the caller's
            // contract), and its half h is 32 of its 64 bytes.
            let raw =
                unsafe { _mm256_loadu_si256(qs.add(at * Q4_GROUP_BLOCK + p * 64 + h * 32).cast()) };
            v[2 * p] = _mm256_and_si256(raw, mask);
            v[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), mask);
        }
    } else {
        // `q + 128` xor 0x80 is q's two's complement byte.
        let flip = _mm256_set1_epi8(i8::MIN);
        for (k, vk) in v.iter_mut().enumerate() {
            // SAFETY: as above.
            let raw =
                unsafe { _mm256_loadu_si256(qs.add(at * Q8_GROUP_BLOCK + k * 64 + h * 32).cast()) };
            *vk = _mm256_xor_si256(raw, flip);
        }
    }
    v
}

/// Block `at`'s scales and (Q4_1) minimums of rows `8h..8h + 8` as f32
/// (exact from f16); zero minimums for Q8_0.
///
/// # Safety
/// AVX and F16C; block `at` (group-major) within the weights; h is 0 or 1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
#[inline]
unsafe fn half_scales<const Q4: bool>(w: &Int8Weights, at: usize, h: usize) -> (__m256, __m256) {
    // SAFETY: `d` (and Q4_1's `m`) hold 16 f16 per group and block.
    unsafe {
        let from = at * GROUP + h * HALF;
        let dv = _mm256_cvtph_ps(_mm_loadu_si128(w.d.as_ptr().add(from).cast()));
        let mv = if Q4 {
            _mm256_cvtph_ps(_mm_loadu_si128(w.m.as_ptr().add(from).cast()))
        } else {
            _mm256_setzero_ps()
        };
        (dv, mv)
    }
}

/// Activation rows `i0..i0 + R` against group g, into `out`.
///
/// # Safety
/// AVX2, FMA and F16C; group g within the weights, rows within the
/// activations (`Job::holds`) and below `out`'s n; no other thread writes
/// group g.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn group<const Q4: bool, const R: usize>(job: &Job<'_>, g: usize, i0: usize, out: &OutRows) {
    const { assert!(R >= 1 && R <= ROWS) };
    let (w, a) = (job.w, job.a);
    let (nbr, cols) = (w.nbr, a.cols);
    let xq = a.q.as_ptr();
    let (dxp, xsp) = (a.dx.as_ptr(), a.xs.as_ptr());
    let ones = _mm256_set1_epi16(1);
    let mut rows = [[0.0f32; GROUP]; R];
    for h in 0..2 {
        let mut acc: [__m256; R] = [_mm256_setzero_ps(); R];
        for b in 0..nbr {
            let at = g * nbr + b;
            if h == 0 {
                prefetch_block::<Q4>(w, at + PREFETCH_AHEAD);
            }
            // SAFETY: group g's block b is within the weights (the
            // caller's contract).
            let (wv, (dv, mv)) = unsafe {
                (
                    weight_half::<Q4>(w.qs.as_ptr(), at, h),
                    half_scales::<Q4>(w, at, h),
                )
            };
            // Q8_0's |q|, once for all rows.
            let magnitude: [__m256i; 8] = if Q4 {
                wv
            } else {
                std::array::from_fn(|k| _mm256_sign_epi8(wv[k], wv[k]))
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let ib = (i0 + r) * nbr + b;
                // SAFETY: row i0 + r's block b is within `q`, and `ib`
                // within `dx` and `xs` (`Job::holds`, the caller's
                // contract); unaligned 4-byte reads.
                let (x, dx, xs) = unsafe {
                    let xi = xq.add((i0 + r) * cols + b * QK);
                    let x: [__m256i; 8] = std::array::from_fn(|k| {
                        _mm256_set1_epi32(xi.add(4 * k).cast::<i32>().read_unaligned())
                    });
                    (x, *dxp.add(ib), *xsp.add(ib))
                };
                let isum = if Q4 {
                    let mut pairs = _mm256_setzero_si256();
                    for (wk, xk) in wv.iter().zip(&x) {
                        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(*wk, *xk));
                    }
                    _mm256_madd_epi16(pairs, ones)
                } else {
                    let mut sums = _mm256_setzero_si256();
                    for k in 0..8 {
                        let signed_x = _mm256_sign_epi8(x[k], wv[k]);
                        let pairs = _mm256_maddubs_epi16(magnitude[k], signed_x);
                        sums = _mm256_add_epi32(sums, _mm256_madd_epi16(pairs, ones));
                    }
                    sums
                };
                let s = _mm256_mul_ps(dv, _mm256_set1_ps(dx));
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, *acc);
                if Q4 {
                    *acc = _mm256_fmadd_ps(mv, _mm256_set1_ps(xs), *acc);
                }
            }
        }
        for (row, acc) in rows.iter_mut().zip(&acc) {
            // SAFETY: `row[8h..8h + 8]` is 8 floats.
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(h * HALF), *acc) };
        }
    }
    for (r, row) in rows.iter().enumerate() {
        // SAFETY: row i0 + r < n and group g is this task's (the caller's
        // contract).
        unsafe { out.put(i0 + r, g, row) };
    }
}
