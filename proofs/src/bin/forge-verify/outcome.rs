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
    /// Set when the bytes did not decode.
    malformed: bool,
}

#[derive(Debug, Serialize)]
struct Line {
    status: Status,
    check: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Pass,
    Fail,
    /// Not performed (e.g. needs the model); never counted as a pass.
    NotChecked,
}

impl Outcome {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self { receipt_hash: blake3::hash(bytes).to_hex().to_string(), checks: Vec::new(), report: None, receipt: None, malformed: false }
    }

    pub(crate) fn pass(&mut self, check: String) {
        self.checks.push(Line { status: Status::Pass, check });
    }

    pub(crate) fn fail(&mut self, check: String) {
        self.checks.push(Line { status: Status::Fail, check });
    }

    pub(crate) fn not_checked(&mut self, check: String) {
        self.checks.push(Line { status: Status::NotChecked, check });
    }

    /// The file is not a well-formed receipt (exit 2).
    pub(crate) fn malformed(&mut self, check: String) {
        self.fail(check);
        self.malformed = true;
    }

    pub(crate) fn is_malformed(&self) -> bool {
        self.malformed
    }

    pub(crate) fn verified(&self) -> bool {
        !self.malformed && self.report.is_some() && self.checks.iter().all(|l| l.status != Status::Fail)
    }

    pub(crate) fn print(&self, json: bool) {
        eprintln!("receipt {}", self.receipt_hash);
        for l in &self.checks {
            let mark = match l.status {
                Status::Pass => "✓",
                Status::Fail => "✗",
                Status::NotChecked => "–",
            };
            eprintln!("  {mark} {}", l.check);
        }
        match (&self.report, self.verified()) {
            (Some(r), true) => {
                eprintln!(
                    "VERIFIED: {}.{:03} CU ({} FLOPs) by provider {}",
                    r.milli_cu / 1000,
                    r.milli_cu % 1000,
                    r.flops,
                    r.provider.iter().map(|b| format!("{b:02x}")).collect::<String>()
                );
                let skipped = self.checks.iter().filter(|l| l.status == Status::NotChecked).count();
                if skipped > 0 {
                    eprintln!("  ({skipped} check(s) marked – were not performed and are not claimed)");
                }
            }
            _ if self.malformed => eprintln!("REJECTED: not a well-formed receipt"),
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
