//! The engine's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a model or generating with it.
///
/// Variants carry what was expected and what was found, so a message names the
/// file, tensor or parameter at fault.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The GGUF container is malformed (bad magic, truncated, inconsistent sizes).
    #[error("malformed GGUF: {0}")]
    Gguf(String),
    /// A tensor is missing, has the wrong shape, or an unsupported type.
    #[error("tensor `{name}`: {problem}")]
    Tensor {
        /// The tensor's name in the GGUF file.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A metadata key is missing or has the wrong type.
    #[error("metadata `{key}`: {problem}")]
    Metadata {
        /// The GGUF metadata key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The model uses an architecture this engine does not run.
    #[error("unsupported architecture `{0}` (Forge runs the llama family)")]
    Architecture(String),
    /// Building or using the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The prompt plus the requested completion does not fit the context window.
    #[error(
        "context length exceeded: {prompt_tokens} prompt tokens + {max_tokens} max tokens > context length {context_length}"
    )]
    ContextLength {
        /// Tokens in the prompt.
        prompt_tokens: usize,
        /// Tokens asked for.
        max_tokens: usize,
        /// The model's context window.
        context_length: usize,
    },
    /// A request parameter is out of range.
    #[error("invalid parameter `{param}`: {problem}")]
    InvalidParameter {
        /// The parameter.
        param: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The requested compute backend is not available in this build or on this machine.
    #[error("backend `{0}` is not available: {1}")]
    Backend(String, String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

pub(crate) fn gguf_err(msg: impl Into<String>) -> EngineError {
    EngineError::Gguf(msg.into())
}

pub(crate) fn tensor_err(name: &str, problem: impl Into<String>) -> EngineError {
    EngineError::Tensor {
        name: name.to_string(),
        problem: problem.into(),
    }
}

pub(crate) fn meta_err(key: &str, problem: impl Into<String>) -> EngineError {
    EngineError::Metadata {
        key: key.to_string(),
        problem: problem.into(),
    }
}
