//! Non-interactive spot checks: the provider challenges itself with a seed
//! derived from the receipt alone (Fiat-Shamir) and embeds the openings.
//!
//! Caveat: a dishonest provider can grind such a seed almost for free: any
//! change to the signed header (the request id alone will do) gives a new
//! seed, with no need to recompute the trace; it re-signs until the drawn
//! cells miss its cheat (`tests/tests/adversary.rs` does exactly that). The
//! detection rate 1-(1-f)^k holds only for fresh seeds drawn by an auditor
//! after the receipt is published. Their value is that anyone can
//! re-execute them offline.

use super::{challenge_cells, open_cells};
use crate::codec::EncodeError;
use crate::commit::{CommitError, Commitment};
use crate::digest::domain_hash;
use crate::key::NodeKey;
use crate::receipt::{AuditEntry, Receipt, Verdict};

/// Domain of non-interactive challenge seeds.
pub const FIAT_SHAMIR_DOMAIN: &str = "forge.spot.fiat-shamir.v1";

/// Why a self-audit could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum SelfAuditError {
    /// The receipt or openings could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A challenged row could not be opened.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// The seed of `receipt`'s non-interactive spot check: blake3 (domain
/// [`FIAT_SHAMIR_DOMAIN`]) of its signed header hash.
pub fn fiat_shamir_seed(receipt: &Receipt) -> Result<[u8; 32], EncodeError> {
    Ok(domain_hash(FIAT_SHAMIR_DOMAIN, &receipt.header_hash()?))
}

/// Append `count` non-interactive spot checks to `receipt`, opened from
/// `commitment` and signed by `key` (the provider, as its own auditor).
/// `prompt` and `output` are the request's token ids.
pub fn attach_self_audit(
    receipt: &mut Receipt,
    commitment: &Commitment,
    prompt: &[u32],
    output: &[u32],
    key: &NodeKey,
    count: u32,
) -> Result<(), SelfAuditError> {
    let seed = fiat_shamir_seed(receipt)?;
    let cells = challenge_cells(receipt, &seed, count)?;
    let openings = open_cells(commitment, prompt, output, &cells)?.to_bytes()?;
    let header = receipt.header_hash()?;
    receipt.audits.push(AuditEntry::signed(
        &header,
        seed,
        cells,
        openings,
        Verdict::Pass,
        key,
    )?);
    Ok(())
}
