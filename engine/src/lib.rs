//! # forge-engine
//!
//! Forge's inference engine: it loads a Llama-family model from a GGUF file
//! (Q4_1, Q8_0, F16 and F32 tensors), tokenizes with the file's byte-level BPE
//! vocabulary and ChatML template, runs the transformer, samples tokens from
//! a seeded counter-based RNG, and counts the exact FLOPs of what it forwarded.
//!
//! Two backends run the same transformer:
//! - [`Backend::Cpu`] (default): Forge's CPU kernels on the quantised weights,
//!   batch-invariant by construction, so a layer re-executed alone for one
//!   position ([`Model::replay_layer`]) reproduces the committed bits;
//! - [`Backend::Flex`] / `Wgpu` / `Cuda`: burn tensors on a burn `Device`,
//!   picked at run time (wgpu and cuda behind cargo features).
//!
//! A [`TraceSink`] attached to a generation receives the residual stream
//! after every layer at every forwarded position; the engine knows nothing of
//! what the sink does with it (Forge's proofs crate commits to it).
//!
//! ```no_run
//! use forge_engine::{Backend, ChatMessage, GenerateRequest, Model, SamplingParams, generate};
//! use std::ops::ControlFlow;
//!
//! let model = Model::load("model.gguf".as_ref(), Backend::Cpu)?;
//! let prompt = model.chat_template().unwrap().render(
//!     &[ChatMessage::new("system", "You are a helpful assistant."),
//!       ChatMessage::new("user", "What is the capital of France?")], true)?;
//! let req = GenerateRequest {
//!     prompt: model.tokenizer().encode(&prompt)?,
//!     max_tokens: 32,
//!     sampling: SamplingParams::greedy(),
//!     stop: vec![],
//! };
//! let out = generate(&model, &req, None, |_| ControlFlow::Continue(()))?;
//! println!("{} ({} FLOPs)", out.text, out.flops);
//! # Ok::<(), forge_engine::EngineError>(())
//! ```

mod chat;
mod config;
mod detokenize;
mod error;
mod flops;
mod generate;
pub mod gguf;
mod heap;
#[allow(unsafe_code)]
mod kernels;
mod logprobs;
mod model;
pub mod quant;
mod sampling;
pub mod testing;
mod tokenizer;
mod trace;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::ModelConfig;
pub use detokenize::Detokenizer;
pub use error::{EngineError, Result};
pub use flops::{
    FLOPS_PER_CU, ForwardWork, cu_f64, lm_head_flops, milli_cu, position_flops, projection_flops,
    request_flops,
};
pub use generate::{
    FinishReason, GenerateRequest, Generation, Sequence, StepEvent, TokenEvent, generate, step,
    validate,
};
/// IEEE binary16, the element type of the CPU engine's key/value cache (from
/// the `half` crate), as [`TraceSink::record_keys_values`] hands it.
pub use half::f16;
pub use kernels::{Isa, KvValue, Numerics, narrow_f16_exact, prefetch_lines, widen_f16};
pub use logprobs::TokenLogprobs;
pub use model::{Backend, BatchItem, CellReplay, Model, Session};
pub use sampling::{SamplingParams, argmax, sample, uniform};
pub use tokenizer::Tokenizer;
pub use trace::{TraceRecorder, TraceSink, push_kv_rows};
