//! Receipt rows: the receipt and its charge, applied at most once.

use rusqlite::{OptionalExtension, params};

use super::{Ledger, LedgerError, now_secs, to_i64};

/// A receipt to record, with what its account is charged.
#[derive(Debug, Clone)]
pub struct ReceiptRecord {
    /// The receipt's hash ([`forge_proofs::Receipt::hash`]): the key.
    pub hash: [u8; 32],
    /// The request id inside the receipt.
    pub request_id: [u8; 16],
    /// The paying account's id (`None` on an open node).
    pub account: Option<String>,
    /// Exact FLOPs.
    pub flops: u128,
    /// Compute Units in thousandths.
    pub milli_cu: u64,
    /// What the account is charged.
    pub charged_milli_cu: u64,
    /// The canonical receipt encoding.
    pub bytes: Vec<u8>,
}

/// A receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// Its key: the receipt's hash when it was recorded.
    pub hash: [u8; 32],
    /// The canonical receipt encoding.
    pub bytes: Vec<u8>,
    /// The paying account's id.
    pub account: Option<String>,
    /// What the account was charged.
    pub charged_milli_cu: u64,
}

impl Ledger {
    /// Records a receipt and its charge in one transaction. Returns `false`
    /// if a receipt with this hash was already recorded (nothing changes).
    pub fn record_receipt(&self, r: &ReceiptRecord) -> Result<bool, LedgerError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO receipts
                (hash, request_id, account, flops, milli_cu, charged_milli_cu, bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                &r.hash[..],
                &r.request_id[..],
                r.account,
                r.flops.to_string(),
                to_i64("milli_cu", r.milli_cu)?,
                to_i64("charged_milli_cu", r.charged_milli_cu)?,
                r.bytes,
                now_secs()
            ],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// The receipt with this hash.
    pub fn receipt(&self, hash: &[u8; 32]) -> Result<Option<StoredReceipt>, LedgerError> {
        self.receipt_where("hash", hash)
    }

    /// The receipt whose request id is `request_id` (the receipt id that
    /// answers name, known before the receipt's hash is).
    pub fn receipt_by_request_id(
        &self,
        request_id: &[u8; 16],
    ) -> Result<Option<StoredReceipt>, LedgerError> {
        self.receipt_where("request_id", request_id)
    }

    /// The receipt whose `column` (a fixed column name, never input) is `key`.
    fn receipt_where(
        &self,
        column: &'static str,
        key: &[u8],
    ) -> Result<Option<StoredReceipt>, LedgerError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT hash, bytes, account, charged_milli_cu FROM receipts WHERE {column} = ?1"
        );
        Ok(conn.query_row(&sql, [key], row).optional()?)
    }

    /// Every receipt charged to `account_id` (oldest first), as stored.
    pub fn receipts_of(&self, account_id: &str) -> Result<Vec<StoredReceipt>, LedgerError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT hash, bytes, account, charged_milli_cu FROM receipts WHERE account = ?1 ORDER BY created_at, rowid",
        )?;
        let rows = st.query_map([account_id], row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredReceipt> {
    Ok(StoredReceipt {
        hash: r.get(0)?,
        bytes: r.get(1)?,
        account: r.get(2)?,
        charged_milli_cu: r.get::<_, i64>(3)?.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hash: u8, account: Option<String>, charged: u64) -> ReceiptRecord {
        ReceiptRecord {
            hash: [hash; 32],
            request_id: [hash; 16],
            account,
            flops: 1_000_000_000_000_000_000_000,
            milli_cu: charged,
            charged_milli_cu: charged,
            bytes: vec![hash; 10],
        }
    }

    #[test]
    fn receipts_apply_once_and_balances_are_derived() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.sqlite")).unwrap();
        assert!(!ledger.has_accounts().unwrap());
        let (alice, key) = ledger.create_account("alice").unwrap();
        assert!(ledger.has_accounts().unwrap());
        assert!(matches!(
            ledger.create_account("alice"),
            Err(LedgerError::DuplicateName(_))
        ));
        assert_eq!(ledger.find_account(&key).unwrap(), alice);
        assert_eq!(ledger.find_account("alice").unwrap(), alice);
        ledger.credit(&alice, 1000, Some("welcome")).unwrap();
        assert!(
            ledger
                .record_receipt(&record(1, Some(alice.id.clone()), 300))
                .unwrap()
        );
        assert!(
            !ledger
                .record_receipt(&record(1, Some(alice.id.clone()), 300))
                .unwrap(),
            "applied at most once"
        );
        assert!(ledger.record_receipt(&record(2, None, 50)).unwrap());
        let b = ledger.balance(&alice).unwrap();
        assert_eq!(
            (
                b.credited_milli_cu,
                b.spent_milli_cu,
                b.balance_milli_cu,
                b.receipts
            ),
            (1000, 300, 700, 1)
        );
        assert_eq!(
            ledger.receipt(&[1; 32]).unwrap().unwrap().bytes,
            vec![1; 10]
        );
        assert!(ledger.receipt(&[9; 32]).unwrap().is_none());
        assert_eq!(
            ledger
                .receipt_by_request_id(&[1; 16])
                .unwrap()
                .unwrap()
                .hash,
            [1; 32]
        );
        assert!(ledger.receipt_by_request_id(&[9; 16]).unwrap().is_none());
        assert_eq!(ledger.receipts_of(&alice.id).unwrap().len(), 1);
        // Another connection sees the same, and a registered key is idempotent.
        let other = ledger.reopen().unwrap();
        assert_eq!(other.balance(&alice).unwrap(), b);
        let k1 = other.register_key("sk-test").unwrap();
        assert_eq!(other.register_key("sk-test").unwrap(), k1);
        assert!(matches!(
            other.credit(&k1, 0, None),
            Err(LedgerError::ZeroCredit)
        ));
    }
}
