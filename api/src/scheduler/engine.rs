//! The engine thread: continuous batching over every active sequence.
//!
//! It owns the decode loop. Requests arrive as groups of jobs (one per
//! choice, `n` of them); jobs are admitted between steps, up to
//! `max_concurrent` active sequences, the rest wait in order;
//! each step forwards all active sequences together with
//! [`forge_engine::step`]; sequences whose client went away or whose time ran
//! out are cancelled (their work so far is still receipted); finished ones go
//! to the receipt workers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use forge_engine::{Model, Sequence, StepEvent, step};
use forge_proofs::CommitmentSink;

use super::admission::Admission;
use super::job::{Done, Event, Finished, Job};
use crate::metrics::Metrics;

/// Prompt tokens that newly admitted sequences may bring into one step.
///
/// Forwarding every new prompt in the same step makes one huge step: its
/// cost grows faster than its rows (most likely because the matmul kernels
/// walk all activation rows once per weight row, and a block of a thousand
/// rows no longer fits in cache), and every running sequence waits for it. Measured with `forge-bench serve` on SmolLM2 (2 threads):
/// 8 prompts admitted together (1,344 tokens) took 24 s in one step, where
/// the same prompts one by one took about 16 s. Beyond this budget a new
/// sequence waits for a later step; the first waiting one is always taken,
/// so a long prompt still goes (alone).
const PREFILL_TOKENS_PER_STEP: usize = 256;

struct Active {
    job: Job,
    /// Bytes of text sent so far.
    emitted: usize,
    last_token: Option<Instant>,
    timed_out: bool,
}

/// Runs until every sender of `rx` is gone.
pub(crate) fn run(
    model: Arc<Model>,
    rx: Receiver<Vec<Job>>,
    finisher: SyncSender<Finished>,
    max_concurrent: usize,
    slots: &Admission,
    metrics: Arc<Metrics>,
) {
    let mut rx = rx;
    // Block (outside the rayon pool) until there is work, then drive the
    // batch on a rayon worker so this thread computes its share of every
    // parallel kernel instead of waiting for the pool.
    while let Ok(first) = rx.recv() {
        let model = Arc::clone(&model);
        let finisher = finisher.clone();
        let metrics = Arc::clone(&metrics);
        rx = rayon::scope(move |_| {
            // Jobs taken off the queue but not yet admitted: a group may be
            // larger than the free slots, and its jobs keep their order.
            let mut waiting: VecDeque<Job> = first.into();
            let mut active = Vec::new();
            loop {
                while active.len() < max_concurrent {
                    if let Some(job) = waiting.pop_front() {
                        admit(&mut active, job, &metrics);
                    } else if let Ok(group) = rx.try_recv() {
                        waiting.extend(group);
                    } else {
                        break;
                    }
                }
                if active.is_empty() {
                    break;
                }
                step_all(&model, &mut active, &metrics);
                retire(&model, &mut active, &finisher, slots, &metrics);
            }
            rx
        });
    }
}

fn admit(active: &mut Vec<Active>, job: Job, metrics: &Metrics) {
    metrics.queue_depth.dec();
    metrics.active.inc();
    active.push(Active {
        job,
        emitted: 0,
        last_token: None,
        timed_out: false,
    });
}

fn step_all(model: &Model, active: &mut [Active], metrics: &Metrics) {
    let now = Instant::now();
    for a in active.iter_mut() {
        if a.job.events.is_closed() {
            a.job.seq.cancel();
        } else if now >= a.job.deadline && !a.job.seq.is_done() {
            a.timed_out = true;
            a.job.seq.cancel();
        }
    }
    // Running sequences always step; new ones (prefill) within the budget.
    let mut budget = PREFILL_TOKENS_PER_STEP;
    let mut took_new = false;
    let take: Vec<bool> = active
        .iter()
        .map(|a| {
            let seq = &a.job.seq;
            if seq.is_done() {
                return false;
            }
            if !seq.tokens().is_empty() {
                return true;
            }
            let n = seq.request().prompt.len();
            if took_new && n > budget {
                return false;
            }
            took_new = true;
            budget = budget.saturating_sub(n);
            true
        })
        .collect();
    // `step` returns one event per sequence passed in, in order.
    let stepped: Vec<usize> = (0..active.len()).filter(|&i| take[i]).collect();
    if stepped.is_empty() {
        return;
    }
    let mut seqs: Vec<&mut Sequence<CommitmentSink>> = active
        .iter_mut()
        .zip(&take)
        .filter(|(_, t)| **t)
        .map(|(a, _)| &mut a.job.seq)
        .collect();
    let started = Instant::now();
    match step(model, &mut seqs) {
        Ok(events) => {
            metrics.engine_steps.inc();
            metrics.batch_rows.observe(seqs.len() as f64);
            metrics
                .step_seconds
                .observe(started.elapsed().as_secs_f64());
            drop(seqs);
            for (i, ev) in stepped.into_iter().zip(events) {
                if let Some(ev) = ev {
                    deliver(model, &mut active[i], ev, metrics);
                }
            }
        }
        Err(e) => {
            // A step fails only on inputs `validate` already refused; if it
            // happens anyway, every sequence in the batch is failed.
            tracing::error!(error = %e, "engine step failed");
            drop(seqs);
            for a in active.iter_mut().filter(|a| !a.job.seq.is_done()) {
                a.job
                    .events
                    .send(Event::Failed(format!("the engine failed: {e}")));
                a.job.seq.cancel();
            }
        }
    }
}

fn deliver(model: &Model, a: &mut Active, ev: StepEvent, metrics: &Metrics) {
    let now = Instant::now();
    match a.last_token {
        None => metrics
            .ttft
            .observe(now.duration_since(a.job.submitted).as_secs_f64()),
        Some(t) => metrics.itl.observe(now.duration_since(t).as_secs_f64()),
    }
    a.last_token = Some(now);
    metrics.completion_tokens.inc();
    // A final stop token is not part of the answer's text, and OpenAI lists
    // no log-probability for it either.
    let logprobs = ev
        .logprobs
        .filter(|_| !model.tokenizer().stop_ids().contains(&ev.token));
    if !ev.text.is_empty() || logprobs.is_some() {
        a.emitted += ev.text.len();
        a.job.events.send(Event::Token {
            text: ev.text,
            logprobs,
        });
    }
}

fn retire(
    model: &Model,
    active: &mut Vec<Active>,
    finisher: &SyncSender<Finished>,
    slots: &Admission,
    metrics: &Metrics,
) {
    let mut i = 0;
    while i < active.len() {
        if !active[i].job.seq.is_done() {
            i += 1;
            continue;
        }
        let a = active.swap_remove(i);
        metrics.active.dec();
        slots.give_back(1);
        let Job {
            id,
            seq,
            events,
            charge,
            price_milli_per_cu,
            ..
        } = a.job;
        let request = seq.request().clone();
        let (generation, sink) = seq.into_result(model);
        let tail = generation.text.get(a.emitted..).unwrap_or("").to_string();
        if !generation.tokens.is_empty() {
            metrics.prompt_tokens.add(generation.prompt_tokens as u64);
        }
        events.send(Event::Done(Done {
            finish: generation.finish_reason,
            timed_out: a.timed_out,
            tail,
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.tokens.len(),
        }));
        let finished = Finished {
            id,
            request,
            generation,
            sink,
            events,
            charge,
            price_milli_per_cu,
        };
        if let Err(e) = finisher.send(finished) {
            e.0.events.send(Event::Receipt(Err(
                "the receipt workers have stopped".into()
            )));
        }
    }
}
