//! `y = x · Wᵀ` for quantised W: integer dot products per block, then one
//! fixed float chain per output.
//!
//! The activation rows are quantised per block ([`QActs`]). For output
//! (row w, activation row i), with `isum_b = Σ_k qw·qx` over block b (an
//! exact integer, whatever the order or instruction that sums it):
//!
//! ```text
//! acc = 0
//! for b in blocks, in order:
//!     acc = fma(isum_b as f32, dw_b · dx_b, acc)
//!     acc = fma(mw_b, dx_b · Σqx_b, acc)        (Q4_1 only)
//! y = acc
//! ```
//!
//! `isum_b` is below 2^24 in magnitude, so its conversion is exact, and the
//! products and fused multiply-adds each round once, so the portable loop,
//! AVX2, AVX512-VNNI and AMX give the same bits, and a row computed alone
//! gives the bits it gets in any batch.

use rayon::prelude::*;

use super::int8_acts::QActs;
use super::int8_amx::{AMX_MIN_ROWS, amx_available, amx_groups};
use super::int8_avx2::avx2_groups;
use super::int8_vnni::{vnni_available, vnni_groups};
use super::int8_weights::{Format, GROUP, Int8Weights, Q4_GROUP_BLOCK, Q8_GROUP_BLOCK, f16_to_f32};
use super::isa::{Isa, avx2_fma_f16c, multiversion};
use crate::quant::QK;

/// Which integer kernel computes the dot products: a speed choice only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int8Path {
    /// Plain Rust, compiled for the [`Isa`].
    Portable(Isa),
    /// AVX-512 with VNNI's byte dot products.
    Vnni,
    /// AMX tiles for `AMX_MIN_ROWS` activation rows or more, VNNI below.
    Amx,
    /// AVX2's byte multiply-adds, where there is no VNNI.
    Avx2,
}

impl Int8Path {
    /// The fastest path this CPU has under `isa`.
    pub(crate) fn best(isa: Isa) -> Self {
        if isa == Isa::Avx512 && amx_available() {
            Self::Amx
        } else if isa == Isa::Avx512 && vnni_available() {
            Self::Vnni
        } else if isa != Isa::Generic && avx2_fma_f16c() {
            Self::Avx2
        } else {
            Self::Portable(isa)
        }
    }
}

/// What a task of the matmul reads.
pub(super) struct Job<'a> {
    pub(super) w: &'a Int8Weights,
    pub(super) a: &'a QActs,
}

/// Where the kernels write `y[i, r]`: `n` rows of `end - start` outputs, the
/// weight rows `start..end`, row-major. Tasks share it and write disjoint
/// groups, each all `n` rows of its groups, straight into the result (a
/// group-major buffer and a transposing copy had cost prefill a third of
/// its matmul time, mostly page faults).
pub(super) struct OutRows {
    ptr: *mut f32,
    n: usize,
    start: usize,
    end: usize,
}

// SAFETY: the tasks sharing an `OutRows` write disjoint elements (`put`'s
// contract), and the buffer outlives the parallel loop that shares it.
unsafe impl Sync for OutRows {}

impl OutRows {
    /// Row i's outputs of group g (weight rows `16g..16g + 16`), those in
    /// `start..end`.
    ///
    /// # Safety
    /// `i < n`, and no other thread writes group g's outputs.
    #[inline(always)]
    pub(super) unsafe fn put(&self, i: usize, g: usize, v: &[f32; GROUP]) {
        debug_assert!(i < self.n);
        let (first, width) = (g * GROUP, self.end - self.start);
        if first >= self.start && first + GROUP <= self.end {
            // SAFETY: row i's columns `first - start..+16` lie within the
            // `n · width` buffer (the caller's contract and the test above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    v.as_ptr(),
                    self.ptr.add(i * width + first - self.start),
                    GROUP,
                );
            }
        } else {
            for (l, &v) in v.iter().enumerate() {
                if (self.start..self.end).contains(&(first + l)) {
                    // SAFETY: as above, for one column inside the range.
                    unsafe { self.ptr.add(i * width + first + l - self.start).write(v) };
                }
            }
        }
    }
}

/// `y[i, r]` for rows `range` of `w` and the quantised rows `a`.
///
/// # Panics
/// If `range` reaches past the matrix's rows (rounded up to 16).
pub(crate) fn matmul_int8(
    w: &Int8Weights,
    path: Int8Path,
    a: &QActs,
    range: std::ops::Range<usize>,
) -> Vec<f32> {
    let [y] = matmul_int8_each([(w, range)], path, a);
    y
}

/// [`matmul_int8`] for several matrices of the same activations, in one
/// parallel loop: a decode step's q, k and v (or gate and up) cost one
/// fork and join of the pool instead of three (or two).
pub(crate) fn matmul_int8_each<const K: usize>(
    parts: [(&Int8Weights, std::ops::Range<usize>); K],
    path: Int8Path,
    a: &QActs,
) -> [Vec<f32>; K] {
    let isa = match path {
        Int8Path::Portable(isa) => isa,
        _ => Isa::detect(),
    };
    let n = a.n;
    let mut ys: [Vec<f32>; K] = std::array::from_fn(|_| Vec::new());
    let mut outs = Vec::with_capacity(K);
    for ((w, range), y) in parts.iter().zip(&mut ys) {
        assert!(
            range.end <= w.groups * GROUP,
            "rows {range:?} of a matrix of {} groups",
            w.groups
        );
        *y = Vec::with_capacity(n * range.len());
        outs.push(OutRows {
            ptr: y.as_mut_ptr(),
            n,
            start: range.start,
            end: range.end,
        });
    }
    // Tasks of up to `per_task` groups, each within one matrix.
    let groups = |range: &std::ops::Range<usize>| range.start / GROUP..range.end.div_ceil(GROUP);
    let total: usize = parts.iter().map(|(_, r)| groups(r).len()).sum();
    let per_task = (total / (4 * rayon::current_num_threads().max(1))).clamp(1, 16);
    let tasks: Vec<(usize, usize, usize)> = parts
        .iter()
        .enumerate()
        .filter(|(_, (_, range))| n > 0 && !range.is_empty())
        .flat_map(|(k, (_, range))| {
            let gs = groups(range);
            gs.clone()
                .step_by(per_task)
                .map(move |first| (k, first, per_task.min(gs.end - first)))
        })
        .collect();
    tasks.into_par_iter().for_each(|(k, first, count)| {
        let (job, out) = (Job { w: parts[k].0, a }, &outs[k]);
        let done = match path {
            Int8Path::Amx if n >= AMX_MIN_ROWS => {
                amx_groups(&job, first, count, out) || vnni_groups(&job, first, count, out)
            }
            Int8Path::Vnni | Int8Path::Amx => vnni_groups(&job, first, count, out),
            Int8Path::Avx2 => avx2_groups(&job, first, count, out),
            Int8Path::Portable(_) => false,
        };
        if !done {
            portable_groups_with(isa, &job, first, count, out);
        }
    });
    for ((_, range), y) in parts.iter().zip(&mut ys) {
        // SAFETY: the matrix's groups cover `range` (asserted within it),
        // and the tasks above wrote all n rows of each group's columns in
        // it, so every element of the n x width buffer is initialised.
        unsafe { y.set_len(n * range.len()) };
    }
    ys
}

multiversion!(fn portable_groups / portable_groups_with(job: &Job<'_>, first: usize, count: usize, out: &OutRows) => portable_body);

/// The portable kernel: groups `first..first + count` into `out`.
#[inline(always)]
fn portable_body(job: &Job<'_>, first: usize, count: usize, out: &OutRows) {
    let (w, a) = (job.w, job.a);
    let (n, nbr, cols) = (a.n, w.nbr, a.cols);
    let mut acc = vec![[0.0f32; GROUP]; n];
    for g in first..first + count {
        acc.iter_mut().for_each(|v| *v = [0.0; GROUP]);
        for b in 0..nbr {
            let wq = w.unpack(g, b);
            let gb = (g * nbr + b) * GROUP;
            let d: [f32; GROUP] = std::array::from_fn(|l| f16_to_f32(w.d[gb + l]));
            let m: [f32; GROUP] = if w.format == Format::Q4_1 {
                std::array::from_fn(|l| f16_to_f32(w.m[gb + l]))
            } else {
                [0.0; GROUP]
            };
            for (i, acc) in acc.iter_mut().enumerate() {
                let x: &[i8; QK] = a.q[i * cols + b * QK..i * cols + (b + 1) * QK]
                    .try_into()
                    .unwrap_or(&[0; QK]);
                let ib = i * nbr + b;
                let (dx, xs, c128) = (a.dx[ib], a.xs[ib], a.c128[ib]);
                for l in 0..GROUP {
                    let mut isum = 0i32;
                    for k in 0..QK {
                        isum += i32::from(wq[l][k]) * i32::from(x[k]);
                    }
                    if w.format == Format::Q8_0 {
                        isum -= c128;
                    }
                    acc[l] = (isum as f32).mul_add(d[l] * dx, acc[l]);
                }
                if w.format == Format::Q4_1 {
                    for l in 0..GROUP {
                        acc[l] = m[l].mul_add(xs, acc[l]);
                    }
                }
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            // SAFETY: i < n; this task alone writes group g.
            unsafe { out.put(i, g, acc) };
        }
    }
}

impl Job<'_> {
    /// Whether a SIMD kernel may take groups `first..first + count`: there
    /// are activation rows, the groups exist, and the arrays hold them.
    pub(super) fn takes(&self, first: usize, count: usize) -> bool {
        self.a.n > 0 && first + count <= self.w.groups && self.holds()
    }

    /// Calls `pass(g, i0, rows)` for each group g of `first..first +
    /// count` and each run of at most `per_pass` activation rows from i0,
    /// in order: how the register-tiled kernels walk a task.
    pub(super) fn passes(
        &self,
        first: usize,
        count: usize,
        per_pass: usize,
        mut pass: impl FnMut(usize, usize, usize),
    ) {
        let n = self.a.n;
        for g in first..first + count {
            let mut i0 = 0;
            while i0 < n {
                let rows = (n - i0).min(per_pass);
                pass(g, i0, rows);
                i0 += rows;
            }
        }
    }

    /// Whether the arrays hold every group of the weights and every
    /// (padded) activation row the kernels may read.
    pub(super) fn holds(&self) -> bool {
        let (w, a) = (self.w, self.a);
        let blocks = w.groups * w.nbr;
        let group_block = match w.format {
            Format::Q4_1 => Q4_GROUP_BLOCK,
            Format::Q8_0 => Q8_GROUP_BLOCK,
        };
        let padded = a.n.div_ceil(GROUP) * GROUP;
        w.qs.len() >= blocks * group_block
            && w.d.len() >= blocks * GROUP
            && (w.format == Format::Q8_0 || w.m.len() >= blocks * GROUP)
            && a.cols == w.nbr * QK
            && a.nbr == w.nbr
            && a.q.len() >= padded * a.cols
            && [a.dx.len(), a.xs.len(), a.c128.len()]
                .iter()
                .all(|&len| len >= padded * a.nbr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgmlType, quantize_row};

    /// What `kernel` writes into a fresh `n` x `rows` output (NaN before),
    /// when it takes the job.
    fn run_kernel(n: usize, rows: usize, kernel: &dyn Fn(&OutRows) -> bool) -> Option<Vec<f32>> {
        let mut y = vec![f32::NAN; n * rows];
        let out = OutRows {
            ptr: y.as_mut_ptr(),
            n,
            start: 0,
            end: rows,
        };
        kernel(&out).then_some(y)
    }

    /// The most extreme quants a file can hold against the most extreme
    /// activations, where AVX2's i16 pair sums come closest to saturating
    /// (Q8_0's q = -128 against x = -127 makes 2 · 128 · 127 = 32512 a
    /// pair; Q4_1's 15 against 127 makes 30480 over a block's eight runs):
    /// every SIMD kernel still gives the portable loop's exact sums.
    #[test]
    fn extreme_quants_give_exact_sums_on_every_kernel() {
        let (rows, cols, n) = (48, 96, 6);
        let one = half::f16::from_f32(1.0).to_bits().to_le_bytes();
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let mut bytes = Vec::new();
            for r in 0..rows {
                for _ in 0..cols / QK {
                    bytes.extend(one);
                    if ty == GgmlType::Q4_1 {
                        bytes.extend(one);
                        bytes.extend([[0xFF, 0x0F, 0xF0, 0x00][r % 4]; QK / 2]);
                    } else {
                        bytes.extend([[0x80u8, 0x7F, 0x81, 0x00][r % 4]; QK]);
                    }
                }
            }
            let w = Int8Weights::from_gguf("w", ty, rows, cols, &bytes).unwrap();
            // All +1, all -1, alternating, then mixed rows: each block's
            // maximum is 1, so every quantised activation is +-127.
            let x: Vec<f32> = (0..n * cols)
                .map(|i| {
                    let (row, k) = (i / cols, i % cols);
                    let negative = match row {
                        0 => false,
                        1 => true,
                        2 => k % 2 == 1,
                        _ => (k / (row + 1)) % 2 == 0,
                    };
                    if negative { -1.0 } else { 1.0 }
                })
                .collect();
            let a = QActs::new(&x, cols);
            let job = Job { w: &w, a: &a };
            let run = |kernel: &dyn Fn(&OutRows) -> bool| run_kernel(n, rows, kernel);
            let want = run(&|out| {
                portable_groups_with(Isa::Generic, &job, 0, w.groups, out);
                true
            })
            .unwrap();
            // Row 0 (all +127, scale 1/127) against Q8_0's q = -128 rows:
            // -128 · 96 (a sum that saturated would be far from it).
            if ty == GgmlType::Q8_0 {
                assert!((want[0] + 128.0 * 96.0).abs() < 0.01, "{}", want[0]);
            }
            for (name, got) in [
                ("AVX2", run(&|out| avx2_groups(&job, 0, w.groups, out))),
                ("VNNI", run(&|out| vnni_groups(&job, 0, w.groups, out))),
                ("AMX", run(&|out| amx_groups(&job, 0, w.groups, out))),
            ] {
                if let Some(got) = got {
                    assert_eq!(got, want, "{name} {ty:?}");
                }
            }
        }
    }

    /// The SIMD kernels take their jobs wherever the CPU has them (a
    /// kernel that quietly declined would leave the bit comparisons
    /// comparing the portable loop with itself).
    #[test]
    fn the_simd_kernels_run_where_the_cpu_has_them() {
        let cols = 64;
        // Every row count of one VNNI pass (each is its own code), and a
        // second, partial pass; then 19 groups of weights (AMX takes
        // each activation tile through up to 16 groups in turn) against
        // one full tile, and two and a partial one.
        let cases = [GgmlType::Q4_1, GgmlType::Q8_0].into_iter().flat_map(|ty| {
            (1..=8)
                .chain([13])
                .map(move |n| (ty, 40, n))
                .chain([(ty, 300, 16), (ty, 300, 37)])
        });
        for (ty, rows, n) in cases {
            let vals: Vec<f32> = (0..rows * cols)
                .map(|i| (i % 13) as f32 / 7.0 - 0.9)
                .collect();
            let mut bytes = Vec::new();
            quantize_row(ty, &vals, &mut bytes);
            let w = Int8Weights::from_gguf("w", ty, rows, cols, &bytes).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|i| (i % 11) as f32 - 5.0).collect();
            let a = QActs::new(&x, cols);
            let job = Job { w: &w, a: &a };
            assert!(job.holds());
            let run = |kernel: &dyn Fn(&OutRows) -> bool| run_kernel(n, rows, kernel);
            let want = run(&|out| {
                portable_groups_with(Isa::Generic, &job, 0, w.groups, out);
                true
            });
            assert!(
                want.as_ref()
                    .is_some_and(|y| y.iter().all(|v| v.is_finite()))
            );
            let vnni = run(&|out| vnni_groups(&job, 0, w.groups, out));
            assert_eq!(vnni.is_some(), vnni_available(), "{ty:?}");
            if vnni.is_some() {
                assert_eq!(vnni, want, "VNNI {ty:?}, {n} rows");
            }
            let avx2 = run(&|out| avx2_groups(&job, 0, w.groups, out));
            assert_eq!(avx2.is_some(), avx2_fma_f16c(), "{ty:?}");
            if avx2.is_some() {
                assert_eq!(avx2, want, "AVX2 {ty:?}, {n} rows");
            }
            let amx = run(&|out| amx_groups(&job, 0, w.groups, out));
            assert_eq!(amx.is_some(), amx_available(), "{ty:?}");
            if amx.is_some() {
                assert_eq!(amx, want, "AMX {ty:?}, {n} rows");
            }
            // A group past the weights is declined, not read.
            assert!(run(&|out| vnni_groups(&job, w.groups, 1, out)).is_none());
            assert!(run(&|out| amx_groups(&job, w.groups, 1, out)).is_none());
            assert!(run(&|out| avx2_groups(&job, w.groups, 1, out)).is_none());
        }
    }
}
