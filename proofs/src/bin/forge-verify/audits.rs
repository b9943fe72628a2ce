//! Audit entries: verdicts, and with the model, their openings re-executed.

use forge_engine::Model;
use forge_proofs::{
    CheckId, Receipt, SpotChecker, SpotError, SpotOpenings, Verdict, challenge_cells,
    fiat_shamir_seed, verify_openings,
};

use crate::outcome::{At, Outcome};

/// Why an audit's openings did not check: they did not decode, or a spot check failed.
enum AuditError {
    Decode(String),
    Spot(SpotError),
}

impl AuditError {
    fn report(&self, receipt: &Receipt, i: usize, who: &str, out: &mut Outcome) {
        match self {
            Self::Decode(e) => out.fail(
                CheckId::SpotOpening,
                At::audit(i),
                format!("audit {i} by {who}: openings do not decode: {e}"),
            ),
            Self::Spot(e) => out.fail(
                e.check_id(),
                At::audit(i).cell(e.cell(receipt)),
                format!("audit {i} by {who}: {e}"),
            ),
        }
    }
}

/// Adds one line per audit. A signed FAIL verdict, or openings that do not
/// re-execute to the committed values, reject the receipt.
pub(crate) fn recheck(receipt: &Receipt, model: Option<&Model>, out: &mut Outcome) {
    for (i, a) in receipt.audits.iter().enumerate() {
        let fs = fiat_shamir_seed(receipt).is_ok_and(|s| s == a.seed);
        let who = format!(
            "{}..{}",
            a.auditor
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            if fs { " (non-interactive)" } else { "" }
        );
        let Some(model) = model else {
            let count = u32::try_from(a.cells.len()).unwrap_or(u32::MAX);
            let structure = SpotOpenings::from_bytes(&a.openings)
                .map_err(|e| AuditError::Decode(e.to_string()))
                .and_then(|o| {
                    verify_openings(receipt, &a.seed, count, &o).map_err(AuditError::Spot)
                });
            match structure {
                Ok(n) => out.pass(
                    CheckId::SpotOpening,
                    At::audit(i),
                    format!("audit {i} by {who}: tokens match the receipt, the {n} cells are the seed's, every opened row is in the committed tree"),
                ),
                Err(e) => {
                    e.report(receipt, i, &who, out);
                    continue;
                }
            }
            match a.verdict {
                Verdict::Pass => out.not_checked(
                    CheckId::SpotReplay,
                    At::audit(i),
                    format!("audit {i} by {who}: {} cells claimed to pass, NOT re-executed (needs --model)", a.cells.len()),
                ),
                Verdict::Fail => out.fail(CheckId::AuditVerdict, At::audit(i), format!("audit {i} by {who}: signed verdict FAIL")),
            }
            continue;
        };
        let count = u32::try_from(a.cells.len()).unwrap_or(u32::MAX);
        match challenge_cells(receipt, &a.seed, count) {
            Ok(cells) if cells == a.cells => {}
            _ => {
                out.fail(
                    CheckId::SpotCells,
                    At::audit(i),
                    format!("audit {i} by {who}: its cells are not the ones its seed selects"),
                );
                continue;
            }
        }
        let checked = SpotOpenings::from_bytes(&a.openings)
            .map_err(|e| AuditError::Decode(e.to_string()))
            .and_then(|o| {
                SpotChecker::new(model)
                    .check(receipt, &a.seed, count, &o)
                    .map_err(AuditError::Spot)
            });
        match (checked, a.verdict) {
            (Ok(r), verdict) => {
                let how = if r.exact {
                    "bit-exact"
                } else {
                    "within tolerance"
                };
                let note = match verdict {
                    Verdict::Pass => "verdict pass confirmed",
                    Verdict::Fail => "the auditor's FAIL verdict is contradicted",
                };
                out.pass(
                    CheckId::SpotReplay,
                    At::audit(i),
                    format!(
                        "audit {i} by {who}: {} cells re-executed {how}; {note}",
                        r.cells.len()
                    ),
                );
            }
            (Err(e), _) => e.report(receipt, i, &who, out),
        }
    }
}
