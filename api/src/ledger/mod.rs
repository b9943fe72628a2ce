//! The durable ledger: SQLite (bundled) in WAL mode with `synchronous=FULL`.
//!
//! One row per receipt, keyed by the receipt's hash, holds the receipt bytes
//! and what its account was charged, so a receipt is applied at most once
//! and a charge never exists without its receipt (or the reverse). Balances
//! are derived: credits minus charges.

mod accounts;
mod error;
mod receipts;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use accounts::{Account, Balance};
pub use error::LedgerError;
pub use receipts::{ReceiptRecord, StoredReceipt};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    id          TEXT PRIMARY KEY,            -- blake3 of the API key, hex
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credits (
    id          INTEGER PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts(id),
    milli_cu    INTEGER NOT NULL CHECK (milli_cu > 0),
    note        TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS credits_account ON credits(account);
CREATE TABLE IF NOT EXISTS receipts (
    hash              BLOB PRIMARY KEY CHECK (length(hash) = 32),
    request_id        BLOB NOT NULL UNIQUE,
    account           TEXT REFERENCES accounts(id),
    flops             TEXT NOT NULL,         -- decimal u128
    milli_cu          INTEGER NOT NULL CHECK (milli_cu >= 0),
    charged_milli_cu  INTEGER NOT NULL CHECK (charged_milli_cu >= 0),
    bytes             BLOB NOT NULL,
    created_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_account ON receipts(account);
";

/// A connection to the ledger file. Cheap operations take the connection's
/// lock; open several `Ledger`s on one file for concurrent readers (WAL).
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Journal(mode));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// Another connection to the same file.
    pub fn reopen(&self) -> Result<Self, LedgerError> {
        Self::open(&self.path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, LedgerError> {
        self.conn.lock().map_err(|_| LedgerError::Poisoned)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn to_i64(what: &'static str, v: u64) -> Result<i64, LedgerError> {
    i64::try_from(v).map_err(|_| LedgerError::TooLarge { what, value: v })
}
