//! Unpacking Q4_1 and Q8_0 blocks in AVX-512: the lone-row matmul (a
//! decode step of one sequence) and the panels of the batched one.
//!
//! A block's scaled weights are `d · q` (exact in f32), the portable
//! `Source::unpack`; the lone-row kernel then runs the portable operations
//! (per block an FMA of the first 16 weights, then of the last 16, into one
//! accumulator per row; the min term into lane b mod 16; the fixed lane
//! tree), so every path gives the portable bits. Written out because the
//! compiled portable loop reloaded its constants and re-checked bounds for
//! every block of every row.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{
    __m128i, __m512, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8, _mm_srli_epi16,
    _mm512_cvtepi8_epi32, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_fmadd_ps,
    _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

#[cfg(target_arch = "x86_64")]
use super::hsum512 as hsum;
#[cfg(target_arch = "x86_64")]
use super::tile_avx512::add_min_term;
use crate::quant::QK;

const HALF: usize = QK / 2;

/// A matrix's quantised blocks, row-major (`nbr` blocks per row).
#[derive(Clone, Copy)]
pub(super) enum Quant<'a> {
    /// Scales, minimums and 16 bytes of nibbles per block.
    Q4_1 {
        d: &'a [f32],
        m: &'a [f32],
        qs: &'a [u8],
    },
    /// Scales and 32 signed bytes per block.
    Q8_0 { d: &'a [f32], qs: &'a [i8] },
}

impl Quant<'_> {
    /// Whether rows `r0..r0 + count` of `nbr` blocks lie within the arrays.
    fn holds(&self, r0: usize, count: usize, nbr: usize) -> bool {
        let blocks = (r0 + count) * nbr;
        match self {
            Self::Q4_1 { d, m, qs } => {
                d.len() >= blocks && m.len() >= blocks && qs.len() >= blocks * HALF
            }
            Self::Q8_0 { d, qs } => d.len() >= blocks && qs.len() >= blocks * QK,
        }
    }
}

/// Dot products of weight rows `r0..r0 + 4` with the one activation row
/// `x` (`nbr` blocks; `xsum` its block sums, for Q4_1). `None` unless this
/// CPU has AVX-512F and FMA and the shapes hold.
pub(super) fn lone_row_4(
    q: Quant<'_>,
    r0: usize,
    nbr: usize,
    x: &[f32],
    xsum: &[f32],
) -> Option<[f32; 4]> {
    // Only Q4_1's min term reads the block sums (Q8_0 callers pass none).
    let sums_held = matches!(q, Quant::Q8_0 { .. }) || xsum.len() >= nbr;
    if !q.holds(r0, 4, nbr) || x.len() < nbr * QK || !sums_held {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the guard just checked AVX-512F and FMA; `holds` and the
        // length checks above bound every block read.
        return Some(unsafe {
            match q {
                Quant::Q4_1 { d, m, qs } => {
                    lone_row_4_avx512::<true>(d, Some(m), qs.as_ptr(), r0, nbr, x, xsum)
                }
                Quant::Q8_0 { d, qs } => {
                    lone_row_4_avx512::<false>(d, None, qs.as_ptr().cast(), r0, nbr, x, xsum)
                }
            }
        });
    }
    None
}

/// Unpacks weight rows `r0..r0 + count` into `panel` (`nbr * QK` floats per
/// row). False (nothing written) unless this CPU has AVX-512F and the
/// shapes hold.
pub(super) fn fill_panel(
    q: Quant<'_>,
    r0: usize,
    count: usize,
    nbr: usize,
    panel: &mut [f32],
) -> bool {
    if !q.holds(r0, count, nbr) || panel.len() < count * nbr * QK {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the guard just checked AVX-512F; `holds` bounds the block
        // reads and the check above the panel writes.
        unsafe {
            match q {
                Quant::Q4_1 { d, qs, .. } => {
                    fill_panel_avx512::<true>(d, qs.as_ptr(), r0, count, nbr, panel)
                }
                Quant::Q8_0 { d, qs } => {
                    fill_panel_avx512::<false>(d, qs.as_ptr().cast(), r0, count, nbr, panel)
                }
            }
        }
        return true;
    }
    false
}

/// Scaled weights of block `bi`: Q4_1 (`Q4`) reads 16 bytes of nibbles at
/// `qs + 16 bi`, Q8_0 32 signed bytes at `qs + 32 bi`.
///
/// # Safety
/// The CPU must have AVX-512F, and the block must lie within `qs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn unpack<const Q4: bool>(qs: *const u8, bi: usize, d: f32) -> (__m512, __m512) {
    let dv = _mm512_set1_ps(d);
    let (lo, hi) = if Q4 {
        // SAFETY: the block's 16 bytes lie within `qs` (the caller's contract).
        let q = unsafe { _mm_loadu_si128(qs.add(bi * HALF).cast::<__m128i>()) };
        let mask = _mm_set1_epi8(0x0F);
        (
            _mm512_cvtepu8_epi32(_mm_and_si128(q, mask)),
            _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16::<4>(q), mask)),
        )
    } else {
        // SAFETY: the block's 32 bytes lie within `qs` (the caller's contract).
        unsafe {
            let p = qs.add(bi * QK);
            (
                _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast::<__m128i>())),
                _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(HALF).cast::<__m128i>())),
            )
        }
    };
    (
        _mm512_mul_ps(dv, _mm512_cvtepi32_ps(lo)),
        _mm512_mul_ps(dv, _mm512_cvtepi32_ps(hi)),
    )
}

/// # Safety
/// The CPU must have AVX-512F and FMA; rows `r0..r0 + 4` must lie within
/// `d`, `m` and `qs`, and `x` and `xsum` must hold `nbr` blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn lone_row_4_avx512<const Q4: bool>(
    d: &[f32],
    m: Option<&[f32]>,
    qs: *const u8,
    r0: usize,
    nbr: usize,
    x: &[f32],
    xsum: &[f32],
) -> [f32; 4] {
    let z = _mm512_setzero_ps();
    let mut acc = [z; 4];
    let xp = x.as_ptr();
    for b in 0..nbr {
        // SAFETY: `x` holds `nbr` blocks (the caller's contract).
        let (xl, xh) = unsafe {
            (
                _mm512_loadu_ps(xp.add(b * QK)),
                _mm512_loadu_ps(xp.add(b * QK + HALF)),
            )
        };
        for (w, a) in acc.iter_mut().enumerate() {
            let bi = (r0 + w) * nbr + b;
            // SAFETY: block `bi` is within the rows the caller vouched for.
            let (lo, hi) = unsafe { unpack::<Q4>(qs, bi, d[bi]) };
            *a = _mm512_fmadd_ps(hi, xh, _mm512_fmadd_ps(lo, xl, *a));
        }
    }
    let mut out = [0.0f32; 4];
    for (w, (o, a)) in out.iter_mut().zip(acc).enumerate() {
        let a = match m {
            // SAFETY: the rows of `m` and `xsum` hold `nbr` floats.
            Some(m) => unsafe {
                add_min_term(a, &m[(r0 + w) * nbr..(r0 + w + 1) * nbr], xsum, nbr)
            },
            None => a,
        };
        *o = hsum(a);
    }
    out
}

/// # Safety
/// The CPU must have AVX-512F; rows `r0..r0 + count` must lie within `d`
/// and `qs`, and `panel` must hold `count * nbr * QK` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_panel_avx512<const Q4: bool>(
    d: &[f32],
    qs: *const u8,
    r0: usize,
    count: usize,
    nbr: usize,
    panel: &mut [f32],
) {
    let out = panel.as_mut_ptr();
    for j in 0..count {
        for b in 0..nbr {
            let bi = (r0 + j) * nbr + b;
            // SAFETY: block `bi` is within the rows the caller vouched for,
            // and `(j * nbr + b + 1) * QK <= count * nbr * QK` floats of the panel.
            unsafe {
                let (lo, hi) = unpack::<Q4>(qs, bi, d[bi]);
                let dst = out.add((j * nbr + b) * QK);
                _mm512_storeu_ps(dst, lo);
                _mm512_storeu_ps(dst.add(HALF), hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q8_0 has no min term, so its callers pass no block sums; the fast
    /// path must still take it (it once required the sums of every format,
    /// which sent the LM head, SmolLM2's one Q8_0 matrix, down the portable
    /// loop), and give the portable bits.
    #[test]
    fn q8_0_lone_rows_take_the_simd_path_without_block_sums() {
        #[cfg(target_arch = "x86_64")]
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return;
        }
        let nbr = 3;
        let d: Vec<f32> = (0..4 * nbr).map(|i| 0.01 * (i + 1) as f32).collect();
        let qs: Vec<i8> = (0..4 * nbr * QK).map(|i| (i * 37 % 255) as i8).collect();
        let x: Vec<f32> = (0..nbr * QK).map(|i| (i % 7) as f32 - 3.0).collect();
        let y = lone_row_4(Quant::Q8_0 { d: &d, qs: &qs }, 0, nbr, &x, &[])
            .expect("AVX-512 lone row for Q8_0");
        for (r, got) in y.iter().enumerate() {
            let want: f64 = (0..nbr * QK)
                .map(|k| {
                    let b = r * nbr + k / QK;
                    f64::from(d[b]) * f64::from(qs[r * nbr * QK + k]) * f64::from(x[k])
                })
                .sum();
            assert!((f64::from(*got) - want).abs() < 1e-3 * want.abs().max(1.0));
        }
    }
}
