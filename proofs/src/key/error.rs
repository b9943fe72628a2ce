//! Errors of keys and signatures.

use std::path::PathBuf;

use thiserror::Error;

/// Why the node key could not be loaded or created.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading, creating or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("key file {path} holds {len} bytes, expected 32 (a raw ed25519 secret key)")]
    BadLength {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Someone other than the owner may read or write the key file.
    #[error("key file {path} has mode {mode:o}: group/others have access; run `chmod 600 {path}`")]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key path exists but is not a regular file.
    #[error("key path {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("no randomness from the OS: {0}")]
    Entropy(String),
}

/// Why a signature was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The public key bytes are not a valid (or are a weak) ed25519 point.
    #[error("the public key is not a valid ed25519 key")]
    BadPublicKey,
    /// The signature does not verify for this key and message.
    #[error("the signature does not verify")]
    Invalid,
}
