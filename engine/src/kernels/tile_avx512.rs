//! The matmul's 4 x R panel tiles in AVX-512 intrinsics.
//!
//! It runs exactly the operations of the portable tile (per block, a fused
//! multiply-add of the first 16 scaled weights, then of the last 16, into
//! one 16-lane accumulator per dot product), so its bits are the portable
//! tile's. It exists because the compiler kept the portable 4 x 4 tile's 16
//! accumulators on the stack (a store after every FMA) instead of in
//! AVX-512's 32 registers, and summed lanes with scalar adds; vector
//! locals stay in registers.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mask3_fmadd_ps, _mm512_maskz_loadu_ps,
    _mm512_setzero_ps,
};

#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;

use super::LANES;
use crate::quant::QK;

/// Dot products of 4 weight rows by `R` activation rows, `[w][r]`.
pub(super) type Out<const R: usize> = [[f32; R]; 4];

/// Q4_1's min term inputs: each weight row's block minimums and each
/// activation row's block sums (`nbr` floats each).
pub(super) struct MinTerm<'a, const R: usize> {
    pub(super) m: [&'a [f32]; 4],
    pub(super) xsum: [&'a [f32]; R],
}

/// Runs the 4 x `R` tile (R at most 4) over `nbr` blocks of `w` (scaled
/// weight rows) and `x` (activation rows) and finishes each dot product as
/// the portable `finish` does (min term into lane b mod 16, then the fixed
/// lane tree). `None` unless this CPU has AVX-512F and FMA, or when a row
/// is shorter than `nbr` blocks.
pub(super) fn tile_4xr<const R: usize>(
    w: [&[f32]; 4],
    x: [&[f32]; R],
    nbr: usize,
    min: Option<&MinTerm<'_, R>>,
) -> Option<Out<R>> {
    let len = nbr * QK;
    if R > 4 || w.iter().chain(x.iter()).any(|row| row.len() < len) {
        return None;
    }
    if let Some(mt) = min
        && mt.m.iter().chain(mt.xsum.iter()).any(|row| row.len() < nbr)
    {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the guard just checked that this CPU has AVX-512F and FMA,
        // and every row holds at least `nbr * QK` floats (`nbr` for the min
        // term's rows), checked above.
        return Some(unsafe { tile_avx512(w, x, nbr, min) });
    }
    None
}

/// # Safety
/// The CPU must have AVX-512F and FMA, every row of `w` and `x` must hold
/// at least `nbr * QK` floats and every row of `min` at least `nbr`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_avx512<const R: usize>(
    w: [&[f32]; 4],
    x: [&[f32]; R],
    nbr: usize,
    min: Option<&MinTerm<'_, R>>,
) -> Out<R> {
    let z = _mm512_setzero_ps();
    let mut acc = [[z; R]; 4];
    let wp = w.map(<[f32]>::as_ptr);
    let xp = x.map(<[f32]>::as_ptr);
    for b in 0..nbr {
        let lo = b * QK;
        let hi = lo + LANES;
        let mut wl = [z; 4];
        let mut wh = [z; 4];
        for j in 0..4 {
            // SAFETY: `hi + LANES = (b + 1) * QK <= nbr * QK`, within every
            // row (the caller's contract); unaligned loads need no alignment.
            unsafe {
                wl[j] = _mm512_loadu_ps(wp[j].add(lo));
                wh[j] = _mm512_loadu_ps(wp[j].add(hi));
            }
        }
        for r in 0..R {
            // SAFETY: as for the weight loads above.
            let (xl, xh) = unsafe {
                (
                    _mm512_loadu_ps(xp[r].add(lo)),
                    _mm512_loadu_ps(xp[r].add(hi)),
                )
            };
            for j in 0..4 {
                acc[j][r] = _mm512_fmadd_ps(wl[j], xl, acc[j][r]);
            }
            for j in 0..4 {
                acc[j][r] = _mm512_fmadd_ps(wh[j], xh, acc[j][r]);
            }
        }
    }
    let mut out = [[0.0; R]; 4];
    for (wi, (ow, aw)) in out.iter_mut().zip(acc.iter()).enumerate() {
        for (r, (o, a)) in ow.iter_mut().zip(aw.iter()).enumerate() {
            let a = match min {
                // SAFETY: the rows hold `nbr` floats (the caller's contract).
                Some(mt) => unsafe { add_min_term(*a, mt.m[wi], mt.xsum[r], nbr) },
                None => *a,
            };
            *o = hsum(a);
        }
    }
    out
}

/// `acc[b mod 16] = fma(m[b], xsum[b], acc[b mod 16])` for every block b,
/// in order; a partial last chunk leaves the other lanes untouched.
///
/// # Safety
/// `m` and `xsum` must hold at least `nbr` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
pub(super) unsafe fn add_min_term(mut acc: __m512, m: &[f32], xsum: &[f32], nbr: usize) -> __m512 {
    let mut b = 0;
    while b < nbr {
        let rest = (nbr - b).min(LANES);
        let mask: u16 = if rest == LANES {
            u16::MAX
        } else {
            (1u16 << rest) - 1
        };
        // SAFETY: the masked loads touch only `b..b + rest`, within `nbr`.
        let (mv, sv) = unsafe {
            (
                _mm512_maskz_loadu_ps(mask, m.as_ptr().add(b)),
                _mm512_maskz_loadu_ps(mask, xsum.as_ptr().add(b)),
            )
        };
        acc = _mm512_mask3_fmadd_ps(mv, sv, acc, mask);
        b += LANES;
    }
    acc
}
