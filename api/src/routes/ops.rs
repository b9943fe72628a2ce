//! Operations: `/health`, `/metrics`, `/openapi.json`, and the fallbacks
//! for unknown routes (404) and wrong methods (405).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// 200 once the model is loaded, 503 (with `Retry-After`) before.
pub(crate) async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let m = state.metrics();
    let body = json!({
        "status": "ok",
        "model": ready.name,
        "node_key": crate::scheduler::hex(&ready.node_key),
        "active_sequences": m.active.get(),
        "queue_depth": m.queue_depth.get(),
        "uptime_secs": crate::state::unix_now().saturating_sub(state.started()),
    });
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// The OpenAPI document of this node's surface.
pub(crate) async fn openapi(State(state): State<AppState>) -> Json<serde_json::Value> {
    let ready = state.ready().ok();
    Json(crate::openapi::document(
        ready.as_deref().map(|r| r.name.as_str()),
    ))
}

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("Unknown route `{}`", uri.path()))
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
