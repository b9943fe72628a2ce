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
//!
//! The cache's rows are f32 or f16 ([`KvElem`]); f16 rows are widened to
//! f32 as they are loaded (exactly), so both give the portable kernel's
//! bits on the same widened values.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m256i, __m512, _mm256_loadu_si256, _mm512_add_ps, _mm512_cvtph_ps, _mm512_loadu_ps,
    _mm512_max_ps, _mm512_mul_ps, _mm512_permutexvar_ps, _mm512_reduce_max_ps, _mm512_set1_ps,
    _mm512_setr_epi32, _mm512_setzero_ps, _mm512_shuffle_f32x4, _mm512_shuffle_ps,
    _mm512_storeu_ps,
};

use super::LANES;
#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;
use super::kv_elem::KvElem;

/// How many keys ahead of the ones being read both loops ask for the
/// cache's rows. A decode step's attention streams every cached key and
/// value of its sequences (f32: at 8 sequences of 250 positions about as
/// many bytes as SmolLM2's weights; half that in f16), rows a stride apart
/// that the hardware's prefetchers did not run ahead of.
#[cfg(target_arch = "x86_64")]
pub(super) const PREFETCH_KEYS: usize = 16;

/// Asks for row `j`'s `V` vectors to be brought into the cache.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn prefetch_row<const V: usize, T>(rows: &[T], at: HeadRows, j: usize) {
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

/// Most query heads one call handles together (heads that share a key/value
/// head, so each cached row is read once for all of them).
pub(super) const MAX_GROUP: usize = 4;

/// Dispatches `$f::<V, G>` on a row of `$dh` floats (`V = dh / 16`) and `$g`
/// heads.
macro_rules! by_shape {
    ($f:ident, $dh:expr, $g:expr, ($($arg:expr),*)) => {{
        macro_rules! by_group {
            ($v:literal) => {
                match $g {
                    1 => $f::<$v, 1, _>($($arg),*),
                    2 => $f::<$v, 2, _>($($arg),*),
                    3 => $f::<$v, 3, _>($($arg),*),
                    _ => $f::<$v, 4, _>($($arg),*),
                }
            };
        }
        match $dh / LANES {
            1 => by_group!(1),
            2 => by_group!(2),
            3 => by_group!(3),
            4 => by_group!(4),
            5 => by_group!(5),
            6 => by_group!(6),
            7 => by_group!(7),
            _ => by_group!(8),
        }
    }};
}
pub(super) use by_shape;

/// For each of `g` query heads (`q`: their rows of `dh` floats side by
/// side) and every key j < n (`scores.len() = g * n`, head by head):
/// `scores[h * n + j] = dot(q_h, k_j) · scale`; returns each head's maximum
/// as `fold(-inf, f32::max)` gives it (NaN scores ignored). `None` (nothing
/// written) unless this CPU has AVX-512F, `dh` is a multiple of 16 up to
/// 128, `g` is 1 to [`MAX_GROUP`] and `k` holds every row.
pub(super) fn scores<T: KvElem>(
    q: &[f32],
    g: usize,
    k: &[T],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) -> Option<[f32; MAX_GROUP]> {
    let dh = fits(g, q.len(), k.len(), at, scores.len())?;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors; 1 to 4 heads).
        return Some(unsafe { by_shape!(scores_avx512, dh, g, (q, k, at, scale, scores)) });
    }
    None
}

/// For each of `g` heads (`p`: their `n` weights each, head by head):
/// `out_h = Σ_j p[h * n + j] · v_j` in key order, from `out_h = 0` (`out`:
/// the heads' rows side by side); returns each head's `Σ_j p[h * n + j]`
/// added in key order from 0. `None` (nothing written) under the same
/// conditions as [`scores`].
pub(super) fn weighted_sum<T: KvElem>(
    p: &[f32],
    g: usize,
    v: &[T],
    at: HeadRows,
    out: &mut [f32],
) -> Option<[f32; MAX_GROUP]> {
    let dh = fits(g, out.len(), v.len(), at, p.len())?;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `fits` checked the shapes
        // (16 to 128 floats per row, so 1 to 8 vectors; 1 to 4 heads).
        return Some(unsafe { by_shape!(weighted_sum_avx512, dh, g, (p, v, at, out)) });
    }
    None
}

/// The heads' row width `dh` when the shapes suit the SIMD loops (these
/// and `attention_avx2`'s), else None: 1 to [`MAX_GROUP`] heads whose rows
/// fill `row_floats`, each `dh` floats (a multiple of 16, at most 128),
/// `scalars` holding the same number of keys for each head (a score or
/// weight per key), and the cache (`cache_len` floats) holding every one
/// of those keys' rows.
pub(super) fn fits(
    g: usize,
    row_floats: usize,
    cache_len: usize,
    at: HeadRows,
    scalars: usize,
) -> Option<usize> {
    if !(1..=MAX_GROUP).contains(&g) {
        return None;
    }
    let dh = row_floats / g;
    if dh == 0
        || !dh.is_multiple_of(LANES)
        || dh > MAX_VECS * LANES
        || row_floats != g * dh
        || !scalars.is_multiple_of(g)
    {
        return None;
    }
    let rows = scalars / g;
    (rows == 0 || at.offset + (rows - 1) * at.stride + dh <= cache_len).then_some(dh)
}

/// A key's score accumulator: lane l holds `Σ_c q[16c + l] · k[16c + l]`,
/// each product and sum rounded separately, c in order (`dot`'s lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn lanes<const V: usize>(qv: &[__m512; V], kr: &[__m512; V]) -> __m512 {
    let mut acc = _mm512_setzero_ps();
    for (qc, kc) in qv.iter().zip(kr) {
        acc = _mm512_add_ps(acc, _mm512_mul_ps(*qc, *kc));
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
/// The CPU must have AVX-512F, and the shapes must pass `fits` (`q` holds
/// `G` rows of `16 V` floats, `scores` `G` runs of keys).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512<const V: usize, const G: usize, T: KvElem>(
    q: &[f32],
    k: &[T],
    at: HeadRows,
    scale: f32,
    scores: &mut [f32],
) -> [f32; MAX_GROUP] {
    let n = scores.len() / G;
    // SAFETY (both loads): `h * 16V + c * 16 + 16 <= G * 16V = q.len()`.
    let qv: [[__m512; V]; G] = std::array::from_fn(|h| {
        std::array::from_fn(|c| unsafe { _mm512_loadu_ps(q.as_ptr().add((h * V + c) * LANES)) })
    });
    let sv = _mm512_set1_ps(scale);
    let full = n / LANES * LANES;
    // `max(s, m)` returns m when s is NaN, as `f32::max` ignores NaN.
    let mut maxv = [_mm512_set1_ps(f32::NEG_INFINITY); G];
    // 16 keys at a time, every head of the group on them while their rows
    // are in the first-level cache. One head over all the keys and then the
    // next (stop 23's order) read every row from the second level once per
    // head: one layer's 512-token prefill attention ran 1.05x to 1.26x
    // slower (papers/results/attention-chunks-ab.md).
    for j0 in (0..full).step_by(LANES) {
        for j in j0 + PREFETCH_KEYS..j0 + PREFETCH_KEYS + LANES {
            prefetch_row::<V, T>(k, at, j);
        }
        for (h, (qh, maxh)) in qv.iter().zip(&mut maxv).enumerate() {
            // SAFETY: keys j0..j0 + 16 < full <= n are rows of `k` (`fits`).
            let sums = unsafe {
                if G == 1 {
                    chunk_sums_inline(qh, k, at, j0)
                } else {
                    chunk_sums(qh, k, at, j0)
                }
            };
            let s = _mm512_mul_ps(sums, sv);
            *maxh = _mm512_max_ps(s, *maxh);
            // SAFETY: `h * n + j0 + 16 <= h * n + n <= scores.len()`.
            unsafe { _mm512_storeu_ps(scores.as_mut_ptr().add(h * n + j0), s) };
        }
    }
    let mut max = [f32::NEG_INFINITY; MAX_GROUP];
    for (m, v) in max.iter_mut().zip(maxv) {
        *m = _mm512_reduce_max_ps(v);
    }
    for j in full..n {
        // SAFETY: key j < n is a row of `k` (`fits`).
        let kr = unsafe { row::<V, T>(k, at, j) };
        for h in 0..G {
            let s = hsum(lanes(&qv[h], &kr)) * scale;
            scores[h * n + j] = s;
            max[h] = max[h].max(s);
        }
    }
    max
}

/// Lane i: `hsum(lanes(q, k_{j0 + i}))`, key j0 + i's unscaled score, for
/// the 16 keys from j0 (lane i of `hsum16` is `hsum512` of its vector i).
///
/// Not inlined: inlined into the loop over a group's heads, the compiler
/// hoisted the 16 rows' loads out of it and copied every row to the stack
/// once per chunk. A lone head (`G = 1`, a decode step's attention on one
/// sequence) has no such loop and takes [`chunk_sums_inline`] without the
/// call.
///
/// # Safety
/// AVX-512F; rows j0..j0 + 16 lie within `k` (`fits`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn chunk_sums<const V: usize, T: KvElem>(
    q: &[__m512; V],
    k: &[T],
    at: HeadRows,
    j0: usize,
) -> __m512 {
    // SAFETY: the caller's contract.
    unsafe { chunk_sums_inline(q, k, at, j0) }
}

/// [`chunk_sums`], inlined.
///
/// # Safety
/// As [`chunk_sums`]'.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn chunk_sums_inline<const V: usize, T: KvElem>(
    q: &[__m512; V],
    k: &[T],
    at: HeadRows,
    j0: usize,
) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); LANES];
    // Vector c of every key, then vector c + 1: each accumulator still adds
    // its products c by c in order, as `lanes` does, and the rows are read
    // as operands of the multiplies rather than into registers first.
    for (c, qc) in q.iter().enumerate() {
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row j0 + i lies within `k` (caller), c < V vectors in it.
            let kc =
                unsafe { load16(k.as_ptr().add(at.offset + (j0 + i) * at.stride + c * LANES)) };
            *a = _mm512_add_ps(*a, _mm512_mul_ps(*qc, kc));
        }
    }
    hsum16(&acc)
}

/// Row j's `V` vectors.
///
/// # Safety
/// AVX-512F; row j lies within `rows` (`fits`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn row<const V: usize, T: KvElem>(rows: &[T], at: HeadRows, j: usize) -> [__m512; V] {
    let start = at.offset + j * at.stride;
    // SAFETY: `start + c * 16 + 16 <= start + dh <= rows.len()` (caller).
    std::array::from_fn(|c| unsafe { load16(rows.as_ptr().add(start + c * LANES)) })
}

/// 16 cache elements from `p` as f32 lanes: loaded as they are, or (f16)
/// widened, exactly, by `vcvtph2ps`.
///
/// # Safety
/// AVX-512F; `p..p + 16` lies within one slice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load16<T: KvElem>(p: *const T) -> __m512 {
    // SAFETY: 16 elements from `p` are readable (caller): 32 bytes of f16
    // or 64 of f32; both loads are unaligned.
    unsafe {
        if T::HALF {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<__m256i>()))
        } else {
            _mm512_loadu_ps(p.cast::<f32>())
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F, and the shapes must pass `fits` (`out` holds
/// `G` rows of `16 V` floats, `p` `G` runs of keys).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weighted_sum_avx512<const V: usize, const G: usize, T: KvElem>(
    p: &[f32],
    v: &[T],
    at: HeadRows,
    out: &mut [f32],
) -> [f32; MAX_GROUP] {
    let n = p.len() / G;
    // Constant counts keep the output rows in registers across keys (with
    // a run-time count the compiler kept them on the stack: a load and a
    // store per vector per key). With G heads the G chains of adds per
    // vector run side by side, and each value row is read once.
    let mut o = [[_mm512_setzero_ps(); V]; G];
    let mut sum = [0.0f32; MAX_GROUP];
    for j in 0..n {
        prefetch_row::<V, T>(v, at, j + PREFETCH_KEYS);
        // SAFETY: key j < n is a row of `v` (`fits`).
        let vr = unsafe { row::<V, T>(v, at, j) };
        for h in 0..G {
            let pj = p[h * n + j];
            sum[h] += pj;
            let pv = _mm512_set1_ps(pj);
            for (oc, vc) in o[h].iter_mut().zip(&vr) {
                *oc = _mm512_add_ps(*oc, _mm512_mul_ps(pv, *vc));
            }
        }
    }
    for (h, oh) in o.iter().enumerate() {
        for (c, oc) in oh.iter().enumerate() {
            // SAFETY: `(h * V + c) * 16 + 16 <= G * 16V = out.len()`; the
            // store is unaligned.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add((h * V + c) * LANES), *oc) };
        }
    }
    sum
}
