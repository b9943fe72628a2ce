//! Where the node keeps its files (`$FORGE_HOME`, default `~/.forge`).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// The node's home directory.
pub fn forge_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("FORGE_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither FORGE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".forge"))
}

/// The model cache directory.
pub fn models_dir() -> Result<PathBuf> {
    Ok(forge_home()?.join("models"))
}
