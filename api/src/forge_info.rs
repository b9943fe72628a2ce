//! The `forge` object attached to every answer: its receipts and their cost.

use serde::Serialize;
use serde_json::{Value, json};

/// What a response says about the receipt of one of its choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgeInfo {
    /// The choice this receipt is for.
    pub index: usize,
    /// The receipt id, hex: the receipt's request id, assigned when the
    /// request was admitted (so it can be sent before generation ends).
    /// `GET /v1/receipts/{receipt_id}` fetches the receipt.
    pub receipt_id: String,
    /// The receipt's hash, hex (also accepted by `GET /v1/receipts/{id}`).
    pub receipt_hash: String,
    /// Exact FLOPs of the forwarded work.
    pub flops: u128,
    /// Compute Units in thousandths (`flops / 10^6`, rounded down).
    pub milli_cu: u64,
    /// The Merkle root of the activation trace, hex.
    pub activation_root: String,
    /// Price in thousandths of a CU charged per CU served.
    pub price_milli_per_cu: u64,
    /// What the account was charged, in milli-CU.
    pub charged_milli_cu: u64,
}

impl ForgeInfo {
    /// The JSON object of this one receipt: `index`, `receipt_id`,
    /// `receipt_hash`, `flops`, `cu`, `milli_cu`, `activation_root`,
    /// `charged_milli_cu`.
    pub fn to_json(&self) -> Value {
        json!({
            "index": self.index,
            "receipt_id": self.receipt_id,
            "receipt_hash": self.receipt_hash,
            "flops": self.flops,
            "cu": self.milli_cu as f64 / 1000.0,
            "milli_cu": self.milli_cu,
            "activation_root": self.activation_root,
            "charged_milli_cu": self.charged_milli_cu,
        })
    }
}

/// The `forge` object of an answer over the receipts of its choices (in
/// choice order): totals over all of them, every receipt under `receipts`,
/// their ids under `receipt_ids`, and, for clients written when an answer had
/// one receipt, `receipt_id`, `receipt_hash` and `activation_root` of the
/// first. `null` when no receipt exists (nothing was forwarded).
pub(crate) fn summary(receipts: &[&ForgeInfo]) -> Value {
    let Some(first) = receipts.first() else {
        return Value::Null;
    };
    let flops: u128 = receipts.iter().map(|r| r.flops).sum();
    let milli_cu: u64 = receipts
        .iter()
        .map(|r| r.milli_cu)
        .fold(0, u64::saturating_add);
    let charged: u64 = receipts
        .iter()
        .map(|r| r.charged_milli_cu)
        .fold(0, u64::saturating_add);
    json!({
        "receipt_id": first.receipt_id,
        "receipt_hash": first.receipt_hash,
        "receipt_ids": receipts.iter().map(|r| r.receipt_id.as_str()).collect::<Vec<_>>(),
        "flops": flops,
        "cu": milli_cu as f64 / 1000.0,
        "milli_cu": milli_cu,
        "activation_root": first.activation_root,
        "price": {
            "milli_cu_per_cu": first.price_milli_per_cu,
            "charged_milli_cu": charged,
        },
        "receipts": receipts.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(index: usize, flops: u128, charged: u64) -> ForgeInfo {
        ForgeInfo {
            index,
            receipt_id: format!("{index:032x}"),
            receipt_hash: format!("{index:064x}"),
            flops,
            milli_cu: (flops / 1_000_000) as u64,
            activation_root: "ab".repeat(32),
            price_milli_per_cu: 1000,
            charged_milli_cu: charged,
        }
    }

    #[test]
    fn summary_totals_every_receipt_and_keeps_the_first_for_old_clients() {
        let (a, b) = (info(0, 3_000_000, 3), info(1, 5_000_000, 5));
        let v = summary(&[&a, &b]);
        assert_eq!(v["receipt_id"], a.receipt_id);
        assert_eq!(v["receipt_ids"], json!([a.receipt_id, b.receipt_id]));
        assert_eq!(
            (v["flops"].as_u64(), v["milli_cu"].as_u64()),
            (Some(8_000_000), Some(8))
        );
        assert_eq!(v["price"]["charged_milli_cu"], 8);
        assert_eq!(v["receipts"][1]["index"], 1);
        assert_eq!(v["receipts"][1]["receipt_hash"], b.receipt_hash);
        assert!(summary(&[]).is_null());
    }
}
