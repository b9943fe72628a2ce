//! Attention's two inner loops in AVX-512 intrinsics, for head dimensions
//! that are a multiple of 16 (at most 128).
//!
//! They run exactly the portable operations, so their bits are the
//! portable kernel's: a score is `kernels::dot` (16 lanes, a separately
//! rounded multiply and add per element, the fixed lane tree) times the
//! scale; the output is `o += p_j · v_j` for every key j in order. They
//! exist because the compiler summed each score's lanes with scalar adds
//! and kept the output row in memory between keys.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
    _mm512_storeu_ps,
};

use super::LANES;
#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;

/// Longest head handled here, in 16-lane vectors.
const MAX_VECS: usize = 8;

/// Where a head's rows lie in the key/value cache: row j's slice is
/// `offset + j * stride ..+ dh`.
#[derive(Clone, Copy)]
pub(super) struct HeadRows {
    pub(super) stride: usize,
    pub(super) offset: usize,
}

/// `scores[j] = dot(q, k_j) · scale` for `j < scores.len()`. False (nothing
/// written) unless this CPU has AVX-512F, `q.len()` is a multiple of 16 up
/// to 128 and `k` holds every row.
pub(super) fn scores(q: &[f32], k: &[f32], at: HeadRows, scale: f32, scores: &mut [f32]) -> bool {
    if !fits(q.len(), k.len(), at, scores.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors).
        unsafe {
            match q.len() / LANES {
                1 => scores_avx512::<1>(q, k, at, scale, scores),
                2 => scores_avx512::<2>(q, k, at, scale, scores),
                3 => scores_avx512::<3>(q, k, at, scale, scores),
                4 => scores_avx512::<4>(q, k, at, scale, scores),
                5 => scores_avx512::<5>(q, k, at, scale, scores),
                6 => scores_avx512::<6>(q, k, at, scale, scores),
                7 => scores_avx512::<7>(q, k, at, scale, scores),
                _ => scores_avx512::<8>(q, k, at, scale, scores),
            }
        }
        return true;
    }
    false
}

/// `out = Σ_j p[j] · v_j` in key order, from `out = 0`. False (nothing
/// written) under the same conditions as [`scores`].
pub(super) fn weighted_sum(p: &[f32], v: &[f32], at: HeadRows, out: &mut [f32]) -> bool {
    if !fits(out.len(), v.len(), at, p.len()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors).
        unsafe {
            match out.len() / LANES {
                1 => weighted_sum_avx512::<1>(p, v, at, out),
                2 => weighted_sum_avx512::<2>(p, v, at, out),
                3 => weighted_sum_avx512::<3>(p, v, at, out),
                4 => weighted_sum_avx512::<4>(p, v, at, out),
                5 => weighted_sum_avx512::<5>(p, v, at, out),
                6 => weighted_sum_avx512::<6>(p, v, at, out),
                7 => weighted_sum_avx512::<7>(p, v, at, out),
                _ => weighted_sum_avx512::<8>(p, v, at, out),
            }
        }
        return true;
    }
    false
}

fn fits(dh: usize, cache_len: usize, at: HeadRows, rows: usize) -> bool {
    dh > 0
        && dh.is_multiple_of(LANES)
        && dh <= MAX_VECS * LANES
        && (rows == 0 || at.offset + (rows - 1) * at.stride + dh <= cache_len)
}

/// # Safety
/// The CPU must have AVX-512F, and the shapes must pass `fits`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512<const V: usize>(
    q: &[f32],
    k: &[f32],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) {
    let mut qv = [_mm512_setzero_ps(); V];
    for (c, v) in qv.iter_mut().enumerate() {
        // SAFETY: `c * 16 + 16 <= q.len()`.
        *v = unsafe { _mm512_loadu_ps(q.as_ptr().add(c * LANES)) };
    }
    for (j, s) in scores.iter_mut().enumerate() {
        let row = at.offset + j * at.stride;
        let mut acc = _mm512_setzero_ps();
        for (c, qc) in qv.iter().enumerate() {
            // SAFETY: `row + c * 16 + 16 <= row + dh <= k.len()` (`fits`).
            let kc = unsafe { _mm512_loadu_ps(k.as_ptr().add(row + c * LANES)) };
            acc = _mm512_add_ps(acc, _mm512_mul_ps(*qc, kc));
        }
        *s = hsum(acc) * scale;
    }
}

/// # Safety
/// The CPU must have AVX-512F, and the shapes must pass `fits`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_sum_avx512<const V: usize>(p: &[f32], v: &[f32], at: HeadRows, out: &mut [f32]) {
    // A constant count keeps the output row in registers across keys (with
    // a run-time count the compiler kept it on the stack: a load and a store
    // per vector per key).
    let mut o = [_mm512_setzero_ps(); V];
    for (j, &pj) in p.iter().enumerate() {
        let row = at.offset + j * at.stride;
        let pv = _mm512_set1_ps(pj);
        for (c, oc) in o.iter_mut().enumerate() {
            // SAFETY: `row + c * 16 + 16 <= row + dh <= v.len()` (`fits`).
            let vc = unsafe { _mm512_loadu_ps(v.as_ptr().add(row + c * LANES)) };
            *oc = _mm512_add_ps(*oc, _mm512_mul_ps(pv, vc));
        }
    }
    for (c, oc) in o.iter().enumerate() {
        // SAFETY: `c * 16 + 16 <= out.len()`; the store is unaligned.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(c * LANES), *oc) };
    }
}
