//! `forge-verify`: check a Forge receipt offline.
//!
//! ```text
//! forge-verify [--vk cu.vk] [--vk-hash HEX] [--model model.gguf] [--json] receipt.bin
//! ```
//!
//! Prints a checklist on stderr (and, with `--json`, the outcome and the
//! receipt as JSON on stdout). Exit codes are a contract:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | every check passed |
//! | 1 | the receipt is rejected: a check failed, or it carries a failed audit |
//! | 2 | usage, I/O or decode error: the file is not a well-formed receipt, or nothing could be concluded |

mod audits;
mod outcome;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use forge_engine::{Backend, Model};
use forge_proofs::{ModelDims, Receipt, TrustAnchor};
use outcome::{At, Outcome};

/// Verify a Forge receipt offline: format, FLOPs, signature, CU proof, audits.
#[derive(Debug, Parser)]
#[command(
    name = "forge-verify",
    version,
    after_help = "Exit codes: 0 every check passed; 1 the receipt is rejected (a check failed, or a failed audit); \
                  2 usage, I/O or decode error (not a well-formed receipt).\n\
                  Without --model the audits' openings are not re-executed and are reported as not checked."
)]
struct Args {
    /// The receipt (binary, `FRGR` v1).
    receipt: PathBuf,
    /// The CU verifying key (compressed arkworks bytes, as `forge-node setup`
    /// writes it). Default: the project's canonical key, embedded.
    #[arg(long, value_name = "FILE")]
    vk: Option<PathBuf>,
    /// The pinned blake3 of the verifying key (hex); the key file is refused if it differs.
    #[arg(long, value_name = "HEX")]
    vk_hash: Option<String>,
    /// The model (GGUF): pins its id and dimensions and re-executes every
    /// audit's openings with its weights.
    #[arg(long, value_name = "GGUF")]
    model: Option<PathBuf>,
    /// Print the outcome and the receipt as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(outcome) => {
            outcome.print(args.json);
            if outcome.is_malformed() {
                ExitCode::from(2)
            } else if outcome.verified() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(msg) => {
            eprintln!("forge-verify: error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Everything but printing. `Err` is a usage or I/O error (exit 2).
fn run(args: &Args) -> Result<Outcome, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let bytes = read(&args.receipt)?;
    let (vk, vk_name) = match &args.vk {
        Some(p) => (
            forge_circuits::vk_from_bytes(&read(p)?)
                .map_err(|e| format!("{}: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            forge_circuits::canonical_vk().clone(),
            "the canonical verifying key".to_string(),
        ),
    };
    let vk_hash = forge_circuits::vk_hash(&vk);
    if let Some(pin) = &args.vk_hash {
        let actual: String = vk_hash.iter().map(|b| format!("{b:02x}")).collect();
        if !pin.eq_ignore_ascii_case(&actual) {
            return Err(format!(
                "{vk_name} has blake3 {actual}, not the pinned {pin}"
            ));
        }
    }
    let model = match &args.model {
        Some(p) => Some(Model::load(p, Backend::Cpu).map_err(|e| e.to_string())?),
        None => None,
    };

    let mut out = check(&bytes, vk, model.as_ref())?;
    out.identify(&bytes);
    Ok(out)
}

/// Decodes and checks the receipt in `bytes` (the outcome's receipt hash
/// is left to [`Outcome::identify`]).
fn check(
    bytes: &[u8],
    vk: forge_circuits::VerifyingKey,
    model: Option<&Model>,
) -> Result<Outcome, String> {
    let mut out = Outcome::new();
    let receipt = match Receipt::from_bytes(bytes) {
        Ok(r) => r,
        Err(e) => {
            out.malformed(format!("canonical encoding: {e}"));
            return Ok(out);
        }
    };
    let mut anchor = TrustAnchor::new(vk);
    if let Some(m) = model {
        let dims =
            ModelDims::from_engine(m.config()).ok_or("the model's dimensions do not fit in u32")?;
        anchor = anchor.with_model(m.model_id(), dims);
    }
    // The audits' openings are checked beside the receipt's own checks;
    // their lines come after those, and only if those pass.
    let (offline, found) = rayon::join(
        || receipt.verify_offline(&anchor),
        || audits::check(&receipt, model),
    );
    match offline {
        Ok(report) => {
            report
                .checks
                .iter()
                .for_each(|c| out.pass(c.id(), At::default(), c.describe().to_string()));
            out.report = Some(report);
            audits::report(&receipt, found, &mut out);
        }
        Err(e) => out.fail(e.check_id(), At::default(), e.to_string()),
    }
    out.receipt = Some(receipt);
    Ok(out)
}
