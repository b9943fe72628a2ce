//! Domain-separated blake3 digests of token sequences and signed messages.
//!
//! Each digest uses blake3's key-derivation mode with its own context string
//! (`blake3::Hasher::new_derive_key(domain)`), so a digest of one kind can
//! never be taken for another.

use crate::merkle::Hash;

/// Domain of the prompt token hash.
pub const PROMPT_DOMAIN: &str = "forge.prompt.v1";
/// Domain of the output token hash.
pub const OUTPUT_DOMAIN: &str = "forge.output.v1";
/// Domain of the receipt header hash (what the provider signs).
pub const RECEIPT_DOMAIN: &str = "forge.receipt.v1";
/// Domain of an audit entry's signed hash.
pub const AUDIT_DOMAIN: &str = "forge.audit.v1";

/// blake3 in derive-key mode for `domain` over `bytes`.
pub fn domain_hash(domain: &str, bytes: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(domain);
    h.update(bytes);
    h.finalize().into()
}

/// Hash of token ids, each a little-endian u32, under `domain`.
fn tokens_hash(domain: &str, tokens: &[u32]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key(domain);
    for t in tokens {
        h.update(&t.to_le_bytes());
    }
    h.finalize().into()
}

/// The prompt token hash of a receipt.
pub fn prompt_hash(tokens: &[u32]) -> Hash {
    tokens_hash(PROMPT_DOMAIN, tokens)
}

/// The output token hash of a receipt (every sampled token, a final stop
/// token included).
pub fn output_hash(tokens: &[u32]) -> Hash {
    tokens_hash(OUTPUT_DOMAIN, tokens)
}
