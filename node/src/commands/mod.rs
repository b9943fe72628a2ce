//! The subcommands.

mod account;
mod audit;
mod generate;
mod pull;
mod serve;
mod setup;

pub(crate) use account::{AccountArgs, account};
pub(crate) use audit::{AuditArgs, audit};
pub(crate) use generate::{GenerateArgs, generate};
pub(crate) use pull::{PullArgs, pull};
pub(crate) use serve::{ServeArgs, serve};
pub(crate) use setup::{SetupArgs, setup};

use std::path::{Path, PathBuf};

use anyhow::Result;

/// The model file to use: `--model` if given, else the default model,
/// pulled on first use.
pub(crate) fn resolve_model(model: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = model {
        anyhow::ensure!(p.is_file(), "--model {}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    forge_node::ensure_default_model()
}
