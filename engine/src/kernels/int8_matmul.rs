//! `y = x · Wᵀ` for quantised W: integer dot products per block, then one
//! fixed float chain per output.
//!
//! The activation rows are quantised per block ([`QActs`]). For output
//! (row w, activation row i), with `isum_b = Σ_k qw·qx` over block b (an
//! exact integer, whatever the order or instruction that sums it):
//!
//! ```text
//! acc = 0
//! for b in blocks, in order:
//!     acc = fma(isum_b as f32, dw_b · dx_b, acc)
//!     acc = fma(mw_b, dx_b · Σqx_b, acc)        (Q4_1 only)
//! y = acc
//! ```
//!
//! `isum_b` is below 2^24 in magnitude, so its conversion is exact, and the
//! products and fused multiply-adds each round once, so the portable loop
//! and AVX512-VNNI give the same bits, and a row computed alone gives the
//! bits it gets in any batch.

use rayon::prelude::*;

use super::int8_acts::QActs;
use super::int8_vnni::{vnni_available, vnni_groups};
use super::int8_weights::{Format, GROUP, Int8Weights, Q4_GROUP_BLOCK, Q8_GROUP_BLOCK, f16_to_f32};
use super::isa::{Isa, multiversion};
use crate::quant::QK;

/// Which integer kernel computes the dot products: a speed choice only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int8Path {
    /// Plain Rust, compiled for the [`Isa`].
    Portable(Isa),
    /// AVX-512 with VNNI's byte dot products.
    Vnni,
}

impl Int8Path {
    /// The fastest path this CPU has under `isa`.
    pub(crate) fn best(isa: Isa) -> Self {
        if isa == Isa::Avx512 && vnni_available() {
            Self::Vnni
        } else {
            Self::Portable(isa)
        }
    }
}

/// What a task of the matmul reads.
pub(super) struct Job<'a> {
    pub(super) w: &'a Int8Weights,
    pub(super) a: &'a QActs,
}

/// `y[i, r]` for rows `range` of `w` and the quantised rows `a`.
pub(crate) fn matmul_int8(
    w: &Int8Weights,
    path: Int8Path,
    a: &QActs,
    range: std::ops::Range<usize>,
) -> Vec<f32> {
    let isa = match path {
        Int8Path::Portable(isa) => isa,
        _ => Isa::detect(),
    };
    let n = a.n;
    let (g0, g1) = (range.start / GROUP, range.end.div_ceil(GROUP).min(w.groups));
    let groups = g1.saturating_sub(g0);
    // Group-major output: per group, n runs of 16 outputs.
    let mut yt = vec![0.0f32; groups * n * GROUP];
    let per_task = (groups / (4 * rayon::current_num_threads().max(1))).clamp(1, 16);
    let job = Job { w, a };
    if n > 0 {
        yt.par_chunks_mut(per_task * n * GROUP)
            .enumerate()
            .for_each(|(c, out)| {
                let first = g0 + c * per_task;
                let done = match path {
                    Int8Path::Vnni => vnni_groups(&job, first, out),
                    Int8Path::Portable(_) => false,
                };
                if !done {
                    portable_groups_with(isa, &job, first, out);
                }
            });
    }
    let width = range.len();
    let skip = range.start - g0 * GROUP;
    if n == 1 && skip == 0 {
        yt.truncate(width);
        return yt;
    }
    let mut y = vec![0.0f32; n * width];
    for (gl, block) in yt.chunks_exact(n * GROUP).enumerate() {
        // Columns of this group within the range, and where they start in the run.
        let c0 = (gl * GROUP).saturating_sub(skip);
        let l0 = (skip + c0) - gl * GROUP;
        if c0 >= width || l0 >= GROUP {
            continue;
        }
        let len = (GROUP - l0).min(width - c0);
        for (i, run) in block.chunks_exact(GROUP).enumerate() {
            y[i * width + c0..i * width + c0 + len].copy_from_slice(&run[l0..l0 + len]);
        }
    }
    y
}

multiversion!(fn portable_groups / portable_groups_with(job: &Job<'_>, first: usize, out: &mut [f32]) => portable_body);

/// The portable kernel: groups `first..` into `out` (`n · 16` per group).
#[inline(always)]
fn portable_body(job: &Job<'_>, first: usize, out: &mut [f32]) {
    let (w, a) = (job.w, job.a);
    let (n, nbr, cols) = (a.n, w.nbr, a.cols);
    let mut acc = vec![[0.0f32; GROUP]; n];
    for (gl, og) in out.chunks_exact_mut(n * GROUP).enumerate() {
        let g = first + gl;
        acc.iter_mut().for_each(|v| *v = [0.0; GROUP]);
        for b in 0..nbr {
            let wq = w.unpack(g, b);
            let gb = (g * nbr + b) * GROUP;
            let d: [f32; GROUP] = std::array::from_fn(|l| f16_to_f32(w.d[gb + l]));
            let m: [f32; GROUP] = if w.format == Format::Q4_1 {
                std::array::from_fn(|l| f16_to_f32(w.m[gb + l]))
            } else {
                [0.0; GROUP]
            };
            for (i, acc) in acc.iter_mut().enumerate() {
                let x: &[i8; QK] = a.q[i * cols + b * QK..i * cols + (b + 1) * QK]
                    .try_into()
                    .unwrap_or(&[0; QK]);
                let ib = i * nbr + b;
                let (dx, xs, c128) = (a.dx[ib], a.xs[ib], a.c128[ib]);
                for l in 0..GROUP {
                    let mut isum = 0i32;
                    for k in 0..QK {
                        isum += i32::from(wq[l][k]) * i32::from(x[k]);
                    }
                    if w.format == Format::Q8_0 {
                        isum -= c128;
                    }
                    acc[l] = (isum as f32).mul_add(d[l] * dx, acc[l]);
                }
                if w.format == Format::Q4_1 {
                    for l in 0..GROUP {
                        acc[l] = m[l].mul_add(xs, acc[l]);
                    }
                }
            }
        }
        for (o, acc) in og.chunks_exact_mut(GROUP).zip(&acc) {
            o.copy_from_slice(acc);
        }
    }
}

impl Job<'_> {
    /// Whether the arrays hold every group of the weights and every
    /// (padded) activation row the kernels may read.
    pub(super) fn holds(&self) -> bool {
        let (w, a) = (self.w, self.a);
        let blocks = w.groups * w.nbr;
        let group_block = match w.format {
            Format::Q4_1 => Q4_GROUP_BLOCK,
            Format::Q8_0 => Q8_GROUP_BLOCK,
        };
        let padded = a.n.div_ceil(GROUP) * GROUP;
        w.qs.len() >= blocks * group_block
            && w.d.len() >= blocks * GROUP
            && (w.format == Format::Q8_0 || w.m.len() >= blocks * GROUP)
            && a.cols == w.nbr * QK
            && a.nbr == w.nbr
            && a.q.len() >= padded * a.cols
            && [a.dx.len(), a.xs.len(), a.c128.len()]
                .iter()
                .all(|&len| len >= padded * a.nbr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgmlType, quantize_row};

    /// The SIMD kernels take their jobs wherever the CPU has them (a
    /// kernel that quietly declined would leave the bit comparisons
    /// comparing the portable loop with itself).
    #[test]
    fn the_simd_kernels_run_where_the_cpu_has_them() {
        let (rows, cols, n) = (40, 64, 5);
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| (i % 13) as f32 / 7.0 - 0.9)
            .collect();
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let mut bytes = Vec::new();
            quantize_row(ty, &vals, &mut bytes);
            let w = Int8Weights::from_gguf("w", ty, rows, cols, &bytes).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|i| (i % 11) as f32 - 5.0).collect();
            let a = QActs::new(&x, cols);
            let job = Job { w: &w, a: &a };
            assert!(job.holds());
            let mut want = vec![0.0; w.groups * n * GROUP];
            portable_groups_with(Isa::Generic, &job, 0, &mut want);
            let mut out = vec![0.0; w.groups * n * GROUP];
            assert_eq!(vnni_groups(&job, 0, &mut out), vnni_available(), "{ty:?}");
            if vnni_available() {
                assert_eq!(out, want, "VNNI {ty:?}");
            }
            // A group past the weights is declined, not read.
            let mut out = vec![0.0; n * GROUP];
            assert!(!vnni_groups(&job, w.groups, &mut out));
        }
    }
}
