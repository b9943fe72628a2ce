//! The project's canonical CU key pair, committed in `circuits/keys/` and
//! embedded in every binary, so every node proves and every auditor verifies
//! against the same key.
//!
//! They came from one `forge-node setup` run (a one-party Groth16 setup: a
//! seed from the OS CSPRNG, discarded after use). Whoever knew that seed could
//! forge CU proofs for this key; trusting these keys is trusting that it was
//! not kept. Replacing them: run `forge-node setup --out circuits/keys` and
//! update [`CANONICAL_VK_HASH`] (a test pins the two together).
//!
//! The verifying key is embedded twice: compressed (`cu.vk`, the bytes its
//! hash pins) and with its pairing precomputation, uncompressed
//! (`cu.pvk`), which loads without redoing that work; a test checks that
//! the second is the first, prepared.

use std::sync::OnceLock;

use crate::snark::{ProvingKey, VerifyingKey, pk_from_bytes, vk_from_trusted_prepared};

const PK_BYTES: &[u8] = include_bytes!("../keys/cu.pk");
#[cfg(test)]
const VK_BYTES: &[u8] = include_bytes!("../keys/cu.vk");
const PVK_BYTES: &[u8] = include_bytes!("../keys/cu.pvk");

/// blake3 of the canonical verifying key's compressed bytes (hex).
pub const CANONICAL_VK_HASH: &str =
    "65efc391cc6995f9a16e35ba4d60f99cbf3e9e8167309f970b2f11fcb8a09da9";

/// The canonical proving key.
pub fn canonical_pk() -> &'static ProvingKey {
    static PK: OnceLock<ProvingKey> = OnceLock::new();
    // The embedded bytes are checked by this crate's tests; a build whose
    // keys/ files do not decode is broken at build time, not by a user.
    PK.get_or_init(|| {
        pk_from_bytes(PK_BYTES).expect("circuits/keys/cu.pk decodes (checked by tests)")
    })
}

/// The canonical verifying key.
pub fn canonical_vk() -> &'static VerifyingKey {
    static VK: OnceLock<VerifyingKey> = OnceLock::new();
    VK.get_or_init(|| {
        vk_from_trusted_prepared(PVK_BYTES)
            .expect("circuits/keys/cu.pvk decodes (checked by tests)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snark::{
        prepared_matches, vk_from_bytes, vk_hash, vk_of, vk_to_bytes, vk_to_prepared_bytes,
    };

    #[test]
    fn embedded_keys_decode_match_and_are_pinned() {
        let hash: String = vk_hash(canonical_vk())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash, CANONICAL_VK_HASH);
        assert_eq!(
            vk_to_bytes(&vk_of(canonical_pk())),
            vk_to_bytes(canonical_vk()),
            "the proving key belongs to the verifying key"
        );
    }

    #[test]
    fn the_embedded_prepared_key_is_the_compressed_key_prepared() {
        let checked = vk_from_bytes(VK_BYTES).expect("cu.vk decodes with every check");
        assert_eq!(
            canonical_vk(),
            &checked,
            "cu.pvk holds the key of cu.vk (points checked there)"
        );
        assert!(
            prepared_matches(canonical_vk()),
            "cu.pvk's pairing precomputation is cu.vk's"
        );
        assert_eq!(
            vk_to_prepared_bytes(&checked),
            PVK_BYTES,
            "cu.pvk is current"
        );
    }
}
