//! The checklist (stderr) and the JSON outcome (stdout).

use forge_proofs::{Receipt, Report};
use serde::Serialize;

/// What was checked, and how it went.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    /// blake3 of the file (the ledger key when the receipt is canonical).
    receipt_hash: String,
    /// One line per check, in order.
    checks: Vec<Line>,
    /// The library's report, when the offline checks passed.
    pub(crate) report: Option<Report>,
    /// The receipt, when it decoded.
    pub(crate) receipt: Option<Receipt>,
}

#[derive(Debug, Serialize)]
struct Line {
    ok: bool,
    check: String,
}

impl Outcome {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self { receipt_hash: blake3::hash(bytes).to_hex().to_string(), checks: Vec::new(), report: None, receipt: None }
    }

    pub(crate) fn pass(&mut self, check: String) {
        self.checks.push(Line { ok: true, check });
    }

    pub(crate) fn fail(&mut self, check: String) {
        self.checks.push(Line { ok: false, check });
    }

    pub(crate) fn verified(&self) -> bool {
        self.report.is_some() && self.checks.iter().all(|l| l.ok)
    }

    pub(crate) fn print(&self, json: bool) {
        eprintln!("receipt {}", self.receipt_hash);
        for l in &self.checks {
            eprintln!("  {} {}", if l.ok { "✓" } else { "✗" }, l.check);
        }
        match (&self.report, self.verified()) {
            (Some(r), true) => eprintln!(
                "VERIFIED: {}.{:03} CU ({} FLOPs) by provider {}",
                r.milli_cu / 1000,
                r.milli_cu % 1000,
                r.flops,
                r.provider.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
            _ => eprintln!("REJECTED"),
        }
        if json {
            #[derive(Serialize)]
            struct Json<'a> {
                verified: bool,
                #[serde(flatten)]
                outcome: &'a Outcome,
            }
            match serde_json::to_string_pretty(&Json { verified: self.verified(), outcome: self }) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("forge-verify: cannot print JSON: {e}"),
            }
        }
    }
}
