//! The integer matmul in AVX-512 with VNNI: `vpdpbusd` multiplies 4
//! unsigned weight bytes of each of 16 rows by 4 broadcast activation bytes
//! and adds them into the rows' 16 i32 lanes, so a block of 32 takes 8 of
//! them per activation row, and the float chain of `int8_matmul` runs
//! with the 16 rows in the lanes. Up to 8 activation rows share each
//! block's unpacked weights in registers.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512, __m512i, _mm256_loadu_si256, _mm512_add_epi32, _mm512_and_si512, _mm512_cvtepi32_ps,
    _mm512_cvtph_ps, _mm512_dpbusd_epi32, _mm512_fmadd_ps, _mm512_loadu_si512, _mm512_mul_ps,
    _mm512_set1_epi8, _mm512_set1_epi32, _mm512_set1_ps, _mm512_setzero_ps, _mm512_setzero_si512,
    _mm512_srli_epi16, _mm512_storeu_ps, _mm512_sub_epi32,
};

use super::int8_matmul::{Job, OutRows};
use super::int8_weights::GROUP;
#[cfg(target_arch = "x86_64")]
use super::int8_weights::{Format, Int8Weights, Q4_GROUP_BLOCK, Q8_GROUP_BLOCK};
#[cfg(target_arch = "x86_64")]
use crate::quant::QK;

/// Activation rows one pass keeps in registers (the row macro in
/// [`group`] is written out for this many).
const ROWS: usize = 8;

/// How many blocks ahead of the one it multiplies a pass asks for the
/// weights (4 KiB of Q4_1). A task's groups lie one after the other, so
/// this runs ahead across groups too. Without it the loads of each block
/// waited on memory: a one-row decode step of SmolLM2 went from about 4.5
/// to 2.7 ms and an eight-row one from 10.4 to 8 ms (criterion, 2 cores);
/// 4 and 8 blocks gained less, 24 to 64 no more
/// (papers/results/prefetch-ab.md).
pub(super) const PREFETCH_AHEAD: usize = 16;

/// Whether this CPU has AVX-512 (F, BW) with VNNI.
pub(super) fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Groups `first..first + count` of the job into `out`; false (nothing
/// written) without VNNI or when the arrays do not hold them.
pub(super) fn vnni_groups(job: &Job<'_>, first: usize, count: usize, out: &OutRows) -> bool {
    if !vnni_available() || !job.takes(first, count) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        job.passes(first, count, ROWS, |g, i0, rows| {
            // SAFETY: VNNI was checked above; `takes` vouches for every
            // array read; rows i0..i0 + rows < n and this task alone writes
            // group g (the caller's contract).
            unsafe {
                match job.w.format {
                    Format::Q4_1 => rows_pass::<true>(job, g, i0, rows, out),
                    Format::Q8_0 => rows_pass::<false>(job, g, i0, rows, out),
                }
            }
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`group`] for `rows` (1 to 8) activation rows from `i0`.
///
/// # Safety
/// As [`group`]'s.
#[cfg(target_arch = "x86_64")]
unsafe fn rows_pass<const Q4: bool>(
    job: &Job<'_>,
    g: usize,
    i0: usize,
    rows: usize,
    out: &OutRows,
) {
    // SAFETY: the caller's contract, for each row count.
    unsafe {
        match rows {
            1 => group::<Q4, 1>(job, g, i0, out),
            2 => group::<Q4, 2>(job, g, i0, out),
            3 => group::<Q4, 3>(job, g, i0, out),
            4 => group::<Q4, 4>(job, g, i0, out),
            5 => group::<Q4, 5>(job, g, i0, out),
            6 => group::<Q4, 6>(job, g, i0, out),
            7 => group::<Q4, 7>(job, g, i0, out),
            _ => group::<Q4, 8>(job, g, i0, out),
        }
    }
}

/// Block b of group g as 8 vectors of unsigned bytes: vector k holds
/// elements `4k..4k+4` of each of the 16 rows.
///
/// # Safety
/// AVX-512F/BW; the group's block lies within `qs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub(super) unsafe fn weight_rows<const Q4: bool>(qs: *const u8, at: usize) -> [__m512i; 8] {
    let mut v = [_mm512_setzero_si512(); 8];
    if Q4 {
        let mask = _mm512_set1_epi8(0x0F);
        for p in 0..4 {
            // SAFETY: run p of the block lies within `qs` (the caller's contract).
            let raw = unsafe { _mm512_loadu_si512(qs.add(at * Q4_GROUP_BLOCK + p * 64).cast()) };
            v[2 * p] = _mm512_and_si512(raw, mask);
            v[2 * p + 1] = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), mask);
        }
    } else {
        for (k, vk) in v.iter_mut().enumerate() {
            // SAFETY: as above.
            *vk = unsafe { _mm512_loadu_si512(qs.add(at * Q8_GROUP_BLOCK + k * 64).cast()) };
        }
    }
    v
}

/// Asks for block `at` (group-major) of the weights, its quants, scales
/// and minimums, to be brought into the cache; nothing past the weights.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn prefetch_block<const Q4: bool>(w: &Int8Weights, at: usize) {
    let bytes = if Q4 { Q4_GROUP_BLOCK } else { Q8_GROUP_BLOCK };
    super::prefetch(&w.qs, at * bytes, bytes);
    super::prefetch(&w.d, at * GROUP, GROUP);
    if Q4 {
        super::prefetch(&w.m, at * GROUP, GROUP);
    }
}

/// Block `at`'s 16 scales and (Q4_1) minimums as f32 (exact from f16);
/// zero minimums for Q8_0.
///
/// # Safety
/// AVX-512F; block `at` (group-major) within the weights.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn block_scales<const Q4: bool>(w: &Int8Weights, at: usize) -> (__m512, __m512) {
    // SAFETY: `d` (and Q4_1's `m`) hold 16 f16 per group and block.
    unsafe {
        let dv = _mm512_cvtph_ps(_mm256_loadu_si256(w.d.as_ptr().add(at * GROUP).cast()));
        let mv = if Q4 {
            _mm512_cvtph_ps(_mm256_loadu_si256(w.m.as_ptr().add(at * GROUP).cast()))
        } else {
            _mm512_setzero_ps()
        };
        (dv, mv)
    }
}

/// Activation rows `i0..i0 + R` against group g, into `out`.
///
/// # Safety
/// AVX-512F/BW, VNNI and FMA; group g within the weights, rows within the
/// activations (`Job::holds`) and below `out`'s n; no other thread writes
/// group g.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,fma")]
unsafe fn group<const Q4: bool, const R: usize>(job: &Job<'_>, g: usize, i0: usize, out: &OutRows) {
    const { assert!(R >= 1 && R <= ROWS) };
    let (w, a) = (job.w, job.a);
    let (nbr, cols) = (w.nbr, a.cols);
    let mut acc: [__m512; R] = [_mm512_setzero_ps(); R];
    let xq = a.q.as_ptr();
    let (dxp, xsp, c128p) = (a.dx.as_ptr(), a.xs.as_ptr(), a.c128.as_ptr());
    for b in 0..nbr {
        let at = g * nbr + b;
        prefetch_block::<Q4>(w, at + PREFETCH_AHEAD);
        // SAFETY: group g's block b is within the weights (the caller's contract).
        let wv = unsafe { weight_rows::<Q4>(w.qs.as_ptr(), at) };
        // SAFETY: block `at` is within the weights (the caller's contract).
        let (dv, mv) = unsafe { block_scales::<Q4>(w, at) };
        // One activation row's block against the 16 weight rows. Written
        // out for each row (a loop kept the accumulators on the stack and
        // reloaded the activation arrays' pointers on every row).
        macro_rules! row {
            ($r:literal) => {
                if $r < R {
                    let i = i0 + $r;
                    let ib = i * nbr + b;
                    // SAFETY: row i's block b is within `q`, and `ib`
                    // within `dx`, `xs` and `c128` (`Job::holds`, the
                    // caller's contract); unaligned 4-byte reads.
                    let (x, dx, xs, c) = unsafe {
                        let xi = xq.add(i * cols + b * QK);
                        let x: [__m512i; 8] = std::array::from_fn(|k| {
                            _mm512_set1_epi32(xi.add(4 * k).cast::<i32>().read_unaligned())
                        });
                        (x, *dxp.add(ib), *xsp.add(ib), *c128p.add(ib))
                    };
                    // Two chains (even and odd k) of four, for latency;
                    // the integer sums are exact in any order.
                    let mut chains = [_mm512_setzero_si512(); 2];
                    for (k, (wk, xk)) in wv.iter().zip(&x).enumerate() {
                        chains[k % 2] = _mm512_dpbusd_epi32(chains[k % 2], *wk, *xk);
                    }
                    let mut isum = _mm512_add_epi32(chains[0], chains[1]);
                    if !Q4 {
                        isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(c));
                    }
                    let s = _mm512_mul_ps(dv, _mm512_set1_ps(dx));
                    acc[$r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, acc[$r]);
                    if Q4 {
                        acc[$r] = _mm512_fmadd_ps(mv, _mm512_set1_ps(xs), acc[$r]);
                    }
                }
            };
        }
        row!(0);
        row!(1);
        row!(2);
        row!(3);
        row!(4);
        row!(5);
        row!(6);
        row!(7);
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut v = [0.0f32; GROUP];
        // SAFETY: `v` is 16 floats; row i0 + r < n and group g is this
        // task's (the caller's contract).
        unsafe {
            _mm512_storeu_ps(v.as_mut_ptr(), *acc);
            out.put(i0 + r, g, &v);
        }
    }
}
