//! The `forge` object attached to every answer: its receipt and cost.

use serde::Serialize;

/// What a response says about its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgeInfo {
    /// The receipt's hash, hex: `GET /v1/receipts/{receipt_id}` fetches it.
    pub receipt_id: String,
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
    /// The JSON object: `receipt_id`, `flops`, `cu`, `milli_cu`,
    /// `activation_root` and `price` (`milli_cu_per_cu`, `charged_milli_cu`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "receipt_id": self.receipt_id,
            "flops": self.flops,
            "cu": self.milli_cu as f64 / 1000.0,
            "milli_cu": self.milli_cu,
            "activation_root": self.activation_root,
            "price": {
                "milli_cu_per_cu": self.price_milli_per_cu,
                "charged_milli_cu": self.charged_milli_cu,
            },
        })
    }
}
