//! Audit entries: verdicts, and with the model, their openings re-executed.

use forge_engine::Model;
use forge_proofs::{
    CheckId, Receipt, SpotChecker, SpotError, SpotOpenings, SpotReport, Verdict, challenge_cells,
    fiat_shamir_seed, verify_openings,
};

use crate::outcome::{At, Outcome};

/// Why an audit's openings did not check: they did not decode, or a spot check failed.
pub(crate) enum AuditError {
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

/// What checking one audit's openings found.
pub(crate) enum Found {
    /// Without the model: the openings' shapes and Merkle proofs (the
    /// number of cells).
    Structure(Result<usize, AuditError>),
    /// With the model: the entry's cells are not the ones its seed selects.
    WrongCells,
    /// With the model: the cells re-executed.
    Replay(Result<SpotReport, AuditError>),
}

/// Checks every audit's openings: without the model their shapes and
/// Merkle proofs, with it the re-executions too. Independent of the
/// receipt's own checks, so `forge-verify` runs it beside them (the CU
/// proof's pairing and the openings' hashing each take a core); the lines
/// are written after them, by [`report`].
pub(crate) fn check(receipt: &Receipt, model: Option<&Model>) -> Vec<Found> {
    receipt
        .audits
        .iter()
        .map(|a| {
            let count = u32::try_from(a.cells.len()).unwrap_or(u32::MAX);
            let openings = || {
                SpotOpenings::from_bytes(&a.openings).map_err(|e| AuditError::Decode(e.to_string()))
            };
            let Some(model) = model else {
                return Found::Structure(openings().and_then(|o| {
                    verify_openings(receipt, &a.seed, count, &o).map_err(AuditError::Spot)
                }));
            };
            match challenge_cells(receipt, &a.seed, count) {
                Ok(cells) if cells == a.cells => Found::Replay(openings().and_then(|o| {
                    SpotChecker::new(model)
                        .check(receipt, &a.seed, count, &o)
                        .map_err(AuditError::Spot)
                })),
                _ => Found::WrongCells,
            }
        })
        .collect()
}

/// Adds one line per audit, from what [`check`] found. A signed FAIL
/// verdict, or openings that do not re-execute to the committed values,
/// reject the receipt.
pub(crate) fn report(receipt: &Receipt, found: Vec<Found>, out: &mut Outcome) {
    for (i, (a, found)) in receipt.audits.iter().zip(found).enumerate() {
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
        match found {
            Found::Structure(Ok(n)) => {
                out.pass(
                    CheckId::SpotOpening,
                    At::audit(i),
                    format!("audit {i} by {who}: tokens match the receipt, the {n} cells are the seed's, every opened row is in the committed tree"),
                );
                match a.verdict {
                    Verdict::Pass => out.not_checked(
                        CheckId::SpotReplay,
                        At::audit(i),
                        format!("audit {i} by {who}: {} cells claimed to pass, NOT re-executed (needs --model)", a.cells.len()),
                    ),
                    Verdict::Fail => out.fail(CheckId::AuditVerdict, At::audit(i), format!("audit {i} by {who}: signed verdict FAIL")),
                }
            }
            Found::WrongCells => out.fail(
                CheckId::SpotCells,
                At::audit(i),
                format!("audit {i} by {who}: its cells are not the ones its seed selects"),
            ),
            Found::Replay(Ok(r)) => {
                let how = if r.exact {
                    "bit-exact"
                } else {
                    "within tolerance"
                };
                let note = match a.verdict {
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
            Found::Structure(Err(e)) | Found::Replay(Err(e)) => e.report(receipt, i, &who, out),
        }
    }
}
