//! What chat and text completions share once the prompt is tokenized:
//! quota, one job per choice submitted to the scheduler, and the answer
//! (collected or streamed).

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use forge_engine::{ForwardWork, GenerateRequest, Sequence, milli_cu, request_flops};
use forge_proofs::CommitmentSink;
use tokio::sync::mpsc::unbounded_channel;

use super::answer::Answer;
use super::{collect, stream};
use crate::accounts::{Caller, Charge};
use crate::config::ServerOptions;
use crate::error::ApiError;
use crate::openai::{Kind, MAX_CHOICES, Meta, Params};
use crate::pricing::Pricing;
use crate::scheduler::{Events, Job, charge_for, hex};
use crate::state::{AppState, Ready, unix_now};

/// Header carrying the receipt ids of an answer, one per choice, comma-separated.
pub const RECEIPT_HEADER: &str = "x-forge-receipt";

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        // Unique enough without entropy: the time and a process-wide counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        id[..8].copy_from_slice(&(t as u64).to_le_bytes());
        id[8..].copy_from_slice(&n.to_le_bytes());
    }
    id
}

/// Refuses an `n` above what this node runs together: [`MAX_CHOICES`], and
/// no more than `max_concurrent`, so that a request's choices share one batch.
pub(crate) fn check_n(options: &ServerOptions, params: &Params) -> Result<(), ApiError> {
    let cap = MAX_CHOICES.min(options.max_concurrent.max(1));
    if params.n > cap {
        return Err(ApiError::invalid_param(
            "n",
            format!(
                "`n` must be at most {cap} on this node (it was {}); each choice is a sequence with its own receipt",
                params.n
            ),
        ));
    }
    Ok(())
}

/// Holds the worst-case cost of every choice, queues them together, and
/// answers. `prompt_chars` is where text completions' `text_offset` starts.
pub(crate) async fn run(
    state: &AppState,
    ready: Arc<Ready>,
    caller: Caller,
    req: GenerateRequest,
    params: &Params,
    kind: Kind,
    prompt_chars: usize,
) -> Result<Response, ApiError> {
    check_n(state.options(), params)?;
    let n = params.n;
    let cfg = ready.model.config();
    let worst = milli_cu(request_flops(
        cfg,
        ForwardWork::for_request(req.prompt.len() as u64, req.max_tokens as u64),
    ));
    // The price floats with the load this request finds; it keeps it.
    let (busy, capacity) = ready.scheduler.load();
    let price = Pricing {
        base_milli_per_cu: state.options().price_milli_per_cu,
        surge_percent: state.options().price_surge_percent,
    }
    .quote(busy, capacity);
    state
        .metrics()
        .price
        .set(i64::try_from(price).unwrap_or(i64::MAX));
    let worst = charge_for(u64::try_from(worst).unwrap_or(u64::MAX), price);
    let charges = match caller.0 {
        None => (0..n).map(|_| Charge::default()).collect(),
        Some(account) => {
            let (holds, ledger) = (state.holds(), state.ledger());
            tokio::task::spawn_blocking(move || holds.reserve(&ledger, &account, worst, n))
                .await
                .map_err(|e| ApiError::internal(format!("quota task: {e}")))??
        }
    };
    if let Some(user) = &params.user {
        tracing::debug!(user = %user, "request for end-user");
    }
    let (tx, rx) = unbounded_channel();
    let now = Instant::now();
    let timeout = state.options().request_timeout;
    let deadline = now + timeout;
    let mut jobs = Vec::with_capacity(n);
    for (index, charge) in charges.into_iter().enumerate() {
        let choice = GenerateRequest {
            sampling: params.choice_sampling(index),
            ..req.clone()
        };
        let sink = CommitmentSink::for_model(&ready.model)
            .map_err(|e| ApiError::internal(format!("trace commitment: {e}")))?;
        let mut seq = Sequence::new(&ready.model, choice, Some(sink))
            .map_err(|e| ApiError::from_engine(e, kind.prompt_param()))?;
        if let Some(top) = params.logprobs {
            seq = seq.with_logprobs(top);
        }
        let events = Events::new(index, tx.clone());
        jobs.push(Job {
            id: random_id(),
            seq,
            events,
            submitted: now,
            deadline,
            charge,
            price_milli_per_cu: price,
        });
    }
    drop(tx);
    let ids: Vec<String> = jobs.iter().map(|j| hex(&j.id)).collect();
    let meta = Meta {
        kind,
        id: format!(
            "{}{}",
            kind.id_prefix(),
            ids.first().map_or("", String::as_str)
        ),
        created: unix_now(),
        model: ready.name.clone(),
        fingerprint: format!(
            "fp_{}_{}",
            &hex(&ready.model.model_id())[..12],
            ready.model.backend().tag()
        ),
        include_usage: params.include_usage,
    };
    ready.scheduler.submit(jobs)?;
    let answer = Answer::new(
        meta,
        Arc::clone(&ready.model),
        ids,
        tokio::time::Instant::from_std(deadline),
        timeout.as_secs(),
        params.logprobs.is_some(),
        prompt_chars,
    );
    if params.stream {
        Ok(stream::sse(rx, answer, state.options().keep_alive))
    } else {
        collect::collect(rx, answer).await
    }
}
