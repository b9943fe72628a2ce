//! Spot checks (DESIGN.md section 6): challenge cells from a merlin
//! transcript, open them from a commitment, and re-execute them against the
//! real weights.

mod challenge;
mod check;
mod error;
mod noninteractive;
mod openings;
mod respond;
mod structure;

pub use challenge::{SPOT_TRANSCRIPT_LABEL, challenge_cells};
pub use check::{CellResult, DEFAULT_TOLERANCE, SpotChecker, SpotReport, relative_l2};
pub use error::SpotError;
pub use noninteractive::{FIAT_SHAMIR_DOMAIN, SelfAuditError, attach_self_audit, fiat_shamir_seed};
pub use openings::{CellOpening, SpotOpenings};
pub use respond::open_cells;
pub use structure::verify_openings;
