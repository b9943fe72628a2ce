//! What flows between a handler, the engine thread and the receipt workers.

use std::time::Instant;

use forge_engine::{FinishReason, GenerateRequest, Generation, Sequence};
use forge_proofs::CommitmentSink;
use tokio::sync::mpsc::UnboundedSender;

use crate::accounts::Charge;
use crate::forge_info::ForgeInfo;

/// One request, submitted to the engine thread.
pub(crate) struct Job {
    /// The node's id of the request (also the receipt's request id).
    pub(crate) id: [u8; 16],
    /// The generation, with its commitment sink attached.
    pub(crate) seq: Sequence<CommitmentSink>,
    /// Where its events go; closed when the client went away.
    pub(crate) events: UnboundedSender<Event>,
    /// When the handler submitted it.
    pub(crate) submitted: Instant,
    /// When it must be finished (queue wait included).
    pub(crate) deadline: Instant,
    /// Who pays, and the credit held until the receipt is recorded.
    pub(crate) charge: Charge,
}

/// How a generation ended, as the handler needs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Done {
    /// The engine's reason (`Cancelled` when the client left or time ran out).
    pub(crate) finish: FinishReason,
    /// Whether the per-request time limit ended it.
    pub(crate) timed_out: bool,
    /// Text that became final only at the end (held back while it could
    /// have been the start of a stop string or of a UTF-8 sequence).
    pub(crate) tail: String,
    /// Prompt tokens.
    pub(crate) prompt_tokens: usize,
    /// Generated tokens (a final stop token included, as in the receipt).
    pub(crate) completion_tokens: usize,
}

/// An event of one request, in order: tokens, `Done`, then `Receipt`
/// (or `Failed` at any point).
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// Text that became final with a new token (never empty).
    Token(String),
    /// Generation ended.
    Done(Done),
    /// The receipt was built and recorded (`None` when nothing was forwarded).
    Receipt(Result<Option<ForgeInfo>, String>),
    /// The node failed to run the request.
    Failed(String),
}

/// A finished generation on its way to the receipt workers.
pub(crate) struct Finished {
    pub(crate) id: [u8; 16],
    pub(crate) request: GenerateRequest,
    pub(crate) generation: Generation,
    pub(crate) sink: Option<CommitmentSink>,
    pub(crate) events: UnboundedSender<Event>,
    pub(crate) charge: Charge,
}
