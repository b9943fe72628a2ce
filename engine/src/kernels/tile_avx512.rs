//! The matmul's 4 x R panel tiles in AVX-512 intrinsics.
//!
//! It runs exactly the operations of the portable tile (per block, a fused
//! multiply-add of the first 16 weights, then of the last 16, into
//! one 16-lane accumulator per dot product), so its bits are the portable
//! tile's. It exists because the compiler kept the portable 4 x 4 tile's 16
//! accumulators on the stack (a store after every FMA) instead of in
//! AVX-512's 32 registers, and summed lanes with scalar adds; vector
//! locals stay in registers.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps};

#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;

use super::LANES;
use crate::quant::QK;

/// Dot products of 4 weight rows by `R` activation rows, `[w][r]`.
pub(super) type Out<const R: usize> = [[f32; R]; 4];

/// Runs the 4 x `R` tile (R at most 4) over `nbr` blocks of `w` (weight
/// rows) and `x` (activation rows) and finishes each dot product with the
/// fixed lane tree. `None` unless this CPU has AVX-512F and FMA, or when a row
/// is shorter than `nbr` blocks.
pub(super) fn tile_4xr<const R: usize>(
    w: [&[f32]; 4],
    x: [&[f32]; R],
    nbr: usize,
) -> Option<Out<R>> {
    let len = nbr * QK;
    if R > 4 || w.iter().chain(x.iter()).any(|row| row.len() < len) {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the guard just checked that this CPU has AVX-512F and FMA,
        // and every row holds at least `nbr * QK` floats, checked above.
        return Some(unsafe { tile_avx512(w, x, nbr) });
    }
    None
}

/// # Safety
/// The CPU must have AVX-512F and FMA, every row of `w` and `x` must hold
/// at least `nbr * QK` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn tile_avx512<const R: usize>(w: [&[f32]; 4], x: [&[f32]; R], nbr: usize) -> Out<R> {
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
    for (ow, aw) in out.iter_mut().zip(acc.iter()) {
        for (o, a) in ow.iter_mut().zip(aw.iter()) {
            *o = hsum(*a);
        }
    }
    out
}
