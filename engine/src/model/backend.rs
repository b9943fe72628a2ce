//! Which compute backend runs the forward pass.

use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{EngineError, Result};

/// A compute backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Forge's batch-invariant CPU kernels on quantised weights: the default,
    /// and the one receipts verify bit for bit.
    #[default]
    Cpu,
    /// burn's flex CPU backend (dense f32 weights).
    Flex,
    /// burn's wgpu backend (feature `wgpu`).
    Wgpu,
    /// burn's CUDA backend (feature `cuda`).
    Cuda,
}

impl Backend {
    /// Every backend name accepted by [`Backend::from_str`].
    pub const NAMES: [&'static str; 4] = ["cpu", "flex", "wgpu", "cuda"];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Tag written into receipts: backend and compute dtype. The CPU
    /// kernels multiply 8-bit activations by the quantised weights in
    /// integers, over an f16 key/value cache (`cpu-i8-kv16`); the burn
    /// backends multiply f32 tensors over f32 caches.
    pub fn tag(self) -> String {
        match self {
            Self::Cpu => "cpu-i8-kv16".into(),
            other => format!("{}-f32", other.name()),
        }
    }

    /// The element types of this backend's trace, by name: `f32-kv-f16`
    /// for the CPU kernels (f32 rows, keys and values as their f16 cache
    /// holds them), `f32` for the burn backends (whose caches are f32).
    pub fn trace_dtype(self) -> &'static str {
        match self {
            Self::Cpu => "f32-kv-f16",
            _ => "f32",
        }
    }

    /// Whether rows are bit-identical however they were batched.
    pub fn batch_invariant(self) -> bool {
        self == Self::Cpu
    }

    pub(crate) fn burn_device(self) -> Result<Option<Device>> {
        match self {
            Self::Cpu => Ok(None),
            Self::Flex => Ok(Some(Device::flex())),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => Ok(Some(Device::wgpu(Default::default()))),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(Some(Device::cuda(0))),
            #[allow(unreachable_patterns)]
            other => Err(EngineError::Backend(
                other.name().into(),
                format!(
                    "this build lacks the `{}` feature (cargo build --features {})",
                    other.name(),
                    other.name()
                ),
            )),
        }
    }
}

impl FromStr for Backend {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "flex" => Ok(Self::Flex),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(EngineError::Backend(
                other.into(),
                format!("unknown (choose one of {:?})", Self::NAMES),
            )),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
