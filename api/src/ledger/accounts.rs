//! Accounts (API keys) and their derived balances.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Ledger, LedgerError, now_secs, to_i64};

/// An account: the hash of its API key and a name. The key itself is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// blake3 of the API key, hex.
    pub id: String,
    /// A name for operators.
    pub name: String,
}

/// An account's balance, derived from the ledger (integers, milli-CU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Sum of credits.
    pub credited_milli_cu: u64,
    /// Sum of what its receipts charged.
    pub spent_milli_cu: u64,
    /// Credits minus charges.
    pub balance_milli_cu: i64,
    /// Receipts charged to it.
    pub receipts: u64,
}

/// The account id of an API key.
pub(crate) fn key_id(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

impl Ledger {
    /// Creates an account with a fresh random API key; returns it with the key.
    pub fn create_account(&self, name: &str) -> Result<(Account, String), LedgerError> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| LedgerError::Entropy(e.to_string()))?;
        let key = format!(
            "fk-{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let account = Account {
            id: key_id(&key),
            name: name.to_string(),
        };
        let conn = self.conn()?;
        let n = conn.execute(
            "INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT(name) DO NOTHING",
            params![account.id, account.name, now_secs()],
        )?;
        if n == 0 {
            return Err(LedgerError::DuplicateName(name.to_string()));
        }
        Ok((account, key))
    }

    /// Makes sure `key` has an account (named `key-<first 8 hex of its id>`
    /// when new); returns it.
    pub fn register_key(&self, key: &str) -> Result<Account, LedgerError> {
        let id = key_id(key);
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![id, format!("key-{}", &id[..8]), now_secs()],
        )?;
        let name: String =
            conn.query_row("SELECT name FROM accounts WHERE id = ?1", [&id], |r| {
                r.get(0)
            })?;
        Ok(Account { id, name })
    }

    /// The account of an API key, if any.
    pub fn account_by_key(&self, key: &str) -> Result<Option<Account>, LedgerError> {
        let id = key_id(key);
        let conn = self.conn()?;
        let name: Option<String> = conn
            .query_row("SELECT name FROM accounts WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(name.map(|name| Account { id, name }))
    }

    /// The account named `who`, or whose API key is `who`.
    pub fn find_account(&self, who: &str) -> Result<Account, LedgerError> {
        if let Some(a) = self.account_by_key(who)? {
            return Ok(a);
        }
        let conn = self.conn()?;
        let id: Option<String> = conn
            .query_row("SELECT id FROM accounts WHERE name = ?1", [who], |r| {
                r.get(0)
            })
            .optional()?;
        id.map(|id| Account {
            id,
            name: who.to_string(),
        })
        .ok_or_else(|| LedgerError::UnknownAccount(who.to_string()))
    }

    /// Whether any account exists (then every request must authenticate).
    pub fn has_accounts(&self) -> Result<bool, LedgerError> {
        Ok(self
            .conn()?
            .query_row("SELECT EXISTS (SELECT 1 FROM accounts)", [], |r| r.get(0))?)
    }

    /// Adds `milli_cu` to an account.
    pub fn credit(
        &self,
        account: &Account,
        milli_cu: u64,
        note: Option<&str>,
    ) -> Result<(), LedgerError> {
        if milli_cu == 0 {
            return Err(LedgerError::ZeroCredit);
        }
        let amount = to_i64("credit", milli_cu)?;
        self.conn()?.execute(
            "INSERT INTO credits (account, milli_cu, note, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![account.id, amount, note, now_secs()],
        )?;
        Ok(())
    }

    /// The account's balance, derived from credits and receipts.
    pub fn balance(&self, account: &Account) -> Result<Balance, LedgerError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let credited: i64 = tx.query_row(
            "SELECT COALESCE(SUM(milli_cu), 0) FROM credits WHERE account = ?1",
            [&account.id],
            |r| r.get(0),
        )?;
        let (spent, receipts): (i64, i64) = tx.query_row(
            "SELECT COALESCE(SUM(charged_milli_cu), 0), COUNT(*) FROM receipts WHERE account = ?1",
            [&account.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.finish()?;
        Ok(Balance {
            credited_milli_cu: credited.max(0) as u64,
            spent_milli_cu: spent.max(0) as u64,
            balance_milli_cu: credited.saturating_sub(spent),
            receipts: receipts.max(0) as u64,
        })
    }
}
