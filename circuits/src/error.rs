//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong while building, proving or verifying a CU statement.
///
/// Malformed input (out-of-range fields, bad bytes, a key for another circuit) is
/// always a distinct variant from [`CircuitError::ProofRejected`], which means the
/// input was well formed and the pairing check said no.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CircuitError {
    /// A statement field is at or above [`crate::INPUT_BOUND`].
    #[error("{field} = {value} is out of range (must be < 2^32)")]
    OutOfRange {
        /// Name of the offending field.
        field: &'static str,
        /// The value supplied.
        value: u64,
    },
    /// The request shape is invalid: `n_gen == 0`, or `start` is not below the
    /// forwarded end `T = n_prompt + n_gen - 1` (when `T > 0`).
    #[error("invalid request: n_prompt = {n_prompt}, n_gen = {n_gen}, start = {start}")]
    InvalidRequest {
        /// Prompt tokens.
        n_prompt: u64,
        /// Generated tokens.
        n_gen: u64,
        /// First forwarded position.
        start: u64,
    },
    /// The claimed FLOPs are not what the formula gives (`expected` is `None` when
    /// the formula overflows `u128`). Raised by [`crate::prove`] before proving.
    #[error("claimed FLOPs {claimed} do not match the formula (expected {expected:?})")]
    FlopsMismatch {
        /// FLOPs in the statement.
        claimed: u128,
        /// FLOPs from [`crate::flops`].
        expected: Option<u128>,
    },
    /// The proof is well formed but does not verify against this statement and key.
    #[error("proof does not verify for this statement")]
    ProofRejected,
    /// Bytes that should hold a proof or key could not be decoded.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded ("proof", "verifying key", "proving key").
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The underlying proof system failed (should not happen for valid statements).
    #[error("proof system error: {0}")]
    ProofSystem(String),
}
