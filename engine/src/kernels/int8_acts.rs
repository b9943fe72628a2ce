//! Activation rows quantised to signed bytes, one scale per 32-element
//! block, for the integer matmul.
//!
//! Per block: `amax = max |x|`, `dx = amax / 127`, and each element
//! `q = round_ties_even(x · (127 / amax))`, which lies in -127..=127. Every
//! step is one IEEE operation with one rounding (or exact: the maximum, the
//! integer sums), so any instruction set gives these very bytes. A block
//! with a NaN or an infinity gets `dx = NaN`, so every output it feeds is
//! NaN, as a float dot product's would be. A block whose largest magnitude
//! is below 2^-100 (where `127 / amax` would overflow) is all zeros.

use rayon::prelude::*;

use super::int8_weights::GROUP;
use super::isa::{Isa, multiversion};
use crate::quant::QK;

/// Magnitudes at or above this bit pattern are infinite or NaN.
const NON_FINITE: u32 = 0x7f80_0000;
/// 2^-100: smaller block maxima quantise to zero.
const TINY: u32 = (127 - 100) << 23;

/// `n` activation rows, quantised; arrays padded with zero rows up to a
/// multiple of 16 so the kernels may always read 16 rows.
pub(crate) struct QActs {
    pub(super) n: usize,
    pub(super) cols: usize,
    pub(super) nbr: usize,
    /// `q[i * cols + k]`.
    pub(super) q: Vec<i8>,
    /// `dx[i * nbr + b]`: the block's scale.
    pub(super) dx: Vec<f32>,
    /// `dx · Σ q` per block: the block's sum as the quantised row has it
    /// (Q4_1's minimum multiplies it).
    pub(super) xs: Vec<f32>,
    /// `128 · Σ q` per block: what Q8_0's `q + 128` bytes add to a sum.
    pub(super) c128: Vec<i32>,
}

impl QActs {
    /// Quantise `x` (`x.len() / cols` rows of `cols`, a multiple of 32).
    #[cfg(test)]
    pub(crate) fn new(x: &[f32], cols: usize) -> Self {
        Self::new_isa(Isa::detect(), x, cols)
    }

    /// As [`QActs::new`], compiled for `isa` (the same bytes on every one).
    pub(crate) fn new_isa(isa: Isa, x: &[f32], cols: usize) -> Self {
        let n = x.len() / cols;
        let nbr = cols / QK;
        let padded = n.div_ceil(GROUP) * GROUP;
        let mut a = Self {
            n,
            cols,
            nbr,
            q: vec![0; padded * cols],
            dx: vec![0.0; padded * nbr],
            xs: vec![0.0; padded * nbr],
            c128: vec![0; padded * nbr],
        };
        // Rows are independent: split them across threads, a few at a time.
        const ROWS: usize = 8;
        x[..n * cols]
            .par_chunks(ROWS * cols)
            .zip(a.q.par_chunks_mut(ROWS * cols))
            .zip(a.dx.par_chunks_mut(ROWS * nbr))
            .zip(a.xs.par_chunks_mut(ROWS * nbr))
            .zip(a.c128.par_chunks_mut(ROWS * nbr))
            .for_each(|((((x, q), dx), xs), c128)| {
                quantize_with(isa, x, Out { q, dx, xs, c128 });
            });
        a
    }
}

/// The slices of [`QActs`] one quantisation task fills.
struct Out<'a> {
    q: &'a mut [i8],
    dx: &'a mut [f32],
    xs: &'a mut [f32],
    c128: &'a mut [i32],
}

multiversion!(fn quantize / quantize_with(x: &[f32], out: Out<'_>) => quantize_body);

#[inline(always)]
fn quantize_body(x: &[f32], out: Out<'_>) {
    for (bi, (xb, qb)) in x
        .chunks_exact(QK)
        .zip(out.q.chunks_exact_mut(QK))
        .enumerate()
    {
        let qb: &mut [i8; QK] = match qb.try_into() {
            Ok(qb) => qb,
            Err(_) => continue,
        };
        let (dx, qsum) = quantize_block(xb.try_into().unwrap_or(&[0.0; QK]), qb);
        out.dx[bi] = dx;
        out.xs[bi] = dx * qsum as f32;
        out.c128[bi] = 128 * qsum;
    }
}

/// Adding 1.5 · 2^23 to a float of magnitude below 2^22 rounds it to the
/// nearest integer, ties to even (the add's one rounding, in IEEE's default
/// mode), and leaves that integer in the low bits of the sum's mantissa:
/// plain arithmetic that vectorises, unlike `rintf` and a saturating cast.
const ROUNDER: f32 = 12_582_912.0;

/// Quantise one block into `q`; returns its scale and `Σ q`.
#[inline(always)]
fn quantize_block(x: &[f32; QK], q: &mut [i8; QK]) -> (f32, i32) {
    let mut amax = 0u32;
    for v in x {
        amax = amax.max(v.to_bits() & 0x7fff_ffff);
    }
    if amax >= NON_FINITE {
        q.fill(0);
        return (f32::NAN, 0);
    }
    if amax < TINY {
        q.fill(0);
        return (0.0, 0);
    }
    let amax = f32::from_bits(amax);
    let inv = 127.0 / amax;
    let mut r = [0i32; QK];
    for (r, &v) in r.iter_mut().zip(x) {
        *r = (v * inv + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32;
    }
    let mut sum = 0i32;
    for (o, &r) in q.iter_mut().zip(&r) {
        *o = r as i8;
        sum += r;
    }
    (amax / 127.0, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_quantise_to_their_maximum_and_keep_non_finite_values_visible() {
        let mut x = vec![0.0f32; 4 * QK];
        for (i, v) in x[..QK].iter_mut().enumerate() {
            *v = i as f32 - 10.0;
        }
        x[QK + 3] = f32::NAN;
        x[2 * QK + 5] = f32::INFINITY;
        x[3 * QK + 1] = 1e-35;
        let a = QActs::new(&x, 2 * QK);
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
            let b = QActs::new_isa(isa, &x, 2 * QK);
            assert_eq!(b.q, a.q, "{isa:?}");
            assert_eq!(
                b.dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                a.dx.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        // Ties round to even, as IEEE's default rounding does.
        let mut t = vec![0.0f32; QK];
        t[0] = 127.0;
        t[1] = 2.5;
        t[2] = -3.5;
        t[3] = 0.5;
        let ta = QActs::new(&t, QK);
        assert_eq!(&ta.q[..4], &[127, 2, -4, 0]);
        assert_eq!(a.n, 2);
        assert_eq!(a.dx[0], 21.0 / 127.0);
        assert_eq!(a.q[31], 127);
        assert_eq!(a.q[10], 0);
        assert_eq!(a.q[0], (-10.0f32 * (127.0 / 21.0)).round_ties_even() as i8);
        assert!(a.dx[1].is_nan() && a.dx[2].is_nan());
        assert_eq!(a.dx[3], 0.0);
        assert!(a.q[QK..].iter().all(|&q| q == 0));
        assert_eq!(a.q.len(), GROUP * 2 * QK);
        let qsum: i32 = a.q[..QK].iter().map(|&q| i32::from(q)).sum();
        assert_eq!(a.c128[0], 128 * qsum);
    }
}
