//! `POST /v1/completions`.

use axum::extract::State;
use axum::response::Response;

use super::{generate, prepare};
use crate::accounts::Caller;
use crate::body::OpenAiJson;
use crate::error::ApiError;
use crate::openai::{CompletionRequest, Kind};
use crate::state::AppState;

pub(crate) async fn completions(
    State(state): State<AppState>,
    caller: Caller,
    OpenAiJson(body): OpenAiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    if body.params.model != ready.name {
        return Err(ApiError::model_not_found(&body.params.model, &ready.name));
    }
    let (model, default_max) = (ready.model.clone(), state.options().default_max_tokens);
    let CompletionRequest { params, prompt } = body;
    generate::check_n(state.options(), &params)?;
    let p = params.clone();
    let (req, prompt_chars) = tokio::task::spawn_blocking(move || {
        let chars = prepare::prompt_chars(&model, &prompt);
        let prompt = prepare::completion_prompt(&model, &prompt)?;
        Ok::<_, ApiError>((
            prepare::request(&model, prompt, &p, default_max, Kind::Completion)?,
            chars,
        ))
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task: {e}")))??;
    generate::run(
        &state,
        ready,
        caller,
        req,
        &params,
        Kind::Completion,
        prompt_chars,
    )
    .await
}
