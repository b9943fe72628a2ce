//! What a successful verification established.

use serde::Serialize;

use crate::merkle::Hash;

/// A check that [`crate::Receipt::verify_offline`] performed and passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Canonical encoding within every bound.
    Format,
    /// Request shape, trace shape and model dimensions agree.
    Shape,
    /// The model id and dimensions are the pinned ones.
    Model,
    /// FLOPs and milli-CU equal the formula (engine and circuit agree).
    Flops,
    /// The provider's signature over the header hash.
    Signature,
    /// The proof is for the trusted CU verifying key.
    VerifyingKey,
    /// The Groth16 CU proof verifies for this receipt's statement.
    CuProof,
    /// Every audit entry is signed by its auditor (openings not re-checked).
    AuditSignatures,
}

impl Check {
    /// One line for a checklist.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Format => "canonical encoding, every field within bounds",
            Self::Shape => "request, trace and model shapes are consistent",
            Self::Model => "model id and dimensions match the trusted list",
            Self::Flops => "FLOPs and milli-CU recomputed (engine and circuit formulas agree)",
            Self::Signature => "provider signature over the header hash",
            Self::VerifyingKey => "CU proof is for the trusted verifying key",
            Self::CuProof => "Groth16 CU proof verifies for this statement",
            Self::AuditSignatures => "every audit entry carries a valid auditor signature",
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// blake3 of the full encoding (the ledger key).
    #[serde(serialize_with = "crate::hex::serialize")]
    pub receipt_hash: Hash,
    /// The signed header hash.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub header_hash: Hash,
    /// The provider's public key.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub provider: [u8; 32],
    /// The model.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub model_id: Hash,
    /// Verified FLOPs.
    #[serde(serialize_with = "crate::hex::serialize_decimal")]
    pub flops: u128,
    /// Verified milli-CU.
    pub milli_cu: u64,
    /// Audit entries whose signature was checked.
    pub audits: usize,
    /// The checks performed, in order.
    pub checks: Vec<Check>,
}
