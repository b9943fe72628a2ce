//! Quick measurement of the CU circuit: constraint count, key sizes, and setup,
//! prove and verify times (SmolLM2-135M config, 200-token prompt, 56 generated).
//!
//! `cargo run --release -p forge-circuits --example cu_timing`

use std::time::Instant;

use forge_circuits::rand_core::SeedableRng;
use forge_circuits::{
    ChaCha20Rng, CuStatement, FlopConfig, flops, num_constraints, pk_to_bytes, prove, setup,
    verify, vk_to_bytes,
};

fn main() {
    const RUNS: u32 = 50;
    let cfg = FlopConfig {
        layers: 30,
        d_model: 576,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        ffn: 1536,
        vocab: 49152,
    };
    let stmt = CuStatement {
        cfg,
        n_prompt: 200,
        n_gen: 56,
        start: 0,
        flops: flops(&cfg, 200, 56, 0).expect("valid request"),
        activation_root: [7; 32],
        header_hash: [8; 32],
    };

    println!("constraints: {}", num_constraints());

    let t = Instant::now();
    let (pk, vk) = setup([0; 32]);
    println!("setup:  {:>9.3} ms", t.elapsed().as_secs_f64() * 1e3);
    println!(
        "pk: {} B, vk: {} B (compressed)",
        pk_to_bytes(&pk).len(),
        vk_to_bytes(&vk).len()
    );

    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut proof = prove(&pk, &stmt, &mut rng).expect("honest statement");
    let t = Instant::now();
    for _ in 0..RUNS {
        proof = prove(&pk, &stmt, &mut rng).expect("honest statement");
    }
    println!(
        "prove:  {:>9.3} ms (mean of {RUNS})",
        t.elapsed().as_secs_f64() * 1e3 / f64::from(RUNS)
    );

    let t = Instant::now();
    for _ in 0..RUNS {
        verify(&vk, &stmt, &proof).expect("honest proof");
    }
    println!(
        "verify: {:>9.3} ms (mean of {RUNS})",
        t.elapsed().as_secs_f64() * 1e3 / f64::from(RUNS)
    );
    println!("proof: {} B", proof.to_bytes().len());
}
