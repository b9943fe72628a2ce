//! What flows between a handler, the engine thread and the receipt workers.

use std::time::Instant;

use forge_engine::{FinishReason, GenerateRequest, Generation, Sequence, TokenLogprobs};
use forge_proofs::CommitmentSink;
use tokio::sync::mpsc::UnboundedSender;

use crate::accounts::Charge;
use crate::forge_info::ForgeInfo;

/// One sequence (one choice of a request), submitted to the engine thread.
pub(crate) struct Job {
    /// The node's id of this sequence: the receipt's request id, and the
    /// receipt id clients see (known before any work, unlike the receipt's hash).
    pub(crate) id: [u8; 16],
    /// The generation, with its commitment sink attached.
    pub(crate) seq: Sequence<CommitmentSink>,
    /// Where its events go; closed when the client went away.
    pub(crate) events: Events,
    /// When the handler submitted it.
    pub(crate) submitted: Instant,
    /// When it must be finished (queue wait included).
    pub(crate) deadline: Instant,
    /// Who pays, and the credit held until the receipt is recorded.
    pub(crate) charge: Charge,
    /// The price quoted on arrival, in thousandths of a CU per CU.
    pub(crate) price_milli_per_cu: u64,
}

/// The sending side of a request's event channel, for one of its choices:
/// every event goes out tagged with the choice's index, so the `n` choices
/// of a request share one channel (and one disconnect).
#[derive(Debug, Clone)]
pub(crate) struct Events {
    index: usize,
    tx: UnboundedSender<(usize, Event)>,
}

impl Events {
    /// The sender for choice `index`.
    pub(crate) fn new(index: usize, tx: UnboundedSender<(usize, Event)>) -> Self {
        Self { index, tx }
    }

    /// The choice's index.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Sends `ev`; a client that went away is not an error here (the engine
    /// notices through [`Events::is_closed`]).
    pub(crate) fn send(&self, ev: Event) {
        let _ = self.tx.send((self.index, ev));
    }

    /// Whether the handler dropped the receiving side (the client went away).
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
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

/// An event of one choice, in order: tokens, `Done`, then `Receipt`
/// (or `Failed` at any point).
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A new token: the text that became final with it (possibly empty) and,
    /// when the request asked, its log-probabilities. Sent only when one of
    /// the two has something in it.
    Token {
        /// Text that became final.
        text: String,
        /// The token's log-probabilities.
        logprobs: Option<TokenLogprobs>,
    },
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
    pub(crate) events: Events,
    pub(crate) charge: Charge,
    pub(crate) price_milli_per_cu: u64,
}
