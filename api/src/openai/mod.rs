//! The OpenAI wire format: requests (checked and typed) and answers.

mod chat;
mod completions;
mod logprobs;
mod params;
mod response;

pub(crate) use chat::ChatRequest;
pub(crate) use completions::{CompletionRequest, Prompt};
pub(crate) use logprobs::{ChoiceLogprobs, describe};
pub(crate) use params::{MAX_CHOICES, Params};
pub(crate) use response::{ChoiceOut, Kind, Meta, Usage};
