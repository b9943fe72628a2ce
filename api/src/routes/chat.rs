//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::Response;

use super::{generate, prepare};
use crate::accounts::Caller;
use crate::body::OpenAiJson;
use crate::error::ApiError;
use crate::openai::{ChatRequest, Kind};
use crate::state::AppState;

pub(crate) async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    OpenAiJson(body): OpenAiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    if body.params.model != ready.name {
        return Err(ApiError::model_not_found(&body.params.model, &ready.name));
    }
    let (model, default_max) = (ready.model.clone(), state.options().default_max_tokens);
    let ChatRequest { params, messages } = body;
    generate::check_n(state.options(), &params)?;
    let p = params.clone();
    let req = tokio::task::spawn_blocking(move || {
        let prompt = prepare::chat_prompt(&model, &messages)?;
        prepare::request(&model, prompt, &p, default_max, Kind::Chat)
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenizer task: {e}")))??;
    generate::run(&state, ready, caller, req, &params, Kind::Chat, 0).await
}
