//! Streamed answers: server-sent events exactly as the OpenAI API sends them.
//!
//! Chat: a role chunk, content chunks, a finish chunk (`finish_reason` and
//! the `forge` receipt object), the usage chunk (`choices: []`) when
//! `stream_options.include_usage`, then `data: [DONE]`. Text completions
//! have no role chunk. Keep-alive comments flow while waiting. If the client
//! goes away, the body stream is dropped, which closes the event channel;
//! the engine thread sees it and cancels the sequence.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::generate::finish_name;
use crate::error::ApiError;
use crate::openai::{Kind, Meta, Usage};
use crate::scheduler::{Done, Event};

struct State {
    rx: Option<UnboundedReceiver<Event>>,
    meta: Meta,
    done: Option<Done>,
    out: VecDeque<SseEvent>,
    timeout_secs: u64,
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

fn finished() -> SseEvent {
    SseEvent::default().data("[DONE]")
}

impl State {
    /// Turns one engine event into SSE events; returns false at the end.
    fn on(&mut self, ev: Option<Event>) -> bool {
        match ev {
            Some(Event::Token(t)) => self.out.push_back(data(&self.meta.content_chunk(&t))),
            Some(Event::Done(d)) => {
                if !d.tail.is_empty() && !d.timed_out {
                    self.out.push_back(data(&self.meta.content_chunk(&d.tail)));
                }
                self.done = Some(d);
            }
            Some(Event::Receipt(r)) => {
                match (r, self.done.take()) {
                    (_, Some(d)) if d.timed_out => self.error(ApiError::timeout(self.timeout_secs)),
                    (Ok(forge), Some(d)) => {
                        self.out.push_back(data(&self.meta.finish_chunk(finish_name(&d), forge.as_ref())));
                        if self.meta.include_usage {
                            let usage = Usage { prompt_tokens: d.prompt_tokens, completion_tokens: d.completion_tokens };
                            self.out.push_back(data(&self.meta.usage_chunk(usage, forge.as_ref())));
                        }
                        self.out.push_back(finished());
                    }
                    (Err(e), _) => self.error(ApiError::internal(format!("the receipt failed: {e}"))),
                    (Ok(_), None) => self.error(ApiError::internal("the receipt came before the end of generation")),
                }
                return false;
            }
            Some(Event::Failed(e)) => {
                self.error(ApiError::internal(e));
                return false;
            }
            None => {
                self.error(ApiError::internal("the engine stopped before answering"));
                return false;
            }
        }
        true
    }

    /// An error inside a stream: a `data:` event with the envelope (what the
    /// OpenAI SDKs raise as an `APIError`), then the end.
    fn error(&mut self, e: ApiError) {
        tracing::warn!(error = %e, "stream ended with an error");
        self.out.push_back(data(&e.body()));
        self.out.push_back(finished());
    }
}

/// The SSE response for one request's events.
pub(crate) fn sse(rx: UnboundedReceiver<Event>, meta: Meta, timeout_secs: u64, keep_alive: Duration) -> Response {
    let mut out = VecDeque::new();
    if meta.kind == Kind::Chat {
        out.push_back(data(&meta.role_chunk()));
    }
    let state = State { rx: Some(rx), meta, done: None, out, timeout_secs };
    let events = stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(ev), st));
            }
            let rx = st.rx.as_mut()?;
            let ev = rx.recv().await;
            if !st.on(ev) {
                // Drop the receiver now: nothing more will be read.
                st.rx = None;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive")).into_response()
}
