//! Stable identifiers of verification checks, for machines.
//!
//! Checklist sentences are for people and may be reworded; a [`CheckId`] is
//! a contract: `forge-verify --json` names every line with one, and tests
//! and tools match on it instead of on the wording.

use serde::{Serialize, Serializer};

use crate::receipt::{Check, VerifyError};
use crate::spot::SpotError;

/// Which check a verification line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// Strict decoding, or a field above its bound.
    Format,
    /// Request, trace and model shapes agree with each other.
    Shape,
    /// Model id and dimensions against the pinned model.
    Model,
    /// FLOPs and milli-CU against the formula.
    Flops,
    /// The provider's signature over the header.
    Signature,
    /// The receipt's CU verifying key is the trusted one.
    VerifyingKey,
    /// The Groth16 CU proof.
    CuProof,
    /// An audit entry's auditor signature.
    AuditSignature,
    /// An audit's signed verdict (a signed FAIL rejects the receipt).
    AuditVerdict,
    /// An audit's cells are the ones its seed selects, and the openings
    /// answer those cells.
    SpotCells,
    /// Openings decode, match the token hashes, have the cells' shape, and
    /// their Merkle range proofs lead to the activation root.
    SpotOpening,
    /// A re-executed layer gives the committed rows.
    SpotReplay,
    /// A committed last-layer row samples the committed token.
    SpotToken,
    /// The verifier's engine failed (no evidence either way).
    SpotEngine,
}

impl CheckId {
    /// Every identifier, in checklist order.
    pub const ALL: [CheckId; 14] = [
        Self::Format,
        Self::Shape,
        Self::Model,
        Self::Flops,
        Self::Signature,
        Self::VerifyingKey,
        Self::CuProof,
        Self::AuditSignature,
        Self::AuditVerdict,
        Self::SpotCells,
        Self::SpotOpening,
        Self::SpotReplay,
        Self::SpotToken,
        Self::SpotEngine,
    ];

    /// The identifier as `forge-verify --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Format => "format",
            Self::Shape => "shape",
            Self::Model => "model",
            Self::Flops => "flops",
            Self::Signature => "signature",
            Self::VerifyingKey => "verifying_key",
            Self::CuProof => "cu_proof",
            Self::AuditSignature => "audit_signature",
            Self::AuditVerdict => "audit_verdict",
            Self::SpotCells => "spot.cells",
            Self::SpotOpening => "spot.opening",
            Self::SpotReplay => "spot.replay",
            Self::SpotToken => "spot.token",
            Self::SpotEngine => "spot.engine",
        }
    }

    /// The identifier named `s` (the inverse of [`CheckId::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.as_str() == s)
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for CheckId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Check {
    /// The identifier of this (passed) check.
    pub fn id(self) -> CheckId {
        match self {
            Self::Format => CheckId::Format,
            Self::Shape => CheckId::Shape,
            Self::Model => CheckId::Model,
            Self::Flops => CheckId::Flops,
            Self::Signature => CheckId::Signature,
            Self::VerifyingKey => CheckId::VerifyingKey,
            Self::CuProof => CheckId::CuProof,
            Self::AuditSignatures => CheckId::AuditSignature,
        }
    }
}

impl VerifyError {
    /// The check that failed.
    pub fn check_id(&self) -> CheckId {
        match self {
            Self::Format(_) => CheckId::Format,
            Self::Inconsistent { .. } | Self::InvalidField { .. } => CheckId::Shape,
            Self::UnknownModel { .. } | Self::ConfigMismatch { .. } => CheckId::Model,
            Self::FlopFormulasDisagree { .. }
            | Self::FlopsMismatch { .. }
            | Self::MilliCuMismatch { .. } => CheckId::Flops,
            Self::Signature(_) => CheckId::Signature,
            Self::VkMismatch { .. } => CheckId::VerifyingKey,
            Self::MalformedProof(_) | Self::ProofRejected => CheckId::CuProof,
            Self::AuditSignature { .. } => CheckId::AuditSignature,
        }
    }
}

impl SpotError {
    /// The check that failed.
    pub fn check_id(&self) -> CheckId {
        match self {
            Self::Format(_) => CheckId::Format,
            Self::Receipt(e) => e.check_id(),
            Self::WrongModel { .. } | Self::ConfigMismatch { .. } => CheckId::Model,
            Self::CellsMismatch { .. } => CheckId::SpotCells,
            Self::TokensMismatch { .. }
            | Self::PrefixNotCommitted { .. }
            | Self::MalformedOpening { .. }
            | Self::Opening { .. } => CheckId::SpotOpening,
            Self::ReplayMismatch { .. } => CheckId::SpotReplay,
            Self::TokenMismatch { .. } => CheckId::SpotToken,
            Self::Engine(_) => CheckId::SpotEngine,
        }
    }

    /// The cell (layer, position) the failure is evidence about, if one:
    /// the cell named, or for a forged token at generation step `s`, the
    /// last-layer cell `(L - 1, n_prompt - 1 + s)` whose row sampled it.
    pub fn cell(&self, receipt: &crate::Receipt) -> Option<(u32, u32)> {
        match self {
            Self::MalformedOpening { layer, pos, .. }
            | Self::Opening { layer, pos, .. }
            | Self::ReplayMismatch { layer, pos, .. } => Some((*layer, *pos)),
            Self::TokenMismatch { step, .. } => {
                let last = receipt.trace.layers.checked_sub(1)?;
                Some((
                    last,
                    receipt
                        .request
                        .n_prompt
                        .checked_sub(1)?
                        .checked_add(*step)?,
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CheckId;

    #[test]
    fn identifiers_are_unique_and_round_trip() {
        let names: std::collections::BTreeSet<&str> =
            CheckId::ALL.iter().map(|id| id.as_str()).collect();
        assert_eq!(names.len(), CheckId::ALL.len());
        for id in CheckId::ALL {
            assert_eq!(CheckId::parse(id.as_str()), Some(id));
            assert_eq!(
                serde_json::to_value(id).unwrap(),
                serde_json::Value::from(id.as_str())
            );
        }
        assert_eq!(CheckId::parse("spot"), None);
    }
}
