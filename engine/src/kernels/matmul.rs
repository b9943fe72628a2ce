//! `y = x · Wᵀ` with W kept in its GGUF block format (Q4_1, Q8_0) or f32.
//!
//! Per output element the reduction is: for each 32-element block b in order,
//! `t[j] = fma(q[16+j], x[16+j], q[j]·x[j])` over 16 lanes, then
//! `acc[b mod 2][j] = fma(d_b, t[j], acc[b mod 2][j])`; Q4_1 adds its min
//! term `Σ_b m_b·Σx_b` (fused too) in 16 lanes of blocks. The result is
//! `hsum(acc[0] + acc[1]) + hsum(min term)`. The order depends only on the
//! row length, never on how many activation rows are computed together or
//! on which thread.
//!
//! Fused multiply-adds (`f32::mul_add`) round once, exactly as IEEE 754
//! specifies, whether the CPU's FMA unit or a software fallback computes
//! them, so they keep every instruction set's bits identical; they take 3
//! vector operations per 32 weights instead of 5. Measured against the
//! unfused kernel with `benches/ab_generate.sh` (SmolLM2, 2 threads):
//! decode 1.12x to 1.23x, prefill 1.08x (`papers/results/kernels-ab.md`).

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

/// Activation rows that meet every weight row of a task before the next
/// rows do. At most 32 rows of up to 1,536 floats (192 KiB) stay in L2 while
/// the task's weight rows stream past them; before this blocking, every
/// weight row walked all rows of a prefill block, which falls out of cache
/// (a 522-token prompt is 3.2 MB of FFN activations). Measured with
/// `benches/ab_generate.sh`: prefill of that prompt 1.53x, short prompts
/// 1.10x, decode unchanged (`papers/results/kernels-ab.md`).
const ROW_BLOCK: usize = 32;

/// Fill `out` (`n` values per weight row, rows `first..`) for all activation rows.
///
/// Tiles of two weight rows by four activation rows: each weight block is
/// unpacked once for four dot products and each activation load serves two.
/// Every dot product still runs its own accumulators through the same
/// sequence of operations as a lone row, so tiling changes no bits.
#[inline(always)]
fn rows_kernel_body(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) {
    let n = ctx.n;
    let wrows = out.len() / n;
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + ROW_BLOCK).min(n);
        let mut k = 0;
        while k < wrows {
            let wk = if wrows - k >= 2 { 2 } else { 1 };
            let mut i = i0;
            while i < i1 {
                let g = if i1 - i >= 4 { 4 } else { 1 };
                match (wk, g) {
                    (2, 4) => tile::<2, 4>(ctx, first, k, i, out),
                    (2, _) => tile::<2, 1>(ctx, first, k, i, out),
                    (_, 4) => tile::<1, 4>(ctx, first, k, i, out),
                    _ => tile::<1, 1>(ctx, first, k, i, out),
                }
                i += g;
            }
            k += wk;
        }
        i0 = i1;
    }
}

/// Dot products of weight rows `first + k ..+W` with activation rows `i..+R`,
/// written to `out[(k + w) * n + i + r]`.
#[inline(always)]
fn tile<const W: usize, const R: usize>(
    ctx: &Ctx<'_>,
    first: usize,
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    let (cols, nbr, n) = (ctx.m.cols, ctx.nbr, ctx.n);
    let xs = &ctx.x[i * cols..(i + R) * cols];
    let r0 = first + k;
    // Loops rather than closures: closures are not inlined into the
    // `target_feature` kernels.
    let mut y = [[0.0f32; R]; W];
    match &ctx.m.blocks {
        Blocks::Q4_1 { d, m, qs } => {
            let mut rows = [Q4Row(&[]); W];
            let mut scales: [&[f32]; W] = [&[]; W];
            for w in 0..W {
                let b = (r0 + w) * nbr;
                rows[w] = Q4Row(&qs[b * HALF..(b + nbr) * HALF]);
                scales[w] = &d[b..b + nbr];
            }
            dot_tile::<W, R, _>(&rows, &scales, xs, &mut y);
            for (w, yw) in y.iter_mut().enumerate() {
                let b = (r0 + w) * nbr;
                for (r, v) in yw.iter_mut().enumerate() {
                    *v += min_term(&m[b..b + nbr], &ctx.xsum[(i + r) * nbr..(i + r + 1) * nbr]);
                }
            }
        }
        Blocks::Q8_0 { d, qs } => {
            let mut rows = [Q8Row(&[]); W];
            let mut scales: [&[f32]; W] = [&[]; W];
            for w in 0..W {
                let b = (r0 + w) * nbr;
                rows[w] = Q8Row(&qs[b * QK..(b + nbr) * QK]);
                scales[w] = &d[b..b + nbr];
            }
            dot_tile::<W, R, _>(&rows, &scales, xs, &mut y);
        }
        Blocks::F32 { w } => {
            for (wi, yw) in y.iter_mut().enumerate() {
                let r = r0 + wi;
                for (ri, v) in yw.iter_mut().enumerate() {
                    *v = dot_f32(
                        &w[r * cols..(r + 1) * cols],
                        &xs[ri * cols..(ri + 1) * cols],
                    );
                }
            }
        }
    }
    for (w, yw) in y.iter().enumerate() {
        out[(k + w) * n + i..(k + w) * n + i + R].copy_from_slice(yw);
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

/// `acc[j] += d·(lo[j]·x[j] + hi[j]·x[16+j])`, fused: one block of one dot product.
#[inline(always)]
fn block_step(acc: &mut [f32; LANES], w: &Unpacked, d: f32, x: &[f32]) {
    let x: &[f32; QK] = x.try_into().unwrap_or(&[0.0; QK]);
    for j in 0..HALF {
        acc[j] = d.mul_add(w.1[j].mul_add(x[HALF + j], w.0[j] * x[j]), acc[j]);
    }
}

/// A weight row's blocks, unpacked on demand. (A trait rather than a
/// closure: closures are not inlined into the `target_feature` kernels.)
trait BlockRow {
    fn unpack(&self, b: usize) -> Unpacked;
}

#[derive(Clone, Copy)]
struct Q4Row<'a>(&'a [u8]);
#[derive(Clone, Copy)]
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

/// The `W x R` dot products of `W` block-quantised weight rows (scales `d`)
/// with `R` activation rows (`xs`, rows of `cols`). Even blocks go to the
/// first accumulator of each product, odd blocks to the second; they are
/// combined by [`finish`].
#[inline(always)]
fn dot_tile<const W: usize, const R: usize, B: BlockRow>(
    w: &[B; W],
    d: &[&[f32]; W],
    xs: &[f32],
    y: &mut [[f32; R]; W],
) {
    let nb = d[0].len();
    let mut even = [[[0.0f32; LANES]; R]; W];
    let mut odd = [[[0.0f32; LANES]; R]; W];
    let mut b = 0;
    while b + 1 < nb {
        tile_block(&mut even, w, d, xs, b);
        tile_block(&mut odd, w, d, xs, b + 1);
        b += 2;
    }
    if b < nb {
        tile_block(&mut even, w, d, xs, b);
    }
    for j in 0..W {
        for r in 0..R {
            y[j][r] = finish(&even[j][r], &odd[j][r]);
        }
    }
}

/// Block `b` of every product of a tile, into the accumulators `acc`.
#[inline(always)]
fn tile_block<const W: usize, const R: usize, B: BlockRow>(
    acc: &mut [[[f32; LANES]; R]; W],
    w: &[B; W],
    d: &[&[f32]; W],
    xs: &[f32],
    b: usize,
) {
    let cols = d[0].len() * QK;
    let mut wb: [Unpacked; W] = [([0.0; HALF], [0.0; HALF]); W];
    for j in 0..W {
        wb[j] = w[j].unpack(b);
    }
    for r in 0..R {
        let x = &xs[r * cols + b * QK..r * cols + (b + 1) * QK];
        for j in 0..W {
            block_step(&mut acc[j][r], &wb[j], d[j][b], x);
        }
    }
}

/// Q4_1's min term, `Σ_b m_b·Σx_b`, over 16 lanes of blocks.
#[inline(always)]
fn min_term(m: &[f32], xsum: &[f32]) -> f32 {
    let mut macc = [0.0f32; LANES];
    for (mc, sc) in m.chunks(LANES).zip(xsum.chunks(LANES)) {
        for j in 0..mc.len() {
            macc[j] = mc[j].mul_add(sc[j], macc[j]);
        }
    }
    hsum(macc)
}

#[inline(always)]
fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [[0.0f32; LANES]; 2];
    for (b, (wb, xb)) in w.chunks_exact(QK).zip(x.chunks_exact(QK)).enumerate() {
        let wb: &[f32; QK] = wb.try_into().unwrap_or(&[0.0; QK]);
        let xb: &[f32; QK] = xb.try_into().unwrap_or(&[0.0; QK]);
        let a = &mut acc[b & 1];
        for j in 0..HALF {
            a[j] += wb[HALF + j].mul_add(xb[HALF + j], wb[j] * xb[j]);
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
