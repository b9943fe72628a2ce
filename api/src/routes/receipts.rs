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
use crate::scheduler::hex;
use crate::state::AppState;

/// How a receipt is named in a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReceiptKey {
    /// 32 hex digits: the receipt id answers carry (its request id).
    Id([u8; 16]),
    /// 64 hex digits: the receipt's hash.
    Hash([u8; 32]),
}

pub(super) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_id(id: &str) -> Option<ReceiptKey> {
    unhex::<16>(id)
        .map(ReceiptKey::Id)
        .or_else(|| unhex::<32>(id).map(ReceiptKey::Hash))
}

fn wants_binary(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .any(|t| t.split(';').next().unwrap_or("").trim() == "application/octet-stream")
        })
}

/// 404 for a well-formed id this node has no receipt for.
pub(super) fn not_recorded(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "No receipt `{id}` on this node (or not yet: receipts are recorded once generation ends)"
    ))
    .with_param("id")
}

/// Receipts are public evidence: anyone with the id (or hash) may fetch one.
/// An id that answers named is 404 until its receipt is recorded (receipt
/// workers build it after generation), and stays 404 if the request was
/// cancelled before any work.
pub(crate) async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::not_found(format!("Bad receipt id: {e}")))?;
    let key = parse_id(&id.to_ascii_lowercase()).ok_or_else(|| {
        ApiError::not_found(format!(
            "No receipt `{id}` (ids are 32 hex digits, hashes 64)"
        ))
        .with_param("id")
    })?;
    let ledger = state.ledger();
    let stored = tokio::task::spawn_blocking(move || match key {
        ReceiptKey::Id(request_id) => ledger.receipt_by_request_id(&request_id),
        ReceiptKey::Hash(hash) => ledger.receipt(&hash),
    })
    .await
    .map_err(|e| ApiError::internal(format!("ledger task: {e}")))?
    .map_err(ledger_error)?
    .ok_or_else(|| not_recorded(&id))?;
    if wants_binary(&headers) {
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            stored.bytes,
        )
            .into_response());
    }
    let receipt = Receipt::from_bytes(&stored.bytes)
        .map_err(|e| ApiError::internal(format!("stored receipt: {e}")))?;
    let mut v = serde_json::to_value(&receipt).map_err(|e| ApiError::internal(e.to_string()))?;
    v["id"] = json!(hex(&receipt.request.id));
    v["hash"] = json!(hex(&stored.hash));
    v["charged_milli_cu"] = json!(stored.charged_milli_cu);
    Ok((StatusCode::OK, Json(v)).into_response())
}

/// The CU verifying key (compressed arkworks bytes), for `forge-verify --vk`.
pub(crate) async fn verifying_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        ready.vk_bytes.clone(),
    )
        .into_response())
}

/// The caller's balance (an open node has no accounts).
pub(crate) async fn balance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hashes_are_told_apart_by_length() {
        assert_eq!(parse_id(&"0a".repeat(16)), Some(ReceiptKey::Id([10; 16])));
        assert_eq!(parse_id(&"0a".repeat(32)), Some(ReceiptKey::Hash([10; 32])));
        for bad in [
            "",
            "0a",
            &"0a".repeat(24),
            &"zz".repeat(16),
            &"é".repeat(16),
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
