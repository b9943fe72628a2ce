//! Receipt workers: commitment, receipt, ledger, then the receipt event.
//!
//! They run off the engine thread (a Groth16 proof takes a fraction of a
//! second) and do not depend on the client still being there: work that was
//! forwarded is receipted and charged even if the client left.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use forge_engine::Model;

use super::job::{Event, Finished};
use crate::accounts::Holds;
use crate::forge_info::ForgeInfo;
use crate::ledger::{Ledger, ReceiptRecord};
use crate::metrics::Metrics;
use crate::retained::{Retained, RetainedCommitments};
use crate::signer::ReceiptSigner;

/// What every receipt worker shares.
pub(crate) struct Finisher {
    pub(crate) model: Arc<Model>,
    pub(crate) signer: Arc<ReceiptSigner>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) holds: Arc<Holds>,
    pub(crate) metrics: Arc<Metrics>,
    /// Commitments kept for auditors' challenges.
    pub(crate) retained: Arc<RetainedCommitments>,
}

impl Finisher {
    /// Takes finished generations until the engine thread is gone.
    pub(crate) fn run(&self, rx: &Mutex<Receiver<Finished>>) {
        loop {
            let next = match rx.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(f) = next else { return };
            let (events, id) = (f.events.clone(), f.id);
            let result = self.finish(f);
            if let Err(e) = &result {
                tracing::error!(error = %e, receipt = %hex(&id), "receipt failed");
            }
            events.send(Event::Receipt(result));
        }
    }

    fn finish(&self, f: Finished) -> Result<Option<ForgeInfo>, String> {
        let Finished {
            id,
            request,
            generation,
            sink,
            charge,
            events,
            price_milli_per_cu,
        } = f;
        if generation.tokens.is_empty() {
            // Cancelled before its first step: nothing was forwarded, nothing
            // is owed. Dropping the sink stops its hashing jobs.
            return Ok(None);
        }
        let sink = sink.ok_or("the sequence had no commitment sink")?;
        let commitment = sink
            .finish()
            .map_err(|e| format!("trace commitment: {e}"))?;
        let receipt = self
            .signer
            .builder(&self.model)
            .build(id, &request, &generation, &commitment)
            .map_err(|e| format!("building the receipt: {e}"))?;
        let bytes = receipt
            .to_bytes()
            .map_err(|e| format!("encoding the receipt: {e}"))?;
        let hash = receipt
            .hash()
            .map_err(|e| format!("hashing the receipt: {e}"))?;
        let charged = charge_for(receipt.cost.milli_cu, price_milli_per_cu);
        let record = ReceiptRecord {
            hash,
            request_id: id,
            account: charge.account.clone(),
            flops: receipt.cost.flops,
            milli_cu: receipt.cost.milli_cu,
            charged_milli_cu: charged,
            bytes,
        };
        // The charge and the receipt are one row, written in one transaction;
        // the hold on the account is released once it is durable.
        let applied = self
            .holds
            .settle(charge, || self.ledger.record_receipt(&record))
            .map_err(|e| format!("ledger: {e}"))?;
        if !applied {
            tracing::warn!(receipt = %hex(&hash), "receipt was already in the ledger");
        }
        self.metrics.receipts.inc();
        self.metrics.milli_cu.add(receipt.cost.milli_cu);
        let info = ForgeInfo {
            index: events.index(),
            receipt_id: hex(&id),
            receipt_hash: hex(&hash),
            flops: receipt.cost.flops,
            milli_cu: receipt.cost.milli_cu,
            activation_root: hex(&receipt.trace.root),
            price_milli_per_cu,
            charged_milli_cu: charged,
        };
        self.retained.insert(
            id,
            Retained {
                receipt,
                prompt: request.prompt,
                output: generation.tokens,
                commitment,
            },
            &self.metrics,
        );
        Ok(Some(info))
    }
}

/// What a request costs its account: `milli_cu × price / 1000`, rounded up
/// (so a non-zero amount of work is never free at a non-zero price).
pub(crate) fn charge_for(milli_cu: u64, price_milli_per_cu: u64) -> u64 {
    let v = (u128::from(milli_cu) * u128::from(price_milli_per_cu)).div_ceil(1000);
    u64::try_from(v).unwrap_or(u64::MAX)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
