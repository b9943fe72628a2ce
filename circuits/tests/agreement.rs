//! On random configs and requests, circuit satisfiability agrees with `flops()`.

use forge_circuits::rand_core::{RngCore, SeedableRng};
use forge_circuits::{
    ChaCha20Rng, CircuitError, CuStatement, FlopConfig, INPUT_BOUND, constraints_satisfied, flops,
};

/// Uniform-ish in `0..n` (n > 0); the modulo bias is irrelevant here.
fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A dimension at one of several scales, including the input bound's edge;
/// `huge` draws only from the top scales (most such statements overflow u128).
fn dim(rng: &mut ChaCha20Rng, huge: bool) -> u64 {
    let scale = if huge {
        8 + below(rng, 2)
    } else {
        below(rng, 10)
    };
    match scale {
        0..=3 => 1 + below(rng, 64),
        4..=7 => 1 + below(rng, 1 << 14),
        8 => INPUT_BOUND - 1 - below(rng, 4),
        _ => INPUT_BOUND / 2 + below(rng, INPUT_BOUND / 2),
    }
}

fn random_statement(rng: &mut ChaCha20Rng) -> CuStatement {
    let huge = below(rng, 10) == 0;
    let cfg = FlopConfig {
        layers: dim(rng, huge),
        d_model: dim(rng, huge),
        heads: dim(rng, huge),
        kv_heads: dim(rng, huge),
        head_dim: dim(rng, huge),
        ffn: dim(rng, huge),
        vocab: dim(rng, huge),
    };
    let n_prompt = below(rng, 4096);
    let n_gen = if below(rng, 20) == 0 {
        0
    } else {
        1 + below(rng, 512)
    }; // 0 is invalid
    let t = (n_prompt + n_gen).saturating_sub(1);
    let start = match below(rng, 10) {
        0..=2 => 0,
        3 => t + below(rng, 2), // start >= T: invalid unless T == 0 == start
        _ => below(rng, t.max(1)),
    };
    let honest = flops(&cfg, n_prompt, n_gen, start);
    let mut root = [0u8; 32];
    let mut header = [0u8; 32];
    rng.fill_bytes(&mut root);
    rng.fill_bytes(&mut header);
    let claim = match (honest, below(rng, 4)) {
        (Some(f), 0 | 1) => f,
        (Some(f), 2) if below(rng, 2) == 0 => f.wrapping_add(1),
        (Some(f), 2) => f.wrapping_sub(1),
        _ => ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128,
    };
    CuStatement {
        cfg,
        n_prompt,
        n_gen,
        start,
        flops: claim,
        activation_root: root,
        header_hash: header,
    }
}

#[test]
fn satisfiability_agrees_with_flops_on_200_random_statements() {
    let mut rng = ChaCha20Rng::from_seed([42; 32]);
    let (mut sat, mut unsat, mut invalid, mut overflow) = (0, 0, 0, 0);
    for i in 0..200 {
        let s = random_statement(&mut rng);
        let honest = flops(&s.cfg, s.n_prompt, s.n_gen, s.start);
        match constraints_satisfied(&s) {
            Ok(ok) => {
                assert_eq!(
                    ok,
                    honest == Some(s.flops),
                    "case {i}: {s:?}, flops() = {honest:?}"
                );
                if ok {
                    sat += 1;
                } else {
                    unsat += 1;
                }
                if honest.is_none() {
                    overflow += 1;
                }
            }
            Err(CircuitError::InvalidRequest { .. }) => {
                assert_eq!(
                    honest, None,
                    "case {i}: rejected request has FLOPs {honest:?}"
                );
                invalid += 1;
            }
            Err(e) => panic!("case {i}: unexpected error {e}"),
        }
    }
    // The sample exercises every branch.
    assert!(sat >= 40, "satisfied cases: {sat}");
    assert!(unsat >= 40, "unsatisfied cases: {unsat}");
    assert!(invalid >= 5, "invalid requests: {invalid}");
    assert!(
        overflow >= 5,
        "in-range statements whose FLOPs overflow u128: {overflow}"
    );
}

#[test]
fn out_of_range_fields_are_rejected_not_wrapped() {
    let mut rng = ChaCha20Rng::from_seed([43; 32]);
    for _ in 0..20 {
        let mut s = random_statement(&mut rng);
        s.n_gen = 1;
        s.start = 0;
        s.cfg.vocab = INPUT_BOUND + below(&mut rng, 1000);
        assert!(matches!(
            constraints_satisfied(&s),
            Err(CircuitError::OutOfRange { field: "vocab", .. })
        ));
        assert!(matches!(
            s.public_inputs(),
            Err(CircuitError::OutOfRange { .. })
        ));
    }
    let ok = CuStatement {
        cfg: FlopConfig {
            layers: 1,
            d_model: 1,
            heads: 1,
            kv_heads: 1,
            head_dim: 1,
            ffn: 1,
            vocab: 1,
        },
        n_prompt: INPUT_BOUND - 1,
        n_gen: 1,
        start: 0,
        flops: 0,
        activation_root: [0; 32],
        header_hash: [0; 32],
    };
    assert!(ok.public_inputs().is_ok());
    let bad = CuStatement {
        n_prompt: INPUT_BOUND,
        ..ok
    };
    assert_eq!(
        bad.public_inputs(),
        Err(CircuitError::OutOfRange {
            field: "n_prompt",
            value: INPUT_BOUND
        })
    );
}
