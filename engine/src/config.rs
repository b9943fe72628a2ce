//! The transformer's hyper-parameters, read from GGUF metadata.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result, meta_err};
use crate::gguf::GgufFile;

/// Hyper-parameters of a Llama-family model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Transformer blocks (L).
    pub layers: usize,
    /// Model (residual stream) width (d).
    pub d_model: usize,
    /// Query heads (H).
    pub heads: usize,
    /// Key/value heads (Hkv); `heads` is a multiple of it.
    pub kv_heads: usize,
    /// Width of one head (dh).
    pub head_dim: usize,
    /// FFN hidden width (F).
    pub ffn: usize,
    /// Vocabulary size (V).
    pub vocab: usize,
    /// Context window in tokens.
    pub context_length: usize,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Whether the LM head reuses the token embedding.
    pub tied_embeddings: bool,
}

impl ModelConfig {
    /// Read the config of a `llama` GGUF. `tied_embeddings` is true when the
    /// file has no `output.weight`.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .ok_or_else(|| meta_err("general.architecture", "missing"))?
            .to_string();
        if arch != "llama" {
            return Err(EngineError::Architecture(arch));
        }
        let int = |key: &str| -> Result<usize> {
            let full = format!("{arch}.{key}");
            file.get(&full)
                .ok_or_else(|| meta_err(&full, "missing"))?
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| meta_err(&full, "not a positive integer"))
        };
        let float = |key: &str, default: f32| -> Result<f32> {
            let full = format!("{arch}.{key}");
            match file.get(&full) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .map(|v| v as f32)
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| meta_err(&full, "not a positive number")),
            }
        };
        let d_model = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = match file.get(&format!("{arch}.attention.head_count_kv")) {
            None => heads,
            Some(_) => int("attention.head_count_kv")?,
        };
        let embd = file.tensor("token_embd.weight")?;
        let vocab = match file.get(&format!("{arch}.vocab_size")) {
            Some(_) => int("vocab_size")?,
            None => embd.dims.get(1).copied().unwrap_or(0),
        };
        let cfg = Self {
            layers: int("block_count")?,
            d_model,
            heads,
            kv_heads,
            head_dim: if d_model % heads == 0 {
                d_model / heads
            } else {
                0
            },
            ffn: int("feed_forward_length")?,
            vocab,
            context_length: int("context_length")?,
            rope_base: float("rope.freq_base", 10_000.0)?,
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            tied_embeddings: file.tensor("output.weight").is_err(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the relations between fields that the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, problem: String| Err(meta_err(key, problem));
        if self.head_dim == 0 || self.heads * self.head_dim != self.d_model {
            return bad(
                "attention.head_count",
                format!(
                    "{} heads do not divide d_model {}",
                    self.heads, self.d_model
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return bad(
                "attention.head_count",
                format!("head_dim {} is odd (RoPE rotates pairs)", self.head_dim),
            );
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(
                "attention.head_count_kv",
                format!(
                    "{} KV heads do not divide {} heads",
                    self.kv_heads, self.heads
                ),
            );
        }
        Ok(())
    }

    /// Width of the K and V projections (`kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}
