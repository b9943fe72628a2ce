//! What chat and text completions share once the prompt is tokenized:
//! quota, submission to the scheduler, and the non-streamed answer.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use forge_engine::{FinishReason, ForwardWork, GenerateRequest, Sequence, milli_cu, request_flops};
use forge_proofs::CommitmentSink;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::stream;
use crate::accounts::{Caller, Charge};
use crate::error::ApiError;
use crate::forge_info::ForgeInfo;
use crate::openai::{Kind, Meta, Params, Usage};
use crate::scheduler::{Done, Event, Job, charge_for, hex};
use crate::state::{AppState, Ready, unix_now};

/// Header carrying the receipt id of a non-streamed answer.
pub const RECEIPT_HEADER: &str = "x-forge-receipt";

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // Unique enough without entropy: the time and a process-wide counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        id[..8].copy_from_slice(&(t as u64).to_le_bytes());
        id[8..].copy_from_slice(&n.to_le_bytes());
    }
    id
}

/// Holds the worst-case cost, queues the request, and answers it.
pub(crate) async fn run(
    state: &AppState,
    ready: Arc<Ready>,
    caller: Caller,
    req: GenerateRequest,
    params: &Params,
    kind: Kind,
) -> Result<Response, ApiError> {
    let cfg = ready.model.config();
    let worst = milli_cu(request_flops(cfg, ForwardWork::for_request(req.prompt.len() as u64, req.max_tokens as u64)));
    let worst = charge_for(u64::try_from(worst).unwrap_or(u64::MAX), state.options().price_milli_per_cu);
    let charge = match caller.0 {
        None => Charge::default(),
        Some(account) => {
            let (holds, ledger) = (state.holds(), state.ledger());
            tokio::task::spawn_blocking(move || holds.reserve(&ledger, &account, worst))
                .await
                .map_err(|e| ApiError::internal(format!("quota task: {e}")))??
        }
    };
    if let Some(user) = &params.user {
        tracing::debug!(user = %user, "request for end-user");
    }
    let id = random_id();
    let sink = CommitmentSink::new(cfg.d_model).map_err(|e| ApiError::internal(format!("trace commitment: {e}")))?;
    let seq = Sequence::new(&ready.model, req, Some(sink)).map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
    let (tx, rx) = unbounded_channel();
    let now = Instant::now();
    let timeout = state.options().request_timeout;
    ready.scheduler.submit(Job { id, seq, events: tx, submitted: now, deadline: now + timeout, charge })?;
    let meta = Meta {
        kind,
        id: format!("{}{}", kind.id_prefix(), hex(&id)),
        created: unix_now(),
        model: ready.name.clone(),
        fingerprint: format!("fp_{}_{}", &hex(&ready.model.model_id())[..12], ready.model.backend().tag()),
        include_usage: params.include_usage,
    };
    let timeout_secs = timeout.as_secs();
    if params.stream {
        Ok(stream::sse(rx, meta, timeout_secs, state.options().keep_alive))
    } else {
        collect(rx, meta, timeout_secs).await
    }
}

/// The OpenAI name of a finish reason a client can see.
pub(crate) fn finish_name(done: &Done) -> &'static str {
    match done.finish {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

async fn collect(mut rx: UnboundedReceiver<Event>, meta: Meta, timeout_secs: u64) -> Result<Response, ApiError> {
    let mut text = String::new();
    let mut done = None;
    let forge: Option<ForgeInfo> = loop {
        match rx.recv().await {
            Some(Event::Token(t)) => text.push_str(&t),
            Some(Event::Done(d)) => {
                text.push_str(&d.tail);
                done = Some(d);
            }
            Some(Event::Receipt(Ok(info))) => break info,
            Some(Event::Receipt(Err(e))) => return Err(ApiError::internal(format!("the receipt failed: {e}"))),
            Some(Event::Failed(e)) => return Err(ApiError::internal(e)),
            None => return Err(ApiError::internal("the engine stopped before answering")),
        }
    };
    let done = done.ok_or_else(|| ApiError::internal("the receipt came before the end of generation"))?;
    if done.timed_out {
        return Err(ApiError::timeout(timeout_secs));
    }
    let usage = Usage { prompt_tokens: done.prompt_tokens, completion_tokens: done.completion_tokens };
    let body = meta.response(&text, finish_name(&done), usage, forge.as_ref());
    let mut res = (StatusCode::OK, Json(body)).into_response();
    if let Some(f) = &forge
        && let Ok(v) = HeaderValue::from_str(&f.receipt_id)
    {
        res.headers_mut().insert(RECEIPT_HEADER, v);
    }
    Ok(res)
}
