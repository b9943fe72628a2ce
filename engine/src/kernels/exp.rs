//! `exp` in plain IEEE arithmetic, so every machine computes the same bits.
//!
//! The C library's `expf`/`exp` are not correctly rounded, and glibc picks
//! an FMA or a non-FMA build of them by CPU (or changes them between
//! versions), so a softmax or a SiLU through them could differ in its last
//! bit between a provider's machine and a verifier's. These use only
//! multiplications and additions (each one IEEE rounding; no fused
//! multiply-add, which a CPU without FMA would run as a slow library call):
//! range reduction by ln 2 in two parts (the first product exact), a Taylor
//! polynomial on |r| <= 0.35, and scaling by 2^n in two exact steps.

/// `e^x` for f32; NaN stays NaN, overflow gives infinity, underflow zero
/// (through the subnormals).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n · LN2_HI is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5 · 2^23 rounds to an integer (ties to even).
    const ROUNDER: f32 = 12_582_912.0;
    // Branch-free, so loops over it vectorise: past 88.8 the scaling below
    // overflows to infinity, below -104 it rounds to zero, and a NaN stays
    // NaN through every step.
    let x = x.clamp(-104.0, 88.8);
    let t = x * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let ni = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p: f32 = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^n in two factors, each a normal float: n lies in -150..=129.
    let n1 = ni / 2;
    let n2 = ni - n1;
    p * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23)
}

/// `e^x` for f64, as [`exp_f32`] with f64 constants.
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-746.0, 709.8);
    let t = x * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let ni = t.to_bits() as i64 - ROUNDER.to_bits() as i64;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // 1/k! for k = 13 down to 2, then 1 and 1.
    let mut p: f64 = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let n1 = ni / 2;
    let n2 = ni - n1;
    p * f64::from_bits(((n1 + 1023) as u64) << 52) * f64::from_bits(((n2 + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps32(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn f32_is_within_two_ulps_of_the_c_library_and_handles_the_edges() {
        let mut worst = 0;
        let mut x = -103.0f32;
        while x < 88.7 {
            let (got, want) = (exp_f32(x), f64::from(x).exp() as f32);
            if want.is_normal() {
                worst = worst.max(ulps32(got, want));
            }
            x += 0.000_913;
        }
        assert!(worst <= 2, "worst {worst} ulps");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(88.7).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
        // Subnormal results are within one (subnormal) unit of the truth.
        for x in [-88.0f32, -95.5, -100.0, -103.3] {
            let s = exp_f32(x);
            assert!(ulps32(s, f64::from(x).exp() as f32) <= 1, "{x}: {s}");
        }
    }

    #[test]
    fn f64_is_within_two_ulps_of_the_c_library_and_handles_the_edges() {
        let mut worst = 0u64;
        let mut x = -740.0f64;
        while x < 709.0 {
            let (got, want) = (exp_f64(x), x.exp());
            if want.is_normal() {
                worst = worst
                    .max((got.to_bits() as i128 - want.to_bits() as i128).unsigned_abs() as u64);
            }
            x += 0.003_17;
        }
        assert!(worst <= 2, "worst {worst} ulps");
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_f64(f64::INFINITY), f64::INFINITY);
        assert!(exp_f64(f64::NAN).is_nan());
        assert!(exp_f64(709.7).is_finite());
    }
}
