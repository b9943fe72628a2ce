//! What the non-streamed and the streamed answer of one request share: the
//! response metadata, the receipt ids, the deadline, and each choice's
//! progress as its events arrive.

use std::sync::Arc;

use axum::http::HeaderValue;
use forge_engine::{FinishReason, Model, TokenLogprobs};

use crate::error::ApiError;
use crate::forge_info::{ForgeInfo, summary};
use crate::openai::{ChoiceLogprobs, Kind, Meta, Usage, describe};
use crate::scheduler::Done;

/// One request's answer in the making.
pub(crate) struct Answer {
    /// What every chunk or response repeats.
    pub(crate) meta: Meta,
    /// For the texts of tokens in log-probabilities.
    pub(crate) model: Arc<Model>,
    /// The receipt id of each choice, in choice order (known at admission).
    pub(crate) receipt_ids: Vec<String>,
    /// When the request, receipts included, must be answered.
    pub(crate) deadline: tokio::time::Instant,
    /// The node's per-request limit, for messages.
    pub(crate) timeout_secs: u64,
    /// Per choice.
    pub(crate) choices: Vec<ChoiceState>,
}

/// One choice's progress.
pub(crate) struct ChoiceState {
    /// Its text so far (non-streamed answers only).
    pub(crate) text: String,
    /// Its log-probabilities not yet sent, when asked.
    pub(crate) logprobs: Option<ChoiceLogprobs>,
    /// Set when generation ended.
    pub(crate) done: Option<Done>,
    /// Set when its receipt arrived (`None` inside: nothing was forwarded).
    pub(crate) receipt: Option<Option<ForgeInfo>>,
}

impl Answer {
    /// `n` choices, with log-probabilities if `logprobs`; text completions'
    /// offsets start after `prompt_chars` characters.
    pub(crate) fn new(
        meta: Meta,
        model: Arc<Model>,
        receipt_ids: Vec<String>,
        deadline: tokio::time::Instant,
        timeout_secs: u64,
        logprobs: bool,
        prompt_chars: usize,
    ) -> Self {
        let kind = meta.kind;
        let choices = receipt_ids
            .iter()
            .map(|_| ChoiceState {
                text: String::new(),
                logprobs: logprobs.then(|| ChoiceLogprobs::new(kind, prompt_chars)),
                done: None,
                receipt: None,
            })
            .collect();
        Self {
            meta,
            model,
            receipt_ids,
            deadline,
            timeout_secs,
            choices,
        }
    }

    /// The kind of API.
    pub(crate) fn kind(&self) -> Kind {
        self.meta.kind
    }

    /// Choice `index`, or a 500 if the engine named a choice this request
    /// does not have (it never should: the indices are the handler's own).
    pub(crate) fn choice(&mut self, index: usize) -> Result<&mut ChoiceState, ApiError> {
        self.choices
            .get_mut(index)
            .ok_or_else(|| ApiError::internal(format!("an event for unknown choice {index}")))
    }

    /// Records a token's log-probabilities for choice `index`, if asked.
    pub(crate) fn push_logprobs(
        &mut self,
        index: usize,
        lp: Option<&TokenLogprobs>,
    ) -> Result<(), ApiError> {
        let model = Arc::clone(&self.model);
        if let (Some(acc), Some(lp)) = (self.choice(index)?.logprobs.as_mut(), lp) {
            acc.push(describe(model.tokenizer(), lp));
        }
        Ok(())
    }

    /// Whether every choice has its receipt.
    pub(crate) fn all_receipted(&self) -> bool {
        self.choices.iter().all(|c| c.receipt.is_some())
    }

    /// Usage over every finished choice: the prompt once, completions summed.
    pub(crate) fn usage(&self) -> Usage {
        // Every choice has the same prompt.
        let done: Vec<&Done> = self
            .choices
            .iter()
            .filter_map(|c| c.done.as_ref())
            .collect();
        Usage {
            prompt_tokens: done.first().map_or(0, |d| d.prompt_tokens),
            completion_tokens: done.iter().map(|d| d.completion_tokens).sum(),
        }
    }

    /// The `forge` summary over the receipts that exist.
    pub(crate) fn forge(&self) -> serde_json::Value {
        let infos: Vec<&ForgeInfo> = self
            .choices
            .iter()
            .filter_map(|c| c.receipt.as_ref()?.as_ref())
            .collect();
        summary(&infos)
    }

    /// `x-forge-receipt`: every choice's receipt id, comma-separated.
    pub(crate) fn receipt_header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.receipt_ids.join(",")).ok()
    }

    /// The error for a deadline that passed while waiting for events: while
    /// generating, the ordinary 408; once every choice has finished,
    /// the receipt workers are late, and the error says where the receipts
    /// will appear. Logged either way, since the client gets no receipt.
    pub(crate) fn deadline_passed(&self) -> ApiError {
        let ids = self.receipt_ids.join(",");
        let generated = self
            .choices
            .iter()
            .all(|c| c.done.as_ref().is_some_and(|d| !d.timed_out));
        if generated {
            tracing::warn!(receipts = %ids, limit_secs = self.timeout_secs, "receipts not recorded within the request time limit");
            ApiError::receipt_timeout(self.timeout_secs, &self.receipt_ids)
        } else {
            tracing::warn!(receipts = %ids, limit_secs = self.timeout_secs, "generation ran past the request time limit");
            ApiError::timeout(self.timeout_secs)
        }
    }
}

/// The OpenAI name of a finish reason a client can see.
pub(crate) fn finish_name(done: &Done) -> &'static str {
    match done.finish {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}
