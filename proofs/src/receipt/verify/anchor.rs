//! The trust anchor: what a verifier believes before reading a receipt.

use forge_circuits::VerifyingKey;

use crate::merkle::Hash;
use crate::receipt::ModelDims;

/// What a verifier trusts, given out of band (never read from the receipt).
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// The CU verifying key (its hash is pinned in the repository).
    pub vk: VerifyingKey,
    /// Models the verifier knows; when not empty, a receipt for any other
    /// model id, or with other dimensions, is rejected.
    pub models: Vec<KnownModel>,
}

/// A model id with the dimensions it must be receipted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// blake3 of the GGUF tensor data.
    pub model_id: Hash,
    /// Its FLOP dimensions.
    pub config: ModelDims,
}

impl TrustAnchor {
    /// An anchor that pins the CU verifying key and accepts any model.
    pub fn new(vk: VerifyingKey) -> Self {
        Self {
            vk,
            models: Vec::new(),
        }
    }

    /// Also pins `model_id` to `config` (and, from now on, rejects unknown models).
    pub fn with_model(mut self, model_id: Hash, config: ModelDims) -> Self {
        self.models.push(KnownModel { model_id, config });
        self
    }
}
