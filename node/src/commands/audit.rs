//! `forge-node audit`: challenge a node for a receipt it issued, check its
//! openings with the real weights, and optionally sign the verdict into the
//! receipt.
//!
//! A receipt's embedded spot checks use a seed derived from the receipt,
//! which its provider could grind; this audit's seed is drawn after the
//! answer (from the OS by default), so the provider cannot have prepared
//! for it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use forge_engine::{Backend, Model};
use forge_node::hex;
use forge_proofs::{
    AuditEntry, ModelDims, NodeKey, Receipt, SpotChecker, SpotOpenings, TrustAnchor, Verdict,
};

/// Arguments of `audit`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Sends POST /v1/receipts/{id}/openings with a fresh seed to the node that \
issued the receipt, re-executes every challenged cell with the model's real \
weights (SpotChecker), and prints the verdict. With --out, appends the \
verdict to the receipt as an audit entry signed by this node's key \
($FORGE_HOME/node.key); forge-verify checks such entries like the embedded \
ones.

Exit codes: 0 every challenged cell passed; 1 the audit could not run \
(unreadable receipt or model, node unreachable, or the node no longer keeps \
the commitment: HTTP 404/410); 2 usage error; 3 the audit failed: the receipt \
does not verify, or the node's openings are malformed or do not re-execute \
to the committed values.")]
pub(crate) struct AuditArgs {
    /// The receipt (FRGR), e.g. from `GET /v1/receipts/{id}` with
    /// `Accept: application/octet-stream`.
    receipt: PathBuf,
    /// Base URL of the node that issued it.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    url: String,
    /// Cells to challenge (1 to 64).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    cells: u32,
    /// Challenge seed, 64 hex digits [default: fresh from the OS random source].
    #[arg(long, value_name = "HEX", value_parser = parse_seed)]
    seed: Option<[u8; 32]>,
    /// GGUF model to re-execute with [default: the pulled SmolLM2-135M-Instruct].
    #[arg(long, env = "FORGE_MODEL", value_name = "GGUF")]
    model: Option<PathBuf>,
    /// Write the receipt with this audit appended (signed by this node's key).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Exit code of a failed audit.
const AUDIT_FAILED: u8 = 3;

pub(crate) fn audit(args: AuditArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.receipt)
        .with_context(|| format!("reading {}", args.receipt.display()))?;
    let mut receipt = match Receipt::from_bytes(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(failed(&format!("the receipt does not decode: {e}"))),
    };
    let seed = match args.seed {
        Some(s) => s,
        None => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(|e| anyhow!("the OS random source failed: {e}"))?;
            s
        }
    };
    let model_path = super::resolve_model(args.model.as_deref())?;
    let model = Model::load(&model_path, Backend::Cpu)
        .with_context(|| format!("loading {}", model_path.display()))?;
    let dims = ModelDims::from_engine(model.config())
        .ok_or_else(|| anyhow!("the model's dimensions do not fit in u32"))?;
    let anchor =
        TrustAnchor::new(forge_circuits::canonical_vk().clone()).with_model(model.model_id(), dims);
    if let Err(e) = receipt.verify_offline(&anchor) {
        return Ok(failed(&format!("the receipt does not verify: {e}")));
    }
    let cells = match forge_proofs::challenge_cells(&receipt, &seed, args.cells) {
        Ok(cells) => cells,
        Err(e) => {
            return Ok(failed(&format!(
                "the challenged cells cannot be derived: {e}"
            )));
        }
    };
    let id = hex(&receipt.request.id);
    let raw = fetch_openings(&args.url, &id, &seed, args.cells)?;
    let checked = SpotOpenings::from_bytes(&raw)
        .map_err(|e| format!("the node's openings do not decode: {e}"))
        .and_then(|openings| {
            SpotChecker::new(&model)
                .check_cells(&receipt, &cells, &openings)
                .map_err(|e| format!("[{}] {e}", e.check_id().as_str()))
        });
    let verdict = match &checked {
        Ok(report) => {
            eprintln!(
                "audit of receipt {id}: {} cells re-executed, all match (seed {})",
                report.cells.len(),
                hex(&seed)
            );
            Verdict::Pass
        }
        Err(e) => {
            eprintln!("audit of receipt {id} FAILED (seed {}): {e}", hex(&seed));
            Verdict::Fail
        }
    };
    if let Some(out) = &args.out {
        append_audit(&mut receipt, seed, cells, raw, verdict, out)?;
    }
    Ok(match verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(AUDIT_FAILED),
    })
}

fn failed(why: &str) -> ExitCode {
    eprintln!("audit FAILED: {why}");
    ExitCode::from(AUDIT_FAILED)
}

fn parse_seed(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 64 hex digits (32 bytes)".into());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// `POST {url}/v1/receipts/{id}/openings`; any status but 200 is an error
/// carrying the node's message.
fn fetch_openings(url: &str, id: &str, seed: &[u8; 32], cells: u32) -> Result<Vec<u8>> {
    let endpoint = format!("{}/v1/receipts/{id}/openings", url.trim_end_matches('/'));
    let body = serde_json::json!({"seed": hex(seed), "cells": cells}).to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    rt.block_on(async {
        let res = reqwest::Client::new()
            .post(&endpoint)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = res.status();
        let bytes = res
            .bytes()
            .await
            .with_context(|| format!("reading the answer of {endpoint}"))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{endpoint} answered {status}: {message}");
        }
        Ok(bytes.to_vec())
    })
}

/// Appends the signed audit to `receipt` and writes it to `out`.
fn append_audit(
    receipt: &mut Receipt,
    seed: [u8; 32],
    cells: Vec<(u32, u32)>,
    openings: Vec<u8>,
    verdict: Verdict,
    out: &Path,
) -> Result<()> {
    let key =
        NodeKey::load_or_create(&forge_node::forge_home()?).context("loading the node key")?;
    let header = receipt.header_hash().context("hashing the receipt")?;
    let entry = AuditEntry::signed(&header, seed, cells, openings, verdict, &key)
        .context("signing the audit")?;
    receipt.audits.push(entry);
    let bytes = receipt.to_bytes().context("encoding the audited receipt")?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "audited receipt written to {} ({} bytes)",
        out.display(),
        bytes.len()
    );
    Ok(())
}
