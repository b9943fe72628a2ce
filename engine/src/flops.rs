//! Exact FLOP accounting (DESIGN.md section 3), in integers.
//!
//! A multiply-accumulate is 2 FLOPs; only matrix products count (projections,
//! attention scores, attention-weighted values, LM head). A request that
//! forwards positions `start..end` and takes logits `n_logits` times costs
//! `Σ_{p=start}^{end-1} [L·P + L·4·H·dh·(p+1)] + n_logits·2·d·V`.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

/// FLOPs per Compute Unit.
pub const FLOPS_PER_CU: u128 = 1_000_000_000;

/// Projection FLOPs of one layer at one position (`P` in the design):
/// Q, K, V, O and the three FFN matrices.
pub fn projection_flops(cfg: &ModelConfig) -> u128 {
    let (d, h, hkv, dh, f) = dims(cfg);
    2 * d * h * dh + 2 * 2 * d * hkv * dh + 2 * h * dh * d + 3 * 2 * d * f
}

/// FLOPs of forwarding one position `p` (0-based; it attends to `p + 1` keys)
/// through every layer, without the LM head.
pub fn position_flops(cfg: &ModelConfig, p: u64) -> u128 {
    let (_, h, _, dh, _) = dims(cfg);
    let l = cfg.layers as u128;
    l * projection_flops(cfg) + l * 2 * 2 * h * dh * (u128::from(p) + 1)
}

/// FLOPs of one LM-head evaluation.
pub fn lm_head_flops(cfg: &ModelConfig) -> u128 {
    2 * cfg.d_model as u128 * cfg.vocab as u128
}

/// What a request actually forwarded, the input of its FLOP count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardWork {
    /// First forwarded position (0 unless a cached prefix was reused).
    pub start: u64,
    /// One past the last forwarded position.
    pub end: u64,
    /// Number of times logits were taken (= tokens generated).
    pub logits: u64,
}

impl ForwardWork {
    /// The work of a request with no prefix reuse: `T = n_prompt + n_gen - 1`
    /// positions (the last sampled token is never forwarded), `n_gen` logits.
    pub fn for_request(n_prompt: u64, n_gen: u64) -> Self {
        Self {
            start: 0,
            end: (n_prompt + n_gen).saturating_sub(1),
            logits: n_gen,
        }
    }

    /// Positions forwarded.
    pub fn positions(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// Closed form of the request's FLOPs:
/// `(end-start)·L·P + 2·L·H·dh·(end·(end+1) − start·(start+1)) + logits·2·d·V`.
pub fn request_flops(cfg: &ModelConfig, work: ForwardWork) -> u128 {
    let (_, h, _, dh, _) = dims(cfg);
    let l = cfg.layers as u128;
    let (s, e) = (u128::from(work.start), u128::from(work.end.max(work.start)));
    (e - s) * l * projection_flops(cfg)
        + 2 * l * h * dh * (e * (e + 1) - s * (s + 1))
        + u128::from(work.logits) * lm_head_flops(cfg)
}

/// Compute Units, in thousandths, rounded down (ledgers keep integers).
pub fn milli_cu(flops: u128) -> u128 {
    flops / (FLOPS_PER_CU / 1000)
}

/// Compute Units as a float, for display only.
pub fn cu_f64(flops: u128) -> f64 {
    flops as f64 / FLOPS_PER_CU as f64
}

fn dims(cfg: &ModelConfig) -> (u128, u128, u128, u128, u128) {
    (
        cfg.d_model as u128,
        cfg.heads as u128,
        cfg.kv_heads as u128,
        cfg.head_dim as u128,
        cfg.ffn as u128,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            layers: 2,
            d_model: 8,
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            ffn: 16,
            vocab: 10,
            context_length: 64,
            rope_base: 10000.0,
            rms_eps: 1e-5,
            tied_embeddings: true,
        }
    }

    #[test]
    fn tiny_config_by_hand() {
        // P = 2·8·2·4 + 4·8·1·4 + 2·2·4·8 + 6·8·16 = 128 + 128 + 128 + 768 = 1152.
        assert_eq!(projection_flops(&tiny()), 1152);
        // Prompt 3, gen 2: T = 4 positions, p = 0..=3, attention 4·2·4·(p+1) = 32·(1+2+3+4) = 320 per layer.
        // FLOPs = 4·2·1152 + 2·320 + 2·(2·8·10) = 9216 + 640 + 320 = 10176.
        let w = ForwardWork::for_request(3, 2);
        assert_eq!(
            w,
            ForwardWork {
                start: 0,
                end: 4,
                logits: 2
            }
        );
        assert_eq!(request_flops(&tiny(), w), 10_176);
    }

    #[test]
    fn closed_form_equals_sum_over_positions() {
        let cfg = tiny();
        for start in 0..5u64 {
            for end in start..12u64 {
                let w = ForwardWork {
                    start,
                    end,
                    logits: 3,
                };
                let sum: u128 = (start..end).map(|p| position_flops(&cfg, p)).sum::<u128>()
                    + 3 * lm_head_flops(&cfg);
                assert_eq!(request_flops(&cfg, w), sum, "start {start} end {end}");
            }
        }
    }

    #[test]
    fn smollm2_one_token_prompt_one_token_answer() {
        let cfg = ModelConfig {
            layers: 30,
            d_model: 576,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            ffn: 1536,
            vocab: 49152,
            context_length: 8192,
            rope_base: 100000.0,
            rms_eps: 1e-5,
            tied_embeddings: true,
        };
        // P = 2·576·576 + 4·576·192 + 2·576·576 + 6·576·1536
        //   = 663,552 + 442,368 + 663,552 + 5,308,416 = 7,077,888.
        assert_eq!(projection_flops(&cfg), 7_077_888);
        // One position (p = 0): 30·(7,077,888 + 4·9·64·1) = 30·7,080,192 = 212,405,760.
        // LM head once: 2·576·49,152 = 56,623,104. Total 269,028,864.
        assert_eq!(
            request_flops(&cfg, ForwardWork::for_request(1, 1)),
            269_028_864
        );
        assert_eq!(milli_cu(269_028_864), 269);
    }
}
