//! `GET /v1/models` and `GET /v1/models/{id}`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::accounts::Caller;
use crate::error::ApiError;
use crate::state::{AppState, Ready};

fn model_object(r: &Ready) -> Value {
    let cfg = r.model.config();
    json!({
        "id": r.name,
        "object": "model",
        "created": r.created,
        "owned_by": "forge",
        "forge": {
            "model_id": crate::scheduler::hex(&r.model.model_id()),
            "backend": r.model.backend().tag(),
            "context_length": cfg.context_length,
            "layers": cfg.layers,
            "d_model": cfg.d_model,
            "vocab": cfg.vocab,
        },
    })
}

pub(crate) async fn list(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let ready = state.ready()?;
    Ok(Json(
        json!({"object": "list", "data": [model_object(&ready)]}),
    ))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::not_found(format!("Bad model id: {e}")))?;
    let ready = state.ready()?;
    if id != ready.name {
        return Err(ApiError::model_not_found(&id, &ready.name));
    }
    Ok(Json(model_object(&ready)))
}
