//! `y = x · Wᵀ` with W kept in its GGUF block format (Q4_1, Q8_0) or f32.
//!
//! Per output element the reduction is: one accumulator of 16 lanes; for
//! each 32-element block b in order, `acc[j] = fma(w[j], x[j], acc[j])` for
//! the block's first 16 elements, then the same for its last 16, where
//! `w = d_b · q` is the block's scaled weight (exact in f32). Q4_1 then adds
//! its min term `m_b·Σx_b` into lane `b mod 16` (fused). The result is the
//! lanes' sum in the fixed tree. The order depends only on the row length,
//! never on how many activation rows are computed together, on the tile, or
//! on which thread.
//!
//! Fused multiply-adds (`f32::mul_add`) round once, exactly as IEEE 754
//! specifies, whether the CPU's FMA unit or a software fallback computes
//! them, so they keep every instruction set's bits identical. Scaling the
//! weights before the dot product (rather than scaling each block's partial
//! sum) makes the inner loop two FMAs per 32 weights and lets many
//! activation rows share weights unpacked once; measured with
//! `benches/ab_generate.sh` in `papers/results/kernels-ab.md`.

use half::f16;
use rayon::prelude::*;

use super::isa::{Isa, multiversion};
use super::tile_avx512::{MinTerm, tile_4xr};
use super::unpack_avx512::{Quant, fill_panel as fill_panel_simd, lone_row_4};
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

impl Blocks {
    /// The quantised formats' arrays, for the AVX-512 unpacking.
    fn quant(&self) -> Option<Quant<'_>> {
        match self {
            Self::Q4_1 { d, m, qs } => Some(Quant::Q4_1 { d, m, qs }),
            Self::Q8_0 { d, qs } => Some(Quant::Q8_0 { d, qs }),
            Self::F32 { .. } => None,
        }
    }
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

    /// Row `r` as floats (the embedding lookup): each block's scaled
    /// weights `d·q`, plus Q4_1's block minimum.
    pub(crate) fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nbr = self.cols / QK;
        match &self.blocks {
            Blocks::Q4_1 { d, m, qs } => {
                fill_panel(&Q4Src { d, qs }, nbr, r, 1, out);
                for (o, &mb) in out.chunks_exact_mut(QK).zip(&m[r * nbr..(r + 1) * nbr]) {
                    o.iter_mut().for_each(|v| *v += mb);
                }
            }
            Blocks::Q8_0 { d, qs } => fill_panel(&Q8Src { d, qs }, nbr, r, 1, out),
            Blocks::F32 { w } => fill_panel(&F32Src { w }, nbr, r, 1, out),
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
            tile: Tile::for_isa(isa),
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
}

struct Ctx<'a> {
    m: &'a QMatrix,
    x: &'a [f32],
    xsum: &'a [f32],
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
/// rows do: at most 64 rows of up to 1,536 floats (384 KiB) stay in L2
/// while the task's weight rows stream past them. Without blocking, every
/// weight row walked all rows of a prefill block, which falls out of cache
/// (a 522-token prompt is 3.2 MB of FFN activations).
const ROW_BLOCK: usize = 64;

/// Fill `out` (`n` values per weight row, rows `first..`) for all activation rows.
///
/// One activation row (a lone decode step) reads each weight block, scales
/// it in registers and uses it once. Two or more rows unpack a group of
/// weight rows once into a panel of scaled floats (a few KiB, in L1) and
/// run tiles of weight rows by activation rows over it, so unpacking is
/// paid once per block of activation rows and the inner loop is nothing but
/// fused multiply-adds.
#[inline(always)]
fn rows_kernel_body(ctx: &Ctx<'_>, first: usize, out: &mut [f32]) {
    let (n, cols) = (ctx.n, ctx.m.cols);
    let wrows = out.len() / n;
    let (tw, tr) = match ctx.tile {
        Tile::Wide => (4, 4),
        Tile::Narrow => (2, 2),
    };
    let quantised = !matches!(ctx.m.blocks, Blocks::F32 { .. });
    let mut panel = if n > 1 && quantised {
        vec![0.0f32; tw * cols]
    } else {
        Vec::new()
    };
    let mut i0 = 0;
    while i0 < n {
        let i1 = (i0 + ROW_BLOCK).min(n);
        let mut k = 0;
        while k < wrows {
            let wk = if wrows - k >= tw { tw } else { 1 };
            let simd = matches!(ctx.tile, Tile::Wide) && wk == 4;
            if n == 1
                && simd
                && let Some(q) = ctx.m.blocks.quant()
                && let Some(y) = lone_row_4(q, first + k, ctx.nbr, ctx.x, ctx.xsum)
            {
                out[k..k + 4].copy_from_slice(&y);
            } else if n == 1 {
                match &ctx.m.blocks {
                    Blocks::Q4_1 { d, qs, .. } => direct(ctx, &Q4Src { d, qs }, wk, first, k, out),
                    Blocks::Q8_0 { d, qs } => direct(ctx, &Q8Src { d, qs }, wk, first, k, out),
                    Blocks::F32 { w } => direct(ctx, &F32Src { w }, wk, first, k, out),
                }
            } else {
                let rows = panel_rows(ctx, first + k, wk, &mut panel);
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
                        (4, 4) => panel_tile_4xr::<4>(ctx, &rows, first, k, i, out),
                        (4, 3) => panel_tile_4xr::<3>(ctx, &rows, first, k, i, out),
                        (4, 2) => panel_tile_4xr::<2>(ctx, &rows, first, k, i, out),
                        (4, _) => panel_tile_4xr::<1>(ctx, &rows, first, k, i, out),
                        (2, 2) => panel_tile::<2, 2>(ctx, &rows, first, k, i, out),
                        (2, _) => panel_tile::<2, 1>(ctx, &rows, first, k, i, out),
                        (_, 4) => panel_tile::<1, 4>(ctx, &rows, first, k, i, out),
                        (_, 2) => panel_tile::<1, 2>(ctx, &rows, first, k, i, out),
                        _ => panel_tile::<1, 1>(ctx, &rows, first, k, i, out),
                    }
                    i += g;
                }
            }
            k += wk;
        }
        i0 = i1;
    }
}

/// The scaled floats of weight rows `r0..r0 + count` (at most 4): the
/// matrix's own rows when it is f32, else unpacked into `panel`.
#[inline(always)]
fn panel_rows<'p>(ctx: &Ctx<'p>, r0: usize, count: usize, panel: &'p mut [f32]) -> [&'p [f32]; 4] {
    let cols = ctx.m.cols;
    let mut rows: [&[f32]; 4] = [&[]; 4];
    match &ctx.m.blocks {
        Blocks::F32 { w } => {
            for (j, row) in rows.iter_mut().enumerate().take(count) {
                *row = &w[(r0 + j) * cols..(r0 + j + 1) * cols];
            }
            return rows;
        }
        _ if matches!(ctx.tile, Tile::Wide)
            && ctx
                .m
                .blocks
                .quant()
                .is_some_and(|q| fill_panel_simd(q, r0, count, ctx.nbr, panel)) => {}
        Blocks::Q4_1 { d, qs, .. } => fill_panel(&Q4Src { d, qs }, ctx.nbr, r0, count, panel),
        Blocks::Q8_0 { d, qs } => fill_panel(&Q8Src { d, qs }, ctx.nbr, r0, count, panel),
    }
    for (j, row) in panel.chunks_exact(cols).enumerate().take(count) {
        rows[j] = row;
    }
    rows
}

/// Weight rows `r0..r0 + count` unpacked into `panel` (`nbr` blocks each).
#[inline(always)]
fn fill_panel<S: Source>(src: &S, nbr: usize, r0: usize, count: usize, panel: &mut [f32]) {
    for (j, dst) in panel.chunks_exact_mut(nbr * QK).enumerate().take(count) {
        for (b, out) in dst.chunks_exact_mut(QK).enumerate() {
            let (lo, hi) = src.unpack((r0 + j) * nbr + b);
            out[..HALF].copy_from_slice(&lo);
            out[HALF..].copy_from_slice(&hi);
        }
    }
}

/// A matrix's blocks in one format, unpacked on demand: a trait so that
/// each format gets its own loop (matching the format per block cost more
/// than the unpacking; closures would not inline into the kernels).
trait Source {
    /// Scaled weights of block `bi` (row-major block index): lanes for
    /// elements 0..16 and 16..32, each `d · q`. That product is exact in f32
    /// (an f16 scale has 11 significant bits, a quant at most 8), so
    /// unpacking in registers and unpacking into a panel give the same floats.
    fn unpack(&self, bi: usize) -> Unpacked;
}

struct Q4Src<'a> {
    d: &'a [f32],
    qs: &'a [u8],
}

struct Q8Src<'a> {
    d: &'a [f32],
    qs: &'a [i8],
}

struct F32Src<'a> {
    w: &'a [f32],
}

impl Source for Q4Src<'_> {
    #[inline(always)]
    fn unpack(&self, bi: usize) -> Unpacked {
        let q: &[u8; HALF] = self.qs[bi * HALF..(bi + 1) * HALF]
            .try_into()
            .unwrap_or(&[0; HALF]);
        let d = self.d[bi];
        let (mut lo, mut hi) = ([0.0f32; HALF], [0.0f32; HALF]);
        for j in 0..HALF {
            lo[j] = d * f32::from(q[j] & 0x0F);
            hi[j] = d * f32::from(q[j] >> 4);
        }
        (lo, hi)
    }
}

impl Source for Q8Src<'_> {
    #[inline(always)]
    fn unpack(&self, bi: usize) -> Unpacked {
        let q: &[i8; QK] = self.qs[bi * QK..(bi + 1) * QK]
            .try_into()
            .unwrap_or(&[0; QK]);
        let d = self.d[bi];
        let (mut lo, mut hi) = ([0.0f32; HALF], [0.0f32; HALF]);
        for j in 0..HALF {
            lo[j] = d * f32::from(q[j]);
            hi[j] = d * f32::from(q[HALF + j]);
        }
        (lo, hi)
    }
}

impl Source for F32Src<'_> {
    #[inline(always)]
    fn unpack(&self, bi: usize) -> Unpacked {
        let w: &[f32; QK] = self.w[bi * QK..(bi + 1) * QK]
            .try_into()
            .unwrap_or(&[0.0; QK]);
        let (mut lo, mut hi) = ([0.0f32; HALF], [0.0f32; HALF]);
        lo.copy_from_slice(&w[..HALF]);
        hi.copy_from_slice(&w[HALF..]);
        (lo, hi)
    }
}

/// Unpacked weights of one block: lanes for elements 0..16 and 16..32.
type Unpacked = ([f32; HALF], [f32; HALF]);

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

/// [`direct_tile`] for `wk` (4, 2 or 1) weight rows.
#[inline(always)]
fn direct<S: Source>(ctx: &Ctx<'_>, src: &S, wk: usize, first: usize, k: usize, out: &mut [f32]) {
    match wk {
        4 => direct_tile::<4, S>(ctx, src, first, k, out),
        2 => direct_tile::<2, S>(ctx, src, first, k, out),
        _ => direct_tile::<1, S>(ctx, src, first, k, out),
    }
}

/// One activation row against weight rows `first + k ..+W`, unpacking each
/// block in registers.
#[inline(always)]
fn direct_tile<const W: usize, S: Source>(
    ctx: &Ctx<'_>,
    src: &S,
    first: usize,
    k: usize,
    out: &mut [f32],
) {
    let nbr = ctx.nbr;
    let r0 = first + k;
    let mut acc = [[0.0f32; LANES]; W];
    for b in 0..nbr {
        let x = &ctx.x[b * QK..(b + 1) * QK];
        for (w, a) in acc.iter_mut().enumerate() {
            let (lo, hi) = src.unpack((r0 + w) * nbr + b);
            block_step(a, &lo, &hi, x);
        }
    }
    for (w, a) in acc.iter().enumerate() {
        out[k + w] = finish(ctx, a, r0 + w, 0);
    }
}

/// Activation rows `i..+R` against the panel's first `W` weight rows
/// (matrix rows `first + k ..`), written to `out[(k + w) * n + i + r]`.
#[inline(always)]
fn panel_tile<const W: usize, const R: usize>(
    ctx: &Ctx<'_>,
    rows: &[&[f32]; 4],
    first: usize,
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    let cols = ctx.m.cols;
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
    write_tile(ctx, &acc, first, k, i, out);
}

/// [`panel_tile`] for 4 x `R`, in AVX-512 registers where the CPU has them.
#[inline(always)]
fn panel_tile_4xr<const R: usize>(
    ctx: &Ctx<'_>,
    rows: &[&[f32]; 4],
    first: usize,
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    let (cols, nbr) = (ctx.m.cols, ctx.nbr);
    let x: [&[f32]; R] = std::array::from_fn(|r| &ctx.x[(i + r) * cols..(i + r + 1) * cols]);
    let min = match &ctx.m.blocks {
        Blocks::Q4_1 { m, .. } => Some(MinTerm {
            m: std::array::from_fn(|w| &m[(first + k + w) * nbr..(first + k + w + 1) * nbr]),
            xsum: std::array::from_fn(|r| &ctx.xsum[(i + r) * nbr..(i + r + 1) * nbr]),
        }),
        _ => None,
    };
    match tile_4xr::<R>(*rows, x, nbr, min.as_ref()) {
        Some(y) => {
            for (w, yw) in y.iter().enumerate() {
                out[(k + w) * ctx.n + i..(k + w) * ctx.n + i + R].copy_from_slice(yw);
            }
        }
        None => panel_tile::<4, R>(ctx, rows, first, k, i, out),
    }
}

/// Finish a tile's dot products into `out[(k + w) * n + i + r]`.
#[inline(always)]
fn write_tile<const W: usize, const R: usize>(
    ctx: &Ctx<'_>,
    acc: &[[[f32; LANES]; R]; W],
    first: usize,
    k: usize,
    i: usize,
    out: &mut [f32],
) {
    for (w, aw) in acc.iter().enumerate() {
        for (r, a) in aw.iter().enumerate() {
            out[(k + w) * ctx.n + i + r] = finish(ctx, a, first + k + w, i + r);
        }
    }
}

/// The dot product of weight row `row` and activation row `i` from its
/// accumulator: Q4_1 first adds its min term `Σ_b m_b·Σx_b` into the lanes
/// (block b into lane b mod 16, fused), then the lanes are summed in the
/// fixed tree.
#[inline(always)]
fn finish(ctx: &Ctx<'_>, acc: &[f32; LANES], row: usize, i: usize) -> f32 {
    let mut a = *acc;
    if let Blocks::Q4_1 { m, .. } = &ctx.m.blocks {
        let nbr = ctx.nbr;
        let m = &m[row * nbr..(row + 1) * nbr];
        let xsum = &ctx.xsum[i * nbr..(i + 1) * nbr];
        for (mc, sc) in m.chunks(LANES).zip(xsum.chunks(LANES)) {
            for j in 0..mc.len() {
                a[j] = mc[j].mul_add(sc[j], a[j]);
            }
        }
    }
    hsum(a)
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
        // Lone rows, panels of 2, 3 and 5 rows (tile remainders), and more
        // rows than one activation block; 70 weight rows leave a remainder
        // after the 4-row groups.
        for (ty, n) in [
            (GgmlType::Q4_1, 1),
            (GgmlType::Q4_1, 2),
            (GgmlType::Q4_1, 5),
            (GgmlType::Q4_1, ROW_BLOCK + 3),
            (GgmlType::Q8_0, 1),
            (GgmlType::Q8_0, 3),
            (GgmlType::Q8_0, 5),
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
