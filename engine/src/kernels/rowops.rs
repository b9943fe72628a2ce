//! Row-wise operations: RMSNorm, RoPE, SwiGLU gate, residual add.

use super::{dot, exp_f32};

/// `out = x / sqrt(mean(x²) + eps) · w`, row by row.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0.0f32; x.len()];
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = dot(row, row) / d as f32;
        let scale = 1.0 / (ms + eps).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(w) {
            *o = (v * scale) * w;
        }
    }
    out
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

/// `gate = silu(gate) · up`, in place.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = (*g / (1.0 + exp_f32(-*g))) * u;
    }
}

/// `x += y`.
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
