//! `POST /v1/receipts/{id}/openings`: answer an auditor's challenge.
//!
//! The auditor sends a fresh 32-byte seed; the node opens the cells that
//! seed selects for the receipt (`challenge_cells`, `open_cells`) from the
//! commitment it kept, and returns the `FRGO` openings, which the auditor
//! checks with `SpotChecker` and may sign into the receipt as an audit
//! (`forge-node audit`). The openings hold the request's prompt and output
//! tokens, so they are served by receipt id only (the 128-bit id the answer
//! carried), never by the receipt's hash, which may be public.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use forge_proofs::{challenge_cells, open_cells};
use serde_json::{Map, Value};

use super::receipts::{not_recorded, unhex};
use crate::accounts::ledger_error;
use crate::body::{ApiRequest, OpenAiJson};
use crate::error::ApiError;
use crate::state::AppState;

/// Cells opened when the request names no count: the design's reference point.
const DEFAULT_CELLS: u32 = 8;
/// Most cells one challenge may open. A cell at position t opens t + 1
/// key/value rows, so a challenge's answer grows with cells x context: 64
/// cells of a 2,048-position SmolLM2 trace are about 200 MB. Auditors who
/// want more send more challenges.
const MAX_CELLS: u32 = 64;

/// The body: `{"seed": "<64 hex digits>", "cells": 1..=64}`.
#[derive(Debug)]
pub(crate) struct OpeningsRequest {
    seed: [u8; 32],
    cells: u32,
}

impl ApiRequest for OpeningsRequest {
    fn is_known(key: &str) -> bool {
        matches!(key, "seed" | "cells")
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let seed = obj
            .get("seed")
            .and_then(Value::as_str)
            .and_then(|s| unhex::<32>(&s.to_ascii_lowercase()))
            .ok_or_else(|| {
                ApiError::invalid_param("seed", "`seed` must be 64 hex digits (32 bytes)")
            })?;
        let cells = match obj.get("cells") {
            None | Some(Value::Null) => DEFAULT_CELLS,
            Some(v) => v
                .as_u64()
                .filter(|&k| (1..=u64::from(MAX_CELLS)).contains(&k))
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "cells",
                        format!("`cells` must be an integer from 1 to {MAX_CELLS}"),
                    )
                })? as u32,
        };
        Ok(Self { seed, cells })
    }
}

/// Opens the cells `seed` selects for the receipt `id`.
pub(crate) async fn openings(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    OpenAiJson(body): OpenAiJson<OpeningsRequest>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::not_found(format!("Bad receipt id: {e}")))?;
    let request_id = unhex::<16>(&id.to_ascii_lowercase()).ok_or_else(|| {
        ApiError::not_found(format!(
            "No receipt `{id}` (openings are served by receipt id: 32 hex digits)"
        ))
        .with_param("id")
    })?;
    let Some(retained) = state.retained().get(&request_id) else {
        let ledger = state.ledger();
        let known = tokio::task::spawn_blocking(move || ledger.receipt_by_request_id(&request_id))
            .await
            .map_err(|e| ApiError::internal(format!("ledger task: {e}")))?
            .map_err(ledger_error)?
            .is_some();
        return Err(if known {
            ApiError::gone(format!(
                "This node no longer keeps the commitment of receipt `{id}` (it keeps the most recent ones, up to --audit-retain-mib, and none across restarts)"
            ))
            .with_code("commitment_expired")
        } else {
            not_recorded(&id)
        });
    };
    let OpeningsRequest { seed, cells } = body;
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let r = &*retained;
        let cells = challenge_cells(&r.receipt, &seed, cells).map_err(|e| e.to_string())?;
        let openings =
            open_cells(&r.commitment, &r.prompt, &r.output, &cells).map_err(|e| e.to_string())?;
        openings.to_bytes().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ApiError::internal(format!("openings task: {e}")))?
    .map_err(|e| ApiError::internal(format!("opening the challenged cells: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response())
}
