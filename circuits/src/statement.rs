//! The public statement and its encoding as field elements.

use ark_bn254::Fr;

use crate::{CircuitError, FlopConfig};

/// Every integer field of a statement (config, `n_prompt`, `n_gen`, `start`) must be
/// below this bound; see the soundness note in the circuit module.
pub const INPUT_BOUND: u64 = 1 << 32;

/// Number of public inputs of the circuit (the order is documented on
/// [`CuStatement::public_inputs`]).
pub const NUM_PUBLIC_INPUTS: usize = 15;

/// The Compute-Unit claim of one inference receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CuStatement {
    /// Model dimensions.
    pub cfg: FlopConfig,
    /// Prompt tokens.
    pub n_prompt: u64,
    /// Generated tokens (>= 1).
    pub n_gen: u64,
    /// First forwarded position (0 unless a prefix-cache hit).
    pub start: u64,
    /// Claimed FLOPs.
    pub flops: u128,
    /// Root of the activation trace commitment.
    pub activation_root: [u8; 32],
    /// Hash of the receipt header this claim belongs to.
    pub header_hash: [u8; 32],
}

impl CuStatement {
    /// The integer fields in public-input order, with their names.
    pub(crate) fn integer_fields(&self) -> [(&'static str, u64); 10] {
        let c = &self.cfg;
        [
            ("layers", c.layers),
            ("d_model", c.d_model),
            ("heads", c.heads),
            ("kv_heads", c.kv_heads),
            ("head_dim", c.head_dim),
            ("ffn", c.ffn),
            ("vocab", c.vocab),
            ("n_prompt", self.n_prompt),
            ("n_gen", self.n_gen),
            ("start", self.start),
        ]
    }

    /// Checks ranges and the request shape (not the FLOPs value).
    pub(crate) fn validate(&self) -> Result<(), CircuitError> {
        for (field, value) in self.integer_fields() {
            if value >= INPUT_BOUND {
                return Err(CircuitError::OutOfRange { field, value });
            }
        }
        // Values are < 2^32, so the sum cannot overflow.
        let valid = self.n_gen >= 1 && {
            let t = self.n_prompt + self.n_gen - 1;
            self.start < t || (self.start == 0 && t == 0)
        };
        if valid {
            Ok(())
        } else {
            Err(CircuitError::InvalidRequest {
                n_prompt: self.n_prompt,
                n_gen: self.n_gen,
                start: self.start,
            })
        }
    }

    /// The circuit's public inputs, in this order:
    ///
    /// | index | value |
    /// | --- | --- |
    /// | 0..=6 | `layers, d_model, heads, kv_heads, head_dim, ffn, vocab` |
    /// | 7, 8, 9 | `n_prompt, n_gen, start` |
    /// | 10 | `flops` |
    /// | 11, 12 | `activation_root` low 16 bytes, high 16 bytes (each a little-endian u128) |
    /// | 13, 14 | `header_hash` low 16 bytes, high 16 bytes (each a little-endian u128) |
    ///
    /// Rejects any integer field `>= 2^32`, `n_gen == 0` and `start` not below `T`
    /// (`start == 0` is allowed when `T == 0`). It does not check the FLOPs value:
    /// a wrong value simply fails to verify.
    pub fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.validate()?;
        let mut out: Vec<Fr> = self
            .integer_fields()
            .iter()
            .map(|&(_, v)| Fr::from(v))
            .collect();
        out.push(Fr::from(self.flops));
        for bytes in [&self.activation_root, &self.header_hash] {
            let (lo, hi) = split_u128(bytes);
            out.extend([Fr::from(lo), Fr::from(hi)]);
        }
        debug_assert_eq!(out.len(), NUM_PUBLIC_INPUTS);
        Ok(out)
    }
}

/// Low and high 16 bytes of a 32-byte string, each read as a little-endian u128.
fn split_u128(bytes: &[u8; 32]) -> (u128, u128) {
    let mut lo = [0u8; 16];
    let mut hi = [0u8; 16];
    lo.copy_from_slice(&bytes[..16]);
    hi.copy_from_slice(&bytes[16..]);
    (u128::from_le_bytes(lo), u128::from_le_bytes(hi))
}
