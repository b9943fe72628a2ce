//! Ledger errors.

use std::path::PathBuf;

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite refused.
    #[error("ledger database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The ledger's directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database would not switch to write-ahead logging.
    #[error("the ledger needs WAL journaling, SQLite kept `{0}`")]
    Journal(String),
    /// No account has this name or key.
    #[error("no account `{0}`")]
    UnknownAccount(String),
    /// An account with this name exists.
    #[error("an account named `{0}` already exists")]
    DuplicateName(String),
    /// An amount does not fit the ledger's integers.
    #[error("{what} = {value} is too large")]
    TooLarge {
        /// The amount.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A credit of zero.
    #[error("a credit must be at least 1 milli-CU")]
    ZeroCredit,
    /// No randomness for a new key.
    #[error("no entropy for a new API key: {0}")]
    Entropy(String),
    /// A previous holder of the connection panicked.
    #[error("the ledger connection is poisoned")]
    Poisoned,
}
