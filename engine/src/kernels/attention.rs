//! Causal grouped-query attention over a KV cache, one (position, head) per task.
//!
//! The output row of position p depends only on its query and the cache rows
//! 0..=p, each reduced in a fixed order, so it has the same bits whether p was
//! computed in a prefill block, a one-token decode step or a verifier's replay.

use rayon::prelude::*;

use super::dot;
use super::isa::multiversion;

/// Shapes for one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnShape {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

struct Job<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    shape: AttnShape,
    first_pos: usize,
}

/// `q` holds `n` rows of `heads * head_dim` for positions `first_pos..first_pos+n`;
/// `k`/`v` hold the cache rows `0..first_pos+n` of `kv_heads * head_dim`.
/// Returns `n` rows of `heads * head_dim`.
pub(crate) fn attention(q: &[f32], k: &[f32], v: &[f32], shape: AttnShape, first_pos: usize) -> Vec<f32> {
    let dh = shape.head_dim;
    let mut out = vec![0.0f32; q.len()];
    let job = Job { q, k, v, shape, first_pos };
    out.par_chunks_mut(dh).enumerate().for_each(|(task, o)| head_kernel(&job, task, o));
    out
}

multiversion!(fn head_kernel(job: &Job<'_>, task: usize, out: &mut [f32]) => head_body);

#[inline(always)]
fn head_body(job: &Job<'_>, task: usize, out: &mut [f32]) {
    let AttnShape { heads, kv_heads, head_dim: dh } = job.shape;
    let (i, h) = (task / heads, task % heads);
    let pos = job.first_pos + i;
    let kvh = h / (heads / kv_heads);
    let kv_dim = kv_heads * dh;
    let q = &job.q[task * dh..(task + 1) * dh];
    let scale = 1.0 / (dh as f32).sqrt();
    let mut scores: Vec<f32> = (0..=pos)
        .map(|j| dot(q, &job.k[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh]) * scale)
        .collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        let vr = &job.v[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh];
        for (o, x) in out.iter_mut().zip(vr) {
            *o += p * x;
        }
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}
