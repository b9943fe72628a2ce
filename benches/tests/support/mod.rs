//! What the benchmark tests share: a tiny model on disk and running
//! `forge-bench` on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use forge_engine::testing::{TinySpec, tiny_model_gguf};

/// Writes a tiny random Llama (long enough a context for the 518-token
/// prompt) as `tiny.gguf` under `dir`.
pub(crate) fn tiny_model(dir: &Path) -> PathBuf {
    let model = dir.join("tiny.gguf");
    let spec = TinySpec {
        context_length: 8192,
        ..TinySpec::default()
    };
    std::fs::write(&model, tiny_model_gguf(&spec).unwrap()).unwrap();
    model
}

/// Runs `forge-bench` with `args`, then `--model model --out out`.
pub(crate) fn forge_bench(args: &[&str], model: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(args)
        .arg("--model")
        .arg(model)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}
