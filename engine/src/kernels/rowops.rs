//! Row-wise operations: RMSNorm, RoPE, SwiGLU gate, residual add.
//!
//! Each is compiled for the CPU's vector width (`multiversion!`: the same
//! IEEE operations per element, so the same bits) and, over a prefill's
//! many rows, split across rayon's pool by whole rows; a decode step's few
//! rows stay on the calling thread, where a fork and join would cost more
//! than the loop.

use rayon::prelude::*;

use super::isa::multiversion;
use super::{dot, exp_f32};

/// Floats per parallel task; inputs under two tasks' worth run serially.
const TASK_FLOATS: usize = 16 * 1024;

/// Rows of `row_len` floats per task (at least one).
fn task_rows(row_len: usize) -> usize {
    (TASK_FLOATS / row_len.max(1)).max(1)
}

/// Whether `len` floats are worth splitting.
fn parallel(len: usize) -> bool {
    len >= 2 * TASK_FLOATS
}

/// `out = x / sqrt(mean(x²) + eps) · w`, row by row.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0.0f32; x.len()];
    if d == 0 {
        return out;
    }
    if parallel(x.len()) {
        let chunk = task_rows(d) * d;
        out.par_chunks_mut(chunk)
            .zip(x.par_chunks(chunk))
            .for_each(|(o, x)| rms_rows(x, w, eps, o));
    } else {
        rms_rows(x, w, eps, &mut out);
    }
    out
}

multiversion!(fn rms_rows / rms_rows_with(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) => rms_body);

#[inline(always)]
fn rms_body(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = dot(row, row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(w) {
            *o = (v * scale) * w;
        }
    }
}

/// Cosines and sines of RoPE angles for every position of the context.
///
/// GGUF stores Q and K rows permuted for llama.cpp's "normal" RoPE, which
/// rotates adjacent pairs (2i, 2i+1) by `pos · base^(-2i/dh)`.
#[derive(Clone, Debug)]
pub(crate) struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub(crate) fn new(head_dim: usize, base: f32, positions: usize) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        let freqs: Vec<f64> = (0..half)
            .map(|i| f64::from(base).powf(-2.0 * i as f64 / head_dim as f64))
            .collect();
        for p in 0..positions {
            for freq in &freqs {
                let angle = p as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { half, cos, sin }
    }

    /// `(cos, sin)` for one position, `head_dim / 2` each.
    pub(crate) fn at(&self, pos: usize) -> (&[f32], &[f32]) {
        let r = pos * self.half..(pos + 1) * self.half;
        (&self.cos[r.clone()], &self.sin[r])
    }
}

/// Rotate every head of `x` (rows of `heads * head_dim`, positions from `first_pos`).
pub(crate) fn rope_in_place(
    x: &mut [f32],
    head_dim: usize,
    row_len: usize,
    first_pos: usize,
    table: &RopeTable,
) {
    if row_len == 0 {
        return;
    }
    if parallel(x.len()) {
        let rows = task_rows(row_len);
        x.par_chunks_mut(rows * row_len)
            .enumerate()
            .for_each(|(t, x)| rope_rows(x, head_dim, row_len, first_pos + t * rows, table));
    } else {
        rope_rows(x, head_dim, row_len, first_pos, table);
    }
}

multiversion!(fn rope_rows / rope_rows_with(
    x: &mut [f32],
    head_dim: usize,
    row_len: usize,
    first_pos: usize,
    table: &RopeTable,
) => rope_body);

#[inline(always)]
fn rope_body(x: &mut [f32], head_dim: usize, row_len: usize, first_pos: usize, table: &RopeTable) {
    for (i, row) in x.chunks_exact_mut(row_len).enumerate() {
        let (cos, sin) = table.at(first_pos + i);
        for head in row.chunks_exact_mut(head_dim) {
            for (k, pair) in head.chunks_exact_mut(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos[k] - b * sin[k];
                pair[1] = a * sin[k] + b * cos[k];
            }
        }
    }
}

/// `f(x, y)` over aligned parts of the two arrays: in parallel tasks when
/// they are long, at once otherwise. For element-wise `f` only.
fn elementwise(x: &mut [f32], y: &[f32], f: impl Fn(&mut [f32], &[f32]) + Sync) {
    if parallel(x.len()) {
        x.par_chunks_mut(TASK_FLOATS)
            .zip(y.par_chunks(TASK_FLOATS))
            .for_each(|(x, y)| f(x, y));
    } else {
        f(x, y);
    }
}

/// `gate = silu(gate) · up`, in place.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    elementwise(gate, up, silu_part);
}

multiversion!(fn silu_part / silu_part_with(gate: &mut [f32], up: &[f32]) => silu_body);

#[inline(always)]
fn silu_body(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = (*g / (1.0 + exp_f32(-*g))) * u;
    }
}

/// `x += y`.
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    elementwise(x, y, add_part);
}

multiversion!(fn add_part / add_part_with(x: &mut [f32], y: &[f32]) => add_body);

#[inline(always)]
fn add_body(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Isa;
    use super::*;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Inputs past the parallel threshold (with a partial last task) and a
    /// decode-sized one: every ISA, split or not, gives the portable loop's
    /// bits.
    #[test]
    fn every_isa_and_the_parallel_split_give_the_portable_bits() {
        let (d, dh) = (576, 64);
        for rows in [1, 3 * task_rows(d) + 5] {
            let n = rows * d;
            let val = |i: usize, s: usize| ((i * 7919 + s * 31) % 2003) as f32 / 250.0 - 4.0;
            let x: Vec<f32> = (0..n).map(|i| val(i, 1)).collect();
            let y: Vec<f32> = (0..n).map(|i| val(i, 2)).collect();
            let w: Vec<f32> = (0..d).map(|i| val(i, 3)).collect();
            let table = RopeTable::new(dh, 10_000.0, rows + 7);

            let mut want_norm = vec![0.0; n];
            rms_rows_with(Isa::Generic, &x, &w, 1e-5, &mut want_norm);
            let mut want_silu = x.clone();
            silu_part_with(Isa::Generic, &mut want_silu, &y);
            let mut want_add = x.clone();
            add_part_with(Isa::Generic, &mut want_add, &y);
            let mut want_rope = x.clone();
            rope_rows_with(Isa::Generic, &mut want_rope, dh, d, 7, &table);

            assert_eq!(bits(&rms_norm(&x, &w, 1e-5)), bits(&want_norm));
            let mut got = x.clone();
            silu_mul(&mut got, &y);
            assert_eq!(bits(&got), bits(&want_silu));
            let mut got = x.clone();
            add_in_place(&mut got, &y);
            assert_eq!(bits(&got), bits(&want_add));
            let mut got = x.clone();
            rope_in_place(&mut got, dh, d, 7, &table);
            assert_eq!(bits(&got), bits(&want_rope));

            for isa in [Isa::Avx2, Isa::Avx512] {
                let mut got = vec![0.0; n];
                rms_rows_with(isa, &x, &w, 1e-5, &mut got);
                assert_eq!(bits(&got), bits(&want_norm), "{isa:?}");
                let mut got = x.clone();
                silu_part_with(isa, &mut got, &y);
                assert_eq!(bits(&got), bits(&want_silu), "{isa:?}");
                let mut got = x.clone();
                add_part_with(isa, &mut got, &y);
                assert_eq!(bits(&got), bits(&want_add), "{isa:?}");
                let mut got = x.clone();
                rope_rows_with(isa, &mut got, dh, d, 7, &table);
                assert_eq!(bits(&got), bits(&want_rope), "{isa:?}");
            }
        }
    }
}
