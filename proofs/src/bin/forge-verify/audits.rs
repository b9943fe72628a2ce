//! Audit entries: verdicts, and with the model, their openings re-executed.

use forge_engine::Model;
use forge_proofs::{Receipt, SpotChecker, SpotOpenings, Verdict, challenge_cells, fiat_shamir_seed, verify_openings};

use crate::outcome::Outcome;

/// Adds one line per audit. A signed FAIL verdict, or openings that do not
/// re-execute to the committed values, reject the receipt.
pub(crate) fn recheck(receipt: &Receipt, model: Option<&Model>, out: &mut Outcome) {
    for (i, a) in receipt.audits.iter().enumerate() {
        let fs = fiat_shamir_seed(receipt).is_ok_and(|s| s == a.seed);
        let who = format!(
            "{}..{}",
            a.auditor.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>(),
            if fs { " (non-interactive)" } else { "" }
        );
        let Some(model) = model else {
            let count = u32::try_from(a.cells.len()).unwrap_or(u32::MAX);
            let structure = SpotOpenings::from_bytes(&a.openings)
                .map_err(|e| format!("openings do not decode: {e}"))
                .and_then(|o| verify_openings(receipt, &a.seed, count, &o).map_err(|e| e.to_string()));
            match structure {
                Ok(n) => out.pass(format!(
                    "audit {i} by {who}: tokens match the receipt, the {n} cells are the seed's, every opened row is in the committed tree"
                )),
                Err(e) => {
                    out.fail(format!("audit {i} by {who}: {e}"));
                    continue;
                }
            }
            match a.verdict {
                Verdict::Pass => out.not_checked(format!(
                    "audit {i} by {who}: {} cells claimed to pass, NOT re-executed (needs --model)",
                    a.cells.len()
                )),
                Verdict::Fail => out.fail(format!("audit {i} by {who}: signed verdict FAIL")),
            }
            continue;
        };
        let count = u32::try_from(a.cells.len()).unwrap_or(u32::MAX);
        match challenge_cells(receipt, &a.seed, count) {
            Ok(cells) if cells == a.cells => {}
            _ => {
                out.fail(format!("audit {i} by {who}: its cells are not the ones its seed selects"));
                continue;
            }
        }
        let checked = SpotOpenings::from_bytes(&a.openings)
            .map_err(|e| format!("openings do not decode: {e}"))
            .and_then(|o| SpotChecker::new(model).check(receipt, &a.seed, count, &o).map_err(|e| e.to_string()));
        match (checked, a.verdict) {
            (Ok(r), verdict) => {
                let how = if r.exact { "bit-exact" } else { "within tolerance" };
                let note = match verdict {
                    Verdict::Pass => "verdict pass confirmed",
                    Verdict::Fail => "the auditor's FAIL verdict is contradicted",
                };
                out.pass(format!("audit {i} by {who}: {} cells re-executed {how}; {note}", r.cells.len()));
            }
            (Err(e), _) => out.fail(format!("audit {i} by {who}: {e}")),
        }
    }
}
