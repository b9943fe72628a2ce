//! The shared state of the router: options, ledger, metrics, and the model
//! once it is loaded.

use std::sync::{Arc, OnceLock};

use forge_engine::Model;

use crate::accounts::Holds;
use crate::config::ServerOptions;
use crate::error::ApiError;
use crate::ledger::{Ledger, LedgerError};
use crate::metrics::Metrics;
use crate::retained::RetainedCommitments;
use crate::scheduler::{Finisher, Limits, Scheduler};
use crate::signer::ReceiptSigner;

/// The router's state. Cheap to clone.
///
/// The server can answer (`/health` 503, `/metrics`, errors) before the
/// model is loaded; [`AppState::install`] makes it ready.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("options", &self.0.options)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

struct Shared {
    options: ServerOptions,
    metrics: Arc<Metrics>,
    ledger: Arc<Ledger>,
    holds: Arc<Holds>,
    retained: Arc<RetainedCommitments>,
    ready: OnceLock<Arc<Ready>>,
    started: u64,
}

/// The loaded model and what serves it.
pub(crate) struct Ready {
    pub(crate) model: Arc<Model>,
    pub(crate) name: String,
    pub(crate) scheduler: Scheduler,
    pub(crate) vk_bytes: Vec<u8>,
    pub(crate) node_key: [u8; 32],
    pub(crate) created: u64,
}

/// Why [`AppState::install`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A model is already installed.
    #[error("a model is already installed")]
    AlreadyInstalled,
    /// The receipt workers need their own ledger connection.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A thread could not be started.
    #[error("starting the engine threads: {0}")]
    Spawn(#[from] std::io::Error),
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppState {
    /// State with no model yet (`/health` answers 503 until [`AppState::install`]).
    pub fn new(options: ServerOptions, ledger: Ledger) -> Self {
        let retained = Arc::new(RetainedCommitments::new(options.audit_retain_bytes));
        let metrics = Metrics::default();
        metrics
            .audit_limit_bytes
            .set(i64::try_from(options.audit_retain_bytes).unwrap_or(i64::MAX));
        Self(Arc::new(Shared {
            options,
            metrics: Arc::new(metrics),
            ledger: Arc::new(ledger),
            holds: Arc::new(Holds::default()),
            retained,
            ready: OnceLock::new(),
            started: unix_now(),
        }))
    }

    /// Serve `model` under the id `name`, signing receipts with `signer`:
    /// starts the engine thread and the receipt workers.
    pub fn install(
        &self,
        model: Model,
        name: &str,
        signer: ReceiptSigner,
    ) -> Result<(), InstallError> {
        if self.is_ready() {
            return Err(InstallError::AlreadyInstalled);
        }
        let o = &self.0.options;
        let model = Arc::new(model);
        let vk_bytes = forge_circuits::vk_to_bytes(signer.verifying_key());
        let node_key = signer.public_key();
        let finisher = Finisher {
            model: Arc::clone(&model),
            signer: Arc::new(signer),
            ledger: Arc::new(self.0.ledger.reopen()?),
            holds: Arc::clone(&self.0.holds),
            metrics: Arc::clone(&self.0.metrics),
            retained: Arc::clone(&self.0.retained),
        };
        let limits = Limits {
            max_concurrent: o.max_concurrent,
            max_queue: o.max_queue,
            receipt_workers: o.receipt_workers,
            retry_after_secs: o.retry_after_secs,
        };
        let scheduler = Scheduler::start(finisher, limits)?;
        // Idle until the first request: the base price.
        self.0
            .metrics
            .price
            .set(i64::try_from(o.price_milli_per_cu).unwrap_or(i64::MAX));
        let ready = Ready {
            model,
            name: name.to_string(),
            scheduler,
            vk_bytes,
            node_key,
            created: unix_now(),
        };
        self.0
            .ready
            .set(Arc::new(ready))
            .map_err(|_| InstallError::AlreadyInstalled)
    }

    /// Whether a model is installed.
    pub fn is_ready(&self) -> bool {
        self.0.ready.get().is_some()
    }

    /// The options.
    pub fn options(&self) -> &ServerOptions {
        &self.0.options
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub(crate) fn ledger(&self) -> Arc<Ledger> {
        Arc::clone(&self.0.ledger)
    }

    pub(crate) fn retained(&self) -> &RetainedCommitments {
        &self.0.retained
    }

    pub(crate) fn holds(&self) -> Arc<Holds> {
        Arc::clone(&self.0.holds)
    }

    pub(crate) fn started(&self) -> u64 {
        self.0.started
    }

    /// The loaded model, or 503 while it loads.
    pub(crate) fn ready(&self) -> Result<Arc<Ready>, ApiError> {
        self.0.ready.get().cloned().ok_or_else(ApiError::loading)
    }
}
