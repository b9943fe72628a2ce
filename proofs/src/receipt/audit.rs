//! Audit entries appended to a receipt by auditors.

use serde::Serialize;

use super::{MAX_AUDIT_CELLS, MAX_OPENINGS_BYTES};
use crate::codec::{EncodeError, Writer};
use crate::digest::AUDIT_DOMAIN;
use crate::key::NodeKey;
use crate::merkle::Hash;

/// An auditor's conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every challenged cell re-executed to the committed values.
    Pass,
    /// Some cell did not (or the provider did not answer).
    Fail,
}

impl Verdict {
    /// The tag byte in the encoding.
    pub fn tag(self) -> u8 {
        match self {
            Self::Pass => 1,
            Self::Fail => 2,
        }
    }

    /// The verdict of a tag byte.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Pass),
            2 => Some(Self::Fail),
            _ => None,
        }
    }
}

/// One audit: the challenge, the provider's openings, and the auditor's
/// signed verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// The auditor's 32-byte challenge seed.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub seed: [u8; 32],
    /// The challenged cells (layer, position), at most [`MAX_AUDIT_CELLS`].
    pub cells: Vec<(u32, u32)>,
    /// The provider's openings, encoded; at most [`MAX_OPENINGS_BYTES`].
    #[serde(serialize_with = "crate::hex::serialize")]
    pub openings: Vec<u8>,
    /// The auditor's conclusion.
    pub verdict: Verdict,
    /// The auditor's ed25519 public key.
    #[serde(serialize_with = "crate::hex::serialize")]
    pub auditor: [u8; 32],
    /// The auditor's signature over [`AuditEntry::signed_hash`].
    #[serde(serialize_with = "crate::hex::serialize")]
    pub signature: [u8; 64],
}

impl AuditEntry {
    /// Writes every field but the signature.
    pub(crate) fn encode_unsigned(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.array(&self.seed);
        w.count("audit.cells", self.cells.len(), MAX_AUDIT_CELLS)?;
        for &(layer, pos) in &self.cells {
            w.u32(layer);
            w.u32(pos);
        }
        w.bytes("audit.openings", &self.openings, MAX_OPENINGS_BYTES)?;
        w.u8(self.verdict.tag());
        w.array(&self.auditor);
        Ok(())
    }

    /// An entry signed by `auditor` for the receipt whose header hash is
    /// `receipt_header_hash`.
    pub fn signed(
        receipt_header_hash: &Hash,
        seed: [u8; 32],
        cells: Vec<(u32, u32)>,
        openings: Vec<u8>,
        verdict: Verdict,
        auditor: &NodeKey,
    ) -> Result<Self, EncodeError> {
        let mut entry = Self {
            seed,
            cells,
            openings,
            verdict,
            auditor: auditor.public_key(),
            signature: [0; 64],
        };
        entry.signature = auditor.sign(&entry.signed_hash(receipt_header_hash)?);
        Ok(entry)
    }

    /// What the auditor signs: blake3 (domain `forge.audit.v1`) of the
    /// receipt's header hash followed by this entry without its signature.
    pub fn signed_hash(&self, receipt_header_hash: &Hash) -> Result<Hash, EncodeError> {
        let mut w = Writer::hashing(blake3::Hasher::new_derive_key(AUDIT_DOMAIN));
        w.array(receipt_header_hash);
        self.encode_unsigned(&mut w)?;
        Ok(w.finalize())
    }
}
