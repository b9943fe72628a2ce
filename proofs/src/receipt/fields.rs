//! The sections of a receipt.

use forge_circuits::FlopConfig;
use forge_engine::{ModelConfig, SamplingParams};
use serde::Serialize;

use crate::merkle::{DType, Hash};

/// The request a receipt answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestInfo {
    /// Request id chosen by the node (unique per request).
    #[serde(serialize_with = "crate::hex::serialize")]
    pub id: [u8; 16],
    /// blake3 of the GGUF tensor data ([`forge_engine::Model::model_id`]).
    #[serde(serialize_with = "crate::hex::serialize")]
    pub model_id: Hash,
    /// Backend and compute dtype, e.g. `cpu-i8` ([`forge_engine::Backend::tag`]).
    pub backend: String,
    /// Sampling parameters and seed.
    pub sampling: Sampling,
    /// [`crate::prompt_hash`] of the prompt token ids.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub prompt_hash: Hash,
    /// Prompt tokens.
    pub n_prompt: u32,
    /// Generated tokens (a final stop token included).
    pub n_gen: u32,
    /// Positions actually forwarded.
    pub forwarded: Forwarded,
}

/// The forwarded positions `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Forwarded {
    /// First forwarded position (0 unless a cached prefix was reused).
    pub start: u32,
    /// One past the last forwarded position (`n_prompt + n_gen - 1`).
    pub end: u32,
}

/// Sampling parameters as the receipt records them (floats as their bits).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = all tokens.
    pub top_k: u32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Seed of the random draws.
    pub seed: u64,
    /// Presence penalty.
    pub presence_penalty: f32,
    /// Frequency penalty.
    pub frequency_penalty: f32,
    /// (token, bias) pairs, at most [`super::MAX_LOGIT_BIAS`].
    pub logit_bias: Vec<(u32, f32)>,
}

impl Sampling {
    /// The receipt form of the engine's parameters, or `None` if `top_k`
    /// does not fit in u32.
    pub fn from_engine(p: &SamplingParams) -> Option<Self> {
        Some(Self {
            temperature: p.temperature,
            top_k: u32::try_from(p.top_k).ok()?,
            top_p: p.top_p,
            seed: p.seed,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            logit_bias: p.logit_bias.clone(),
        })
    }

    /// The engine's parameters (to replay the sampler).
    pub fn to_engine(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k as usize,
            top_p: self.top_p,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logit_bias: self.logit_bias.clone(),
        }
    }
}

/// What the client received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputInfo {
    /// [`crate::output_hash`] of the generated token ids.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub tokens_hash: Hash,
}

/// The activation trace commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceInfo {
    /// Merkle root over the `layers * positions` leaves.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub root: Hash,
    /// Layers committed (L).
    pub layers: u32,
    /// Positions committed per layer (T = `forwarded.end - forwarded.start`).
    pub positions: u32,
    /// Element type of the rows.
    pub dtype: DType,
}

/// What the request cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cost {
    /// Exact FLOPs (DESIGN.md section 3).
    #[serde(serialize_with = "crate::hex::serialize_decimal")]
    pub flops: u128,
    /// Compute Units in thousandths, rounded down (`flops / 10^6`).
    pub milli_cu: u64,
}

/// The seven model dimensions of the FLOPs formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ModelDims {
    /// L.
    pub layers: u32,
    /// d.
    pub d_model: u32,
    /// H.
    pub heads: u32,
    /// Hkv.
    pub kv_heads: u32,
    /// dh.
    pub head_dim: u32,
    /// F.
    pub ffn: u32,
    /// V.
    pub vocab: u32,
}

impl ModelDims {
    /// The dimensions of an engine config, or `None` if one does not fit in u32.
    pub fn from_engine(c: &ModelConfig) -> Option<Self> {
        let n = |v: usize| u32::try_from(v).ok();
        Some(Self {
            layers: n(c.layers)?,
            d_model: n(c.d_model)?,
            heads: n(c.heads)?,
            kv_heads: n(c.kv_heads)?,
            head_dim: n(c.head_dim)?,
            ffn: n(c.ffn)?,
            vocab: n(c.vocab)?,
        })
    }

    /// The circuit's view.
    pub fn flop_config(&self) -> FlopConfig {
        FlopConfig {
            layers: self.layers.into(),
            d_model: self.d_model.into(),
            heads: self.heads.into(),
            kv_heads: self.kv_heads.into(),
            head_dim: self.head_dim.into(),
            ffn: self.ffn.into(),
            vocab: self.vocab.into(),
        }
    }

    /// An engine config with these dimensions (the fields the FLOPs formula
    /// does not use get neutral values), for [`forge_engine::request_flops`].
    pub fn engine_config(&self) -> ModelConfig {
        ModelConfig {
            layers: self.layers as usize,
            d_model: self.d_model as usize,
            heads: self.heads as usize,
            kv_heads: self.kv_heads as usize,
            head_dim: self.head_dim as usize,
            ffn: self.ffn as usize,
            vocab: self.vocab as usize,
            context_length: 0,
            rope_base: 0.0,
            rms_eps: 0.0,
            tied_embeddings: true,
        }
    }
}

/// The provider's identity and signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provider {
    /// ed25519 public key (= libp2p identity).
    #[serde(serialize_with = "crate::hex::serialize")]
    pub public_key: [u8; 32],
    /// Signature over [`super::Receipt::header_hash`].
    #[serde(serialize_with = "crate::hex::serialize")]
    pub signature: [u8; 64],
}
