//! `y = x · Wᵀ` with W kept in its GGUF block format (Q4_1, Q8_0) or f32.
//!
//! Per output element the reduction is: for each 32-element block b in order,
//! `t[j] = q[j]·x[j] + q[16+j]·x[16+j]` over 16 lanes, `acc[j] += d_b·t[j]`,
//! plus (Q4_1) `macc += m_b·Σx_b` in block order; the result is
//! `hsum(acc) + macc`. Nibbles and bytes convert to f32 exactly, so unpacking
//! them once per weight row and reusing them for many activation rows gives
//! the same bits as one row at a time.

use half::f16;
use rayon::prelude::*;

use super::isa::multiversion;
use super::{LANES, hsum};
use crate::error::{Result, tensor_err};
use crate::quant::{GgmlType, QK, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, dequantize_row};

const HALF: usize = QK / 2;

/// A weight matrix of `rows` outputs by `cols` inputs, row-major, ready for the kernels.
#[derive(Clone, Debug)]
pub(crate) struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

#[derive(Clone, Debug)]
enum Blocks {
    /// Per block: scale, min and 16 bytes of nibbles (low nibbles first).
    Q4_1 { d: Vec<f32>, m: Vec<f32>, qs: Vec<u8> },
    /// Per block: scale and 32 signed bytes.
    Q8_0 { d: Vec<f32>, qs: Vec<i8> },
    /// Plain floats (F32 and F16 tensors); scale 1.
    F32 { w: Vec<f32> },
}

impl QMatrix {
    /// Repack a GGUF tensor of `rows x cols` (GGUF dims `[cols, rows]`).
    pub(crate) fn from_gguf(name: &str, ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self> {
        if cols % QK != 0 {
            return Err(tensor_err(name, format!("{cols} columns is not a multiple of {QK}")));
        }
        let nb = rows * cols / QK;
        let blocks = match ty {
            GgmlType::Q4_1 => {
                let (mut d, mut m, mut qs) = (Vec::with_capacity(nb), Vec::with_capacity(nb), Vec::with_capacity(nb * HALF));
                for b in bytes.chunks_exact(Q4_1_BLOCK_BYTES) {
                    d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
                    m.push(f16::from_le_bytes([b[2], b[3]]).to_f32());
                    qs.extend_from_slice(&b[4..]);
                }
                Blocks::Q4_1 { d, m, qs }
            }
            GgmlType::Q8_0 => {
                let (mut d, mut qs) = (Vec::with_capacity(nb), Vec::with_capacity(nb * QK));
                for b in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
                    d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
                    qs.extend(b[2..].iter().map(|&q| q as i8));
                }
                Blocks::Q8_0 { d, qs }
            }
            GgmlType::F32 | GgmlType::F16 => {
                let mut w = vec![0.0; rows * cols];
                dequantize_row(ty, bytes, &mut w);
                Blocks::F32 { w }
            }
        };
        Ok(Self { rows, cols, blocks })
    }

    /// Outputs.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Inputs.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r` as floats (the embedding lookup).
    pub(crate) fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nbr = self.cols / QK;
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => {
                for b in 0..nbr {
                    let bi = r * nbr + b;
                    let q = &qs[bi * HALF..(bi + 1) * HALF];
                    for j in 0..HALF {
                        out[b * QK + j] = d[bi] * f32::from(q[j] & 0x0F) + m[bi];
                        out[b * QK + HALF + j] = d[bi] * f32::from(q[j] >> 4) + m[bi];
                    }
                }
            }
            Blocks::Q8_0 { d, qs } => {
                for b in 0..nbr {
                    let bi = r * nbr + b;
                    for j in 0..QK {
                        out[b * QK + j] = d[bi] * f32::from(qs[bi * QK + j]);
                    }
                }
            }
            Blocks::F32 { w } => out.copy_from_slice(&w[r * self.cols..(r + 1) * self.cols]),
        }
    }

    /// The whole matrix as row-major floats (for the burn path).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols).enumerate() {
            self.row_f32(r, row);
        }
        out
    }

    /// Bytes the kernels read per full pass over the matrix.
    pub(crate) fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => 4 * (d.len() + m.len()) + qs.len(),
            Blocks::Q8_0 { d, qs } => 4 * d.len() + qs.len(),
            Blocks::F32 { w } => 4 * w.len(),
        }
    }

    /// `y[i, r] = Σ_k x[i, k] · W[r, k]` for `n = x.len() / cols` rows of x.
    pub(crate) fn matmul(&self, x: &[f32]) -> Vec<f32> {
        self.matmul_rows(x, 0..self.rows)
    }

    /// As [`QMatrix::matmul`], for the output columns `range` only.
    pub(crate) fn matmul_rows(&self, x: &[f32], range: std::ops::Range<usize>) -> Vec<f32> {
        let n = x.len() / self.cols;
        let nbr = self.cols / QK;
        // Per activation row, per block: Σ x over the block (Q4_1's min term).
        let xsum: Vec<f32> = if matches!(self.blocks, Blocks::Q4_1 { .. }) {
            x.chunks_exact(QK).map(block_sum).collect()
        } else {
            Vec::new()
        };
        let width = range.len();
        // Transposed output: one contiguous run of `n` values per weight row,
        // so threads split the weight rows (output elements) and never a sum.
        let mut yt = vec![0.0f32; width * n];
        let per_task = (width / (4 * rayon::current_num_threads().max(1))).clamp(8, 256);
        let ctx = Ctx { m: self, x, xsum: &xsum, n, nbr };
        yt.par_chunks_mut(per_task * n).enumerate().for_each(|(c, out)| {
            let first = range.start + c * per_task;
            rows_kernel(&ctx, first, out);
        });
        if n == 1 {
            return yt;
        }
        let mut y = vec![0.0f32; n * width];
        for (r, col) in yt.chunks_exact(n).enumerate() {
            for (i, v) in col.iter().enumerate() {
                y[i * width + r] = *v;
            }
        }
        y
    }
}

struct Ctx<'a> {
    m: &'a QMatrix,
    x: &'a [f32],
    xsum: &'a [f32],
    n: usize,
    nbr: usize,
}

#[inline(always)]
fn block_sum(block: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for j in 0..HALF {
        acc[j] = block[j] + block[HALF + j];
    }
    hsum(acc)
}

multiversion!(fn rows_kernel(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) => rows_kernel_body);

/// Fill `out` (`n` values per weight row, rows `first..`) for all activation rows.
#[inline(always)]
fn rows_kernel_body(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) {
    let (cols, nbr, n) = (ctx.m.cols, ctx.nbr, ctx.n);
    let mut qf = vec![0.0f32; cols];
    for (k, ys) in out.chunks_exact_mut(n).enumerate() {
        let r = first + k;
        let scales: &[f32] = match &ctx.m.blocks {
            Blocks::Q4_1 { d, qs, .. } => {
                let q = &qs[r * nbr * HALF..(r + 1) * nbr * HALF];
                for b in 0..nbr {
                    for j in 0..HALF {
                        qf[b * QK + j] = f32::from(q[b * HALF + j] & 0x0F);
                        qf[b * QK + HALF + j] = f32::from(q[b * HALF + j] >> 4);
                    }
                }
                &d[r * nbr..(r + 1) * nbr]
            }
            Blocks::Q8_0 { d, qs } => {
                for (f, q) in qf.iter_mut().zip(&qs[r * cols..(r + 1) * cols]) {
                    *f = f32::from(*q);
                }
                &d[r * nbr..(r + 1) * nbr]
            }
            Blocks::F32 { w } => {
                qf.copy_from_slice(&w[r * cols..(r + 1) * cols]);
                &[]
            }
        };
        for (i, y) in ys.iter_mut().enumerate() {
            let x = &ctx.x[i * cols..(i + 1) * cols];
            let mut acc = [0.0f32; LANES];
            for b in 0..nbr {
                let (q, xb) = (&qf[b * QK..(b + 1) * QK], &x[b * QK..(b + 1) * QK]);
                let mut t = [0.0f32; LANES];
                for j in 0..HALF {
                    t[j] = q[j] * xb[j] + q[HALF + j] * xb[HALF + j];
                }
                if scales.is_empty() {
                    for j in 0..LANES {
                        acc[j] += t[j];
                    }
                } else {
                    let d = scales[b];
                    for j in 0..LANES {
                        acc[j] += d * t[j];
                    }
                }
            }
            let mut v = hsum(acc);
            if let Blocks::Q4_1 { m, .. } = &ctx.m.blocks {
                let mins = &m[r * nbr..(r + 1) * nbr];
                let sums = &ctx.xsum[i * nbr..(i + 1) * nbr];
                let mut macc = 0.0f32;
                for b in 0..nbr {
                    macc += mins[b] * sums[b];
                }
                v += macc;
            }
            *y = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> (QMatrix, Vec<f32>) {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16_777_216.0) - 0.5)
            .collect();
        let mut bytes = Vec::new();
        quantize_row(ty, &vals, &mut bytes);
        let m = QMatrix::from_gguf("w", ty, rows, cols, &bytes).unwrap();
        let dense = m.to_f32();
        (m, dense)
    }

    #[test]
    fn matches_dense_reference_and_is_batch_invariant() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32] {
            let (rows, cols, n) = (70, 96, 5);
            let (m, dense) = matrix(ty, rows, cols, 7);
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
            let y = m.matmul(&x);
            for i in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|k| f64::from(x[i * cols + k]) * f64::from(dense[r * cols + k]))
                        .sum();
                    let got = f64::from(y[i * rows + r]);
                    assert!((got - want).abs() < 1e-4, "{ty:?} ({i},{r}): {got} vs {want}");
                }
                // The same row alone gives the same bits.
                let alone = m.matmul(&x[i * cols..(i + 1) * cols]);
                assert_eq!(alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y[i * rows..(i + 1) * rows].iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
        }
    }
}
