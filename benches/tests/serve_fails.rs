//! `forge-bench serve` when the Forge server cannot start: a clear error on
//! stderr, exit status 1, no results written. No network, nothing timed.

use std::path::Path;
use std::process::Command;

/// Run `forge-bench serve --forge-node <node>` on a placeholder model file
/// (never read: the server is started before anything opens the model).
fn serve_with(node: &Path) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.gguf");
    std::fs::write(&model, b"not a model").unwrap();
    let out_md = dir.path().join("serve.md");
    let out = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .arg("serve")
        .arg("--model")
        .arg(&model)
        .arg("--forge-node")
        .arg(node)
        .arg("--no-llama-cpp")
        .arg("--out")
        .arg(&out_md)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out_md.exists(),
    )
}

#[test]
fn a_missing_forge_node_is_a_clear_error() {
    let (code, stderr, wrote) = serve_with(Path::new("/nonexistent/forge-node"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot start the Forge server"), "{stderr}");
    assert!(
        stderr.contains("forge-node not found at /nonexistent/forge-node"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cargo build --release -p forge-node"),
        "{stderr}"
    );
    assert!(!wrote);
}

#[test]
fn a_forge_node_that_exits_at_once_is_a_clear_error() {
    // A stand-in that fails as a real node does when, e.g., the port or the
    // ledger cannot be opened: a message on stderr, exit status 1.
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("forge-node");
    std::fs::write(
        &node,
        "#!/bin/sh\necho 'error: binding 127.0.0.1:0: permission denied' >&2\nexit 1\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&node).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&node, perms).unwrap();
    let (code, stderr, wrote) = serve_with(&node);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot start the Forge server"), "{stderr}");
    assert!(stderr.contains("forge-node serve exited"), "{stderr}");
    assert!(
        stderr.contains("permission denied"),
        "the node's own words: {stderr}"
    );
    assert!(!wrote);
}
