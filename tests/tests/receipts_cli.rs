//! End to end through the binaries: `forge-node generate --receipt` then
//! `forge-verify`, on a tiny model and on SmolLM2.

use std::path::{Path, PathBuf};
use std::process::Command;

use forge_engine::testing::{TinySpec, tiny_model_gguf};

/// A binary of the workspace, next to this test executable's directory.
fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo test --workspace --release` (it builds every binary)",
        p.display()
    );
    p
}

fn generate_receipt(home: &Path, model: &Path, receipt: &Path, extra: &[&str]) -> String {
    let out = Command::new(workspace_bin("forge-node"))
        .env("FORGE_HOME", home)
        .env("FORGE_LOG", "warn")
        .args([
            "generate",
            "--temperature",
            "0",
            "--max-tokens",
            "12",
            "--receipt",
        ])
        .arg(receipt)
        .arg("--model")
        .arg(model)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn verify(receipt: &Path, model: Option<&Path>) -> (i32, String) {
    let mut c = Command::new(workspace_bin("forge-verify"));
    if let Some(m) = model {
        c.arg("--model").arg(m);
    }
    let out = c.arg(receipt).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tiny_model_receipt_verifies_with_and_without_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(&model, tiny_model_gguf(&TinySpec::default()).unwrap()).unwrap();
    let receipt = dir.path().join("r.bin");
    generate_receipt(
        dir.path(),
        &model,
        &receipt,
        &["--prompt", "the tin", "--checks", "5"],
    );
    let (code, stderr) = verify(&receipt, Some(&model));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("5 cells re-executed bit-exact"), "{stderr}");
    let (code, stderr) = verify(&receipt, None);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("NOT re-executed"), "{stderr}");
    // The node key was created under FORGE_HOME, private.
    let key = dir.path().join("node.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A flipped byte anywhere in the tail (openings) or the header is rejected.
    let bytes = std::fs::read(&receipt).unwrap();
    for pos in [10, 100, 300, 520, bytes.len() / 2, bytes.len() - 5] {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        let bad = dir.path().join(format!("bad{pos}.bin"));
        std::fs::write(&bad, b).unwrap();
        let (code, stderr) = verify(&bad, Some(&model));
        assert!(
            code == 1 || code == 2,
            "flip at {pos}: exit {code}\n{stderr}"
        );
    }
}

#[test]
fn smollm2_paris_receipt_verifies() {
    let home = tempfile::tempdir().unwrap();
    let model = forge_tests::smollm2_path();
    let receipt = home.path().join("paris.bin");
    let text = generate_receipt(
        home.path(),
        &model,
        &receipt,
        &[
            "--system",
            "You are a helpful assistant.",
            "--prompt",
            "What is the capital of France?",
        ],
    );
    assert!(text.contains("Paris"), "{text}");
    let (code, stderr) = verify(&receipt, Some(&model));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("8 cells re-executed bit-exact"), "{stderr}");
}
