//! Why a receipt failed verification.

use thiserror::Error;

use crate::codec::EncodeError;
use crate::hex;
use crate::key::SignatureError;
use crate::merkle::Hash;
use crate::receipt::ModelDims;

/// Why a receipt failed verification. Mismatches carry what the verifier
/// expected and what the receipt holds.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// A variable-length field is above its bound.
    #[error("format: {0}")]
    Format(#[from] EncodeError),
    /// A field contradicts the others.
    #[error("`{field}`: expected {expected}, receipt has {received}")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// The value the other fields imply.
        expected: u128,
        /// The value in the receipt.
        received: u128,
    },
    /// A field's value is impossible on its own.
    #[error("`{field}`: {problem}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// The model id is not in the trust anchor's list.
    #[error("unknown model {}", hex::encode(.model_id))]
    UnknownModel {
        /// The receipt's model id.
        model_id: Hash,
    },
    /// The model's dimensions differ from the pinned ones.
    #[error("model dimensions: expected {expected:?}, receipt has {received:?}")]
    ConfigMismatch {
        /// The pinned dimensions.
        expected: ModelDims,
        /// The receipt's.
        received: ModelDims,
    },
    /// The engine's and the circuit's FLOP functions disagree (a build defect).
    #[error("FLOP formulas disagree: engine {engine}, circuit {circuit}")]
    FlopFormulasDisagree {
        /// forge-engine's value.
        engine: u128,
        /// forge-circuits' value.
        circuit: u128,
    },
    /// The claimed FLOPs are not the formula's.
    #[error("FLOPs: expected {expected}, receipt claims {received}")]
    FlopsMismatch {
        /// The formula's value.
        expected: u128,
        /// The receipt's claim.
        received: u128,
    },
    /// The claimed milli-CU is not `flops / 10^6`.
    #[error("milli-CU: expected {expected}, receipt claims {received}")]
    MilliCuMismatch {
        /// `flops / 10^6`.
        expected: u128,
        /// The receipt's claim.
        received: u64,
    },
    /// The provider's signature does not verify.
    #[error("provider signature: {0}")]
    Signature(SignatureError),
    /// The proof is for another verifying key.
    #[error("verifying key: expected {}, receipt names {}", hex::encode(.expected), hex::encode(.received))]
    VkMismatch {
        /// The trusted key's hash.
        expected: Hash,
        /// The receipt's `vk_hash`.
        received: Hash,
    },
    /// The proof bytes are not a valid compressed Groth16 proof.
    #[error("CU proof is malformed: {0}")]
    MalformedProof(String),
    /// The proof does not verify for the statement built from this receipt.
    #[error("CU proof rejected for this receipt's statement")]
    ProofRejected,
    /// An audit entry's signature does not verify.
    #[error("audit {index}: auditor signature: {source}")]
    AuditSignature {
        /// Index of the audit entry.
        index: usize,
        /// Why.
        source: SignatureError,
    },
}
