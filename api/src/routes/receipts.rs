//! `GET /v1/receipts/{id}`, `GET /v1/receipts/verifying-key` and `GET /v1/balance`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use forge_proofs::Receipt;
use serde_json::json;

use crate::accounts::{Caller, ledger_error};
use crate::error::ApiError;
use crate::state::AppState;

fn parse_id(id: &str) -> Option<[u8; 32]> {
    if id.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn wants_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "application/octet-stream"))
}

/// Receipts are public evidence: anyone with the id may fetch one.
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::not_found(format!("Bad receipt id: {e}")))?;
    let hash = parse_id(&id.to_ascii_lowercase())
        .ok_or_else(|| ApiError::not_found(format!("No receipt `{id}` (ids are 64 hex digits)")).with_param("id"))?;
    let ledger = state.ledger();
    let stored = tokio::task::spawn_blocking(move || ledger.receipt(&hash))
        .await
        .map_err(|e| ApiError::internal(format!("ledger task: {e}")))?
        .map_err(ledger_error)?
        .ok_or_else(|| ApiError::not_found(format!("No receipt `{id}` on this node")).with_param("id"))?;
    if wants_binary(&headers) {
        return Ok(([(header::CONTENT_TYPE, "application/octet-stream")], stored.bytes).into_response());
    }
    let receipt = Receipt::from_bytes(&stored.bytes).map_err(|e| ApiError::internal(format!("stored receipt: {e}")))?;
    let mut v = serde_json::to_value(&receipt).map_err(|e| ApiError::internal(e.to_string()))?;
    v["id"] = json!(id.to_ascii_lowercase());
    v["charged_milli_cu"] = json!(stored.charged_milli_cu);
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// The CU verifying key (compressed arkworks bytes), for `forge-verify --vk`.
pub(crate) async fn verifying_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], ready.vk_bytes.clone()).into_response())
}

/// The caller's balance (an open node has no accounts).
pub(crate) async fn balance(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(account) = caller.0 else {
        return Ok(Json(json!({"object": "balance", "metered": false})));
    };
    let ledger = state.ledger();
    let a = account.clone();
    let b = tokio::task::spawn_blocking(move || ledger.balance(&a))
        .await
        .map_err(|e| ApiError::internal(format!("ledger task: {e}")))?
        .map_err(ledger_error)?;
    Ok(Json(json!({
        "object": "balance",
        "metered": true,
        "account": account.name,
        "credited_milli_cu": b.credited_milli_cu,
        "spent_milli_cu": b.spent_milli_cu,
        "balance_milli_cu": b.balance_milli_cu,
        "receipts": b.receipts,
    })))
}
