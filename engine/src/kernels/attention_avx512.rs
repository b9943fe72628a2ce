//! Attention's two inner loops in AVX-512 intrinsics, for head dimensions
//! that are a multiple of 16 (at most 128).
//!
//! They run exactly the portable operations, so their bits are the
//! portable kernel's: a score is `kernels::dot` (16 lanes, a separately
//! rounded multiply and add per element, the fixed lane tree) times the
//! scale; the output is `o += p_j · v_j` for every key j in order. They
//! exist because the compiler summed each score's lanes with scalar adds
//! and kept the output row in memory between keys.
//!
//! Two more things keep the bits and save time. Scores go 16 keys at a
//! time: their 16 accumulators are reduced together by the same lane tree
//! (15 adds and 30 shuffles instead of 16 four-step horizontal sums). And
//! the two serial reductions around the softmax ride along: the scores
//! loop keeps a running maximum in a vector (the maximum of a set does not
//! depend on the order it is taken in), and the weighted sum adds up the
//! probabilities in key order, a chain of scalar adds that runs in the
//! shadow of the row's vector work instead of in a loop of its own.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_mul_ps, _mm512_permutexvar_ps,
    _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setr_epi32, _mm512_setzero_ps,
    _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
};

use super::LANES;
#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;

/// How many keys ahead of the ones being read both loops ask for the
/// cache's rows. A decode step's attention streams every cached key and
/// value of its sequences (f32: at 8 sequences of 250 positions about as
/// many bytes as SmolLM2's weights), rows a stride apart that the
/// hardware's prefetchers did not run ahead of.
#[cfg(target_arch = "x86_64")]
const PREFETCH_KEYS: usize = 16;

/// Asks for row `j`'s `V` vectors to be brought into the cache.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_row<const V: usize>(rows: &[f32], at: HeadRows, j: usize) {
    super::prefetch(rows, at.offset + j * at.stride, V * LANES);
}

/// Longest head handled here, in 16-lane vectors.
const MAX_VECS: usize = 8;

/// Where a head's rows lie in the key/value cache: row j's slice is
/// `offset + j * stride ..+ dh`.
#[derive(Clone, Copy)]
pub(super) struct HeadRows {
    pub(super) stride: usize,
    pub(super) offset: usize,
}

/// `scores[j] = dot(q, k_j) · scale` for `j < scores.len()`; returns their
/// maximum as `scores.iter().fold(-inf, f32::max)` gives it (NaN scores
/// ignored). `None` (nothing written) unless this CPU has AVX-512F,
/// `q.len()` is a multiple of 16 up to 128 and `k` holds every row.
pub(super) fn scores(
    q: &[f32],
    k: &[f32],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) -> Option<f32> {
    if !fits(q.len(), k.len(), at, scores.len()) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors).
        return Some(unsafe {
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
        });
    }
    None
}

/// `out = Σ_j p[j] · v_j` in key order, from `out = 0`; returns `Σ_j p[j]`
/// added in key order from 0. `None` (nothing written) under the same
/// conditions as [`scores`].
pub(super) fn weighted_sum(p: &[f32], v: &[f32], at: HeadRows, out: &mut [f32]) -> Option<f32> {
    if !fits(out.len(), v.len(), at, p.len()) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors).
        return Some(unsafe {
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
        });
    }
    None
}

fn fits(dh: usize, cache_len: usize, at: HeadRows, rows: usize) -> bool {
    dh > 0
        && dh.is_multiple_of(LANES)
        && dh <= MAX_VECS * LANES
        && (rows == 0 || at.offset + (rows - 1) * at.stride + dh <= cache_len)
}

/// Key j's score accumulator: lane l holds `Σ_c q[16c + l] · k_j[16c + l]`,
/// each product and sum rounded separately, c in order (`dot`'s lanes).
///
/// # Safety
/// AVX-512F; row j of `k` lies within it (`fits`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn lanes<const V: usize>(qv: &[__m512; V], k: &[f32], at: HeadRows, j: usize) -> __m512 {
    let row = at.offset + j * at.stride;
    let mut acc = _mm512_setzero_ps();
    for (c, qc) in qv.iter().enumerate() {
        // SAFETY: `row + c * 16 + 16 <= row + dh <= k.len()` (`fits`).
        let kc = unsafe { _mm512_loadu_ps(k.as_ptr().add(row + c * LANES)) };
        acc = _mm512_add_ps(acc, _mm512_mul_ps(*qc, kc));
    }
    acc
}

/// The horizontal sums of 16 vectors in one: lane i of the result is
/// `hsum512(v[i])`, by the same tree (lanes l and l + 8, then l and l + 4,
/// l and l + 2, then 0 and 1), each add with the same operands. A level
/// pairs two vectors: one shuffle gathers the lower partners of both,
/// another the upper ones, and one add does both vectors' additions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn hsum16(v: &[__m512; 16]) -> __m512 {
    // Level 1, vectors k and k + 8: 128-bit lanes 0, 1 of each, then 2, 3.
    let c: [__m512; 8] = std::array::from_fn(|k| {
        let lo = _mm512_shuffle_f32x4::<0b01_00_01_00>(v[k], v[k + 8]);
        let hi = _mm512_shuffle_f32x4::<0b11_10_11_10>(v[k], v[k + 8]);
        _mm512_add_ps(lo, hi)
    });
    // Level 2, vectors m and m + 4: 128-bit lanes 0, 2 of each, then 1, 3.
    // Lane L of e[m] now holds four partial sums of one vector:
    // m, m + 8, m + 4, m + 12 for L = 0..4.
    let e: [__m512; 4] = std::array::from_fn(|m| {
        let lo = _mm512_shuffle_f32x4::<0b10_00_10_00>(c[m], c[m + 4]);
        let hi = _mm512_shuffle_f32x4::<0b11_01_11_01>(c[m], c[m + 4]);
        _mm512_add_ps(lo, hi)
    });
    // Level 3, within 128 bits, vectors p and p + 2: elements 0, 1, then 2, 3.
    let g: [__m512; 2] = std::array::from_fn(|p| {
        let lo = _mm512_shuffle_ps::<0b01_00_01_00>(e[p], e[p + 2]);
        let hi = _mm512_shuffle_ps::<0b11_10_11_10>(e[p], e[p + 2]);
        _mm512_add_ps(lo, hi)
    });
    // Level 4: elements 0, 2, then 1, 3.
    let lo = _mm512_shuffle_ps::<0b10_00_10_00>(g[0], g[1]);
    let hi = _mm512_shuffle_ps::<0b11_01_11_01>(g[0], g[1]);
    let r = _mm512_add_ps(lo, hi);
    // Element e of 128-bit lane L holds vector [0, 2, 1, 3][e] + [0, 8, 4, 12][L];
    // gather them back into order.
    let order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
    _mm512_permutexvar_ps(order, r)
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
) -> f32 {
    let mut qv = [_mm512_setzero_ps(); V];
    for (c, v) in qv.iter_mut().enumerate() {
        // SAFETY: `c * 16 + 16 <= q.len()`.
        *v = unsafe { _mm512_loadu_ps(q.as_ptr().add(c * LANES)) };
    }
    let sv = _mm512_set1_ps(scale);
    // `max(s, m)` returns m when s is NaN, as `f32::max` ignores NaN.
    let mut maxv = _mm512_set1_ps(f32::NEG_INFINITY);
    let full = scores.len() / LANES * LANES;
    for j0 in (0..full).step_by(LANES) {
        for j in j0 + PREFETCH_KEYS..j0 + PREFETCH_KEYS + LANES {
            prefetch_row::<V>(k, at, j);
        }
        // SAFETY: keys j0..j0 + 16 are rows of `k` (`fits`).
        let acc: [__m512; LANES] = std::array::from_fn(|i| unsafe { lanes(&qv, k, at, j0 + i) });
        let s = _mm512_mul_ps(hsum16(&acc), sv);
        maxv = _mm512_max_ps(s, maxv);
        // SAFETY: `j0 + 16 <= full <= scores.len()`.
        unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(j0), s) };
    }
    let mut max = _mm512_reduce_max_ps(maxv);
    for (j, s) in scores.iter_mut().enumerate().skip(full) {
        // SAFETY: key j is a row of `k` (`fits`).
        *s = hsum(unsafe { lanes(&qv, k, at, j) }) * scale;
        max = max.max(*s);
    }
    max
}

/// # Safety
/// The CPU must have AVX-512F, and the shapes must pass `fits`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_sum_avx512<const V: usize>(
    p: &[f32],
    v: &[f32],
    at: HeadRows,
    out: &mut [f32],
) -> f32 {
    // A constant count keeps the output row in registers across keys (with
    // a run-time count the compiler kept it on the stack: a load and a store
    // per vector per key).
    let mut o = [_mm512_setzero_ps(); V];
    let mut sum = 0.0f32;
    for (j, &pj) in p.iter().enumerate() {
        prefetch_row::<V>(v, at, j + PREFETCH_KEYS);
        sum += pj;
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
    sum
}
