//! A dishonest provider, for the "cheating must fail" tests of issue 3.
//!
//! Every receipt made here is signed with a valid [`NodeKey`] and, unless the
//! cheat is precisely a stale proof, carries a valid Groth16 CU proof made
//! with the real proving key: the cheater owns a node and runs the real
//! receipt machinery ([`CommitmentSink`], [`ReceiptBuilder`], [`open_cells`]),
//! it only computes something other than what it claims.
//!
//! | cheat | how | caught by |
//! | --- | --- | --- |
//! | [`Cheat::OtherModel`] | another tiny GGUF (other weight seed), receipt names the honest model | every spot-check cell (`spot.replay`) |
//! | [`Cheat::SkippedLayer`] | layer `l`'s `attn_output` and `ffn_down` zeroed in the GGUF, so the engine really skips it (row out = row in, bit for bit) | cells of layer `l` only (`spot.replay`) |
//! | [`Cheat::CoarseLayer`] | layer `l`'s Q4_1 weights re-quantised to 2 bits (4 levels per block) in the GGUF | cells of layer `l` only (`spot.replay`) |
//! | [`Cheat::InflatedFlops`] | FLOPs and milli-CU doubled, re-signed | `flops` |
//! | [`Cheat::InflatedNGenStaleProof`] | n_gen + extra with every derived field fixed, re-signed, old proof | `cu_proof` |
//! | [`Cheat::InflatedNGenPadded`] | n_gen + extra fake tokens, trace padded with copied rows, re-signed and re-proved | padded cells (`spot.replay`) |
//! | [`Cheat::ForgedTokenStaleProof`] | last output token changed after commitment, re-signed, old proof | `cu_proof` |
//! | [`Cheat::ForgedToken`] | last output token changed after commitment, re-signed and re-proved | the last-layer cell that samples it (`spot.token`) |
//!
//! Byte flips and truncations (cheat (f)) need no provider: the tests mutate
//! encoded receipts directly.
//!
//! The layer cheats are made by patching the GGUF bytes in place
//! ([`patch_layer`]) rather than by rewriting committed rows: the cheating
//! model then runs through the real engine, so its trace is internally
//! consistent (layer `l + 1` really consumed the skipped layer's output) and
//! exactly the cells of layer `l` are wrong, which is what a real lazy
//! provider would produce.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use forge_circuits::rand_core::SeedableRng;
use forge_circuits::{ChaCha20Rng, ProvingKey, VerifyingKey};
use forge_engine::gguf::GgufFile;
use forge_engine::quant::{GgmlType, Q4_1_BLOCK_BYTES};
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{
    Backend, FinishReason, ForwardWork, GenerateRequest, Generation, Model, SamplingParams,
    TraceRecorder, TraceSink, generate, request_flops,
};
use forge_proofs::{
    AuditEntry, Commitment, CommitmentSink, ModelDims, NodeKey, OUTPUT_BLOCK, Receipt,
    ReceiptBuilder, SpotChecker, SpotError, SpotOpenings, TrustAnchor, Verdict, challenge_cells,
    domain_hash, fiat_shamir_seed, open_cells, output_hash,
};

/// The CU proving and verifying keys of a fixed test setup, made once per
/// test binary (`forge_circuits::setup([7; 32])`, as forge-proofs' tests).
pub fn cu_keys() -> &'static (ProvingKey, VerifyingKey) {
    static KEYS: OnceLock<(ProvingKey, VerifyingKey)> = OnceLock::new();
    KEYS.get_or_init(|| forge_circuits::setup([7; 32]))
}

/// The provider's key: valid, and used for every dishonest receipt.
pub fn provider_key() -> NodeKey {
    NodeKey::from_secret(&[42; 32])
}

/// The seed of a receipt's embedded (non-interactive) spot checks:
/// [`forge_proofs::fiat_shamir_seed`], a hash of the signed header, so the
/// provider cannot pick it after the fact (it can still grind the header,
/// see the adversary tests).
pub fn embedded_seed(receipt: &Receipt) -> [u8; 32] {
    fiat_shamir_seed(receipt).expect("header encodes")
}

/// The `i`-th auditor challenge seed of a family (fresh, independent seeds
/// for the detection-rate experiments).
pub fn challenge_seed(family: u64, i: u64) -> [u8; 32] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&family.to_le_bytes());
    b[8..].copy_from_slice(&i.to_le_bytes());
    domain_hash("forge.adversary.challenge", &b)
}

/// Loads a model from GGUF bytes on the exact CPU backend.
pub fn model_from_bytes(gguf: &[u8]) -> Model {
    let file = GgufFile::parse(gguf.to_vec()).expect("tiny GGUF parses");
    Model::from_gguf(&file, Backend::Cpu).expect("tiny GGUF loads")
}

/// How one layer's weights are tampered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPatch {
    /// `attn_output` and `ffn_down` become exactly zero (scale and min of
    /// every Q4_1 block set to +0), so both residual updates add zero and the
    /// layer's output row is its input row: the layer is skipped.
    Skip,
    /// Every Q4_1 weight of the layer is rounded from 16 levels to 4
    /// (q -> 5 * round(q / 5)): the layer runs with 2-bit weights.
    Coarse,
}

/// Rounds a 4-bit code to the nearest of {0, 5, 10, 15}.
fn coarse_code(q: u8) -> u8 {
    (q + 2) / 5 * 5
}

/// A copy of `gguf` with layer `layer`'s quantised tensors patched in place.
/// Everything else (metadata, other tensors) is byte-identical.
pub fn patch_layer(gguf: &[u8], layer: usize, patch: LayerPatch) -> Vec<u8> {
    let file = GgufFile::parse(gguf.to_vec()).expect("GGUF parses");
    let mut out = gguf.to_vec();
    let prefix = format!("blk.{layer}.");
    let mut patched = 0;
    for t in file
        .tensors()
        .iter()
        .filter(|t| t.name.starts_with(&prefix) && t.ty == GgmlType::Q4_1)
    {
        let zero = t.name.ends_with(".attn_output.weight") || t.name.ends_with(".ffn_down.weight");
        for block in out[t.offset..t.offset + t.len].chunks_exact_mut(Q4_1_BLOCK_BYTES) {
            match patch {
                LayerPatch::Skip if zero => block[..4].fill(0),
                LayerPatch::Skip => continue,
                LayerPatch::Coarse => {
                    for b in &mut block[4..] {
                        *b = coarse_code(*b & 0x0F) | (coarse_code(*b >> 4) << 4);
                    }
                }
            }
            patched += 1;
        }
    }
    assert!(patched > 0, "layer {layer} has no Q4_1 tensor to patch");
    out
}

/// The cheats of issue 3, (a) to (e).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cheat {
    /// (a) Generated by another tiny model (weight seed `seed`) with the
    /// same dimensions; the receipt names the honest model.
    OtherModel {
        /// Weight seed of the model actually run.
        seed: u64,
    },
    /// (b) Layer `layer` skipped at every position.
    SkippedLayer {
        /// The skipped layer (>= 1, so its output is a committed row).
        layer: usize,
    },
    /// (c) Layer `layer` computed with 2-bit weights.
    CoarseLayer {
        /// The coarse layer.
        layer: usize,
    },
    /// (d) FLOPs and milli-CU multiplied by `factor`, re-signed.
    InflatedFlops {
        /// Multiplier.
        factor: u128,
    },
    /// (d) n_gen + `extra` with positions, FLOPs and milli-CU recomputed to
    /// agree, re-signed; the CU proof is the honest one (for the old header).
    InflatedNGenStaleProof {
        /// Tokens added to the claim.
        extra: u32,
    },
    /// (d) n_gen + `extra`: fake tokens appended to the output, the trace
    /// padded with copies of each layer's last real row, and the receipt
    /// built (signed and CU-proved) by the real [`ReceiptBuilder`]. Offline
    /// it is perfect; only the padded cells fail.
    InflatedNGenPadded {
        /// Fake tokens appended.
        extra: u32,
    },
    /// (e) The last output token replaced after commitment; header re-signed,
    /// CU proof left as it was (it binds the old output hash).
    ForgedTokenStaleProof,
    /// (e) The last output token replaced after commitment; the receipt is
    /// rebuilt (re-signed and re-proved) over the forged output.
    ForgedToken,
}

impl Cheat {
    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Self::OtherModel { seed } => format!("(a) other model (seed {seed})"),
            Self::SkippedLayer { layer } => format!("(b) layer {layer} skipped"),
            Self::CoarseLayer { layer } => format!("(c) layer {layer} with 2-bit weights"),
            Self::InflatedFlops { factor } => format!("(d) FLOPs x{factor}"),
            Self::InflatedNGenStaleProof { extra } => format!("(d) n_gen +{extra}, stale CU proof"),
            Self::InflatedNGenPadded { extra } => {
                format!("(d) n_gen +{extra}, padded trace, re-proved")
            }
            Self::ForgedTokenStaleProof => "(e) last token forged, stale CU proof".into(),
            Self::ForgedToken => "(e) last token forged, re-proved".into(),
        }
    }
}

/// A tiny honest model on disk, the trust anchor's files, and a provider.
#[derive(Debug)]
pub struct World {
    /// Holds the model and key files.
    pub dir: tempfile::TempDir,
    /// The honest model's shape and seed.
    pub spec: TinySpec,
    /// The honest GGUF bytes.
    pub gguf: Vec<u8>,
    /// The honest model, written to disk (for `forge-verify --model`).
    pub model_path: PathBuf,
    /// The honest model, loaded.
    pub model: Model,
    /// The CU verifying key file (for `forge-verify --vk`).
    pub vk_path: PathBuf,
    /// The provider's (valid) signing key.
    pub key: NodeKey,
}

impl World {
    /// Writes the tiny model of `spec` and the verifying key to a temp dir.
    pub fn new(spec: TinySpec) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let gguf = tiny_model_gguf(&spec).expect("tiny model builds");
        let model_path = dir.path().join("honest.gguf");
        std::fs::write(&model_path, &gguf).expect("write model");
        let model = Model::load(&model_path, Backend::Cpu).expect("tiny model loads");
        let vk_path = dir.path().join("cu.vk");
        std::fs::write(&vk_path, forge_circuits::vk_to_bytes(&cu_keys().1)).expect("write vk");
        Self {
            dir,
            spec,
            gguf,
            model_path,
            model,
            vk_path,
            key: provider_key(),
        }
    }

    /// A sampled request: the ChatML-less `text` tokenized, `max_tokens`, seed `seed`.
    pub fn request(&self, text: &str, max_tokens: usize, seed: u64) -> GenerateRequest {
        GenerateRequest {
            prompt: self.model.tokenizer().encode(text).expect("tokenizes"),
            max_tokens,
            sampling: SamplingParams {
                temperature: 0.9,
                top_k: 40,
                top_p: 0.95,
                seed,
                ..SamplingParams::default()
            },
            stop: vec![],
        }
    }

    /// The verifier's trust anchor: the CU key and the honest model pinned.
    pub fn anchor(&self) -> TrustAnchor {
        let dims = ModelDims::from_engine(self.model.config()).expect("dims fit");
        TrustAnchor::new(cu_keys().1.clone()).with_model(self.model.model_id(), dims)
    }

    fn builder(&self) -> ReceiptBuilder<'_> {
        ReceiptBuilder::new(&self.model, &self.key, &cu_keys().0)
    }

    /// What an honest provider serves for `req`.
    pub fn honest(&self, req: &GenerateRequest) -> Served {
        let (generation, commitment) = run(&self.model, req);
        let receipt = self
            .builder()
            .build([1; 16], req, &generation, &commitment)
            .expect("honest receipt builds");
        Served {
            receipt,
            commitment,
            prompt: req.prompt.clone(),
            output: generation.tokens,
        }
    }

    /// What a provider running `cheat` serves for `req`: a receipt naming
    /// the honest model, signed by [`World::key`].
    pub fn cheat(&self, cheat: &Cheat, req: &GenerateRequest) -> Served {
        match cheat {
            Cheat::OtherModel { seed } => {
                let other = tiny_model_gguf(&TinySpec {
                    seed: *seed,
                    ..self.spec.clone()
                })
                .expect("other model builds");
                self.served_by(&model_from_bytes(&other), req)
            }
            Cheat::SkippedLayer { layer } => self.served_by(
                &model_from_bytes(&patch_layer(&self.gguf, *layer, LayerPatch::Skip)),
                req,
            ),
            Cheat::CoarseLayer { layer } => self.served_by(
                &model_from_bytes(&patch_layer(&self.gguf, *layer, LayerPatch::Coarse)),
                req,
            ),
            Cheat::InflatedFlops { factor } => {
                let mut s = self.honest(req);
                s.receipt.cost.flops *= factor;
                s.receipt.cost.milli_cu =
                    u64::try_from(forge_engine::milli_cu(s.receipt.cost.flops)).expect("fits");
                resign(&mut s.receipt, &self.key);
                s
            }
            Cheat::InflatedNGenStaleProof { extra } => {
                let mut s = self.honest(req);
                let r = &mut s.receipt;
                r.request.n_gen += extra;
                r.request.forwarded.end += extra;
                r.trace.positions += extra;
                let q = &r.request;
                r.cost.flops = forge_circuits::flops(
                    &r.config.flop_config(),
                    q.n_prompt.into(),
                    q.n_gen.into(),
                    0,
                )
                .expect("fits");
                r.cost.milli_cu =
                    u64::try_from(forge_engine::milli_cu(r.cost.flops)).expect("fits");
                let last = *s.output.last().expect("one token");
                s.output.extend(std::iter::repeat_n(last, *extra as usize));
                r.output.tokens_hash = output_hash(&s.output);
                resign(r, &self.key);
                s
            }
            Cheat::InflatedNGenPadded { extra } => self.padded(req, *extra as usize),
            Cheat::ForgedTokenStaleProof => {
                let mut s = self.honest(req);
                forge_last_token(&mut s.output, self.model.config().vocab);
                s.receipt.output.tokens_hash = output_hash(&s.output);
                resign(&mut s.receipt, &self.key);
                s
            }
            Cheat::ForgedToken => {
                let (mut generation, commitment) = run(&self.model, req);
                forge_last_token(&mut generation.tokens, self.model.config().vocab);
                let receipt = self
                    .builder()
                    .build([1; 16], req, &generation, &commitment)
                    .expect("forged receipt builds");
                Served {
                    receipt,
                    commitment,
                    prompt: req.prompt.clone(),
                    output: generation.tokens,
                }
            }
        }
    }

    /// `actual` ran the request; the receipt names the honest model.
    fn served_by(&self, actual: &Model, req: &GenerateRequest) -> Served {
        let (generation, commitment) = run(actual, req);
        let receipt = self
            .builder()
            .build([1; 16], req, &generation, &commitment)
            .expect("receipt builds");
        Served {
            receipt,
            commitment,
            prompt: req.prompt.clone(),
            output: generation.tokens,
        }
    }

    /// The honest run, then `extra` fake tokens and a trace padded to match.
    fn padded(&self, req: &GenerateRequest, extra: usize) -> Served {
        let d = self.model.config().d_model;
        let mut rec = TraceRecorder::new(d);
        let mut generation = generate(&self.model, req, Some(&mut rec), |_| {
            ControlFlow::Continue(())
        })
        .expect("generates");
        let layers = self.model.config().layers;
        let real = generation.work.end as usize;
        let mut sink = CommitmentSink::new(d).expect("sink");
        // Every row group padded by repeating its last real row.
        let padded = |row: &dyn Fn(usize) -> Vec<f32>| {
            let mut rows: Vec<f32> = (0..real).flat_map(row).collect();
            let last = row(real - 1);
            for _ in 0..extra {
                rows.extend_from_slice(&last);
            }
            rows
        };
        for l in 0..layers {
            let kv = padded(&|t| rec.kv_row(l, t).expect("recorded").to_vec());
            sink.record_kv(l, 0, rec.kv_row(l, 0).expect("recorded").len(), &kv);
            sink.record(
                l,
                0,
                &padded(&|t| rec.row(l, t).expect("recorded").to_vec()),
            );
        }
        let commitment = sink.finish().expect("padded commitment");
        let last = *generation.tokens.last().expect("one token");
        generation.tokens.extend(std::iter::repeat_n(last, extra));
        generation.finish_reason = FinishReason::Length;
        let n_gen = generation.tokens.len() as u64;
        generation.work = ForwardWork::for_request(req.prompt.len() as u64, n_gen);
        generation.flops = request_flops(self.model.config(), generation.work);
        let receipt = self
            .builder()
            .build([1; 16], req, &generation, &commitment)
            .expect("padded receipt builds");
        Served {
            receipt,
            commitment,
            prompt: req.prompt.clone(),
            output: generation.tokens,
        }
    }
}

/// Generates `req` on `model` into a fresh commitment.
pub fn run(model: &Model, req: &GenerateRequest) -> (Generation, Commitment) {
    let mut sink = CommitmentSink::new(model.config().d_model).expect("sink");
    let generation =
        generate(model, req, Some(&mut sink), |_| ControlFlow::Continue(())).expect("generates");
    (generation, sink.finish().expect("commitment"))
}

/// Re-signs the header with `key` (after the cheater edited it).
pub fn resign(r: &mut Receipt, key: &NodeKey) {
    r.provider.public_key = key.public_key();
    r.provider.signature = key.sign(&r.header_hash().expect("header encodes"));
}

/// Re-proves the CU statement of `r`'s current header with the real
/// proving key (anyone can: the key is public).
pub fn reprove(r: &mut Receipt) {
    let stmt = r.cu_statement(r.header_hash().expect("header encodes"));
    let proof = forge_circuits::prove(&cu_keys().0, &stmt, &mut ChaCha20Rng::from_seed([3; 32]))
        .expect("statement holds");
    r.cu_proof = proof.to_bytes();
}

fn forge_last_token(tokens: &mut [u32], vocab: usize) {
    let last = tokens.last_mut().expect("one token");
    *last = (*last + 1) % vocab as u32;
}

/// What a provider hands out: the receipt, and what it can open later.
#[derive(Debug)]
pub struct Served {
    /// The signed receipt.
    pub receipt: Receipt,
    /// The commitment the provider opens cells from.
    pub commitment: Commitment,
    /// The prompt tokens.
    pub prompt: Vec<u32>,
    /// The output tokens the receipt commits to.
    pub output: Vec<u32>,
}

impl Served {
    /// Every cell (layer, position) of the receipt's trace.
    pub fn all_cells(&self) -> Vec<(u32, u32)> {
        let t = &self.receipt.trace;
        (0..t.layers)
            .flat_map(|l| (0..t.positions).map(move |p| (l, p)))
            .collect()
    }

    /// The provider's answer to a challenge of `cells`. Cells outside its
    /// commitment (a claim larger than the work) are answered with the
    /// nearest committed rows relabelled, the best a cheater can do.
    pub fn openings(&self, cells: &[(u32, u32)]) -> SpotOpenings {
        let last = (self.commitment.start() + self.commitment.positions() - 1) as u32;
        let clamped: Vec<(u32, u32)> = cells.iter().map(|&(l, t)| (l, t.min(last))).collect();
        let mut o =
            open_cells(&self.commitment, &self.prompt, &self.output, &clamped).expect("cells open");
        let start = self.commitment.start() as u32;
        let block = OUTPUT_BLOCK as u32;
        for ((c, &(l, t)), &(_, opened)) in o.cells.iter_mut().zip(cells).zip(&clamped) {
            c.layer = l;
            c.pos = t;
            if opened != t {
                // Relabelled as the block of the claimed position.
                c.output.first_pos = start + (t - start) / block * block;
            }
        }
        o
    }

    /// Verifies a challenge of `count` cells from `seed` with `checker`.
    pub fn spot_check(
        &self,
        checker: &SpotChecker<'_>,
        seed: &[u8; 32],
        count: u32,
    ) -> Result<(), SpotError> {
        let cells = challenge_cells(&self.receipt, seed, count).expect("header encodes");
        checker
            .check(&self.receipt, seed, count, &self.openings(&cells))
            .map(|_| ())
    }

    /// The cells that fail a one-cell spot check, with their errors: the
    /// ground truth of what the cheat tampered with.
    pub fn failing_cells(&self, checker: &SpotChecker<'_>) -> Vec<((u32, u32), SpotError)> {
        self.all_cells()
            .into_iter()
            .filter_map(|cell| {
                checker
                    .check_cells(&self.receipt, &[cell], &self.openings(&[cell]))
                    .err()
                    .map(|e| (cell, e))
            })
            .collect()
    }

    /// The receipt with `count` spot checks from `seed` embedded as an audit
    /// entry that the provider signs itself (verdict pass: a cheater never
    /// says otherwise).
    pub fn with_audit(&self, seed: [u8; 32], count: u32, key: &NodeKey) -> Receipt {
        let mut r = self.receipt.clone();
        let cells = challenge_cells(&r, &seed, count).expect("header encodes");
        let openings = self.openings(&cells).to_bytes().expect("openings encode");
        let header = r.header_hash().expect("header encodes");
        r.audits.push(
            AuditEntry::signed(&header, seed, cells, openings, Verdict::Pass, key)
                .expect("audit encodes"),
        );
        r
    }

    /// The receipt with `count` non-interactive checks embedded
    /// ([`embedded_seed`]).
    pub fn with_embedded_checks(&self, count: u32, key: &NodeKey) -> Receipt {
        self.with_audit(embedded_seed(&self.receipt), count, key)
    }
}

/// Checks an embedded or appended audit the way `forge-verify --model` does,
/// with the library: its cells are its seed's, its openings decode and
/// re-execute.
pub fn recheck_audits(receipt: &Receipt, checker: &SpotChecker<'_>) -> Result<usize, String> {
    let mut cells = 0;
    for (i, a) in receipt.audits.iter().enumerate() {
        let count = u32::try_from(a.cells.len()).map_err(|e| e.to_string())?;
        if challenge_cells(receipt, &a.seed, count).map_err(|e| e.to_string())? != a.cells {
            return Err(format!(
                "audit {i}: its cells are not the ones its seed selects"
            ));
        }
        let o = SpotOpenings::from_bytes(&a.openings)
            .map_err(|e| format!("audit {i}: openings do not decode: {e}"))?;
        cells += checker
            .check(receipt, &a.seed, count, &o)
            .map_err(|e| format!("audit {i}: {e}"))?
            .cells
            .len();
    }
    Ok(cells)
}

// ---------------------------------------------------------------------------
// The forge-verify binary.

/// `target/<profile>/forge-verify`, next to the test executable's `deps/`
/// (or `$FORGE_VERIFY_BIN`). Panics with the build command if it is missing:
/// `cargo test --workspace` builds it; a single-crate run needs
/// `cargo build --release -p forge-proofs --bin forge-verify` first.
pub fn forge_verify_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FORGE_VERIFY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join(format!("forge-verify{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p forge-proofs --bin forge-verify` first (or `cargo test --workspace --release`)",
        bin.display()
    );
    bin
}

/// The checks `forge-verify --json` names: each line carries one as `id`.
pub use forge_proofs::CheckId;

/// One `forge-verify --json` run.
#[derive(Debug)]
pub struct VerifyRun {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// The JSON report on stdout (absent on usage errors).
    pub json: Option<serde_json::Value>,
    /// The checklist.
    pub stderr: String,
}

impl VerifyRun {
    /// The checklist lines that failed, in order.
    pub fn failures(&self) -> Vec<String> {
        let Some(checks) = self.json.as_ref().and_then(|j| j["checks"].as_array()) else {
            return Vec::new();
        };
        checks
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["check"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The first failing line and the check it names (its JSON `id`).
    pub fn failed_check(&self) -> Option<(CheckId, String)> {
        let first = self.first_failure()?;
        let id = first["id"].as_str().and_then(CheckId::parse)?;
        Some((id, first["check"].as_str()?.to_string()))
    }

    /// The (layer, position) the first failing line is about (its JSON
    /// `cell`), when it names one.
    pub fn failed_cell(&self) -> Option<(u32, u32)> {
        let cell = self.first_failure()?["cell"].as_array()?.clone();
        let n = |i: usize| cell.get(i)?.as_u64().and_then(|v| u32::try_from(v).ok());
        Some((n(0)?, n(1)?))
    }

    fn first_failure(&self) -> Option<&serde_json::Value> {
        self.json.as_ref()?["checks"]
            .as_array()?
            .iter()
            .find(|c| c["status"] == "fail")
    }

    /// Asserts a clean rejection: exit 1 (rejected) or 2 (malformed file or
    /// usage error), never 0, never a signal or a panic; a failing check or
    /// an error on stderr; `verified: false` whenever JSON was printed.
    pub fn assert_rejected(&self, what: &str) {
        assert!(
            !self.stderr.contains("panicked"),
            "{what}: forge-verify panicked:\n{}",
            self.stderr
        );
        match self.code {
            Some(1 | 2) => {}
            other => panic!(
                "{what}: forge-verify exited {other:?} (0 = accepted a dishonest receipt):\n{}",
                self.stderr
            ),
        }
        if let Some(j) = &self.json {
            assert_eq!(j["verified"], false, "{what}");
        }
        assert!(
            self.stderr.contains("REJECTED")
                || self.stderr.contains("forge-verify: error:")
                || !self.failures().is_empty(),
            "{what}: exit {:?} without a failing check:\n{}",
            self.code,
            self.stderr
        );
    }

    /// Asserts a rejection whose first failing check is `expected`; returns
    /// the failing line.
    pub fn assert_fails_with(&self, expected: CheckId, what: &str) -> String {
        self.assert_rejected(what);
        match self.failed_check() {
            Some((id, line)) => {
                assert_eq!(
                    id, expected,
                    "{what}: failed at `{id}` ({line}), expected `{expected}`"
                );
                line
            }
            None => panic!("{what}: no failing check recognised:\n{}", self.stderr),
        }
    }

    /// Asserts acceptance (exit 0, `verified: true`).
    pub fn assert_verified(&self, what: &str) {
        assert_eq!(
            self.code,
            Some(0),
            "{what}: forge-verify rejected:\n{}",
            self.stderr
        );
        assert_eq!(
            self.json.as_ref().map(|j| j["verified"].clone()),
            Some(true.into()),
            "{what}"
        );
        assert!(self.stderr.contains("VERIFIED"), "{what}:\n{}", self.stderr);
    }
}

/// Runs `forge-verify --json --vk VK [--model MODEL] RECEIPT`.
pub fn forge_verify(receipt: &Path, vk: &Path, model: Option<&Path>) -> VerifyRun {
    let mut cmd = Command::new(forge_verify_bin());
    cmd.arg("--json").arg("--vk").arg(vk);
    if let Some(m) = model {
        cmd.arg("--model").arg(m);
    }
    let out = cmd.arg(receipt).output().expect("forge-verify runs");
    VerifyRun {
        code: out.status.code(),
        json: serde_json::from_slice(&out.stdout).ok(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl World {
    /// Writes `bytes` under the world's directory as `name`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).expect("write receipt");
        p
    }

    /// `forge-verify` on `receipt`, with or without the honest model.
    pub fn verify(&self, name: &str, receipt: &Receipt, with_model: bool) -> VerifyRun {
        let path = self.write(name, &receipt.to_bytes().expect("receipt encodes"));
        self.verify_path(&path, with_model)
    }

    /// `forge-verify` on a file.
    pub fn verify_path(&self, path: &Path, with_model: bool) -> VerifyRun {
        forge_verify(
            path,
            &self.vk_path,
            with_model.then_some(self.model_path.as_path()),
        )
    }
}

// ---------------------------------------------------------------------------
// Detection rates.

/// One row of the detection table.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    /// The cheat.
    pub cheat: String,
    /// Fraction of the trace's cells the cheat tampered with.
    pub f: f64,
    /// Cells per challenge.
    pub k: u32,
    /// `1 - (1 - f)^k`.
    pub expected: f64,
    /// Fraction of challenges that failed.
    pub measured: f64,
    /// Challenges.
    pub n: u32,
}

impl DetectionRow {
    /// Standard error of the measured rate under the expected one.
    pub fn std_err(&self) -> f64 {
        (self.expected * (1.0 - self.expected) / f64::from(self.n)).sqrt()
    }

    /// |measured - expected| in standard errors (0 when both are exact).
    pub fn z(&self) -> f64 {
        let diff = (self.measured - self.expected).abs();
        if diff == 0.0 {
            0.0
        } else {
            diff / self.std_err()
        }
    }
}

/// Runs `n` fresh challenges of `k` cells for every `k`, each through the
/// real [`SpotChecker`] on the provider's openings, and checks that a
/// challenge fails exactly when it samples a cell of `tampered`.
pub fn measure_detection(
    label: &str,
    served: &Served,
    checker: &SpotChecker<'_>,
    tampered: &BTreeSet<(u32, u32)>,
    ks: &[u32],
    n: u32,
) -> Vec<DetectionRow> {
    let total = served.all_cells().len() as f64;
    let f = tampered.len() as f64 / total;
    ks.iter()
        .map(|&k| {
            let mut detected = 0;
            for i in 0..n {
                let seed = challenge_seed(u64::from(k), u64::from(i));
                let cells = challenge_cells(&served.receipt, &seed, k).expect("header encodes");
                let hits = cells.iter().any(|c| tampered.contains(c));
                let failed = served.spot_check(checker, &seed, k).is_err();
                assert_eq!(failed, hits, "{label}: challenge {i} of {k} cells {cells:?}: failed = {failed}, sampled a tampered cell = {hits}");
                detected += u32::from(failed);
            }
            DetectionRow {
                cheat: label.to_string(),
                f,
                k,
                expected: 1.0 - (1.0 - f).powi(k as i32),
                measured: f64::from(detected) / f64::from(n),
                n,
            }
        })
        .collect()
}

/// The table as Markdown.
pub fn detection_markdown(rows: &[DetectionRow]) -> String {
    let mut s = String::from(
        "| cheat | f | k | expected 1-(1-f)^k | measured | n | z |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {:.4} | {} | {:.4} | {:.4} | {} | {:.2} |\n",
            r.cheat,
            r.f,
            r.k,
            r.expected,
            r.measured,
            r.n,
            r.z()
        );
    }
    s
}
