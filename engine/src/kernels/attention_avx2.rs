//! Attention's two inner loops in AVX2 intrinsics (with F16C for f16
//! caches), for CPUs without AVX-512 (Zen 1 to 3, Intel before Ice Lake),
//! on the same shapes as [`super::attention_avx512`].
//!
//! They run exactly the portable operations, so their bits are the
//! portable kernel's. A score's 16 accumulator lanes (`kernels::dot`) are
//! two 8-lane registers, lanes 0 to 7 and 8 to 15, each adding its
//! separately rounded products vector by vector in order. The fixed lane
//! tree's first level (lane l plus lane l + 8) is then one add of the two
//! halves, and the rest of the tree runs on 8 keys at once in one register
//! ([`hsum8x8`]). The weighted sum adds `p_j · v_j` key by key, as the
//! portable loop does, with the output rows in registers; AVX2 has 16 of
//! them, not AVX-512's 32, so a group's rows are taken a few vectors at a
//! time ([`out_vectors_per_pass`]), each output element still adding its
//! keys in order.
//!
//! Before these loops, an AVX2 CPU ran the portable loops compiled for
//! AVX2: element-by-element f16 widening in software (the portable loop's
//! target features leave out F16C) and a scalar lane tree per key.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, __m256, _mm_loadu_si128, _mm256_add_ps, _mm256_castps256_ps128, _mm256_cvtph_ps,
    _mm256_extractf128_ps, _mm256_loadu_ps, _mm256_max_ps, _mm256_mul_ps, _mm256_permute_ps,
    _mm256_permute2f128_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_shuffle_ps, _mm256_storeu_ps,
};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps};

use super::LANES;
use super::attention_avx512::{HeadRows, MAX_GROUP, fits};
#[cfg(target_arch = "x86_64")]
use super::attention_avx512::{PREFETCH_KEYS, by_shape, prefetch_row};
use super::isa::avx2_fma_f16c;
use super::kv_elem::KvElem;

/// Floats in an AVX2 register.
#[cfg(target_arch = "x86_64")]
const HALF_LANES: usize = LANES / 2;

/// Keys whose scores one pass of [`scores`] computes together: one
/// register of results, 16 accumulators (two per key) live at once.
#[cfg(target_arch = "x86_64")]
const KEYS: usize = 8;

/// [`super::attention_avx512::scores`] on AVX2: the same values, the same
/// `None` cases except that the CPU must have AVX2, FMA and F16C.
pub(super) fn scores<T: KvElem>(
    q: &[f32],
    g: usize,
    k: &[T],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) -> Option<[f32; MAX_GROUP]> {
    let dh = fits(g, q.len(), k.len(), at, scores.len()).filter(|_| avx2_fma_f16c())?;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the guard just checked AVX2 and F16C; `fits` checked the
        // shapes (16 to 128 floats per row, so 1 to 8 vectors; 1 to 4 heads).
        Some(unsafe { by_shape!(scores_avx2, dh, g, (q, k, at, scale, scores)) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// [`super::attention_avx512::weighted_sum`] on AVX2: the same values, the
/// same `None` cases except that the CPU must have AVX2, FMA and F16C.
pub(super) fn weighted_sum<T: KvElem>(
    p: &[f32],
    g: usize,
    v: &[T],
    at: HeadRows,
    out: &mut [f32],
) -> Option<[f32; MAX_GROUP]> {
    let dh = fits(g, out.len(), v.len(), at, p.len()).filter(|_| avx2_fma_f16c())?;
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_group {
            ($w:literal) => {
                match g {
                    1 => weighted_sum_avx2::<$w, 1, T>(p, v, at, out),
                    2 => weighted_sum_avx2::<$w, 2, T>(p, v, at, out),
                    3 => weighted_sum_avx2::<$w, 3, T>(p, v, at, out),
                    _ => weighted_sum_avx2::<$w, 4, T>(p, v, at, out),
                }
            };
        }
        // SAFETY: the guard just checked AVX2 and F16C; `fits` checked the
        // shapes, and the pass width divides the row's vectors.
        Some(unsafe {
            match out_vectors_per_pass(dh / LANES, g) {
                4 => by_group!(4),
                2 => by_group!(2),
                _ => by_group!(1),
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// How many of a row's 16-float vectors the weighted sum keeps in
/// registers per pass over the keys, for `vectors` per row and `g` heads:
/// the most of 4, 2 and 1 that divides `vectors` and leaves `g` heads' halves
/// (two registers a vector) within 12 of the 16 registers (the value row's
/// load and the broadcast weight take the others). SmolLM2's decode step
/// (one head of 64 floats) takes its row in one pass; a prefill's groups
/// of three heads in two.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn out_vectors_per_pass(vectors: usize, g: usize) -> usize {
    [4, 2, 1]
        .into_iter()
        .find(|w| vectors.is_multiple_of(*w) && 2 * g * w <= 12)
        .unwrap_or(1)
}

/// The lane tree's levels after the first (lanes l and l + 4, l and
/// l + 2, then 0 and 1), on 8 vectors at once: lane i of the result is
/// that tree's sum of `v[i]`, each add with the portable tree's operands.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn hsum8x8(v: &[__m256; KEYS]) -> __m256 {
    // Lanes l and l + 4: the low 128 bits of m and m + 4 against their
    // high 128 bits. c[m] holds vector m's four sums below, m + 4's above.
    let c: [__m256; 4] = std::array::from_fn(|m| {
        let lo = _mm256_permute2f128_ps::<0x20>(v[m], v[m + 4]);
        let hi = _mm256_permute2f128_ps::<0x31>(v[m], v[m + 4]);
        _mm256_add_ps(lo, hi)
    });
    // Lanes l and l + 2, within 128 bits, of c[p] and c[p + 2]: elements
    // 0, 1 against 2, 3. e[p]'s low half holds vectors p, p + 2 (two sums
    // each), its high half p + 4, p + 6.
    let e: [__m256; 2] = std::array::from_fn(|p| {
        let lo = _mm256_shuffle_ps::<0b01_00_01_00>(c[p], c[p + 2]);
        let hi = _mm256_shuffle_ps::<0b11_10_11_10>(c[p], c[p + 2]);
        _mm256_add_ps(lo, hi)
    });
    // Lanes 0 and 1: elements 0, 2 against 1, 3. Element i of the low half
    // holds vector [0, 2, 1, 3][i], of the high half 4 more.
    let lo = _mm256_shuffle_ps::<0b10_00_10_00>(e[0], e[1]);
    let hi = _mm256_shuffle_ps::<0b11_01_11_01>(e[0], e[1]);
    _mm256_permute_ps::<0b11_01_10_00>(_mm256_add_ps(lo, hi))
}

/// `kernels::hsum` of the 16 lanes `lo` (0 to 7) and `hi` (8 to 15).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn hsum16(lo: __m256, hi: __m256) -> f32 {
    let a = _mm256_add_ps(lo, hi);
    let b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
    let c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps::<0b01>(c, c)))
}

/// 8 cache elements from `p` as f32 lanes: loaded as they are, or (f16)
/// widened, exactly, by `vcvtph2ps`.
///
/// # Safety
/// AVX2 and F16C; `p..p + 8` lies within one slice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn load8<T: KvElem>(p: *const T) -> __m256 {
    // SAFETY: 8 elements from `p` are readable (caller): 16 bytes of f16
    // or 32 of f32; both loads are unaligned.
    unsafe {
        if T::HALF {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>()))
        } else {
            _mm256_loadu_ps(p.cast::<f32>())
        }
    }
}

/// Key `j`'s unscaled score against the query row `q` (`16 V` floats):
/// `dot(q, k_j)`'s two accumulator halves, vector by vector, and its tree.
///
/// # Safety
/// AVX2 and F16C; row j lies within `k` and `q` holds `16 V` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn key_score<const V: usize, T: KvElem>(q: &[f32], k: &[T], at: HeadRows, j: usize) -> f32 {
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let row = at.offset + j * at.stride;
    for c in 0..V {
        // SAFETY: `c * 16 + 16 <= 16 V`, within `q` and within row j (caller).
        unsafe {
            let (q0, q1) = (
                _mm256_loadu_ps(q.as_ptr().add(c * LANES)),
                _mm256_loadu_ps(q.as_ptr().add(c * LANES + HALF_LANES)),
            );
            let k0 = load8(k.as_ptr().add(row + c * LANES));
            let k1 = load8(k.as_ptr().add(row + c * LANES + HALF_LANES));
            lo = _mm256_add_ps(lo, _mm256_mul_ps(q0, k0));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(q1, k1));
        }
    }
    hsum16(lo, hi)
}

/// Lane i: key j0 + i's unscaled score against `q` (`16 V` floats), for
/// the 8 keys from j0. Each half of the 16 lanes runs over all the keys
/// before the other, so only 8 accumulators are live at a time.
///
/// # Safety
/// AVX2 and F16C; rows j0..j0 + 8 lie within `k` and `q` holds `16 V`
/// floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn chunk_scores<const V: usize, T: KvElem>(
    q: &[f32],
    k: &[T],
    at: HeadRows,
    j0: usize,
) -> __m256 {
    let mut halves = [[_mm256_setzero_ps(); KEYS]; 2];
    for (half, acc) in halves.iter_mut().enumerate() {
        for c in 0..V {
            let col = c * LANES + half * HALF_LANES;
            // SAFETY: `col + 8 <= 16 V`: within `q`.
            let qc = unsafe { _mm256_loadu_ps(q.as_ptr().add(col)) };
            for (i, a) in acc.iter_mut().enumerate() {
                let at_row = at.offset + (j0 + i) * at.stride;
                // SAFETY: `col + 8 <= 16 V`: within row j0 + i (caller).
                let kc = unsafe { load8(k.as_ptr().add(at_row + col)) };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(qc, kc));
            }
        }
    }
    let [lo, hi] = halves;
    let first: [__m256; KEYS] = std::array::from_fn(|i| _mm256_add_ps(lo[i], hi[i]));
    hsum8x8(&first)
}

/// # Safety
/// AVX2 and F16C, and the shapes must pass `fits` (`q` holds `G` rows of
/// `16 V` floats, `scores` `G` runs of keys).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scores_avx2<const V: usize, const G: usize, T: KvElem>(
    q: &[f32],
    k: &[T],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) -> [f32; MAX_GROUP] {
    let n = scores.len() / G;
    let dh = V * LANES;
    let sv = _mm256_set1_ps(scale);
    let full = n / KEYS * KEYS;
    // `max(s, m)` returns m when s is NaN, as `f32::max` ignores NaN.
    let mut maxv = [_mm256_set1_ps(f32::NEG_INFINITY); G];
    // 8 keys at a time, every head of the group on them while their rows
    // are in the first-level cache (as the AVX-512 loop does).
    for j0 in (0..full).step_by(KEYS) {
        for j in j0 + PREFETCH_KEYS..j0 + PREFETCH_KEYS + KEYS {
            prefetch_row::<V, T>(k, at, j);
        }
        for (h, maxh) in maxv.iter_mut().enumerate() {
            // SAFETY: keys j0..j0 + 8 < full <= n are rows of `k` (`fits`);
            // head h's query row is `q[h * dh..][..dh]`.
            let sums = unsafe { chunk_scores::<V, T>(&q[h * dh..][..dh], k, at, j0) };
            let s = _mm256_mul_ps(sums, sv);
            *maxh = _mm256_max_ps(s, *maxh);
            // SAFETY: `h * n + j0 + 8 <= h * n + n <= scores.len()`.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(h * n + j0), s) };
        }
    }
    let mut max = [f32::NEG_INFINITY; MAX_GROUP];
    for (m, v) in max.iter_mut().zip(maxv) {
        let mut lanes = [0.0f32; HALF_LANES];
        // SAFETY: `lanes` holds 8 floats; the store is unaligned.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        *m = lanes.into_iter().fold(f32::NEG_INFINITY, f32::max);
    }
    for j in full..n {
        for h in 0..G {
            // SAFETY: key j < n is a row of `k` (`fits`); head h's row has
            // 16 V floats.
            let s = unsafe { key_score::<V, T>(&q[h * dh..][..dh], k, at, j) } * scale;
            scores[h * n + j] = s;
            max[h] = max[h].max(s);
        }
    }
    max
}

/// # Safety
/// AVX2 and F16C, and the shapes must pass `fits` (`out` holds `G` rows,
/// `p` `G` runs of keys), with `W` dividing the rows' 16-float vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn weighted_sum_avx2<const W: usize, const G: usize, T: KvElem>(
    p: &[f32],
    v: &[T],
    at: HeadRows,
    out: &mut [f32],
) -> [f32; MAX_GROUP] {
    let n = p.len() / G;
    let dh = out.len() / G;
    let mut sum = [0.0f32; MAX_GROUP];
    for (pass, col0) in (0..dh).step_by(W * LANES).enumerate() {
        // Constant counts keep the output vectors in registers across keys
        // (see the AVX-512 loop).
        let mut o = [[[_mm256_setzero_ps(); 2]; W]; G];
        for j in 0..n {
            let ahead = at.offset + (j + PREFETCH_KEYS) * at.stride + col0;
            super::prefetch(v, ahead, W * LANES);
            let row = at.offset + j * at.stride + col0;
            // SAFETY: key j < n is a row of `v` (`fits`); `col0 + 16 W <= dh`.
            let vr: [[__m256; 2]; W] = std::array::from_fn(|c| {
                std::array::from_fn(|half| unsafe {
                    load8(v.as_ptr().add(row + c * LANES + half * HALF_LANES))
                })
            });
            for h in 0..G {
                let pj = p[h * n + j];
                if pass == 0 {
                    sum[h] += pj;
                }
                let pv = _mm256_set1_ps(pj);
                for (oc, vc) in o[h].iter_mut().zip(&vr) {
                    for (oh, vh) in oc.iter_mut().zip(vc) {
                        *oh = _mm256_add_ps(*oh, _mm256_mul_ps(pv, *vh));
                    }
                }
            }
        }
        for (h, oh) in o.iter().enumerate() {
            for (c, oc) in oh.iter().enumerate() {
                for (half, x) in oc.iter().enumerate() {
                    // SAFETY: `h dh + col0 + 16 c + 8 half + 8 <= G dh =
                    // out.len()`; the store is unaligned.
                    unsafe {
                        let at = h * dh + col0 + c * LANES + half * HALF_LANES;
                        _mm256_storeu_ps(out.as_mut_ptr().add(at), *x);
                    }
                }
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_widths_divide_the_row_and_fit_the_registers() {
        for vectors in 1..=8 {
            for g in 1..=MAX_GROUP {
                let w = out_vectors_per_pass(vectors, g);
                assert!(vectors.is_multiple_of(w), "{vectors} vectors, {g} heads");
                assert!(2 * g * w <= 12 || w == 1, "{vectors} vectors, {g} heads");
            }
        }
        assert_eq!(out_vectors_per_pass(4, 1), 4);
        assert_eq!(out_vectors_per_pass(4, 3), 2);
        assert_eq!(out_vectors_per_pass(3, 2), 1);
    }
}
