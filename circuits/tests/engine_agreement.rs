//! The circuit's FLOP constraints and forge-engine's FLOP function agree on
//! random configurations (DESIGN.md section 3: `engine` owns the formula,
//! `circuits` re-implements it as constraints).

use forge_circuits::{CuStatement, FlopConfig, constraints_satisfied, flops};
use forge_engine::{ForwardWork, ModelConfig, request_flops};

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn circuit_and_engine_count_the_same_flops_on_random_configs() {
    let mut r = Lcg(0xF10B5);
    for case in 0..300 {
        let heads = 1 + r.below(32) as usize;
        let kv_heads = [1, heads][r.below(2) as usize];
        let head_dim = 2 * (1 + r.below(128) as usize);
        let cfg = ModelConfig {
            layers: 1 + r.below(96) as usize,
            d_model: heads * head_dim,
            heads,
            kv_heads,
            head_dim,
            ffn: 1 + r.below(20_000) as usize,
            vocab: 1 + r.below(300_000) as usize,
            context_length: 1 << 20,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
            tied_embeddings: true,
        };
        let n_prompt = 1 + r.below(8192);
        let n_gen = 1 + r.below(4096);
        let end = n_prompt + n_gen - 1;
        let start = if r.below(3) == 0 { r.below(end) } else { 0 };
        let engine = request_flops(
            &cfg,
            ForwardWork {
                start,
                end,
                logits: n_gen,
            },
        );
        let fc = FlopConfig {
            layers: cfg.layers as u64,
            d_model: cfg.d_model as u64,
            heads: cfg.heads as u64,
            kv_heads: cfg.kv_heads as u64,
            head_dim: cfg.head_dim as u64,
            ffn: cfg.ffn as u64,
            vocab: cfg.vocab as u64,
        };
        assert_eq!(
            flops(&fc, n_prompt, n_gen, start),
            Some(engine),
            "case {case}: {cfg:?} {n_prompt} {n_gen} {start}"
        );
        let stmt = |f: u128| CuStatement {
            cfg: fc,
            n_prompt,
            n_gen,
            start,
            flops: f,
            activation_root: [case as u8; 32],
            header_hash: [3; 32],
        };
        assert!(
            constraints_satisfied(&stmt(engine)).unwrap(),
            "case {case}: the engine's count satisfies the circuit"
        );
        assert!(
            !constraints_satisfied(&stmt(engine + 1)).unwrap(),
            "case {case}: one FLOP more does not"
        );
    }
}
