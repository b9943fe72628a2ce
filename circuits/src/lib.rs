//! Groth16/BN254 proof of the Compute-Unit claim of one Forge inference receipt.
//!
//! The statement ([`CuStatement`]) is public: a model config, the request shape
//! (`n_prompt`, `n_gen`, first forwarded position `start`), the claimed FLOPs, and
//! the receipt's activation root and header hash. The circuit enforces
//!
//! ```text
//! T     = n_prompt + n_gen - 1                        (positions start..T are forwarded)
//! P     = 2*d*H*dh + 2*2*d*Hkv*dh + 2*H*dh*d + 3*2*d*F
//! FLOPs = (T - start)*L*P + 2*L*H*dh*(T*(T+1) - start*(start+1)) + n_gen*2*d*V
//! ```
//!
//! (DESIGN.md section 3 over a forwarded range; [`flops`] is the integer
//! reference) and binds the root and header hash as public inputs, so a proof
//! for one receipt does not verify for another. The public-input order is
//! documented on [`CuStatement::public_inputs`].
//!
//! ```
//! use forge_circuits::{ChaCha20Rng, CuProof, CuStatement, FlopConfig, flops, prove, setup, verify};
//! use forge_circuits::rand_core::SeedableRng;
//!
//! let cfg = FlopConfig { layers: 2, d_model: 8, heads: 2, kv_heads: 1, head_dim: 4, ffn: 16, vocab: 32 };
//! let stmt = CuStatement {
//!     cfg,
//!     n_prompt: 5,
//!     n_gen: 3,
//!     start: 0,
//!     flops: flops(&cfg, 5, 3, 0).unwrap(),
//!     activation_root: [1; 32],
//!     header_hash: [2; 32],
//! };
//! let (pk, vk) = setup([7; 32]);
//! let proof = prove(&pk, &stmt, &mut ChaCha20Rng::from_seed([9; 32])).unwrap();
//! let proof = CuProof::from_bytes(&proof.to_bytes()).unwrap();
//! verify(&vk, &stmt, &proof).unwrap();
//!
//! let lie = CuStatement { flops: stmt.flops + 1, ..stmt };
//! assert!(verify(&vk, &lie, &proof).is_err());
//! ```
#![forbid(unsafe_code)]

mod canonical;
mod circuit;
mod error;
mod flops;
mod snark;
mod statement;

pub use ark_bn254::Fr;
pub use canonical::{CANONICAL_VK_HASH, canonical_pk, canonical_vk};
pub use circuit::{constraints_satisfied, num_constraints};
pub use error::CircuitError;
pub use flops::{FlopConfig, flops};
pub use rand_chacha::{ChaCha20Rng, rand_core};
pub use snark::{
    CuProof, PROOF_BYTES, ProvingKey, VerifyingKey, pk_from_bytes, pk_to_bytes, prove, setup,
    verify, vk_from_bytes, vk_hash, vk_of, vk_to_bytes, vk_to_prepared_bytes,
};
pub use statement::{CuStatement, INPUT_BOUND, NUM_PUBLIC_INPUTS};
