//! Run-time choice of the SIMD instruction set the kernels are compiled for.

use std::sync::OnceLock;

/// The instruction set the CPU kernels run with on this machine.
///
/// All variants compute identical bits (see the module docs); they differ in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64 with AVX-512F and FMA.
    Avx512,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// Whatever the compile target guarantees.
    Generic,
}

impl Isa {
    /// The best instruction set this CPU supports (detected once).
    pub fn detect() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            if std::env::var_os("FORGE_GENERIC_KERNELS").is_some() {
                return Isa::Generic;
            }
            #[cfg(target_arch = "x86_64")]
            {
                let fma = std::arch::is_x86_feature_detected!("fma");
                if fma && std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if fma && std::arch::is_x86_feature_detected!("avx2") {
                    return Isa::Avx2;
                }
            }
            Isa::Generic
        })
    }

    /// Lowercase name, for logs and benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512 => "avx512",
            Self::Avx2 => "avx2",
            Self::Generic => "generic",
        }
    }
}

/// Whether this CPU has AVX2 with FMA and F16C (every x86-64 CPU with
/// AVX2 since 2013 does): what the AVX2 kernels (the integer matmul,
/// attention's loops, the f16 narrowing check) ask for.
pub(super) fn avx2_fma_f16c() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Define `$name` as a function that runs `$body` (an `#[inline(always)]`
/// function with the same signature) compiled for the best [`Isa`], and
/// `$with` that runs it for a given one (falling back to generic code when
/// this CPU lacks it), so tests can compare the variants bit for bit.
/// Optionally generic over one type parameter (`fn name<T: Bound> / ...`).
macro_rules! multiversion {
    ($vis:vis fn $name:ident $(<$g:ident: $bound:path>)? / $with:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        #[allow(dead_code)]
        $vis fn $name $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
            $with($crate::kernels::Isa::detect(), $($arg),*)
        }

        #[allow(dead_code)]
        $vis fn $with $(<$g: $bound>)? (isa: $crate::kernels::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,fma")]
                fn avx512 $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? { $body($($arg),*) }
                let fma = std::arch::is_x86_feature_detected!("fma");
                match isa {
                    $crate::kernels::Isa::Avx512 if fma && std::arch::is_x86_feature_detected!("avx512f") => {
                        // SAFETY: the guard just checked that this CPU has AVX-512F and FMA.
                        return unsafe { avx512($($arg),*) };
                    }
                    $crate::kernels::Isa::Avx2 if fma && std::arch::is_x86_feature_detected!("avx2") => {
                        // SAFETY: the guard just checked that this CPU has AVX2 and FMA.
                        return unsafe { avx2($($arg),*) };
                    }
                    _ => {}
                }
            }
            let _ = isa;
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversion;
