//! The non-streamed answer: every choice's events gathered, then one JSON
//! response. The wait, receipts included, ends at the request's deadline.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc::UnboundedReceiver;

use super::answer::{Answer, finish_name};
use super::generate::RECEIPT_HEADER;
use crate::error::ApiError;
use crate::openai::ChoiceOut;
use crate::scheduler::Event;

/// Waits for every choice's receipt (or the deadline), then answers.
pub(crate) async fn collect(
    mut rx: UnboundedReceiver<(usize, Event)>,
    mut answer: Answer,
) -> Result<Response, ApiError> {
    while !answer.all_receipted() {
        let Ok(next) = tokio::time::timeout_at(answer.deadline, rx.recv()).await else {
            return Err(answer.deadline_passed());
        };
        let Some((i, ev)) = next else {
            return Err(ApiError::internal("the engine stopped before answering"));
        };
        match ev {
            Event::Token { text, logprobs } => {
                answer.choice(i)?.text.push_str(&text);
                answer.push_logprobs(i, logprobs.as_ref())?;
            }
            Event::Done(d) => {
                let c = answer.choice(i)?;
                c.text.push_str(&d.tail);
                c.done = Some(d);
            }
            Event::Receipt(Ok(info)) => answer.choice(i)?.receipt = Some(info),
            Event::Receipt(Err(e)) => {
                return Err(ApiError::internal(format!("the receipt failed: {e}")));
            }
            Event::Failed(e) => return Err(ApiError::internal(e)),
        }
    }
    let mut choices = Vec::with_capacity(answer.choices.len());
    for (index, c) in answer.choices.iter_mut().enumerate() {
        let done = c
            .done
            .as_ref()
            .ok_or_else(|| ApiError::internal("the receipt came before the end of generation"))?;
        if done.timed_out {
            return Err(ApiError::timeout(answer.timeout_secs));
        }
        choices.push(ChoiceOut {
            index,
            text: std::mem::take(&mut c.text),
            finish_reason: finish_name(done),
            logprobs: c.logprobs.as_mut().map(|l| l.take_json()),
        });
    }
    let body = answer
        .meta
        .response(&choices, answer.usage(), answer.forge());
    let mut res = (StatusCode::OK, Json(body)).into_response();
    if let Some(v) = answer.receipt_header() {
        res.headers_mut().insert(RECEIPT_HEADER, v);
    }
    Ok(res)
}
