//! Errors of the trace commitment.

use thiserror::Error;

use crate::MerkleError;

/// Why a trace could not be committed or opened.
#[derive(Debug, Error)]
pub enum CommitError {
    /// Hashing the rows panicked.
    #[error("hashing the trace panicked")]
    WorkerPanicked,
    /// Spilling rows to, or reading them back from, the temp file failed.
    #[error("row spill file: {0}")]
    Spill(#[source] std::io::Error),
    /// A `record` or `record_kv` call handed a slice that is not whole rows
    /// of the width its kind has (`d_model`, or the first key/value width).
    #[error("layer {layer}: {len} values is not whole rows of {width}")]
    RaggedRows {
        /// The layer recorded.
        layer: usize,
        /// Values handed over.
        len: usize,
        /// Row width.
        width: usize,
    },
    /// Positions of a layer did not arrive in order without gaps.
    #[error("layer {layer}: rows for position {got} arrived, expected position {expected}")]
    OutOfOrder {
        /// The layer recorded.
        layer: usize,
        /// The next position the layer needed.
        expected: usize,
        /// The first position handed over.
        got: usize,
    },
    /// Key/value rows of a trace kept in f16 ([`crate::DType::F32KvF16`])
    /// came as f32 values that are not f16 values (a backend whose cache is
    /// f32 needs a sink of [`crate::DType::F32`]).
    #[error("layer {layer} position {pos}: key/value rows kept in f16: {source}")]
    NotF16 {
        /// The layer.
        layer: usize,
        /// Position of the first row of the call's rows that did not fit.
        pos: usize,
        /// Which value.
        source: crate::MerkleError,
    },
    /// A layer or position does not fit the receipt's `u32` fields.
    #[error("layer {layer} position {pos} does not fit in u32")]
    TooLarge {
        /// The layer.
        layer: usize,
        /// The position.
        pos: usize,
    },
    /// Nothing was recorded.
    #[error("no rows were recorded")]
    Empty,
    /// Output rows arrived but the keys and values of some layer did not
    /// (a sink fed by something other than the engine's forward pass).
    #[error(
        "{layers} layers of rows but {kv_layers} layers of keys/values: every layer's keys and values are committed"
    )]
    MissingKeyValues {
        /// Layers with output rows.
        layers: usize,
        /// Layers with key/value rows.
        kv_layers: usize,
    },
    /// Layers covered different positions (every layer, and every layer's
    /// keys and values, must cover the same ones).
    #[error(
        "{rows} of layer {layer} cover positions {start}..{end}, layer 0's rows cover {expected_start}..{expected_end}"
    )]
    Uneven {
        /// `rows` or `keys/values`.
        rows: &'static str,
        /// The layer that differs.
        layer: usize,
        /// Its first position.
        start: usize,
        /// One past its last position.
        end: usize,
        /// Layer 0's first position.
        expected_start: usize,
        /// One past layer 0's last position.
        expected_end: usize,
    },
    /// An opening asked for rows that were not committed.
    #[error(
        "layer {layer}, positions {first}..={last} are not in the commitment ({layers} layers, positions {start}..{end})"
    )]
    NotCommitted {
        /// Requested layer.
        layer: usize,
        /// First requested position.
        first: usize,
        /// Last requested position.
        last: usize,
        /// Layers committed.
        layers: usize,
        /// First committed position.
        start: usize,
        /// One past the last committed position.
        end: usize,
    },
    /// A range proof could not be produced or was rejected.
    #[error(transparent)]
    Merkle(#[from] MerkleError),
}
