//! The OpenAI wire format: requests (checked and typed) and answers.

mod chat;
mod completions;
mod params;
mod response;

pub(crate) use chat::ChatRequest;
pub(crate) use completions::{CompletionRequest, Prompt};
pub(crate) use params::Params;
pub(crate) use response::{Kind, Meta, Usage};
