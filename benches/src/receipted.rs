//! One benchmark prompt generated on SmolLM2 with a commitment, and its
//! signed receipt: what the examples that time spot checks and offline
//! verification start from.

use std::ops::ControlFlow;

use anyhow::{Context, Result};
use forge_engine::{Backend, GenerateRequest, Generation, Model, TraceSink, generate};
use forge_proofs::{Commitment, CommitmentSink, NodeKey, Receipt, ReceiptBuilder};
use rayon::ThreadPool;

use crate::prompts::BenchPrompt;
use crate::util::default_model_path;

/// A generation with its commitment and receipt.
pub struct Receipted {
    /// The pulled SmolLM2, its weights in huge pages as the proofs
    /// benchmark runs it.
    pub model: Model,
    /// The 2-thread pool it ran on.
    pub pool: ThreadPool,
    /// The provider's key (a fixed secret, so runs are comparable).
    pub key: NodeKey,
    /// The request (the prompt at full length, greedy).
    pub req: GenerateRequest,
    /// The generation.
    pub generation: Generation,
    /// Its committed trace.
    pub commitment: Commitment,
    /// The signed receipt, with its CU proof and no audits.
    pub receipt: Receipt,
}

/// Generates `max_tokens` greedy tokens for `prompt` on the pulled SmolLM2
/// with a commitment sink, and signs the receipt.
pub fn receipted(prompt: &BenchPrompt, max_tokens: usize) -> Result<Receipted> {
    let path = default_model_path().context("no model: run `forge-node pull` first")?;
    let model = Model::load(&path, Backend::Cpu)?;
    model.use_huge_pages();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    let key = NodeKey::from_secret(&[42; 32]);
    let req = prompt.full_length_request(&model, max_tokens)?;
    let mut sink = CommitmentSink::new(model.config().d_model)?;
    let generation = pool.install(|| {
        generate(&model, &req, Some(&mut sink as &mut dyn TraceSink), |_| {
            ControlFlow::Continue(())
        })
    })?;
    let commitment = sink.finish()?;
    let receipt = ReceiptBuilder::new(&model, &key, forge_circuits::canonical_pk()).build(
        [7; 16],
        &req,
        &generation,
        &commitment,
    )?;
    Ok(Receipted {
        model,
        pool,
        key,
        req,
        generation,
        commitment,
        receipt,
    })
}
