//! Why a spot check failed.

use forge_engine::EngineError;
use thiserror::Error;

use crate::codec::EncodeError;
use crate::merkle::{Hash, MerkleError};
use crate::receipt::{ModelDims, VerifyError};

/// Why a spot check failed. Every variant but [`SpotError::Engine`] and
/// [`SpotError::Format`] is evidence against the provider.
#[derive(Debug, Error)]
pub enum SpotError {
    /// The receipt cannot be encoded (a field above its bound).
    #[error("format: {0}")]
    Format(#[from] EncodeError),
    /// The receipt's fields contradict each other (run
    /// [`crate::Receipt::verify_offline`] first).
    #[error("receipt: {0}")]
    Receipt(VerifyError),
    /// The receipt names another model than the verifier's weights.
    #[error("model: verifier has {}, receipt names {}", crate::hex::encode(.expected), crate::hex::encode(.received))]
    WrongModel {
        /// The verifier's model id.
        expected: Hash,
        /// The receipt's.
        received: Hash,
    },
    /// The receipt's dimensions are not the verifier's model's.
    #[error("model dimensions: expected {expected:?}, receipt has {received:?}")]
    ConfigMismatch {
        /// The verifier's model.
        expected: ModelDims,
        /// The receipt's.
        received: ModelDims,
    },
    /// Opened tokens do not match the receipt's token hash or count.
    #[error("the opened {which} tokens do not match the receipt")]
    TokensMismatch {
        /// `prompt` or `output`.
        which: &'static str,
    },
    /// The receipt reused a cached prefix: rows before `start` were never
    /// committed, so layers cannot be re-executed from committed inputs.
    #[error("positions before {start} are not committed; cells cannot be replayed")]
    PrefixNotCommitted {
        /// The receipt's first forwarded position.
        start: u32,
    },
    /// The openings answer other cells than the challenge selected.
    #[error("cell {index}: challenged {expected:?}, opened {received:?}")]
    CellsMismatch {
        /// Index of the first differing cell.
        index: usize,
        /// The challenged cell.
        expected: Option<(u32, u32)>,
        /// The opened cell.
        received: Option<(u32, u32)>,
    },
    /// An opening has the wrong layer, positions or row width.
    #[error("cell ({layer}, {pos}): {problem}")]
    MalformedOpening {
        /// Cell layer.
        layer: u32,
        /// Cell position.
        pos: u32,
        /// What is wrong.
        problem: &'static str,
    },
    /// An opening's Merkle proof does not lead to the receipt's root.
    #[error("cell ({layer}, {pos}): {source}")]
    Opening {
        /// Cell layer.
        layer: u32,
        /// Cell position.
        pos: u32,
        /// Why the proof failed.
        source: MerkleError,
    },
    /// Re-executing the layer does not give the committed row.
    #[error(
        "cell ({layer}, {pos}): replayed row differs ({what}: relative L2 {rel_l2:e}, tolerance {tolerance:e})"
    )]
    ReplayMismatch {
        /// Cell layer.
        layer: u32,
        /// Cell position.
        pos: u32,
        /// `output` or `keys/values` (the position's own key/value row).
        what: &'static str,
        /// ‖replayed − committed‖ / ‖committed‖.
        rel_l2: f64,
        /// The allowed error (0 = bit-exact).
        tolerance: f64,
    },
    /// The committed last-layer row does not sample the committed token.
    #[error(
        "generation step {step}: the committed row samples token {expected}, the receipt has {received}"
    )]
    TokenMismatch {
        /// Generation step.
        step: u32,
        /// The token the sampler gives.
        expected: u32,
        /// The token the receipt committed.
        received: u32,
    },
    /// The verifier's engine failed (not evidence against the provider).
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
}
