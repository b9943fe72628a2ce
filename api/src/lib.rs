//! # forge-api
//!
//! Forge's OpenAI-compatible HTTP API (axum): existing OpenAI clients work
//! against a Forge node unmodified, and every answer is metered in exact
//! FLOPs and carries a signed, proof-carrying receipt.
//!
//! - **Routes** ([`router`]): `POST /v1/chat/completions`,
//!   `POST /v1/completions` (JSON or server-sent events), `GET /v1/models`,
//!   `GET /v1/models/{id}`, `GET /v1/receipts/{id}` (JSON, or the binary
//!   receipt with `Accept: application/octet-stream`),
//!   `POST /v1/receipts/{id}/openings` (an auditor's challenge, answered
//!   from the commitments the node keeps),
//!   `GET /v1/receipts/verifying-key`, `GET /v1/balance`, `GET /health`
//!   (503 until a model is installed), `GET /metrics` (Prometheus),
//!   `GET /openapi.json`. Every error, extractor rejections and fallbacks
//!   included, is the OpenAI envelope ([`ApiError`]).
//! - **Scheduler**: one engine thread runs [`forge_engine::step`] over all
//!   active sequences (continuous batching), fed by a bounded queue (429 with
//!   `Retry-After` when full); a client that goes away cancels its sequence.
//! - **Choices**: `n` choices are `n` sequences in the batch, each with its
//!   own derived seed and receipt; `logprobs` are computed only for the
//!   sequences that ask ([`forge_engine::Sequence::with_logprobs`]).
//! - **Receipts**: each sequence's trace goes into a
//!   [`forge_proofs::CommitmentSink`]; receipt workers sign and prove the
//!   receipt, record it in the [`Ledger`] and hand the answer its
//!   `forge` object ([`ForgeInfo`]). Receipt ids are assigned at admission,
//!   so the `x-forge-receipt` header goes out with streams too; the wait
//!   for receipts ends at the request's deadline.
//! - **Accounts** ([`Ledger`]): SQLite in WAL mode; once an account exists,
//!   requests need `Authorization: Bearer <key>` and the worst-case cost is
//!   held against the balance before any work (429 `insufficient_quota`).
//!
//! ```no_run
//! use forge_api::{AppState, Ledger, ReceiptSigner, ServerOptions, bind, router};
//! use forge_engine::{Backend, Model};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let home = std::path::Path::new("/tmp/forge");
//! let state = AppState::new(ServerOptions::default(), Ledger::open(&home.join("ledger.sqlite"))?);
//! let (signer, _vk_path, _source) = ReceiptSigner::load(home)?;
//! state.install(Model::load("model.gguf".as_ref(), Backend::Cpu)?, "smollm2", signer)?;
//! let listener = bind("127.0.0.1:8080".parse()?).await?;
//! axum::serve(listener, router(state)).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod accounts;
mod body;
mod config;
mod error;
mod forge_info;
mod ledger;
mod listener;
mod metrics;
mod openai;
mod openapi;
mod pricing;
mod retained;
mod routes;
mod scheduler;
mod signer;
mod state;

pub use config::{
    ConfigError, DEFAULT_AUDIT_RETAIN_BYTES, DEFAULT_BODY_LIMIT, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUE, DEFAULT_MAX_TOKENS, DEFAULT_PRICE_MILLI_PER_CU,
    DEFAULT_PRICE_SURGE_PERCENT, DEFAULT_RECEIPT_WORKERS, DEFAULT_REQUEST_TIMEOUT_SECS, FileConfig,
    ServerOptions,
};
pub use error::ApiError;
pub use forge_info::ForgeInfo;
pub use ledger::{Account, Balance, Ledger, LedgerError, ReceiptRecord, StoredReceipt};
pub use listener::bind;
pub use metrics::{Counter, Gauge, Histogram, Metrics};
pub use openapi::document as openapi_document;
pub use routes::{RECEIPT_HEADER, router};
pub use signer::{CuKeySource, PK_FILE, ReceiptSigner, SignerError, VK_FILE};
pub use state::{AppState, InstallError};
