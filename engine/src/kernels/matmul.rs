//! `y = x · Wᵀ` with W kept in its GGUF block format (Q4_1, Q8_0) or f32.
//!
//! Per output element the reduction is: for each 32-element block b in order,
//! `t[j] = q[j]·x[j] + q[16+j]·x[16+j]` over 16 lanes, then
//! `acc[b mod 2][j] += d_b·t[j]`; Q4_1 adds its min term `Σ_b m_b·Σx_b` in
//! 16 lanes of blocks. The result is `hsum(acc[0] + acc[1]) + hsum(min term)`.
//! The order depends only on the row length, never on how many activation
//! rows are computed together or on which thread.

use half::f16;
use rayon::prelude::*;

use super::isa::{Isa, multiversion};
use super::{LANES, hsum};
use crate::error::{Result, tensor_err};
use crate::quant::{GgmlType, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK, dequantize_row};

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
    Q4_1 {
        d: Vec<f32>,
        m: Vec<f32>,
        qs: Vec<u8>,
    },
    /// Per block: scale and 32 signed bytes.
    Q8_0 { d: Vec<f32>, qs: Vec<i8> },
    /// Plain floats (F32 and F16 tensors); scale 1.
    F32 { w: Vec<f32> },
}

impl QMatrix {
    /// Repack a GGUF tensor of `rows x cols` (GGUF dims `[cols, rows]`).
    pub(crate) fn from_gguf(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self> {
        if !cols.is_multiple_of(QK) {
            return Err(tensor_err(
                name,
                format!("{cols} columns is not a multiple of {QK}"),
            ));
        }
        let nb = rows * cols / QK;
        let blocks = match ty {
            GgmlType::Q4_1 => {
                let (mut d, mut m, mut qs) = (
                    Vec::with_capacity(nb),
                    Vec::with_capacity(nb),
                    Vec::with_capacity(nb * HALF),
                );
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
        self.matmul_rows_isa(Isa::detect(), x, range)
    }

    /// As [`QMatrix::matmul_rows`], on the kernels compiled for `isa`.
    pub(crate) fn matmul_rows_isa(
        &self,
        isa: Isa,
        x: &[f32],
        range: std::ops::Range<usize>,
    ) -> Vec<f32> {
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
        let ctx = Ctx {
            m: self,
            x,
            xsum: &xsum,
            n,
            nbr,
        };
        yt.par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(c, out)| {
                let first = range.start + c * per_task;
                rows_kernel_with(isa, &ctx, first, out);
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

multiversion!(fn rows_kernel / rows_kernel_with(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) => rows_kernel_body);

/// Fill `out` (`n` values per weight row, rows `first..`) for all activation rows.
///
/// Activation rows go four at a time so each weight block is unpacked once
/// for four dot products; every dot product still runs its own accumulators
/// through the same sequence of operations as a lone row.
#[inline(always)]
fn rows_kernel_body(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) {
    let (cols, nbr, n) = (ctx.m.cols, ctx.nbr, ctx.n);
    for (k, ys) in out.chunks_exact_mut(n).enumerate() {
        let r = first + k;
        let rb = r * nbr..(r + 1) * nbr;
        let mut i = 0;
        while i < n {
            let group = if n - i >= 4 { 4 } else { 1 };
            let xs = &ctx.x[i * cols..(i + group) * cols];
            let dst = &mut ys[i..i + group];
            match &ctx.m.blocks {
                Blocks::Q4_1 { d, m, qs } => {
                    let (q, d, m) = (
                        &qs[rb.start * HALF..rb.end * HALF],
                        &d[rb.clone()],
                        &m[rb.clone()],
                    );
                    let sums = &ctx.xsum[i * nbr..(i + group) * nbr];
                    if group == 4 {
                        dot_q4_1::<4>(q, d, m, xs, sums, dst);
                    } else {
                        dot_q4_1::<1>(q, d, m, xs, sums, dst);
                    }
                }
                Blocks::Q8_0 { d, qs } => {
                    let (q, d) = (&qs[r * cols..(r + 1) * cols], &d[rb.clone()]);
                    if group == 4 {
                        dot_q8_0::<4>(q, d, xs, dst);
                    } else {
                        dot_q8_0::<1>(q, d, xs, dst);
                    }
                }
                Blocks::F32 { w } => {
                    for (y, x) in dst.iter_mut().zip(xs.chunks_exact(cols)) {
                        *y = dot_f32(&w[r * cols..(r + 1) * cols], x);
                    }
                }
            }
            i += group;
        }
    }
}

/// Two accumulators (even and odd blocks) break the add latency chain; they
/// are combined lane by lane, then in the fixed tree.
#[inline(always)]
fn finish(even: &[f32; LANES], odd: &[f32; LANES]) -> f32 {
    let mut a = *even;
    for j in 0..LANES {
        a[j] += odd[j];
    }
    hsum(a)
}

/// Unpacked weights of one block: lanes for elements 0..16 and 16..32.
type Unpacked = ([f32; HALF], [f32; HALF]);

#[inline(always)]
fn unpack_q4(qb: &[u8]) -> Unpacked {
    let qb: &[u8; HALF] = qb.try_into().unwrap_or(&[0; HALF]);
    let (mut lo, mut hi) = ([0.0f32; HALF], [0.0f32; HALF]);
    for j in 0..HALF {
        lo[j] = f32::from(qb[j] & 0x0F);
        hi[j] = f32::from(qb[j] >> 4);
    }
    (lo, hi)
}

#[inline(always)]
fn unpack_q8(qb: &[i8]) -> Unpacked {
    let qb: &[i8; QK] = qb.try_into().unwrap_or(&[0; QK]);
    let (mut lo, mut hi) = ([0.0f32; HALF], [0.0f32; HALF]);
    for j in 0..HALF {
        lo[j] = f32::from(qb[j]);
        hi[j] = f32::from(qb[HALF + j]);
    }
    (lo, hi)
}

/// `acc[j] += d·(lo[j]·x[j] + hi[j]·x[16+j])`: one block of one dot product.
#[inline(always)]
fn block_step(acc: &mut [f32; LANES], w: &Unpacked, d: f32, x: &[f32]) {
    let x: &[f32; QK] = x.try_into().unwrap_or(&[0.0; QK]);
    for j in 0..HALF {
        acc[j] += d * (w.0[j] * x[j] + w.1[j] * x[HALF + j]);
    }
}

/// A weight row's blocks, unpacked on demand. (A trait rather than a
/// closure: closures are not inlined into the `target_feature` kernels.)
trait BlockRow {
    fn unpack(&self, b: usize) -> Unpacked;
}

struct Q4Row<'a>(&'a [u8]);
struct Q8Row<'a>(&'a [i8]);

impl BlockRow for Q4Row<'_> {
    #[inline(always)]
    fn unpack(&self, b: usize) -> Unpacked {
        unpack_q4(&self.0[b * HALF..(b + 1) * HALF])
    }
}

impl BlockRow for Q8Row<'_> {
    #[inline(always)]
    fn unpack(&self, b: usize) -> Unpacked {
        unpack_q8(&self.0[b * QK..(b + 1) * QK])
    }
}

/// `R` dot products of one block-quantised weight row with `R` activation
/// rows (`xs`, rows of `cols`), scales `d`. Even blocks go to the first
/// accumulator, odd blocks to the second; they are combined by [`finish`].
#[inline(always)]
fn dot_blocks<const R: usize, W: BlockRow>(w: &W, d: &[f32], xs: &[f32], out: &mut [f32]) {
    let nb = d.len();
    let cols = nb * QK;
    let mut even = [[0.0f32; LANES]; R];
    let mut odd = [[0.0f32; LANES]; R];
    let mut b = 0;
    while b + 1 < nb {
        let (w0, w1) = (w.unpack(b), w.unpack(b + 1));
        for r in 0..R {
            let x = &xs[r * cols + b * QK..r * cols + (b + 2) * QK];
            block_step(&mut even[r], &w0, d[b], &x[..QK]);
            block_step(&mut odd[r], &w1, d[b + 1], &x[QK..]);
        }
        b += 2;
    }
    if b < nb {
        let w0 = w.unpack(b);
        for r in 0..R {
            block_step(
                &mut even[r],
                &w0,
                d[b],
                &xs[r * cols + b * QK..r * cols + (b + 1) * QK],
            );
        }
    }
    for r in 0..R {
        out[r] = finish(&even[r], &odd[r]);
    }
}

/// `R` dot products of one Q4_1 weight row with `R` activation rows.
#[inline(always)]
fn dot_q4_1<const R: usize>(
    q: &[u8],
    d: &[f32],
    m: &[f32],
    xs: &[f32],
    xsum: &[f32],
    out: &mut [f32],
) {
    let nbr = d.len();
    dot_blocks::<R, _>(&Q4Row(q), d, xs, out);
    for (r, y) in out.iter_mut().enumerate().take(R) {
        // The min term, Σ_b m_b·Σx_b, over 16 lanes of blocks.
        let mut macc = [0.0f32; LANES];
        for (mc, sc) in m
            .chunks(LANES)
            .zip(xsum[r * nbr..(r + 1) * nbr].chunks(LANES))
        {
            for j in 0..mc.len() {
                macc[j] += mc[j] * sc[j];
            }
        }
        *y += hsum(macc);
    }
}

/// `R` dot products of one Q8_0 weight row with `R` activation rows.
#[inline(always)]
fn dot_q8_0<const R: usize>(q: &[i8], d: &[f32], xs: &[f32], out: &mut [f32]) {
    dot_blocks::<R, _>(&Q8Row(q), d, xs, out);
}

#[inline(always)]
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [[0.0f32; LANES]; 2];
    for (b, (wb, xb)) in w.chunks_exact(QK).zip(x.chunks_exact(QK)).enumerate() {
        let wb: &[f32; QK] = wb.try_into().unwrap_or(&[0.0; QK]);
        let xb: &[f32; QK] = xb.try_into().unwrap_or(&[0.0; QK]);
        let a = &mut acc[b & 1];
        for j in 0..HALF {
            a[j] += wb[j] * xb[j] + wb[HALF + j] * xb[HALF + j];
        }
    }
    finish(&acc[0], &acc[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> (QMatrix, Vec<f32>) {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                    / 16_777_216.0)
                    - 0.5
            })
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
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let y = m.matmul(&x);
            for i in 0..n {
                for r in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|k| f64::from(x[i * cols + k]) * f64::from(dense[r * cols + k]))
                        .sum();
                    let got = f64::from(y[i * rows + r]);
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{ty:?} ({i},{r}): {got} vs {want}"
                    );
                }
                // The same row alone gives the same bits.
                let alone = m.matmul(&x[i * cols..(i + 1) * cols]);
                assert_eq!(
                    alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y[i * rows..(i + 1) * rows]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                );
            }
            // Every instruction set gives the same bits.
            for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
                let other = m.matmul_rows_isa(isa, &x, 0..rows);
                assert_eq!(
                    other.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{ty:?} on {isa:?}"
                );
            }
        }
    }
}
