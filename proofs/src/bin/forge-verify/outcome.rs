//! The checklist (stderr) and the JSON outcome (stdout).

use forge_proofs::{CheckId, Receipt, Report};
use serde::Serialize;

/// What was checked, and how it went.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    /// blake3 of the file (the ledger key: receipts that decode are
    /// canonical). Set by [`Outcome::identify`].
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

/// One checklist line. `id` is the stable identifier (see [`CheckId`]);
/// `check` is the sentence for people; `audit` and `cell` say which audit
/// entry and which (layer, position) a line is about, when it is.
#[derive(Debug, Serialize)]
struct Line {
    status: Status,
    id: CheckId,
    check: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cell: Option<(u32, u32)>,
}

/// Where a line points: which audit entry, which cell.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct At {
    pub(crate) audit: Option<usize>,
    pub(crate) cell: Option<(u32, u32)>,
}

impl At {
    pub(crate) fn audit(i: usize) -> Self {
        Self {
            audit: Some(i),
            cell: None,
        }
    }

    pub(crate) fn cell(self, cell: Option<(u32, u32)>) -> Self {
        Self { cell, ..self }
    }
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
    pub(crate) fn new() -> Self {
        Self {
            receipt_hash: String::new(),
            checks: Vec::new(),
            report: None,
            receipt: None,
            malformed: false,
        }
    }

    /// Sets the receipt hash of `bytes`, the file checked: the report's
    /// when the offline checks produced one (they hash the re-encoding,
    /// which the strict decoder guarantees is these very bytes), else
    /// blake3 of the bytes. A verified receipt's megabytes of openings are
    /// then hashed once, not a second time before anything else starts.
    pub(crate) fn identify(&mut self, bytes: &[u8]) {
        let hash = match &self.report {
            Some(r) => r.receipt_hash,
            None => *blake3::hash(bytes).as_bytes(),
        };
        self.receipt_hash = blake3::Hash::from_bytes(hash).to_hex().to_string();
    }

    fn push(&mut self, status: Status, id: CheckId, at: At, check: String) {
        self.checks.push(Line {
            status,
            id,
            check,
            audit: at.audit,
            cell: at.cell,
        });
    }

    pub(crate) fn pass(&mut self, id: CheckId, at: At, check: String) {
        self.push(Status::Pass, id, at, check);
    }

    pub(crate) fn fail(&mut self, id: CheckId, at: At, check: String) {
        self.push(Status::Fail, id, at, check);
    }

    pub(crate) fn not_checked(&mut self, id: CheckId, at: At, check: String) {
        self.push(Status::NotChecked, id, at, check);
    }

    /// The file is not a well-formed receipt (exit 2).
    pub(crate) fn malformed(&mut self, check: String) {
        self.fail(CheckId::Format, At::default(), check);
        self.malformed = true;
    }

    pub(crate) fn is_malformed(&self) -> bool {
        self.malformed
    }

    pub(crate) fn verified(&self) -> bool {
        !self.malformed
            && self.report.is_some()
            && self.checks.iter().all(|l| l.status != Status::Fail)
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
                    r.provider
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                );
                let skipped = self
                    .checks
                    .iter()
                    .filter(|l| l.status == Status::NotChecked)
                    .count();
                if skipped > 0 {
                    eprintln!(
                        "  ({skipped} check(s) marked – were not performed and are not claimed)"
                    );
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
            match serde_json::to_string_pretty(&Json {
                verified: self.verified(),
                outcome: self,
            }) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("forge-verify: cannot print JSON: {e}"),
            }
        }
    }
}
