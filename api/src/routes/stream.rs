//! Streamed answers: server-sent events exactly as the OpenAI API sends them.
//!
//! Chat: a role chunk per choice, content chunks (each carrying its token's
//! `logprobs` when asked), a finish chunk per choice (`finish_reason` and the
//! `forge` object of that choice's receipt), the usage chunk (`choices: []`,
//! with the `forge` summary of every receipt) when
//! `stream_options.include_usage`, then `data: [DONE]`. Text completions
//! have no role chunk. With `n > 1` the choices' chunks interleave as their
//! tokens come, each naming its `index`. Keep-alive comments flow while
//! waiting. If the client goes away, the body stream is dropped, which
//! closes the event channel; the engine thread sees it and cancels every
//! choice. The wait, receipts included, ends at the request's deadline with
//! an error event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::answer::{Answer, finish_name};
use super::generate::RECEIPT_HEADER;
use crate::error::ApiError;
use crate::forge_info::summary;
use crate::openai::Kind;
use crate::scheduler::Event;

struct State {
    rx: Option<UnboundedReceiver<(usize, Event)>>,
    answer: Answer,
    out: VecDeque<SseEvent>,
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

fn finished() -> SseEvent {
    SseEvent::default().data("[DONE]")
}

impl State {
    /// Turns one engine event into SSE events; returns false at the end.
    fn on(&mut self, ev: Option<(usize, Event)>) -> bool {
        match self.handle(ev) {
            Ok(more) => more,
            Err(e) => {
                self.error(e);
                false
            }
        }
    }

    fn handle(&mut self, ev: Option<(usize, Event)>) -> Result<bool, ApiError> {
        let Some((i, ev)) = ev else {
            return Err(ApiError::internal("the engine stopped before answering"));
        };
        match ev {
            Event::Token { text, logprobs } => {
                self.answer.push_logprobs(i, logprobs.as_ref())?;
                let lp = self
                    .answer
                    .choice(i)?
                    .logprobs
                    .as_mut()
                    .map(|l| l.take_json());
                self.out
                    .push_back(data(&self.answer.meta.content_chunk(i, &text, lp)));
            }
            Event::Done(d) => {
                if !d.tail.is_empty() && !d.timed_out {
                    self.out
                        .push_back(data(&self.answer.meta.content_chunk(i, &d.tail, None)));
                }
                self.answer.choice(i)?.done = Some(d);
            }
            Event::Receipt(r) => {
                let forge =
                    r.map_err(|e| ApiError::internal(format!("the receipt failed: {e}")))?;
                let timeout_secs = self.answer.timeout_secs;
                let c = self.answer.choice(i)?;
                let done = c.done.clone().ok_or_else(|| {
                    ApiError::internal("the receipt came before the end of generation")
                })?;
                if done.timed_out {
                    return Err(ApiError::timeout(timeout_secs));
                }
                let own = summary(&forge.iter().collect::<Vec<_>>());
                c.receipt = Some(forge);
                self.out.push_back(data(&self.answer.meta.finish_chunk(
                    i,
                    finish_name(&done),
                    own,
                )));
                if self.answer.all_receipted() {
                    if self.answer.meta.include_usage {
                        self.out.push_back(data(
                            &self
                                .answer
                                .meta
                                .usage_chunk(self.answer.usage(), self.answer.forge()),
                        ));
                    }
                    self.out.push_back(finished());
                    return Ok(false);
                }
            }
            Event::Failed(e) => return Err(ApiError::internal(e)),
        }
        Ok(true)
    }

    /// An error inside a stream: a `data:` event with the envelope (what the
    /// OpenAI SDKs raise as an `APIError`), then the end.
    fn error(&mut self, e: ApiError) {
        tracing::warn!(error = %e, receipts = %self.answer.receipt_ids.join(","), "stream ended with an error");
        self.out.push_back(data(&e.body()));
        self.out.push_back(finished());
    }
}

/// The SSE response for one request's events, with the receipt ids in the
/// `x-forge-receipt` header (they are known before generation starts).
pub(crate) fn sse(
    rx: UnboundedReceiver<(usize, Event)>,
    answer: Answer,
    keep_alive: Duration,
) -> Response {
    let mut out = VecDeque::new();
    if answer.kind() == Kind::Chat {
        for i in 0..answer.choices.len() {
            out.push_back(data(&answer.meta.role_chunk(i)));
        }
    }
    let header = answer.receipt_header();
    let state = State {
        rx: Some(rx),
        answer,
        out,
    };
    let events = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(ev), st));
            }
            let rx = st.rx.as_mut()?;
            let more = match tokio::time::timeout_at(st.answer.deadline, rx.recv()).await {
                Ok(ev) => st.on(ev),
                Err(_) => {
                    let e = st.answer.deadline_passed();
                    st.error(e);
                    false
                }
            };
            if !more {
                // Drop the receiver now: nothing more will be read (and a
                // generation still running sees the client gone).
                st.rx = None;
            }
        }
    });
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"))
        .into_response();
    if let Some(v) = header {
        res.headers_mut().insert(RECEIPT_HEADER, v);
    }
    res
}
