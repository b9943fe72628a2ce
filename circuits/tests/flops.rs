//! `flops()` against numbers worked out by hand.

use forge_circuits::{FlopConfig, flops};

const TINY: FlopConfig = FlopConfig {
    layers: 2,
    d_model: 8,
    heads: 2,
    kv_heads: 1,
    head_dim: 4,
    ffn: 16,
    vocab: 32,
};

const SMOLLM2_135M: FlopConfig = FlopConfig {
    layers: 30,
    d_model: 576,
    heads: 9,
    kv_heads: 3,
    head_dim: 64,
    ffn: 1536,
    vocab: 49152,
};

#[test]
fn tiny_config_by_hand() {
    // P = 2*8*2*4 (q) + 2*2*8*1*4 (k, v) + 2*2*4*8 (o) + 3*2*8*16 (ffn)
    //   = 128 + 128 + 128 + 768 = 1152
    // n_prompt = 5, n_gen = 3  =>  T = 7, positions 0..7 forwarded.
    // projections = 7 * 2 * 1152                = 16128
    // attention   = 2 * 2 * 2 * 4 * (7*8 - 0)   = 32 * 56 = 1792
    //               (= L * sum_{p=0..6} 4*H*dh*(p+1) = 2 * 32 * 28)
    // lm head     = 3 * 2 * 8 * 32              = 1536
    // total       = 16128 + 1792 + 1536         = 19456
    assert_eq!(flops(&TINY, 5, 3, 0), Some(19456));

    // Prefix-cache hit, start = 3: positions 3..7 (4 of them) forwarded.
    // projections = 4 * 2 * 1152                = 9216
    // attention   = 32 * (7*8 - 3*4) = 32 * 44  = 1408
    //               (= 2 * 4*2*4 * (4 + 5 + 6 + 7) = 2 * 32 * 22)
    // lm head     = 1536 (logits are still taken n_gen times)
    // total       = 9216 + 1408 + 1536          = 12160
    assert_eq!(flops(&TINY, 5, 3, 3), Some(12160));
}

#[test]
fn smollm2_135m_one_token() {
    // n_prompt = 1, n_gen = 1, start = 0  =>  T = 1 (one position forwarded, p = 0).
    // P = 2*576*9*64      =   663552   (q: d x H*dh, H*dh = 576)
    //   + 2*2*576*3*64    =   442368   (k and v: d x Hkv*dh = 576 x 192)
    //   + 2*9*64*576      =   663552   (o)
    //   + 3*2*576*1536    =  5308416   (gate, up, down)
    //   = 7077888 per layer per position
    // projections = 1 * 30 * 7077888       = 212336640
    // attention   = 2*30*9*64 * (1*2 - 0)  =     69120   (scores + values over 1 key)
    // lm head     = 1 * 2 * 576 * 49152    =  56623104
    // total                                = 269028864
    assert_eq!(flops(&SMOLLM2_135M, 1, 1, 0), Some(269_028_864));
}

#[test]
fn start_zero_matches_the_design_formula() {
    // DESIGN.md section 3: T*L*P + L*4*H*dh*T*(T+1)/2 + n_gen*2*d*V.
    let c = SMOLLM2_135M;
    let p = 2 * c.d_model * c.heads * c.head_dim
        + 2 * 2 * c.d_model * c.kv_heads * c.head_dim
        + 2 * c.heads * c.head_dim * c.d_model
        + 3 * 2 * c.d_model * c.ffn;
    for (n_prompt, n_gen) in [(1u64, 1u64), (100, 28), (512, 1), (7, 300)] {
        let t = (n_prompt + n_gen - 1) as u128;
        let design = t * c.layers as u128 * p as u128
            + c.layers as u128 * 4 * (c.heads * c.head_dim) as u128 * t * (t + 1) / 2
            + n_gen as u128 * 2 * (c.d_model * c.vocab) as u128;
        assert_eq!(flops(&c, n_prompt, n_gen, 0), Some(design));
    }
}

#[test]
fn prefix_hit_bills_only_forwarded_positions() {
    // Full forward minus the forward of the cached prefix equals the prefix-hit bill
    // (both include the same lm-head cost).
    let (n_prompt, n_gen, start) = (64, 16, 40);
    let full = flops(&SMOLLM2_135M, n_prompt, n_gen, 0).unwrap();
    let hit = flops(&SMOLLM2_135M, n_prompt, n_gen, start).unwrap();
    // The cached prefix alone: positions 0..40, with no logits.
    let prefix_with_one_logit = flops(&SMOLLM2_135M, start, 1, 0).unwrap();
    let one_logit = 2 * 576 * 49152;
    assert_eq!(full - hit, prefix_with_one_logit - one_logit);
}

#[test]
fn invalid_requests_and_overflow_are_none() {
    assert_eq!(flops(&TINY, 5, 0, 0), None, "n_gen == 0");
    assert_eq!(flops(&TINY, 5, 3, 7), None, "start == T");
    assert_eq!(flops(&TINY, 5, 3, 8), None, "start > T");
    assert_eq!(flops(&TINY, 0, 1, 1), None, "start > T == 0");
    // T == 0: nothing forwarded, one set of logits.
    assert_eq!(flops(&TINY, 0, 1, 0), Some(2 * 8 * 32));
    assert_eq!(flops(&TINY, u64::MAX, 2, 0), None, "T overflows u64");
    let huge = FlopConfig {
        layers: u64::MAX,
        d_model: u64::MAX,
        heads: u64::MAX,
        kv_heads: 1,
        head_dim: u64::MAX,
        ffn: 1,
        vocab: 1,
    };
    assert_eq!(flops(&huge, 10, 1, 0), None, "u128 overflow");
}
