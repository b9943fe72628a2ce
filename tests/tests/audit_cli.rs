//! `forge-node audit` against a running `forge-node serve` (tiny model):
//! a fresh challenge answered from the commitment the server kept,
//! re-executed by the auditor, and signed into the receipt, which
//! `forge-verify` then checks; and every way the audit cannot pass.

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use forge_engine::testing::{TinySpec, tiny_model_gguf};
use serde_json::json;
use serve_support::{Server, fetch_receipt, forge_node, http, json_ok, workspace_bin};

fn write_model(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let spec = TinySpec {
        seed,
        ..TinySpec::default()
    };
    let p = dir.join(name);
    std::fs::write(&p, tiny_model_gguf(&spec).unwrap()).unwrap();
    p
}

/// One chat completion; returns its receipt id.
fn answer(server: &Server, model: &str) -> String {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "the tin"}],
        "max_tokens": 12, "seed": 3, "logit_bias": {"0": -100, "2": -100}})
    .to_string();
    let v = json_ok(http(
        server.addr,
        "POST",
        "/v1/chat/completions",
        Some(&body),
        &[],
    ));
    v["forge"]["receipt_id"].as_str().unwrap().to_string()
}

fn audit(auditor_home: &Path, args: &[&str]) -> Output {
    forge_node(auditor_home)
        .arg("audit")
        .args(args)
        .output()
        .expect("forge-node audit runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_fresh_challenge_is_answered_rechecked_and_signed_into_the_receipt() {
    let provider = tempfile::tempdir().unwrap();
    let auditor = tempfile::tempdir().unwrap();
    let model = write_model(provider.path(), "tiny.gguf", 1);
    let other = write_model(provider.path(), "other.gguf", 2);
    let m = model.to_str().unwrap();
    let server = Server::start(provider.path(), &["--model", m], &[]);
    let id = answer(&server, "tiny");
    let receipt = provider.path().join("r.bin");
    fetch_receipt(server.addr, &id, &receipt);
    let base = server.base.clone();
    let (r, url) = (receipt.to_str().unwrap(), base.as_str());

    let audited = auditor.path().join("audited.bin");
    let out = audit(
        auditor.path(),
        &[
            r,
            "--url",
            url,
            "--model",
            m,
            "--cells",
            "6",
            "--out",
            audited.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("6 cells re-executed, all match"),
        "{}",
        text(&out)
    );

    // The audited receipt carries this audit (the server embeds none); forge-verify re-checks it.
    let v = std::process::Command::new(workspace_bin("forge-verify"))
        .args(["--json", "--model", m])
        .arg(&audited)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["report"]["audits"], 1, "{report}");
    let replay = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "spot.replay")
        .unwrap_or_else(|| panic!("no replay line: {report}"));
    assert_eq!(replay["status"], "pass", "{replay}");
    assert!(
        replay["check"]
            .as_str()
            .unwrap()
            .contains("6 cells re-executed"),
        "{replay}"
    );

    // The same seed twice gives the same cells; a fixed seed is accepted.
    let seed = "ab".repeat(32);
    let out = audit(
        auditor.path(),
        &[r, "--url", url, "--model", m, "--seed", &seed],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Re-executed with other weights: the receipt names another model, the audit fails (3).
    let o = other.to_str().unwrap();
    let out = audit(auditor.path(), &[r, "--url", url, "--model", o]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("does not verify"), "{}", text(&out));

    // A receipt whose id was changed no longer verifies: the audit fails (3).
    let mut forged = std::fs::read(&receipt).unwrap();
    let stranger = provider.path().join("stranger.bin");
    let id_at = forged
        .windows(16)
        .position(|w| hex(w) == id)
        .expect("the id is in the receipt");
    forged[id_at] ^= 1;
    std::fs::write(&stranger, &forged).unwrap();
    let out = audit(
        auditor.path(),
        &[stranger.to_str().unwrap(), "--url", url, "--model", m],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "a changed id breaks the signature: {}",
        text(&out)
    );

    // A receipt signed by the same key that this server never issued (from
    // `forge-node generate`): the node answers 404, the audit cannot run (1).
    let alien = provider.path().join("alien.bin");
    let g = forge_node(provider.path())
        .args([
            "generate",
            "--prompt",
            "hi",
            "--max-tokens",
            "4",
            "--model",
            m,
            "--receipt",
        ])
        .arg(&alien)
        .output()
        .unwrap();
    assert!(g.status.success(), "{}", text(&g));
    let out = audit(
        auditor.path(),
        &[alien.to_str().unwrap(), "--url", url, "--model", m],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("404"), "{}", text(&out));

    // Usage errors are 2; an unreachable node or an unreadable file is 1.
    let out = audit(
        auditor.path(),
        &[r, "--url", url, "--model", m, "--seed", "xyz"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = audit(
        auditor.path(),
        &[r, "--url", url, "--model", m, "--cells", "0"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = audit(
        auditor.path(),
        &["/nonexistent/r.bin", "--url", url, "--model", m],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let garbage = provider.path().join("garbage.bin");
    std::fs::write(&garbage, b"FRGR not really").unwrap();
    let out = audit(
        auditor.path(),
        &[garbage.to_str().unwrap(), "--url", url, "--model", m],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    drop(server);
    let out = audit(auditor.path(), &[r, "--url", url, "--model", m]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the node is gone: {}",
        text(&out)
    );
}

#[test]
fn a_node_that_kept_no_commitment_answers_410_and_the_audit_cannot_run() {
    let provider = tempfile::tempdir().unwrap();
    let model = write_model(provider.path(), "tiny.gguf", 1);
    let m = model.to_str().unwrap();
    let server = Server::start(
        provider.path(),
        &["--model", m, "--audit-retain-mib", "0"],
        &[],
    );
    let id = answer(&server, "tiny");
    let receipt = provider.path().join("r.bin");
    fetch_receipt(server.addr, &id, &receipt);
    let out = audit(
        provider.path(),
        &[
            receipt.to_str().unwrap(),
            "--url",
            &server.base,
            "--model",
            m,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("410"), "{}", text(&out));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
