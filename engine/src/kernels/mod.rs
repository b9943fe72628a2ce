//! Forge's CPU kernels: batch-invariant by construction.
//!
//! Every output element is reduced in one fixed order (fixed 16-lane
//! accumulators, blocks in file order, a fixed final tree), whatever the number
//! of rows computed together or the number of threads: work is split across
//! output elements only, never along a reduction. Only IEEE operations with
//! one defined rounding are used: multiply, add, and in the matmul explicit
//! fused multiply-add (`f32::mul_add`; Rust never contracts a separate
//! multiply and add into one), so the SIMD width chosen at run time changes
//! speed, not bits. This is what lets a verifier re-execute one
//! layer for one position and get the very bits the provider committed to.

mod attention;
mod isa;
mod matmul;
mod rowops;

pub(crate) use attention::{AttnShape, attention};
pub use isa::Isa;
pub(crate) use matmul::QMatrix;
pub(crate) use rowops::{RopeTable, add_in_place, rms_norm, rope_in_place, silu_mul};

/// Accumulator lanes of every reduction.
pub(crate) const LANES: usize = 16;

/// Sum of the lanes in a fixed tree order.
#[inline(always)]
pub(crate) fn hsum(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for j in 0..width {
            acc[j] += acc[j + width];
        }
        width /= 2;
    }
    acc[0]
}

/// Dot product in the fixed lane order (tail elements go to lanes in order).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = a.len() / LANES;
    for c in 0..chunks {
        let (x, y) = (
            &a[c * LANES..(c + 1) * LANES],
            &b[c * LANES..(c + 1) * LANES],
        );
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    for (j, i) in (chunks * LANES..a.len()).enumerate() {
        acc[j] += a[i] * b[i];
    }
    hsum(acc)
}
