//! `y = x · Wᵀ` for the model's weight matrices.
//!
//! Quantised matrices (Q4_1, Q8_0) run the integer kernels of
//! `int8_matmul`: activations quantised per block, exact integer block
//! sums, one fixed float chain per output. Plain float matrices (F32 and
//! F16 tensors) run the float kernels below.
//!
//! Per output element of a float matrix the reduction is: one accumulator
//! of 16 lanes; for each 32-element block in order, `acc[j] = fma(w[j],
//! x[j], acc[j])` for the block's first 16 elements, then the same for its
//! last 16; the result is the lanes' sum in the fixed tree. The order
//! depends only on the row length, never on how many activation rows are
//! computed together, on the tile, or on which thread. Fused multiply-adds
//! (`f32::mul_add`) round once, exactly as IEEE 754 specifies, whether the
//! CPU's FMA unit or a software fallback computes them, so they keep every
//! instruction set's bits identical.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::int8_acts::QActs;
use super::int8_matmul::{Int8Path, matmul_int8, matmul_int8_each};
use super::int8_weights::Int8Weights;
use super::isa::{Isa, multiversion};
use super::tile_avx512::tile_4xr;
use super::{LANES, hsum};
use crate::error::{Result, tensor_err};
use crate::quant::{GgmlType, QK, dequantize_row};

const HALF: usize = QK / 2;

/// A weight matrix of `rows` outputs by `cols` inputs, row-major, ready for the kernels.
#[derive(Clone, Debug)]
pub(crate) struct QMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
    /// A quantised matrix dequantised, made on first use by the float
    /// reference ([`Numerics::F32`]).
    dense: OnceLock<Vec<f32>>,
}

/// The arithmetic of a forward pass on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numerics {
    /// The exact kernels: 8-bit activations and integer block sums for
    /// quantised matrices, over an f16 key/value cache (receipts tagged
    /// `cpu-i8-kv16`). What the engine runs.
    Int8,
    /// The float reference: f32 activations times the dequantised weights,
    /// each product reduced in the float kernels' fixed order. The burn
    /// backends compute this arithmetic (in their own order), so it is what
    /// their receipts are replayed with, within a tolerance.
    F32,
}

#[derive(Clone, Debug)]
enum Blocks {
    /// Q4_1 and Q8_0, grouped for the integer kernels.
    Int8(Int8Weights),
    /// Plain floats (F32 and F16 tensors).
    F32 { w: Vec<f32> },
}

impl QMatrix {
    /// Where its weights lie in memory: (address, bytes) of each array.
    pub(crate) fn spans(&self) -> Vec<(usize, usize)> {
        match &self.blocks {
            Blocks::Int8(w) => w.spans().to_vec(),
            Blocks::F32 { w } => vec![(w.as_ptr() as usize, size_of_val(&w[..]))],
        }
    }

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
        let blocks = match ty {
            GgmlType::Q4_1 | GgmlType::Q8_0 => {
                Blocks::Int8(Int8Weights::from_gguf(name, ty, rows, cols, bytes)?)
            }
            GgmlType::F32 | GgmlType::F16 => {
                let mut w = vec![0.0; rows * cols];
                dequantize_row(ty, bytes, &mut w);
                Blocks::F32 { w }
            }
        };
        Ok(Self {
            rows,
            cols,
            blocks,
            dense: OnceLock::new(),
        })
    }

    /// Outputs.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Inputs.
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r` as floats (the embedding lookup): each element `d·q`, plus
    /// Q4_1's block minimum.
    pub(crate) fn row_f32(&self, r: usize, out: &mut [f32]) {
        match &self.blocks {
            Blocks::Int8(w) => w.rows_f32(r, &mut out[..self.cols]),
            Blocks::F32 { w } => out.copy_from_slice(&w[r * self.cols..(r + 1) * self.cols]),
        }
    }

    /// The whole matrix as row-major floats (for the burn path and the
    /// float reference): the same values as [`QMatrix::row_f32`] row by row.
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match &self.blocks {
            Blocks::Int8(w) => {
                let mut out = vec![0.0; self.rows * self.cols];
                w.rows_f32(0, &mut out);
                out
            }
            Blocks::F32 { w } => w.clone(),
        }
    }

    /// Bytes the kernels read per full pass over the matrix.
    pub(crate) fn bytes(&self) -> usize {
        match &self.blocks {
            Blocks::Int8(w) => w.bytes(),
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
        match &self.blocks {
            Blocks::Int8(w) => {
                let a = QActs::new_isa(isa, x, self.cols);
                matmul_int8(w, Int8Path::best(isa), &a, range)
            }
            Blocks::F32 { w } => matmul_f32(w, self.cols, isa, x, range),
        }
    }

    /// [`QMatrix::matmul`] in the given arithmetic.
    pub(crate) fn matmul_in(&self, numerics: Numerics, x: &[f32]) -> Vec<f32> {
        match (numerics, &self.blocks) {
            (Numerics::F32, Blocks::Int8(_)) => {
                let dense = self.dense.get_or_init(|| self.to_f32());
                matmul_f32(dense, self.cols, Isa::detect(), x, 0..self.rows)
            }
            _ => self.matmul(x),
        }
    }

    /// [`QMatrix::matmul_each`] in the given arithmetic.
    pub(crate) fn matmul_each_in<const K: usize>(
        numerics: Numerics,
        mats: [&QMatrix; K],
        x: &[f32],
    ) -> [Vec<f32>; K] {
        match numerics {
            Numerics::Int8 => Self::matmul_each(mats, x),
            Numerics::F32 => mats.map(|m| m.matmul_in(numerics, x)),
        }
    }

    /// `[m.matmul(x) for m in mats]`, quantising `x` once when every matrix
    /// takes 8-bit activations of its width (the same bits as one by one).
    pub(crate) fn matmul_each<const K: usize>(mats: [&QMatrix; K], x: &[f32]) -> [Vec<f32>; K] {
        let Some(first) = mats.first() else {
            return mats.map(|m| m.matmul(x));
        };
        let cols = first.cols;
        let ws: Option<Vec<&Int8Weights>> = mats
            .iter()
            .map(|m| match &m.blocks {
                Blocks::Int8(w) if m.cols == cols => Some(w),
                _ => None,
            })
            .collect();
        let Some(ws) = ws else {
            return mats.map(|m| m.matmul(x));
        };
        let isa = Isa::detect();
        let a = QActs::new_isa(isa, x, cols);
        let parts = std::array::from_fn(|k| (ws[k], 0..mats[k].rows));
        matmul_int8_each(parts, Int8Path::best(isa), &a)
    }

    /// As [`QMatrix::matmul`] on one given integer kernel (tests compare them).
    #[cfg(test)]
    pub(crate) fn matmul_path(&self, path: Int8Path, x: &[f32]) -> Vec<f32> {
        match &self.blocks {
            Blocks::Int8(w) => matmul_int8(w, path, &QActs::new(x, self.cols), 0..self.rows),
            Blocks::F32 { .. } => self.matmul(x),
        }
    }
}

/// The float matmul: rows `range` of `w` (`cols` inputs each).
fn matmul_f32(
    w: &[f32],
    cols: usize,
    isa: Isa,
    x: &[f32],
    range: std::ops::Range<usize>,
) -> Vec<f32> {
    let n = x.len() / cols;
    let width = range.len();
    // Transposed output: one contiguous run of `n` values per weight row,
    // so threads split the weight rows (output elements) and never a sum.
    let mut yt = vec![0.0f32; width * n];
    let per_task = (width / (4 * rayon::current_num_threads().max(1))).clamp(8, 256);
    let ctx = Ctx {
        w,
        cols,
        x,
        n,
        nbr: cols / QK,
        tile: Tile::for_isa(isa),
    };
    if n > 0 {
        yt.par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(c, out)| {
                let first = range.start + c * per_task;
                rows_kernel_with(isa, &ctx, first, out);
            });
    }
    if n == 1 {
        return yt;
    }
    // Transpose in strips of 32 weight rows: the strip's reads stay in
    // L1 across activation rows and every write run is contiguous.
    let mut y = vec![0.0f32; n * width];
    for r0 in (0..width).step_by(32) {
        let r1 = (r0 + 32).min(width);
        for (i, yrow) in y.chunks_exact_mut(width).enumerate() {
            for (r, v) in yrow[r0..r1].iter_mut().enumerate() {
                *v = yt[(r0 + r) * n + i];
            }
        }
    }
    y
}

struct Ctx<'a> {
    w: &'a [f32],
    cols: usize,
    x: &'a [f32],
    n: usize,
    nbr: usize,
    tile: Tile,
}

/// Weight rows by activation rows computed together: a speed choice only
/// (every dot product runs the same operations whatever the tile).
#[derive(Clone, Copy)]
enum Tile {
    /// 4 x 4: 16 accumulators of 16 lanes, which AVX-512's 32 registers hold.
    Wide,
    /// 2 x 2, for 16-register machines.
    Narrow,
}

impl Tile {
    fn for_isa(isa: Isa) -> Self {
        match isa {
            Isa::Avx512 => Self::Wide,
            Isa::Avx2 | Isa::Generic => Self::Narrow,
        }
    }
}

multiversion!(fn rows_kernel / rows_kernel_with(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) => rows_kernel_body);

/// Activation rows that meet every weight row of a task before the next
/// rows do: at most 64 rows of up to 1,536 floats (384 KiB) stay in L2
/// while the task's weight rows stream past them.
const ROW_BLOCK: usize = 64;

/// Fill `out` (`n` values per weight row, rows `first..`) for all
/// activation rows, in tiles of weight rows by activation rows.
#[inline(always)]
fn rows_kernel_body(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) {
    let (n, cols) = (ctx.n, ctx.cols);
    let wrows = out.len() / n;
    let (tw, tr) = match ctx.tile {
        Tile::Wide => (4, 4),
        Tile::Narrow => (2, 2),
    };
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + ROW_BLOCK).min(n);
        let mut k = 0;
        while k < wrows {
            let wk = if wrows - k >= tw { tw } else { 1 };
            let mut rows: [&[f32]; 4] = [&[]; 4];
            for (j, row) in rows.iter_mut().enumerate().take(wk) {
                let r = first + k + j;
                *row = &ctx.w[r * cols..(r + 1) * cols];
            }
            let mut i = i0;
            while i < i1 {
                let g = if wk == 4 {
                    (i1 - i).min(4)
                } else if i1 - i >= tr {
                    tr
                } else {
                    1
                };
                match (wk, g) {
                    (4, 4) => panel_tile_4xr::<4>(ctx, &rows, k, i, out),
                    (4, 3) => panel_tile_4xr::<3>(ctx, &rows, k, i, out),
                    (4, 2) => panel_tile_4xr::<2>(ctx, &rows, k, i, out),
                    (4, _) => panel_tile_4xr::<1>(ctx, &rows, k, i, out),
                    (2, 2) => panel_tile::<2, 2>(ctx, &rows, k, i, out),
                    (2, _) => panel_tile::<2, 1>(ctx, &rows, k, i, out),
                    (_, 4) => panel_tile::<1, 4>(ctx, &rows, k, i, out),
                    (_, 2) => panel_tile::<1, 2>(ctx, &rows, k, i, out),
                    _ => panel_tile::<1, 1>(ctx, &rows, k, i, out),
                }
                i += g;
            }
            k += wk;
        }
        i0 = i1;
    }
}

/// `acc[j] = fma(hi[j], x[16+j], fma(lo[j], x[j], acc[j]))`: one block of
/// one dot product, the only arithmetic a dot product does before its sum.
#[inline(always)]
fn block_step(acc: &mut [f32; LANES], lo: &[f32; HALF], hi: &[f32; HALF], x: &[f32]) {
    let x: &[f32; QK] = x.try_into().unwrap_or(&[0.0; QK]);
    for j in 0..HALF {
        acc[j] = lo[j].mul_add(x[j], acc[j]);
    }
    for j in 0..HALF {
        acc[j] = hi[j].mul_add(x[HALF + j], acc[j]);
    }
}

/// Activation rows `i..+R` against the first `W` of `rows` (matrix rows
/// `first + k ..`), written to `out[(k + w) * n + i + r]`.
#[inline(always)]
fn panel_tile<const W: usize, const R: usize>(
    ctx: &Ctx<'_>,
    rows: &[&[f32]; 4],
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    let cols = ctx.cols;
    let xs = &ctx.x[i * cols..(i + R) * cols];
    let mut acc = [[[0.0f32; LANES]; R]; W];
    for b in 0..ctx.nbr {
        for (w, aw) in acc.iter_mut().enumerate() {
            let wb = &rows[w][b * QK..(b + 1) * QK];
            let lo: &[f32; HALF] = wb[..HALF].try_into().unwrap_or(&[0.0; HALF]);
            let hi: &[f32; HALF] = wb[HALF..].try_into().unwrap_or(&[0.0; HALF]);
            for (r, a) in aw.iter_mut().enumerate() {
                block_step(a, lo, hi, &xs[r * cols + b * QK..r * cols + (b + 1) * QK]);
            }
        }
    }
    for (w, aw) in acc.iter().enumerate() {
        for (r, a) in aw.iter().enumerate() {
            out[(k + w) * ctx.n + i + r] = hsum(*a);
        }
    }
}

/// [`panel_tile`] for 4 x `R`, in AVX-512 registers where the CPU has them.
#[inline(always)]
fn panel_tile_4xr<const R: usize>(
    ctx: &Ctx<'_>,
    rows: &[&[f32]; 4],
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    let cols = ctx.cols;
    let x: [&[f32]; R] = std::array::from_fn(|r| &ctx.x[(i + r) * cols..(i + r + 1) * cols]);
    match tile_4xr::<R>(*rows, x, ctx.nbr) {
        Some(y) => {
            for (w, yw) in y.iter().enumerate() {
                out[(k + w) * ctx.n + i..(k + w) * ctx.n + i + R].copy_from_slice(yw);
            }
        }
        None => panel_tile::<4, R>(ctx, rows, k, i, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_row;

    /// A pseudo-random `rows x cols` tensor of type `ty`, as GGUF bytes.
    fn gguf_bytes(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> Vec<u8> {
        let vals: Vec<f32> = (0..rows * cols)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32
                    / 16_777_216.0)
                    - 0.5
            })
            .collect();
        let mut bytes = Vec::new();
        quantize_row(ty, &vals, &mut bytes);
        bytes
    }

    fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u32) -> (QMatrix, Vec<f32>) {
        let bytes = gguf_bytes(ty, rows, cols, seed);
        let m = QMatrix::from_gguf("w", ty, rows, cols, &bytes).unwrap();
        let dense = m.to_f32();
        (m, dense)
    }

    /// The dot product the integer numerics approximate: the dense
    /// weights against the activations as their blocks quantise them.
    fn reference(dense: &[f32], x: &[f32], cols: usize, i: usize, r: usize) -> f64 {
        let a = super::super::int8_acts::QActs::new(&x[i * cols..(i + 1) * cols], cols);
        (0..cols)
            .map(|k| {
                let xq = f64::from(a.dx[k / QK]) * f64::from(a.q[k]);
                xq * f64::from(dense[r * cols + k])
            })
            .sum()
    }

    #[test]
    fn matches_dense_reference_and_is_batch_invariant() {
        // Lone rows, batches below and above VNNI's pass of 8 and the
        // activations' padding to 16 rows; 70 weight rows leave a partial
        // group of 16.
        for (ty, n) in [
            (GgmlType::Q4_1, 1),
            (GgmlType::Q4_1, 2),
            (GgmlType::Q4_1, 5),
            (GgmlType::Q4_1, 9),
            (GgmlType::Q4_1, 16 + 3),
            (GgmlType::Q4_1, ROW_BLOCK + 3),
            (GgmlType::Q8_0, 1),
            (GgmlType::Q8_0, 3),
            (GgmlType::Q8_0, 5),
            (GgmlType::Q8_0, 21),
            (GgmlType::Q8_0, 16),
            (GgmlType::Q4_1, 37),
            (GgmlType::F32, 1),
            (GgmlType::F32, 5),
        ] {
            let (rows, cols) = (70, 96);
            let (m, dense) = matrix(ty, rows, cols, 7);
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            let y = m.matmul(&x);
            for i in 0..n {
                for r in 0..rows {
                    let want = if ty == GgmlType::F32 {
                        (0..cols)
                            .map(|k| f64::from(x[i * cols + k]) * f64::from(dense[r * cols + k]))
                            .sum()
                    } else {
                        reference(&dense, &x, cols, i, r)
                    };
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
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            // Every instruction set, and every integer kernel, gives the same bits.
            for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
                let other = m.matmul_rows_isa(isa, &x, 0..rows);
                assert_eq!(bits(&other), bits(&y), "{ty:?} on {isa:?}");
            }
            for path in [
                Int8Path::Portable(Isa::Generic),
                Int8Path::Portable(Isa::Avx512),
                Int8Path::Vnni,
                Int8Path::Amx,
                Int8Path::Avx2,
            ] {
                assert_eq!(
                    bits(&m.matmul_path(path, &x)),
                    bits(&y),
                    "{ty:?} on {path:?}"
                );
            }
            // A range of output rows is that slice of the full product.
            if n == 1 {
                let part = m.matmul_rows(&x, 21..53);
                assert_eq!(bits(&part), bits(&y[21..53]), "{ty:?} rows 21..53");
            }
        }
    }

    /// One row dequantised alone is that row of the whole matrix, and each
    /// value is `d·q` (+ the Q4_1 minimum) as GGUF's own dequantisation has it.
    #[test]
    fn a_lone_row_dequantises_as_the_whole_matrix_does() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let (rows, cols) = (70, 96);
            let (m, dense) = matrix(ty, rows, cols, 5);
            let bytes = gguf_bytes(ty, rows, cols, 5);
            let mut gguf = vec![0.0; rows * cols];
            dequantize_row(ty, &bytes, &mut gguf);
            let mut row = vec![0.0; cols];
            for r in 0..rows {
                m.row_f32(r, &mut row);
                assert_eq!(row, dense[r * cols..(r + 1) * cols], "{ty:?} row {r}");
                for (got, want) in row.iter().zip(&gguf[r * cols..(r + 1) * cols]) {
                    assert!(
                        (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{ty:?} row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn matrices_sharing_one_quantised_input_give_their_own_bits() {
        let cols = 96;
        let (a, _) = matrix(GgmlType::Q4_1, 40, cols, 1);
        let (b, _) = matrix(GgmlType::Q8_0, 24, cols, 2);
        let x: Vec<f32> = (0..7 * cols).map(|i| (i % 19) as f32 / 9.0 - 1.0).collect();
        let [ya, yb] = QMatrix::matmul_each([&a, &b], &x);
        assert_eq!(ya, a.matmul(&x));
        assert_eq!(yb, b.matmul(&x));
        let (f, _) = matrix(GgmlType::F32, 8, cols, 3);
        let [yf, ya2] = QMatrix::matmul_each([&f, &a], &x);
        assert_eq!(yf, f.matmul(&x));
        assert_eq!(ya2, ya);
    }

    #[test]
    fn non_finite_activations_give_nan_outputs_on_every_kernel() {
        let (rows, cols) = (20, 64);
        let (m, _) = matrix(GgmlType::Q4_1, rows, cols, 3);
        let mut x = vec![0.5f32; 3 * cols];
        x[cols + 40] = f32::INFINITY;
        for path in [
            Int8Path::Portable(Isa::Generic),
            Int8Path::Vnni,
            Int8Path::Amx,
            Int8Path::Avx2,
        ] {
            let y = m.matmul_path(path, &x);
            assert!(y[..rows].iter().all(|v| v.is_finite()), "{path:?}");
            assert!(y[rows..2 * rows].iter().all(|v| v.is_nan()), "{path:?}");
            assert!(y[2 * rows..].iter().all(|v| v.is_finite()), "{path:?}");
        }
    }
}
