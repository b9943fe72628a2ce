//! Receipts: building, encoding, strict decoding, offline verification.

use std::ops::ControlFlow;

use forge_engine::{GenerateRequest, Generation, Model, SamplingParams, generate};
use forge_proofs::{
    AuditEntry, BuildError, Check, CommitmentSink, DType, DecodeError, ModelDims, NodeKey,
    RECEIPT_MAGIC, Receipt, ReceiptBuilder, SignatureError, TrustAnchor, Verdict, VerifyError,
    output_hash, prompt_hash,
};

use crate::common::{self, D_MODEL, LAYERS};

struct Run {
    model: Model,
    _dir: tempfile::TempDir,
    req: GenerateRequest,
    generation: Generation,
    receipt: Receipt,
}

fn request(model: &Model, text: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: model.tokenizer().encode(text).unwrap(),
        max_tokens: 5,
        sampling: SamplingParams {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.9,
            seed: 11,
            logit_bias: vec![(5, 1.5)],
            ..SamplingParams::default()
        },
        stop: vec![],
    }
}

fn provider() -> NodeKey {
    NodeKey::from_secret(&[42; 32])
}

fn run(text: &str) -> Run {
    let (model, dir) = common::tiny_model(1);
    let req = request(&model, text);
    let mut sink = CommitmentSink::new(D_MODEL).unwrap();
    let generation =
        generate(&model, &req, Some(&mut sink), |_| ControlFlow::Continue(())).unwrap();
    let commitment = sink.finish().unwrap();
    let key = provider();
    let receipt = ReceiptBuilder::new(&model, &key, &common::cu_keys().0)
        .build([9; 16], &req, &generation, &commitment)
        .unwrap();
    Run {
        model,
        _dir: dir,
        req,
        generation,
        receipt,
    }
}

fn anchor() -> TrustAnchor {
    TrustAnchor::new(common::cu_keys().1.clone())
}

/// Re-signs a receipt's header with `key` (an attacker who controls a key).
fn resign(r: &mut Receipt, key: &NodeKey) {
    r.provider.public_key = key.public_key();
    r.provider.signature = key.sign(&r.header_hash().unwrap());
}

/// Sets n_gen and makes every derived field agree with it.
fn forge_n_gen(r: &mut Receipt, n_gen: u32) {
    r.request.n_gen = n_gen;
    r.request.forwarded.end = r.request.n_prompt + n_gen - 1;
    r.trace.positions = r.request.forwarded.end - r.request.forwarded.start;
    fix_cost(r);
}

fn fix_cost(r: &mut Receipt) {
    let q = &r.request;
    r.cost.flops = forge_circuits::flops(
        &r.config.flop_config(),
        q.n_prompt.into(),
        q.n_gen.into(),
        q.forwarded.start.into(),
    )
    .unwrap();
    r.cost.milli_cu = (r.cost.flops / 1_000_000) as u64;
}

#[test]
fn an_honest_receipt_describes_the_run_and_verifies() {
    let Run {
        model,
        req,
        generation,
        receipt: r,
        ..
    } = run("<|im_start|>user\nhi<|im_end|>");
    let key = provider();
    assert_eq!(r.request.model_id, model.model_id());
    assert_eq!(r.request.backend, "cpu-i8-kv16");
    assert_eq!(r.request.prompt_hash, prompt_hash(&req.prompt));
    assert_eq!(r.output.tokens_hash, output_hash(&generation.tokens));
    assert_eq!(r.request.n_prompt as usize, req.prompt.len());
    assert_eq!(r.request.n_gen as usize, generation.tokens.len());
    assert_eq!(
        (r.request.forwarded.start, r.request.forwarded.end as u64),
        (0, generation.work.end)
    );
    assert_eq!(
        (r.trace.layers, r.trace.positions, r.trace.dtype),
        (LAYERS as u32, r.request.forwarded.end, DType::F32KvF16)
    );
    assert_eq!(r.cost.flops, generation.flops);
    assert_eq!(r.request.sampling.to_engine(), req.sampling);
    assert_eq!(r.vk_hash, forge_circuits::vk_hash(&common::cu_keys().1));
    assert_eq!(r.provider.public_key, key.public_key());
    assert_eq!(r.config, ModelDims::from_engine(model.config()).unwrap());

    let report = r.verify_offline(&anchor()).unwrap();
    assert_eq!(
        report.checks,
        [
            Check::Format,
            Check::Shape,
            Check::Flops,
            Check::Signature,
            Check::VerifyingKey,
            Check::CuProof
        ]
    );
    assert_eq!(
        (report.flops, report.milli_cu, report.audits),
        (r.cost.flops, r.cost.milli_cu, 0)
    );
    assert_eq!(report.receipt_hash, r.hash().unwrap());
    assert_eq!(report.header_hash, r.header_hash().unwrap());

    let pinned = anchor().with_model(model.model_id(), r.config);
    assert!(
        r.verify_offline(&pinned)
            .unwrap()
            .checks
            .contains(&Check::Model)
    );
}

#[test]
fn encoding_round_trips_with_the_documented_layout() {
    let mut r = run("hello").receipt;
    let auditor = NodeKey::from_secret(&[5; 32]);
    add_audit(&mut r, &auditor);
    let bytes = r.to_bytes().unwrap();
    assert_eq!(&bytes[..4], &RECEIPT_MAGIC);
    assert_eq!(&bytes[4..6], &[1, 0]);
    assert_eq!(&bytes[6..22], &[9; 16]);
    let backend = r.request.backend.len();
    let bias = r.request.sampling.logit_bias.len();
    let header = 4
        + 2
        + 16
        + 32
        + (4 + backend)
        + 4 * 3
        + 8
        + 4 * 2
        + (4 + 8 * bias)
        + 32
        + 4 * 4
        + 32
        + (32 + 4 + 4 + 1)
        + (16 + 8)
        + 7 * 4
        + 32
        + 32;
    let a = &r.audits[0];
    let audit = 32 + (4 + 8 * a.cells.len()) + (4 + a.openings.len()) + 1 + 32 + 64;
    assert_eq!(bytes.len(), header + 64 + 128 + 4 + audit);
    let back = Receipt::from_bytes(&bytes).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert_eq!(back.hash().unwrap(), *blake3::hash(&bytes).as_bytes());
    assert_eq!(
        back.header_hash().unwrap(),
        forge_proofs::domain_hash("forge.receipt.v1", &bytes[..header])
    );
    assert_ne!(back.hash().unwrap(), back.header_hash().unwrap());

    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["cost"]["flops"], r.cost.flops.to_string());
    assert_eq!(json["trace"]["dtype"], "f32_kv_f16");
    assert_eq!(json["request"]["id"], "09".repeat(16));
    assert_eq!(json["cu_proof"].as_str().unwrap().len(), 256);
    assert_eq!(json["provider"]["signature"].as_str().unwrap().len(), 128);
    assert_eq!(json["audits"][0]["verdict"], "pass");
    assert_eq!(json["request"]["sampling"]["logit_bias"][0][0], 5);
}

fn add_audit(r: &mut Receipt, auditor: &NodeKey) {
    let mut entry = AuditEntry {
        seed: [1; 32],
        cells: vec![(1, 2), (2, 0)],
        openings: b"openings".to_vec(),
        verdict: Verdict::Pass,
        auditor: auditor.public_key(),
        signature: [0; 64],
    };
    entry.signature = auditor.sign(&entry.signed_hash(&r.header_hash().unwrap()).unwrap());
    r.audits.push(entry);
}

type Tamper = (&'static str, fn(&mut Receipt), fn(&VerifyError) -> bool);

#[test]
fn every_tampered_field_fails_with_its_own_error() {
    use VerifyError as E;
    let honest = run("tamper me").receipt;
    let flops = honest.cost.flops;
    let sig = |e: &E| matches!(e, E::Signature(SignatureError::Invalid));
    let cases: Vec<Tamper> = vec![
        (
            "flops + 1",
            |r| r.cost.flops += 1,
            |e| matches!(e, E::FlopsMismatch { .. }),
        ),
        (
            "milli_cu + 1",
            |r| r.cost.milli_cu += 1,
            |e| matches!(e, E::MilliCuMismatch { .. }),
        ),
        (
            "n_gen + 1",
            |r| r.request.n_gen += 1,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "request.forwarded.end",
                        ..
                    }
                )
            },
        ),
        (
            "n_prompt - 1",
            |r| r.request.n_prompt -= 1,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "request.forwarded.end",
                        ..
                    }
                )
            },
        ),
        (
            "n_gen = 0",
            |r| r.request.n_gen = 0,
            |e| {
                matches!(
                    e,
                    E::InvalidField {
                        field: "request.n_gen",
                        ..
                    }
                )
            },
        ),
        (
            "start + 1",
            |r| r.request.forwarded.start += 1,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "trace.positions",
                        ..
                    }
                )
            },
        ),
        (
            "positions + 1",
            |r| r.trace.positions += 1,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "trace.positions",
                        ..
                    }
                )
            },
        ),
        (
            "trace layers + 1",
            |r| r.trace.layers += 1,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "trace.layers",
                        ..
                    }
                )
            },
        ),
        (
            "config ffn + 32",
            |r| r.config.ffn += 32,
            |e| matches!(e, E::FlopsMismatch { .. }),
        ),
        (
            "config heads",
            |r| r.config.heads *= 2,
            |e| {
                matches!(
                    e,
                    E::Inconsistent {
                        field: "config.d_model",
                        ..
                    }
                )
            },
        ),
        ("root bit", |r| r.trace.root[0] ^= 1, sig),
        ("model id", |r| r.request.model_id[31] ^= 0x80, sig),
        ("request id", |r| r.request.id[0] ^= 1, sig),
        ("prompt hash", |r| r.request.prompt_hash[5] ^= 1, sig),
        ("output hash", |r| r.output.tokens_hash[5] ^= 1, sig),
        ("seed", |r| r.request.sampling.seed += 1, sig),
        ("temperature", |r| r.request.sampling.temperature = 0.0, sig),
        ("logit bias", |r| r.request.sampling.logit_bias.clear(), sig),
        ("backend", |r| r.request.backend = "wgpu-f32".into(), sig),
        ("vk hash", |r| r.vk_hash[0] ^= 1, sig),
        ("signature byte", |r| r.provider.signature[3] ^= 1, sig),
        (
            "public key byte",
            |r| r.provider.public_key[3] ^= 1,
            |e| matches!(e, E::Signature(_)),
        ),
        (
            "proof byte",
            |r| r.cu_proof[40] ^= 1,
            |e| matches!(e, E::MalformedProof(_) | E::ProofRejected),
        ),
        (
            "proof infinity flag",
            |r| r.cu_proof[127] ^= 0x40,
            |e| matches!(e, E::MalformedProof(_) | E::ProofRejected),
        ),
        (
            "oversize backend",
            |r| r.request.backend = "x".repeat(33),
            |e| matches!(e, E::Format(_)),
        ),
    ];
    for (name, tamper, expected) in cases {
        let mut r = honest.clone();
        tamper(&mut r);
        match r.verify_offline(&anchor()) {
            Err(e) => assert!(expected(&e), "{name}: unexpected error {e:?}"),
            Ok(_) => panic!("{name}: tampered receipt verified"),
        }
    }
    match honest
        .clone()
        .tap(|r| r.cost.flops += 1)
        .verify_offline(&anchor())
    {
        Err(E::FlopsMismatch { expected, received }) => {
            assert_eq!((expected, received), (flops, flops + 1))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_attacker_who_re_signs_still_fails_at_flops_or_the_cu_proof() {
    use VerifyError as E;
    let honest = run("attack").receipt;
    let mallory = NodeKey::from_secret(&[66; 32]);
    let cases: Vec<Tamper> = vec![
        (
            "steal the receipt",
            |_| {},
            |e| matches!(e, E::ProofRejected),
        ),
        (
            "forged flops",
            |r| r.cost.flops += 1_000_000,
            |e| matches!(e, E::FlopsMismatch { .. }),
        ),
        (
            "forged flops and milli-CU",
            |r| {
                r.cost.flops *= 2;
                r.cost.milli_cu *= 2
            },
            |e| matches!(e, E::FlopsMismatch { .. }),
        ),
        (
            "forged n_gen, all derived fields fixed",
            |r| forge_n_gen(r, r.request.n_gen + 10),
            |e| matches!(e, E::ProofRejected),
        ),
        (
            "forged root",
            |r| r.trace.root = [0; 32],
            |e| matches!(e, E::ProofRejected),
        ),
        (
            "forged model dims, flops fixed",
            |r| {
                r.config.ffn += 32;
                fix_cost(r)
            },
            |e| matches!(e, E::ProofRejected),
        ),
        (
            "forged output",
            |r| r.output.tokens_hash = [1; 32],
            |e| matches!(e, E::ProofRejected),
        ),
        (
            "forged vk hash",
            |r| r.vk_hash = [3; 32],
            |e| matches!(e, E::VkMismatch { .. }),
        ),
    ];
    for (name, forge, expected) in cases {
        let mut r = honest.clone();
        forge(&mut r);
        resign(&mut r, &mallory);
        match r.verify_offline(&anchor()) {
            Err(e) => assert!(expected(&e), "{name}: unexpected error {e:?}"),
            Ok(_) => panic!("{name}: forged receipt verified"),
        }
    }
}

#[test]
fn proofs_and_anchors_do_not_transfer() {
    use VerifyError as E;
    let a = run("first").receipt;
    let b = run("second request").receipt;
    let mut swapped = a.clone();
    swapped.cu_proof = b.cu_proof;
    assert_eq!(swapped.verify_offline(&anchor()), Err(E::ProofRejected));

    let (_, other_vk) = forge_circuits::setup([8; 32]);
    match a.verify_offline(&TrustAnchor::new(other_vk)) {
        Err(E::VkMismatch { expected, received }) => {
            assert_eq!(received, a.vk_hash, "{expected:?}")
        }
        other => panic!("{other:?}"),
    }
    let unknown = anchor().with_model([0; 32], a.config);
    assert!(matches!(
        a.verify_offline(&unknown),
        Err(E::UnknownModel { .. })
    ));
    let wrong_dims = anchor().with_model(a.request.model_id, ModelDims { ffn: 1, ..a.config });
    assert!(matches!(
        a.verify_offline(&wrong_dims),
        Err(E::ConfigMismatch { .. })
    ));
}

#[test]
fn audits_are_checked_and_bound_to_the_receipt() {
    let mut r = run("audited").receipt;
    let auditor = NodeKey::from_secret(&[5; 32]);
    add_audit(&mut r, &auditor);
    let report = r.verify_offline(&anchor()).unwrap();
    assert_eq!(
        (report.audits, report.checks.last()),
        (1, Some(&Check::AuditSignatures))
    );
    let mut bad = r.clone();
    bad.audits[0].verdict = Verdict::Fail;
    assert!(matches!(
        bad.verify_offline(&anchor()),
        Err(VerifyError::AuditSignature { index: 0, .. })
    ));
    // An audit signed for another receipt does not carry over.
    let mut other = run("other").receipt;
    other.audits.push(r.audits[0].clone());
    assert!(matches!(
        other.verify_offline(&anchor()),
        Err(VerifyError::AuditSignature { index: 0, .. })
    ));
}

#[test]
fn strict_decoding_rejects_malformed_input_with_typed_errors() {
    let r = run("strict").receipt;
    let bytes = r.to_bytes().unwrap();
    let mut bad = bytes.clone();
    bad[0] = b'G';
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::BadMagic { .. })
    ));
    let mut bad = bytes.clone();
    bad[4] = 2;
    assert_eq!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::UnknownVersion {
            supported: 1,
            found: 2
        })
    );
    let mut bad = bytes.clone();
    bad.push(0);
    assert_eq!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    // Backend length prefix (offset 54) above its bound.
    let mut bad = bytes.clone();
    bad[54] = 33;
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::Oversize {
            field: "request.backend",
            len: 33,
            max: 32
        })
    ));
    // Logit-bias count (after backend and five scalar sampling fields) above 300.
    let at = 54 + 4 + r.request.backend.len() + 4 * 3 + 8 + 4 * 2;
    let mut bad = bytes.clone();
    bad[at..at + 4].copy_from_slice(&301u32.to_le_bytes());
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::Oversize {
            field: "request.sampling.logit_bias",
            ..
        })
    ));
    // Audit count above 64, and a count the input cannot hold.
    let n = bytes.len();
    let mut bad = bytes.clone();
    bad[n - 4..].copy_from_slice(&65u32.to_le_bytes());
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::Oversize {
            field: "audits",
            ..
        })
    ));
    bad[n - 4..].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::Truncated {
            field: "audits",
            ..
        })
    ));
    // Unknown dtype tag: the byte before cost.flops.
    let dtype_at = at + 4 + 8 * r.request.sampling.logit_bias.len() + 32 + 16 + 32 + 32 + 8;
    assert_eq!(bytes[dtype_at], 2);
    let mut bad = bytes.clone();
    bad[dtype_at] = 9;
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::InvalidValue {
            field: "trace.dtype",
            ..
        })
    ));
    // Bad UTF-8 in the backend tag.
    let mut bad = bytes.clone();
    bad[58] = 0xff;
    assert!(matches!(
        Receipt::from_bytes(&bad),
        Err(DecodeError::InvalidValue {
            field: "request.backend",
            ..
        })
    ));
}

/// A deterministic xorshift generator (no rand dependency for one test).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncations_and_random_byte_flips_never_verify_and_never_panic() {
    let mut r = run("fuzz").receipt;
    add_audit(&mut r, &NodeKey::from_secret(&[5; 32]));
    let bytes = r.to_bytes().unwrap();
    let anchor = anchor();
    Receipt::from_bytes(&bytes)
        .unwrap()
        .verify_offline(&anchor)
        .unwrap();
    for cut in 0..bytes.len() {
        match Receipt::from_bytes(&bytes[..cut]) {
            Err(DecodeError::Truncated { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let (mut decoded, mut rejected_by_decode) = (0, 0);
    for _ in 0..2000 {
        let mut bad = bytes.clone();
        let at = (rng.next() % bad.len() as u64) as usize;
        bad[at] ^= (rng.next() % 255 + 1) as u8;
        match Receipt::from_bytes(&bad) {
            Err(_) => rejected_by_decode += 1,
            Ok(t) => {
                decoded += 1;
                assert!(
                    t.verify_offline(&anchor).is_err(),
                    "flip at byte {at} verified"
                );
            }
        }
    }
    assert!(
        decoded > 1000 && rejected_by_decode > 0,
        "decoded {decoded}, rejected {rejected_by_decode}"
    );
}

#[test]
fn the_builder_refuses_a_commitment_of_another_run() {
    let Run {
        model,
        req,
        generation,
        ..
    } = run("one");
    let other_req = request(&model, "a much longer prompt than the first one");
    let mut sink = CommitmentSink::new(D_MODEL).unwrap();
    generate(&model, &other_req, Some(&mut sink), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let other = sink.finish().unwrap();
    let key = provider();
    let builder = ReceiptBuilder::new(&model, &key, &common::cu_keys().0);
    let err = builder
        .build([0; 16], &req, &generation, &other)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::Mismatch {
                field: "commitment.positions",
                ..
            }
        ),
        "{err}"
    );
    let err = builder
        .build([0; 16], &other_req, &generation, &other)
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::Mismatch {
                field: "generation.prompt_tokens",
                ..
            }
        ),
        "{err}"
    );
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
}

impl<T> Tap for T {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
