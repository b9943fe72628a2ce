//! The router: every route, the body limit, request counting, fallbacks.

mod answer;
mod chat;
mod collect;
mod completions;
mod generate;
mod models;
mod openings;
mod ops;
mod prepare;
mod receipts;
mod stream;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use generate::RECEIPT_HEADER;

use crate::state::AppState;

/// The API router over `state`.
pub fn router(state: AppState) -> Router {
    let limit = state.options().body_limit;
    Router::new()
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/v1/receipts/verifying-key", get(receipts::verifying_key))
        .route("/v1/receipts/{id}", get(receipts::get))
        .route("/v1/receipts/{id}/openings", post(openings::openings))
        .route("/v1/balance", get(receipts::balance))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let res = next.run(req).await;
    state.metrics().request(&route, res.status().as_u16());
    res
}
