//! Causal grouped-query attention over a KV cache, one (position, group of
//! query heads sharing a key/value head) per task.
//!
//! The output row of position p and head h depends only on its query and the
//! cache rows 0..=p, each reduced in a fixed order, so it has the same bits
//! whether p was computed in a prefill block, a one-token decode step or a
//! verifier's replay, and whichever heads share its task. The cache holds
//! f16 or f32 ([`KvElem`]); each element is widened to f32 exactly before
//! it is used, so the element type changes what is stored, not how it is
//! summed.

use rayon::prelude::*;

use super::attention_avx512::{HeadRows, MAX_GROUP};
use super::isa::{Isa, multiversion};
use super::kv_elem::KvElem;
use super::{attention_avx2, attention_avx512};
use super::{dot, exp_f32};

/// Shapes for one attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnShape {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

struct Job<'a, T> {
    q: &'a [f32],
    k: &'a [T],
    v: &'a [T],
    shape: AttnShape,
    first_pos: usize,
    /// Whether the AVX-512 or AVX2 inner loops may run (same bits either
    /// way).
    isa: Isa,
}

/// One sequence's part of [`attention_many`]: `q` holds its new rows (for
/// positions `first_pos..`), `k`/`v` its cache rows `0..first_pos + n`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnSeq<'a, T> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [T],
    pub(crate) v: &'a [T],
    pub(crate) first_pos: usize,
}

/// `q` holds `n` rows of `heads * head_dim` for positions `first_pos..first_pos+n`;
/// `k`/`v` hold the cache rows `0..first_pos+n` of `kv_heads * head_dim`.
/// Returns `n` rows of `heads * head_dim`.
pub(crate) fn attention<T: KvElem>(
    q: &[f32],
    k: &[T],
    v: &[T],
    shape: AttnShape,
    first_pos: usize,
) -> Vec<f32> {
    attention_many(&[AttnSeq { q, k, v, first_pos }], shape)
}

/// [`attention`] for several sequences in one parallel loop over all their
/// tasks, their outputs concatenated in order. Each head's row is the one
/// [`attention`] computes for that sequence alone, so the bits are the
/// same; one loop instead of one per sequence saves a batched decode step a
/// fork and join of the pool per sequence and layer.
pub(crate) fn attention_many<T: KvElem>(seqs: &[AttnSeq<'_, T>], shape: AttnShape) -> Vec<f32> {
    let dh = shape.head_dim;
    let positions: usize = seqs
        .iter()
        .map(|s| s.q.len() / (shape.heads * dh).max(1))
        .sum();
    let group = head_group(shape, positions, rayon::current_num_threads());
    let isa = Isa::detect();
    let jobs: Vec<Job<'_, T>> = seqs
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
    let width = group * dh;
    let mut starts = Vec::with_capacity(jobs.len());
    let mut total = 0;
    for j in &jobs {
        starts.push(total);
        total += j.q.len() / width;
    }
    let mut out = vec![0.0f32; total * width];
    out.par_chunks_mut(width).enumerate().for_each(|(task, o)| {
        let j = starts.partition_point(|&s| s <= task) - 1;
        group_kernel(&jobs[j], group, task - starts[j], o);
    });
    out
}

/// How many query heads a task takes: the most, up to [`MAX_GROUP`], that
/// divides the heads sharing one key/value head. A task brings its
/// key/value head's cache rows in once for all of them (the scores take
/// every head on 16 keys while their rows are in the first-level cache;
/// the weighted sum reads each value row once for every head, their chains
/// of adds side by side)
/// (SmolLM2: 3 heads a task; a 512-token prefill spent about 23% less time
/// in attention).
/// One head a task when that leaves fewer than two tasks per thread: a
/// lone decode step has one position, and SmolLM2's three groups on two
/// threads put twice a third of the work on one of them, where nine heads
/// split five to four (decoding after a 522-token prompt ran 0.83x as
/// fast grouped).
fn head_group(shape: AttnShape, positions: usize, threads: usize) -> usize {
    let share = (shape.heads / shape.kv_heads.max(1)).max(1);
    let group = (1..=MAX_GROUP.min(share))
        .rev()
        .find(|g| share.is_multiple_of(*g))
        .unwrap_or(1);
    if positions * (shape.heads / group) < 2 * threads {
        1
    } else {
        group
    }
}

multiversion!(fn group_kernel<T: KvElem> / group_kernel_with(job: &Job<'_, T>, group: usize, task: usize, out: &mut [f32]) => group_body);

/// Task `task` of `job`: `group` heads of one position, their rows side by
/// side in `out`.
#[inline(always)]
fn group_body<T: KvElem>(job: &Job<'_, T>, group: usize, task: usize, out: &mut [f32]) {
    let AttnShape {
        heads,
        kv_heads,
        head_dim: dh,
    } = job.shape;
    let first_head = task * group;
    let (i, h) = (first_head / heads, first_head % heads);
    let pos = job.first_pos + i;
    let kvh = h / (heads / kv_heads);
    let q = &job.q[first_head * dh..(first_head + group) * dh];
    let scale = 1.0 / (dh as f32).sqrt();
    let at = HeadRows {
        stride: kv_heads * dh,
        offset: kvh * dh,
    };
    let (scores_simd, weighted_sum_simd) = match job.isa {
        Isa::Avx512 => (
            attention_avx512::scores::<T> as ScoresFn<T>,
            attention_avx512::weighted_sum::<T> as WeightedSumFn<T>,
        ),
        Isa::Avx2 => (
            attention_avx2::scores::<T> as ScoresFn<T>,
            attention_avx2::weighted_sum::<T> as WeightedSumFn<T>,
        ),
        Isa::Generic => return portable_group(job, first_head, out),
    };
    let n = pos + 1;
    let mut scores = vec![0.0f32; group * n];
    if let Some(max) = scores_simd(q, group, job.k, at, scale, &mut scores) {
        for (run, max) in scores.chunks_exact_mut(n).zip(max) {
            for s in run {
                *s = exp_f32(*s - max);
            }
        }
        if let Some(sums) = weighted_sum_simd(&scores, group, job.v, at, out) {
            for (o, sum) in out.chunks_exact_mut(dh).zip(sums) {
                for x in o {
                    *x /= sum;
                }
            }
            return;
        }
    }
    portable_group(job, first_head, out);
}

/// The signature of `attention_avx512::scores` and its AVX2 twin.
type ScoresFn<T> = fn(&[f32], usize, &[T], HeadRows, f32, &mut [f32]) -> Option<[f32; MAX_GROUP]>;

/// The signature of `attention_avx512::weighted_sum` and its AVX2 twin.
type WeightedSumFn<T> = fn(&[f32], usize, &[T], HeadRows, &mut [f32]) -> Option<[f32; MAX_GROUP]>;

/// The heads from `first_head` (as many as `out` holds rows), one by one
/// on the portable loops.
#[inline(always)]
fn portable_group<T: KvElem>(job: &Job<'_, T>, first_head: usize, out: &mut [f32]) {
    let dh = job.shape.head_dim;
    for (g, o) in out.chunks_exact_mut(dh).enumerate() {
        head_body(job, first_head + g, o);
    }
}

/// One head's row, on the portable loops.
#[inline(always)]
fn head_body<T: KvElem>(job: &Job<'_, T>, task: usize, out: &mut [f32]) {
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
    // A loop, not a closure: closures are not inlined into the
    // `target_feature` kernels (this one ran as baseline SSE).
    let mut scores = vec![0.0f32; pos + 1];
    let mut kr = vec![0.0f32; dh];
    for (j, s) in scores.iter_mut().enumerate() {
        let cached = &job.k[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh];
        for (w, x) in kr.iter_mut().zip(cached) {
            *w = x.widen();
        }
        *s = dot(q, &kr) * scale;
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for s in &mut scores {
        *s = exp_f32(*s - max);
    }
    // Two loops: the exponentials vectorise, the sum keeps its order.
    let mut sum = 0.0f32;
    for s in &scores {
        sum += *s;
    }
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        let vr = &job.v[j * kv_dim + kvh * dh..j * kv_dim + (kvh + 1) * dh];
        for (o, x) in out.iter_mut().zip(vr) {
            *o += p * x.widen();
        }
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{narrowed, widen_into};

    #[test]
    fn matches_reference_and_every_isa_gives_the_same_bits() {
        // 2, 3, 4 and 8 vectors of 16 per head (SmolLM2's heads are 64
        // wide; the AVX2 weighted sum takes 128 in two passes, 48 in
        // three); fewer than 16 keys, exactly 16 (position 15), and blocks
        // of 16 with a tail (the AVX-512 scores go 16 keys at a time, the
        // AVX2 ones 8).
        // Heads sharing a key/value head: 2 (one task of 2), 3 (SmolLM2's),
        // 8 (tasks of 4) and 1.
        for (heads, kv_heads) in [(4, 2), (6, 2), (8, 1), (2, 2)] {
            for dh in [32, 48, 64, 128] {
                for (n, first) in [(3, 5), (2, 14), (4, 37)] {
                    check_head_dim::<f32>(heads, kv_heads, dh, n, first);
                    check_head_dim::<half::f16>(heads, kv_heads, dh, n, first);
                }
            }
        }
    }

    /// The bit-for-bit test above compares the ISAs' results; this one makes
    /// sure the SIMD loops are what ran where the CPU has them, rather
    /// than a fallback to the portable loops.
    #[test]
    fn the_simd_loops_run_where_the_cpu_has_them() {
        let avx512 = {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            false
        };
        let avx2 = super::super::isa::avx2_fma_f16c();
        let (dh, keys) = (64, 21);
        let at = HeadRows {
            stride: 2 * dh,
            offset: dh,
        };
        let cache = vec![half::f16::from_f32(0.5); keys * 2 * dh];
        for g in 1..=MAX_GROUP {
            let q = vec![0.25f32; g * dh];
            let mut scores = vec![0.0f32; g * keys];
            let mut out = vec![0.0f32; g * dh];
            let ran = [
                (
                    avx512,
                    attention_avx512::scores(&q, g, &cache, at, 0.125, &mut scores).is_some(),
                    attention_avx512::weighted_sum(&scores, g, &cache, at, &mut out).is_some(),
                ),
                (
                    avx2,
                    attention_avx2::scores(&q, g, &cache, at, 0.125, &mut scores).is_some(),
                    attention_avx2::weighted_sum(&scores, g, &cache, at, &mut out).is_some(),
                ),
            ];
            for (has, scored, summed) in ran {
                assert_eq!((scored, summed), (has, has), "{g} heads");
            }
        }
    }

    #[test]
    fn head_groups_take_the_most_heads_that_divide_a_share() {
        let group = |heads, kv_heads, positions| {
            let shape = AttnShape {
                heads,
                kv_heads,
                head_dim: 64,
            };
            head_group(shape, positions, 2)
        };
        assert_eq!(group(9, 3, 8), 3);
        assert_eq!(group(8, 1, 8), 4);
        assert_eq!(group(12, 2, 8), 3);
        assert_eq!(group(14, 2, 8), 1);
        assert_eq!(group(4, 4, 8), 1);
        // Too few tasks for the threads: one head each.
        assert_eq!(group(9, 3, 1), 1);
        assert_eq!(group(9, 3, 2), 3);
    }

    /// Attention over a cache of `T` against an f64 reference on the cached
    /// values (widened), and every ISA and group size bit for bit.
    fn check_head_dim<T: KvElem>(heads: usize, kv_heads: usize, dh: usize, n: usize, first: usize) {
        let shape = AttnShape {
            heads,
            kv_heads,
            head_dim: dh,
        };
        let share = heads / kv_heads;
        let kv = shape.kv_heads * shape.head_dim;
        let val = |i: usize| ((i * 7919 % 1000) as f32 / 500.0) - 1.0;
        let q: Vec<f32> = (0..n * heads * dh).map(val).collect();
        let k32: Vec<f32> = (0..(first + n) * kv).map(|i| val(i + 17)).collect();
        let v32: Vec<f32> = (0..(first + n) * kv).map(|i| val(i + 91)).collect();
        let (k, v) = (narrowed::<T>(&k32), narrowed::<T>(&v32));
        let out = attention(&q, &k, &v, shape, first);
        let (mut kw, mut vw) = (Vec::new(), Vec::new());
        widen_into(&k, &mut kw);
        widen_into(&v, &mut vw);
        for i in 0..n {
            for h in 0..heads {
                let kvh = h / share;
                let qh = &q[(i * heads + h) * dh..(i * heads + h + 1) * dh];
                let s: Vec<f64> = (0..=first + i)
                    .map(|j| {
                        (0..dh)
                            .map(|e| f64::from(qh[e]) * f64::from(kw[j * kv + kvh * dh + e]))
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
                        .map(|(j, p)| p * f64::from(vw[j * kv + kvh * dh + e]))
                        .sum::<f64>()
                        / z;
                    let got = f64::from(out[(i * heads + h) * dh + e]);
                    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
                }
            }
        }
        // Every ISA, and every group size that divides the share (1 is the
        // AVX-512 loops one head at a time), gives each head the same bits.
        let want: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
        for isa in [Isa::Generic, Isa::Avx2, Isa::Avx512] {
            let job = Job {
                q: &q,
                k: &k,
                v: &v,
                shape,
                first_pos: first,
                isa,
            };
            for group in (1..=MAX_GROUP).filter(|g| share.is_multiple_of(*g)) {
                let mut got = vec![0.0f32; out.len()];
                for (task, o) in got.chunks_exact_mut(group * dh).enumerate() {
                    group_kernel_with(isa, &job, group, task, o);
                }
                let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "{isa:?}, {group} heads a task");
            }
        }
    }
}
