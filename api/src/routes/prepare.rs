//! From a checked request to an engine request: template, tokens, limits.

use forge_engine::{ChatMessage, GenerateRequest, Model, validate};

use crate::error::ApiError;
use crate::openai::{Kind, Params, Prompt};

/// The chat prompt's tokens (ChatML, ending with the assistant's turn).
pub(crate) fn chat_prompt(model: &Model, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
    let template = model.chat_template().ok_or_else(|| {
        ApiError::invalid_param(
            "messages",
            "This model has no chat template; use /v1/completions",
        )
    })?;
    let text = template
        .render(messages, true)
        .map_err(|e| ApiError::from_engine(e, "messages"))?;
    model
        .tokenizer()
        .encode(&text)
        .map_err(|e| ApiError::from_engine(e, "messages"))
}

/// A completion prompt's tokens.
pub(crate) fn completion_prompt(model: &Model, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Prompt::Text(t) => model
            .tokenizer()
            .encode(t)
            .map_err(|e| ApiError::from_engine(e, "prompt")),
        Prompt::Tokens(t) => Ok(t.clone()),
    }
}

/// The prompt's length in characters: where text completions' `text_offset`
/// starts (as OpenAI counts it, from the start of the prompt). A token
/// prompt counts as the text it decodes to.
pub(crate) fn prompt_chars(model: &Model, prompt: &Prompt) -> usize {
    match prompt {
        Prompt::Text(t) => t.chars().count(),
        Prompt::Tokens(t) => model
            .tokenizer()
            .decode(t)
            .map(|s| s.chars().count())
            .unwrap_or(0),
    }
}

/// The engine request, with `max_tokens` defaulted and every limit checked.
pub(crate) fn request(
    model: &Model,
    prompt: Vec<u32>,
    params: &Params,
    default_max_tokens: usize,
    kind: Kind,
) -> Result<GenerateRequest, ApiError> {
    let pp = kind.prompt_param();
    let ctx = model.config().context_length;
    if prompt.is_empty() {
        return Err(ApiError::invalid_param(pp, "The prompt is empty"));
    }
    let max_tokens = match params.max_tokens {
        Some((0, name)) => {
            return Err(ApiError::invalid_param(
                name,
                format!("`{name}` must be at least 1"),
            ));
        }
        Some((m, _)) => usize::try_from(m).unwrap_or(usize::MAX),
        None => default_max_tokens
            .min(ctx.saturating_sub(prompt.len()))
            .max(1),
    };
    if prompt.len().saturating_add(max_tokens) > ctx {
        return Err(ApiError::from_engine(
            forge_engine::EngineError::ContextLength {
                prompt_tokens: prompt.len(),
                max_tokens,
                context_length: ctx,
            },
            pp,
        ));
    }
    let req = GenerateRequest {
        prompt,
        max_tokens,
        sampling: params.sampling.clone(),
        stop: params.stop.clone(),
    };
    validate(model, &req).map_err(|e| ApiError::from_engine(e, pp))?;
    Ok(req)
}
