//! Causal grouped-query attention over a KV cache, one (position, head) per task.
//!
//! The output row of position p depends only on its query and the cache rows
//! 0..=p, each reduced in a fixed order, so it has the same bits whether p was
//! computed in a prefill block, a one-token decode step or a verifier's replay.

use rayon::prelude::*;

use super::attention_avx512::{HeadRows, scores as scores_avx512, weighted_sum};
use super::isa::{Isa, multiversion};
use super::{dot, exp_f32};

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
    /// Whether the AVX-512 inner loops may run (same bits either way).
    isa: Isa,
}

/// One sequence's part of [`attention_many`]: `q` holds its new rows (for
/// positions `first_pos..`), `k`/`v` its cache rows `0..first_pos + n`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnSeq<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) first_pos: usize,
}

/// `q` holds `n` rows of `heads * head_dim` for positions `first_pos..first_pos+n`;
/// `k`/`v` hold the cache rows `0..first_pos+n` of `kv_heads * head_dim`.
/// Returns `n` rows of `heads * head_dim`.
pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: AttnShape,
    first_pos: usize,
) -> Vec<f32> {
    attention_many(&[AttnSeq { q, k, v, first_pos }], shape)
}

/// [`attention`] for several sequences in one parallel loop over all their
/// (position, head) tasks, their outputs concatenated in order. Each task is
/// the one [`attention`] runs for that sequence alone, so the bits are the
/// same; one loop instead of one per sequence saves a batched decode step a
/// fork and join of the pool per sequence and layer.
pub(crate) fn attention_many(seqs: &[AttnSeq<'_>], shape: AttnShape) -> Vec<f32> {
    let dh = shape.head_dim;
    let isa = Isa::detect();
    let jobs: Vec<Job<'_>> = seqs
        .iter()
        .map(|s| Job {
            q: s.q,
            k: s.k,
            v: s.v,
            shape,
            first_pos: s.first_pos,
            isa,
        })
        .collect();
    // Task t of the flat loop is task `t - starts[j]` of sequence j.
    let mut starts = Vec::with_capacity(jobs.len());
    let mut total = 0;
    for j in &jobs {
        starts.push(total);
        total += j.q.len() / dh;
    }
    let mut out = vec![0.0f32; total * dh];
    out.par_chunks_mut(dh).enumerate().for_each(|(task, o)| {
        let j = starts.partition_point(|&s| s <= task) - 1;
        head_kernel(&jobs[j], task - starts[j], o);
    });
    out
}

multiversion!(fn head_kernel / head_kernel_with(job: &Job<'_>, task: usize, out: &mut [f32]) => head_body);

#[inline(always)]
fn head_body(job: &Job<'_>, task: usize, out: &mut [f32]) {
    let AttnShape {
        heads,
        kv_heads,
        head_dim: dh,
    } = job.shape;
    let (i, h) = (task / heads, task % heads);
    let pos = job.first_pos + i;
    let kvh = h / (heads / kv_heads);
    let kv_dim = kv_heads * dh;
    let q = &job.q[task * dh..(task + 1) * dh];
    let scale = 1.0 / (dh as f32).sqrt();
    let at = HeadRows {
        stride: kv_dim,
        offset: kvh * dh,
    };
    let wide = job.isa == Isa::Avx512;
    let mut scores = vec![0.0f32; pos + 1];
    let max = match wide.then(|| scores_avx512(q, job.k, at, scale, &mut scores)) {
        Some(Some(max)) => max,
        _ => {
            // A loop, not a closure: closures are not inlined into the
            // `target_feature` kernels (this one ran as baseline SSE).
            for (j, s) in scores.iter_mut().enumerate() {
                let kr = &job.k[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh];
                *s = dot(q, kr) * scale;
            }
            scores.iter().copied().fold(f32::NEG_INFINITY, f32::max)
        }
    };
    for s in &mut scores {
        *s = exp_f32(*s - max);
    }
    let sum = match wide.then(|| weighted_sum(&scores, job.v, at, out)) {
        Some(Some(sum)) => sum,
        _ => {
            // Two loops: the exponentials vectorise, the sum keeps its order.
            let mut sum = 0.0f32;
            for s in &scores {
                sum += *s;
            }
            out.fill(0.0);
            for (j, p) in scores.iter().enumerate() {
                let vr = &job.v[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh];
                for (o, x) in out.iter_mut().zip(vr) {
                    *o += p * x;
                }
            }
            sum
        }
    };
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_reference_and_every_isa_gives_the_same_bits() {
        // 2, 3 and 4 vectors of 16 per head (SmolLM2's heads are 64 wide);
        // fewer than 16 keys, exactly 16 (position 15), and blocks of 16
        // with a tail (the AVX-512 scores go 16 keys at a time).
        for dh in [32, 48, 64] {
            for (n, first) in [(3, 5), (2, 14), (4, 37)] {
                check_head_dim(dh, n, first);
            }
        }
    }

    fn check_head_dim(dh: usize, n: usize, first: usize) {
        let shape = AttnShape {
            heads: 4,
            kv_heads: 2,
            head_dim: dh,
        };
        let kv = shape.kv_heads * shape.head_dim;
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
        let q: Vec<f32> = (0..n * 4 * dh).map(val).collect();
        let k: Vec<f32> = (0..(first + n) * kv).map(|i| val(i + 17)).collect();
        let v: Vec<f32> = (0..(first + n) * kv).map(|i| val(i + 91)).collect();
        let out = attention(&q, &k, &v, shape, first);
        for i in 0..n {
            for h in 0..4 {
                let kvh = h / 2;
                let qh = &q[(i * 4 + h) * dh..(i * 4 + h + 1) * dh];
                let s: Vec<f64> = (0..=first + i)
                    .map(|j| {
                        (0..dh)
                            .map(|e| f64::from(qh[e]) * f64::from(k[j * kv + kvh * dh + e]))
                            .sum::<f64>()
                            / (dh as f64).sqrt()
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let w: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = w.iter().sum();
                for e in 0..dh {
                    let want: f64 = w
                        .iter()
                        .enumerate()
                        .map(|(j, p)| p * f64::from(v[j * kv + kvh * dh + e]))
                        .sum::<f64>()
                        / z;
                    let got = f64::from(out[(i * 4 + h) * dh + e]);
                    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
                }
            }
        }
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
            let job = Job {
                q: &q,
                k: &k,
                v: &v,
                shape,
                first_pos: first,
                isa,
            };
            for task in 0..n * 4 {
                let mut o = vec![0.0f32; dh];
                head_kernel_with(isa, &job, task, &mut o);
                let want: Vec<u32> = out[task * dh..(task + 1) * dh]
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                assert_eq!(
                    o.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    want,
                    "{isa:?}"
                );
            }
        }
    }
}
