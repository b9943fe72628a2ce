//! The `forge-verify` binary: checklist, JSON, exit-code contract.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge_engine::{GenerateRequest, SamplingParams, generate};
use forge_proofs::{
    AuditEntry, CommitmentSink, NodeKey, Receipt, ReceiptBuilder, Verdict, challenge_cells,
    open_cells,
};

use crate::common::{self, D_MODEL};

struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    vk: PathBuf,
    receipt: Receipt,
    /// Openings for the cells of seed [7; 32], count 4.
    openings: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model_path = common::write_tiny_model(dir.path(), 1);
    let model = forge_engine::Model::load(&model_path, forge_engine::Backend::Cpu).unwrap();
    let req = GenerateRequest {
        prompt: model.tokenizer().encode("verify me").unwrap(),
        max_tokens: 4,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let mut sink = CommitmentSink::new(D_MODEL).unwrap();
    let generation =
        generate(&model, &req, Some(&mut sink), |_| ControlFlow::Continue(())).unwrap();
    let c = sink.finish().unwrap();
    let key = NodeKey::from_secret(&[42; 32]);
    let receipt = ReceiptBuilder::new(&model, &key, &common::cu_keys().0)
        .build([2; 16], &req, &generation, &c)
        .unwrap();
    let cells = challenge_cells(&receipt, &[7; 32], 4).unwrap();
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells)
        .unwrap()
        .to_bytes()
        .unwrap();
    let vk = dir.path().join("cu.vk");
    std::fs::write(&vk, forge_circuits::vk_to_bytes(&common::cu_keys().1)).unwrap();
    Fixture {
        dir,
        model: model_path,
        vk,
        receipt,
        openings,
    }
}

impl Fixture {
    fn write(&self, r: &Receipt) -> PathBuf {
        self.write_bytes(&r.to_bytes().unwrap())
    }

    fn write_bytes(&self, bytes: &[u8]) -> PathBuf {
        let p = self
            .dir
            .path()
            .join(format!("{}.bin", blake3::hash(bytes).to_hex()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn audit(&self, verdict: Verdict, seed: [u8; 32]) -> Receipt {
        let mut r = self.receipt.clone();
        let cells = challenge_cells(&r, &seed, 4).unwrap();
        let auditor = NodeKey::from_secret(&[9; 32]);
        r.audits.push(
            AuditEntry::signed(
                &r.header_hash().unwrap(),
                seed,
                cells,
                self.openings.clone(),
                verdict,
                &auditor,
            )
            .unwrap(),
        );
        r
    }
}

fn verify(receipt: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forge-verify"))
        .args(extra)
        .arg(receipt)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn an_honest_receipt_exits_zero_with_a_checklist_and_json() {
    let f = fixture();
    let path = f.write(&f.receipt);
    let vk = f.vk.to_str().unwrap();
    let (code, stdout, stderr) = verify(&path, &["--vk", vk]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("✓ Groth16 CU proof verifies for this statement"),
        "{stderr}"
    );
    assert!(stderr.contains("VERIFIED"), "{stderr}");

    let pin = blake3::hash(&std::fs::read(&f.vk).unwrap())
        .to_hex()
        .to_string();
    let (code, stdout, stderr) = verify(&path, &["--vk", vk, "--vk-hash", &pin, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(
        json["receipt"]["cost"]["flops"],
        f.receipt.cost.flops.to_string()
    );
    assert_eq!(json["report"]["milli_cu"], f.receipt.cost.milli_cu);
    assert_eq!(
        json["receipt_hash"],
        blake3::hash(&f.receipt.to_bytes().unwrap())
            .to_hex()
            .as_str()
    );

    let model = f.model.to_str().unwrap();
    let (code, _, stderr) = verify(&path, &["--vk", vk, "--model", model]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("model id and dimensions"), "{stderr}");
}

#[test]
fn rejected_receipts_exit_one() {
    let f = fixture();
    let vk = f.vk.to_str().unwrap();
    let mut forged = f.receipt.clone();
    forged.cost.flops += 1;
    let forged_bytes = forged.to_bytes().unwrap();
    let (code, stdout, stderr) = verify(&f.write(&forged), &["--vk", vk, "--json"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("✗ FLOPs") && stderr.contains("REJECTED"),
        "{stderr}"
    );
    let json = serde_json::from_str::<serde_json::Value>(&stdout).unwrap();
    assert_eq!(json["verified"], false);
    // Without a report the hash is the file's own (a verified receipt's
    // comes from the report: the honest test above).
    let file_hash = |b: &[u8]| blake3::hash(b).to_hex().to_string();
    assert_eq!(json["receipt_hash"], file_hash(&forged_bytes));

    let bytes = f.receipt.to_bytes().unwrap();
    // Not a well-formed receipt: exit 2 (decode error), with the failing field named.
    let (code, stdout, stderr) = verify(&f.write_bytes(&bytes[..100]), &["--vk", vk, "--json"]);
    assert_eq!(code, 2);
    let json = serde_json::from_str::<serde_json::Value>(&stdout).unwrap();
    assert_eq!(json["receipt_hash"], file_hash(&bytes[..100]));
    assert!(
        stderr.contains("✗ canonical encoding: truncated")
            && stderr.contains("not a well-formed receipt"),
        "{stderr}"
    );

    let mut flipped = bytes.clone();
    flipped[200] ^= 1;
    assert_eq!(
        verify(&f.write_bytes(&flipped), &["--vk", vk]).0,
        1,
        "a flipped hash byte decodes and fails a check"
    );

    let other_dir = tempfile::tempdir().unwrap();
    let other_model = common::write_tiny_model(other_dir.path(), 2);
    let (code, _, stderr) = verify(
        &f.write(&f.receipt),
        &["--vk", vk, "--model", other_model.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown model"), "{stderr}");
}

#[test]
fn audits_are_listed_and_re_executed_with_the_model() {
    let f = fixture();
    let (vk, model) = (f.vk.to_str().unwrap(), f.model.to_str().unwrap());
    let passed = f.write(&f.audit(Verdict::Pass, [7; 32]));
    let (code, _, stderr) = verify(&passed, &["--vk", vk]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("NOT re-executed (needs --model)")
            && stderr.contains("not performed and are not claimed"),
        "{stderr}"
    );
    let (code, _, stderr) = verify(&passed, &["--vk", vk, "--model", model]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("4 cells re-executed bit-exact; verdict pass confirmed"),
        "{stderr}"
    );
    println!("{stderr}"); // the checklist, for `--nocapture`

    let failed = f.write(&f.audit(Verdict::Fail, [7; 32]));
    assert_eq!(
        verify(&failed, &["--vk", vk]).0,
        1,
        "a signed FAIL verdict rejects without the model"
    );
    let (code, _, stderr) = verify(&failed, &["--vk", vk, "--model", model]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("FAIL verdict is contradicted"), "{stderr}");

    // Openings for seed 7 filed under seed 8: other cells were challenged.
    // That needs no weights: rejected without the model too.
    let wrong = f.write(&f.audit(Verdict::Pass, [8; 32]));
    let (code, _, stderr) = verify(&wrong, &["--vk", vk]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("✗ audit 0") && stderr.contains("challenged"),
        "{stderr}"
    );
    let (code, _, stderr) = verify(&wrong, &["--vk", vk, "--model", model]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("✗ audit 0"), "{stderr}");
}

#[test]
fn usage_and_io_errors_exit_two() {
    let f = fixture();
    let path = f.write(&f.receipt);
    let vk = f.vk.to_str().unwrap();
    // Without --vk the embedded canonical key is the anchor; this receipt was
    // proved under a test key, so it is rejected (not a usage error).
    let (code, _, stderr) = verify(&path, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("verifying key"), "{stderr}");
    assert_eq!(
        verify(&f.dir.path().join("missing.bin"), &["--vk", vk]).0,
        2
    );
    let (code, _, stderr) = verify(&path, &["--vk", vk, "--vk-hash", &"00".repeat(32)]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not the pinned"), "{stderr}");
    assert_eq!(
        verify(&path, &["--vk", path.to_str().unwrap()]).0,
        2,
        "a receipt is not a verifying key"
    );
}
