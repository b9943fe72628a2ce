//! Signing with the node key, and verifying anyone's signature.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::{KeyError, SignatureError, file};

/// The node's ed25519 signing key (its libp2p identity).
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_key", &crate::hex::encode(&self.public_key()))
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Name of the key file inside the node's directory.
    pub const FILE_NAME: &'static str = "node.key";

    /// Loads `dir/node.key`, or creates it (32 random bytes, mode 0600) on
    /// first use. Refuses a file of the wrong length or one that group or
    /// others may access. Concurrent first calls agree on one key.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        file::load_or_create(dir, Self::FILE_NAME).map(|secret| Self::from_secret(&secret))
    }

    /// A fresh key from the OS random source, not stored anywhere.
    pub fn generate() -> Result<Self, KeyError> {
        file::random_secret().map(|secret| Self::from_secret(&secret))
    }

    /// The key with these 32 secret bytes.
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

/// Verifies `sig` by `public_key` over `msg` (strict ed25519: rejects weak
/// keys and non-canonical signatures).
pub fn verify_signature(
    public_key: &[u8; 32],
    msg: &[u8],
    sig: &[u8; 64],
) -> Result<(), SignatureError> {
    let vk = VerifyingKey::from_bytes(public_key).map_err(|_| SignatureError::BadPublicKey)?;
    if vk.is_weak() {
        return Err(SignatureError::BadPublicKey);
    }
    vk.verify_strict(msg, &Signature::from_bytes(sig))
        .map_err(|_| SignatureError::Invalid)
}
