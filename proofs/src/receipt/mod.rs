//! Receipt v1 (DESIGN.md section 5): what a node signs for every answer.

mod audit;
mod build;
mod codec;
mod fields;
mod json;
mod verify;

pub use audit::{AuditEntry, Verdict};
pub use build::{BuildError, ReceiptBuilder};
pub use fields::{
    Cost, Forwarded, ModelDims, OutputInfo, Provider, RequestInfo, Sampling, TraceInfo,
};
pub use verify::{Check, KnownModel, Report, TrustAnchor, VerifyError};

use crate::merkle::Hash;

/// The first four bytes of every encoded receipt.
pub const RECEIPT_MAGIC: [u8; 4] = *b"FRGR";
/// The receipt format version this build writes and reads.
pub const RECEIPT_VERSION: u16 = 1;
/// Longest backend tag, in bytes.
pub const MAX_BACKEND_TAG: u32 = 32;
/// Most logit-bias entries (the OpenAI API's limit).
pub const MAX_LOGIT_BIAS: u32 = 300;
/// Most audit entries on one receipt.
pub const MAX_AUDITS: u32 = 64;
/// Most cells one audit challenges.
pub const MAX_AUDIT_CELLS: u32 = 4096;
/// Largest openings blob of one audit, in bytes.
pub const MAX_OPENINGS_BYTES: u32 = 64 << 20;
/// Length of the compressed Groth16 CU proof.
pub const CU_PROOF_BYTES: usize = forge_circuits::PROOF_BYTES;

/// A signed, proof-carrying statement of one inference.
///
/// The provider signs [`Receipt::header_hash`], which covers every field
/// before `provider.signature`; `cu_proof` proves the FLOPs claim for that
/// very header and activation root; audits are appended later by auditors.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// What was asked.
    pub request: RequestInfo,
    /// What the client received.
    pub output: OutputInfo,
    /// The activation trace commitment.
    pub trace: TraceInfo,
    /// What it cost.
    pub cost: Cost,
    /// The model dimensions that enter the FLOPs formula.
    pub config: ModelDims,
    /// blake3 of the CU verifying key the proof is for.
    pub vk_hash: Hash,
    /// Who served it, and their signature.
    pub provider: Provider,
    /// Groth16/BN254 proof of the CU claim, compressed.
    pub cu_proof: [u8; CU_PROOF_BYTES],
    /// Audits run against this receipt.
    pub audits: Vec<AuditEntry>,
}
