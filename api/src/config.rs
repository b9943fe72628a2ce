//! Server options, and the TOML configuration file.
//!
//! Precedence (applied by `forge-node serve`): command-line flags, then
//! `FORGE_*` environment variables, then the file given with `--config`,
//! then the defaults below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default number of sequences generated together.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Default number of requests that may wait for a slot.
pub const DEFAULT_MAX_QUEUE: usize = 32;
/// Default per-request time limit (queue wait included), seconds.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 300;
/// Default request-body limit, bytes.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Default `max_tokens` when a request sets none (bounded by the context).
pub const DEFAULT_MAX_TOKENS: usize = 1024;
/// Default price: 1 CU charged per CU served (at idle).
pub const DEFAULT_PRICE_MILLI_PER_CU: u64 = 1000;
/// Default surge: the price doubles once every generation slot is taken.
pub const DEFAULT_PRICE_SURGE_PERCENT: u64 = 100;
/// Default bytes of committed rows kept for audits (1 GiB).
pub const DEFAULT_AUDIT_RETAIN_BYTES: u64 = 1 << 30;
/// Default number of receipt workers.
pub const DEFAULT_RECEIPT_WORKERS: usize = 1;

/// How the API behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Sequences generated together (continuous batching).
    pub max_concurrent: usize,
    /// Sequences (one per choice) that may wait for a generation slot; a
    /// request whose choices do not all fit in the free slots and this queue
    /// gets 429 with `Retry-After`.
    pub max_queue: usize,
    /// Per-request time limit, queue wait included (408 once it passes).
    pub request_timeout: Duration,
    /// Largest request body (413 above it).
    pub body_limit: usize,
    /// `max_tokens` of requests that set none (bounded by the context).
    pub default_max_tokens: usize,
    /// Thousandths of a CU charged per CU served, at idle: the base of the
    /// load-based price.
    pub price_milli_per_cu: u64,
    /// How far above the base the price rises, in percent, once the
    /// sequences running or queued fill every generation slot; linear in
    /// between (0: a fixed price). A request keeps the price it was quoted
    /// on arrival.
    pub price_surge_percent: u64,
    /// Interval of SSE keep-alive comments.
    pub keep_alive: Duration,
    /// Threads building receipts (a Groth16 proof each).
    pub receipt_workers: usize,
    /// `Retry-After` seconds of a 429 for a full queue.
    pub retry_after_secs: u64,
    /// Bytes of committed rows kept after the answers, so auditors can
    /// challenge them (`POST /v1/receipts/{id}/openings`); the oldest go
    /// first. 0 keeps none.
    pub audit_retain_bytes: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_queue: DEFAULT_MAX_QUEUE,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            body_limit: DEFAULT_BODY_LIMIT,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            price_milli_per_cu: DEFAULT_PRICE_MILLI_PER_CU,
            price_surge_percent: DEFAULT_PRICE_SURGE_PERCENT,
            keep_alive: Duration::from_secs(15),
            receipt_workers: DEFAULT_RECEIPT_WORKERS,
            retry_after_secs: 1,
            audit_retain_bytes: DEFAULT_AUDIT_RETAIN_BYTES,
        }
    }
}

/// The `--config` TOML file: every key optional, unknown keys refused.
///
/// ```toml
/// listen = "127.0.0.1:8080"
/// model = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
/// model_name = "smollm2"
/// max_concurrent = 8
/// max_queue = 32
/// request_timeout_secs = 300
/// body_limit_bytes = 1048576
/// default_max_tokens = 1024
/// price_milli_per_cu = 1000
/// price_surge_percent = 100
/// receipt_workers = 1
/// audit_retain_mib = 1024
/// api_keys = ["sk-..."]
/// ledger = "/var/lib/forge/ledger.sqlite"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<String>,
    /// GGUF model file.
    pub model: Option<PathBuf>,
    /// The model's id in the API.
    pub model_name: Option<String>,
    /// See [`ServerOptions::max_concurrent`].
    pub max_concurrent: Option<usize>,
    /// See [`ServerOptions::max_queue`].
    pub max_queue: Option<usize>,
    /// See [`ServerOptions::request_timeout`].
    pub request_timeout_secs: Option<u64>,
    /// See [`ServerOptions::body_limit`].
    pub body_limit_bytes: Option<usize>,
    /// See [`ServerOptions::default_max_tokens`].
    pub default_max_tokens: Option<usize>,
    /// See [`ServerOptions::price_milli_per_cu`].
    pub price_milli_per_cu: Option<u64>,
    /// See [`ServerOptions::price_surge_percent`].
    pub price_surge_percent: Option<u64>,
    /// See [`ServerOptions::receipt_workers`].
    pub receipt_workers: Option<usize>,
    /// [`ServerOptions::audit_retain_bytes`], in MiB.
    pub audit_retain_mib: Option<u64>,
    /// API keys registered as accounts at start-up.
    pub api_keys: Option<Vec<String>>,
    /// The ledger database file.
    pub ledger: Option<PathBuf>,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// It is not valid TOML for [`FileConfig`].
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its location.
        message: String,
    },
}

impl FileConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_parses_and_refuses_unknown_keys() {
        let c =
            FileConfig::parse("listen = \"127.0.0.1:9\"\nmax_concurrent = 3\napi_keys = [\"a\"]\nprice_surge_percent = 0\n")
                .unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(c.max_concurrent, Some(3));
        assert_eq!(c.price_surge_percent, Some(0));
        assert_eq!(c.api_keys, Some(vec!["a".to_string()]));
        assert!(
            FileConfig::parse("max_concurent = 3")
                .unwrap_err()
                .contains("max_concurent")
        );
        assert!(FileConfig::parse("max_concurrent = \"x\"").is_err());
    }
}
