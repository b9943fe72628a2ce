//! The node's ed25519 identity: key file handling, signing, verification.

mod error;
mod file;
mod signing;

pub use error::{KeyError, SignatureError};
pub use signing::{NodeKey, verify_signature};
