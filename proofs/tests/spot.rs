//! Spot checks: challenges, openings, re-execution against the real weights.

use std::ops::ControlFlow;

use forge_engine::{
    GenerateRequest, Generation, Model, SamplingParams, TraceRecorder, TraceSink, f16, generate,
};
use forge_proofs::{
    AuditEntry, Check, Commitment, CommitmentSink, DecodeError, NodeKey, Receipt, ReceiptBuilder,
    SpotChecker, SpotError, SpotOpenings, TrustAnchor, Verdict, challenge_cells, open_cells,
};

use crate::common::{self, D_MODEL, LAYERS};

fn request(model: &Model) -> GenerateRequest {
    GenerateRequest {
        prompt: model
            .tokenizer()
            .encode("<|im_start|>user\nspot me<|im_end|>")
            .unwrap(),
        max_tokens: 6,
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: 50,
            top_p: 0.95,
            seed: 3,
            presence_penalty: 0.5,
            ..SamplingParams::default()
        },
        stop: vec![],
    }
}

fn generate_into(model: &Model, req: &GenerateRequest, sink: &mut dyn TraceSink) -> Generation {
    generate(model, req, Some(sink), |_| ControlFlow::Continue(())).unwrap()
}

fn commit(model: &Model, req: &GenerateRequest) -> (Generation, Commitment) {
    let mut sink = CommitmentSink::for_model(model).unwrap();
    let generation = generate_into(model, req, &mut sink);
    (generation, sink.finish().unwrap())
}

/// `req` generated and committed on `model`, and its honest receipt.
fn honest_run(model: &Model, req: &GenerateRequest) -> (Generation, Commitment, Receipt) {
    let (generation, c) = commit(model, req);
    let r = build(model, req, &generation, &c);
    (generation, c, r)
}

fn build(
    claimed: &Model,
    req: &GenerateRequest,
    generation: &Generation,
    commitment: &Commitment,
) -> Receipt {
    let key = NodeKey::from_secret(&[42; 32]);
    ReceiptBuilder::new(claimed, &key, &common::cu_keys().0)
        .build([1; 16], req, generation, commitment)
        .unwrap()
}

fn all_cells(r: &Receipt) -> Vec<(u32, u32)> {
    (0..r.trace.layers)
        .flat_map(|l| (0..r.trace.positions).map(move |t| (l, t)))
        .collect()
}

/// Checks every cell on its own; returns the failures.
fn failing_cells(
    checker: &SpotChecker<'_>,
    r: &Receipt,
    c: &Commitment,
    req: &GenerateRequest,
    output: &[u32],
) -> Vec<((u32, u32), SpotError)> {
    failing_among(checker, r, c, req, output, &all_cells(r))
}

/// Checks each of `cells` on its own; returns the failures, in order.
fn failing_among(
    checker: &SpotChecker<'_>,
    r: &Receipt,
    c: &Commitment,
    req: &GenerateRequest,
    output: &[u32],
    cells: &[(u32, u32)],
) -> Vec<((u32, u32), SpotError)> {
    cells
        .iter()
        .copied()
        .filter_map(|cell| {
            let openings = open_cells(c, &req.prompt, output, &[cell]).unwrap();
            checker
                .check_cells(r, &[cell], &openings)
                .err()
                .map(|e| (cell, e))
        })
        .collect()
}

#[test]
fn every_cell_of_an_honest_run_replays_bit_exactly() {
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let (generation, c, r) = honest_run(&model, &req);
    let cells = all_cells(&r);
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    let report = SpotChecker::new(&model)
        .check_cells(&r, &cells, &openings)
        .unwrap();
    assert!(report.exact);
    assert!(report.cells.iter().all(|c| c.rel_l2 == 0.0));
    let steps: Vec<u32> = report.cells.iter().filter_map(|c| c.token_step).collect();
    assert_eq!(
        steps,
        (0..generation.tokens.len() as u32).collect::<Vec<_>>(),
        "every generated token re-sampled"
    );
    assert_eq!(cells.len(), LAYERS * c.positions());
}

#[test]
fn a_challenge_is_answered_checked_and_signed_into_the_receipt() {
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let (generation, c) = commit(&model, &req);
    let mut r = build(&model, &req, &generation, &c);

    let seed = [7; 32];
    let cells = challenge_cells(&r, &seed, 8).unwrap();
    assert_eq!(
        cells,
        challenge_cells(&r, &seed, 8).unwrap(),
        "deterministic"
    );
    assert_ne!(
        cells,
        challenge_cells(&r, &[8; 32], 8).unwrap(),
        "seed-dependent"
    );
    assert!(
        cells
            .iter()
            .all(|&(l, t)| l < r.trace.layers && t < r.trace.positions)
    );
    let spread: std::collections::BTreeSet<u32> = challenge_cells(&r, &seed, 64)
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(spread.len(), LAYERS, "all layers get challenged");

    // Provider answers; the bytes travel; the auditor checks and signs.
    let bytes = open_cells(&c, &req.prompt, &generation.tokens, &cells)
        .unwrap()
        .to_bytes()
        .unwrap();
    let openings = SpotOpenings::from_bytes(&bytes).unwrap();
    let report = SpotChecker::new(&model)
        .check(&r, &seed, 8, &openings)
        .unwrap();
    assert_eq!(report.cells.len(), 8);
    let auditor = NodeKey::from_secret(&[9; 32]);
    let entry = AuditEntry::signed(
        &r.header_hash().unwrap(),
        seed,
        cells,
        bytes,
        Verdict::Pass,
        &auditor,
    )
    .unwrap();
    r.audits.push(entry);
    let verified = r
        .verify_offline(&TrustAnchor::new(common::cu_keys().1.clone()))
        .unwrap();
    assert!(verified.checks.contains(&Check::AuditSignatures));
    // Appending the audit does not change the challenge (it hangs off the header hash).
    assert_eq!(challenge_cells(&r, &seed, 8).unwrap(), r.audits[0].cells);
    // The stored openings still check.
    let stored = SpotOpenings::from_bytes(&r.audits[0].openings).unwrap();
    SpotChecker::new(&model)
        .check(&r, &seed, 8, &stored)
        .unwrap();
}

#[test]
fn a_different_model_fails_every_cell() {
    let (claimed, _d1) = common::tiny_model(1);
    let (actual, _d2) = common::tiny_model(2);
    let req = request(&claimed);
    let (generation, c) = commit(&actual, &req);
    // The provider ran `actual` but signs and proves a receipt naming `claimed`.
    let r = build(&claimed, &req, &generation, &c);
    let failures = failing_cells(
        &SpotChecker::new(&claimed),
        &r,
        &c,
        &req,
        &generation.tokens,
    );
    assert_eq!(failures.len(), all_cells(&r).len());
    assert!(failures.iter().all(|(_, e)| matches!(
        e,
        SpotError::ReplayMismatch { .. } | SpotError::TokenMismatch { .. }
    )));
    let cells = [(0, 0)];
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    assert!(matches!(
        SpotChecker::new(&actual).check_cells(&r, &cells, &openings),
        Err(SpotError::WrongModel { .. })
    ));
}

#[test]
fn a_skipped_layer_fails_the_cells_that_touch_it() {
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let mut rec = TraceRecorder::new(D_MODEL);
    let generation = generate_into(&model, &req, &mut rec);
    // Layer 1 "skipped": its output committed as its input.
    let mut sink = CommitmentSink::new(D_MODEL).unwrap();
    for ((l, t), row) in rec.kv_rows() {
        sink.record_kv(l, t, row.len(), row);
    }
    for ((l, t), row) in rec.rows() {
        let row = if l == 1 { rec.row(0, t).unwrap() } else { row };
        sink.record(l, t, row);
    }
    let c = sink.finish().unwrap();
    let r = build(&model, &req, &generation, &c);
    let failures = failing_cells(&SpotChecker::new(&model), &r, &c, &req, &generation.tokens);
    let failed: Vec<(u32, u32)> = failures.iter().map(|f| f.0).collect();
    let expected: Vec<(u32, u32)> = all_cells(&r).into_iter().filter(|&(l, _)| l >= 1).collect();
    assert_eq!(failed, expected);
    assert!(
        failures
            .iter()
            .all(|(_, e)| matches!(e, SpotError::ReplayMismatch { .. }))
    );
}

#[test]
fn a_forged_token_fails_at_its_sampling_step() {
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let (mut generation, c) = commit(&model, &req);
    let last = generation.tokens.len() - 1;
    generation.tokens[last] = (generation.tokens[last] + 1) % 259;
    let r = build(&model, &req, &generation, &c);
    let failures = failing_cells(&SpotChecker::new(&model), &r, &c, &req, &generation.tokens);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let ((l, t), e) = &failures[0];
    assert_eq!((*l, *t), (LAYERS as u32 - 1, r.trace.positions - 1));
    assert!(
        matches!(e, SpotError::TokenMismatch { step, received, .. } if *step as usize == last && *received == generation.tokens[last])
    );
}

#[test]
fn token_checks_drawn_together_report_the_first_forged_step() {
    // Every last-layer cell in one draw: their rows go through LM head
    // passes of 8, and each must still be compared with its own step's
    // token (20 tokens: three passes, the last one short).
    let (model, _dir) = common::tiny_model(1);
    let req = GenerateRequest {
        max_tokens: 20,
        ..request(&model)
    };
    let (mut generation, c) = commit(&model, &req);
    assert_eq!(generation.tokens.len(), 20);
    let n_prompt = req.prompt.len() as u32;
    let forged = 11;
    generation.tokens[forged] = (generation.tokens[forged] + 1) % 259;
    let r = build(&model, &req, &generation, &c);
    let last = LAYERS as u32 - 1;
    let cells: Vec<(u32, u32)> = (n_prompt - 1..r.trace.positions)
        .rev()
        .map(|t| (last, t))
        .collect();
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    let checker = SpotChecker::new(&model);
    let e = checker.check_cells(&r, &cells, &openings).unwrap_err();
    // Challenge order is latest first: a later step fails first when the
    // forged token, in its history, changes what it samples; else the
    // forged step does.
    let SpotError::TokenMismatch { step, .. } = e else {
        panic!("{e:?}");
    };
    let alone: Vec<u32> = failing_among(&checker, &r, &c, &req, &generation.tokens, &cells)
        .into_iter()
        .filter_map(|(_, e)| match e {
            SpotError::TokenMismatch { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert!(alone.contains(&(forged as u32)), "{alone:?}");
    assert_eq!(step, alone[0], "the first failure in challenge order");

    // Honest tokens: every step re-sampled, each reported on its own cell.
    let (generation, c, r) = honest_run(&model, &req);
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    let report = checker.check_cells(&r, &cells, &openings).unwrap();
    for (cell, (_, t)) in report.cells.iter().zip(&cells) {
        assert_eq!(cell.token_step, Some(t + 1 - n_prompt));
    }
}

#[test]
fn cells_a_caller_names_outside_the_trace_are_malformed() {
    // `check_cells` takes its cells from the caller: a layer or position
    // at the end of u32's range is an error naming the cell, before or
    // beside any token check (whose step it would overflow).
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let (generation, c, r) = honest_run(&model, &req);
    let last = LAYERS as u32 - 1;
    let honest = open_cells(&c, &req.prompt, &generation.tokens, &[(last, 0)]).unwrap();
    for cell in [(last, u32::MAX), (u32::MAX, 0), (u32::MAX, u32::MAX)] {
        let mut openings = honest.clone();
        openings.cells[0].layer = cell.0;
        openings.cells[0].pos = cell.1;
        let e = SpotChecker::new(&model)
            .check_cells(&r, &[cell], &openings)
            .unwrap_err();
        assert!(
            matches!(e, SpotError::MalformedOpening { layer, pos, .. } if (layer, pos) == cell),
            "{cell:?}: {e:?}"
        );
    }
}

#[test]
fn tampered_or_mismatched_openings_are_rejected() {
    let (model, _dir) = common::tiny_model(1);
    let req = request(&model);
    let (generation, c, r) = honest_run(&model, &req);
    let checker = SpotChecker::new(&model);
    let cells = vec![(2, 3), (0, 1)];
    let honest = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    checker.check_cells(&r, &cells, &honest).unwrap();

    let mut bad = honest.clone();
    bad.cells[0].output.rows.f32_values_mut().unwrap()[0] += 0.5;
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::Opening {
            layer: 2,
            pos: 3,
            ..
        })
    ));
    let mut bad = honest.clone();
    let input = &mut bad.cells[0].input.as_mut().unwrap().rows;
    input.f32_values_mut().unwrap()[7] *= 2.0;
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::Opening { .. })
    ));
    let mut bad = honest.clone();
    let kv = &mut bad.cells[0].kv.rows;
    let w = kv.width();
    kv.f16_values_mut().unwrap()[w + 7] *= f16::from_f32(2.0);
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::Opening {
            layer: 2,
            pos: 3,
            ..
        })
    ));
    let mut bad = honest.clone();
    // Past t = 3, in the rest of its key/value block: not replayed, but hashed.
    let kv = &mut bad.cells[0].kv.rows;
    let w = kv.width();
    kv.f16_values_mut().unwrap()[10 * w] += f16::ONE;
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::Opening {
            layer: 2,
            pos: 3,
            ..
        })
    ));
    let mut bad = honest.clone();
    let kv = &mut bad.cells[0].kv.rows;
    kv.truncate(kv.len() - 1);
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::MalformedOpening { .. })
    ));
    let mut bad = honest.clone();
    bad.cells[0].kv.layer = 2;
    assert!(
        matches!(
            checker.check_cells(&r, &cells, &bad),
            Err(SpotError::MalformedOpening { .. })
        ),
        "kv must come from the kv groups"
    );
    let mut bad = honest.clone();
    bad.cells[1].input = bad.cells[0].input.clone();
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::MalformedOpening { layer: 0, .. })
    ));
    let mut bad = honest.clone();
    bad.cells.swap(0, 1);
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::CellsMismatch { index: 0, .. })
    ));
    let mut bad = honest.clone();
    bad.cells.pop();
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::CellsMismatch {
            index: 1,
            received: None,
            ..
        })
    ));
    let mut bad = honest.clone();
    bad.prompt[0] += 1;
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::TokensMismatch { which: "prompt" })
    ));
    let mut bad = honest.clone();
    bad.output.push(1);
    assert!(matches!(
        checker.check_cells(&r, &cells, &bad),
        Err(SpotError::TokensMismatch { which: "output" })
    ));

    let mut inflated = r.clone();
    inflated.trace.positions += 100;
    assert!(
        matches!(
            checker.check_cells(&inflated, &cells, &honest),
            Err(SpotError::Receipt(_))
        ),
        "shape checked, no panic"
    );

    let bytes = honest.to_bytes().unwrap();
    assert_eq!(SpotOpenings::from_bytes(&bytes).unwrap(), honest);
    for cut in 0..bytes.len() {
        assert!(
            SpotOpenings::from_bytes(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    assert!(SpotOpenings::from_bytes(&[bytes.clone(), vec![0]].concat()).is_err());

    // Key/value rows travel as f16 (the CPU engine's trace); a signaling
    // NaN, which the engine never commits (rounding to f16 quiets NaNs),
    // does not decode.
    assert_eq!(honest.cells[0].kv.rows.elem(), forge_proofs::Elem::F16);
    let mut odd = honest.clone();
    let marker = f16::from_bits(0x7BFE); // 65472, the largest f16 but one
    odd.cells[0].kv.rows.f16_values_mut().unwrap()[0] = marker;
    let mut bytes = odd.to_bytes().unwrap();
    let at: Vec<usize> = (0..bytes.len() - 1)
        .filter(|&i| bytes[i..i + 2] == [0xFE, 0x7B])
        .collect();
    assert_eq!(at.len(), 1, "the marker's bytes occur once");
    bytes[at[0]..at[0] + 2].copy_from_slice(&0x7C01u16.to_le_bytes());
    assert!(matches!(
        SpotOpenings::from_bytes(&bytes),
        Err(DecodeError::InvalidValue {
            field: "opening.rows",
            ..
        })
    ));
    // Every other f16 comes back as the very bits it went as: -0, the
    // smallest subnormal, an infinity, quiet NaNs with payloads.
    let odd_bits = [0x8000u16, 0x0001, 0xFC00, 0x7E01, 0xFFFF];
    let values = odd.cells[0].kv.rows.f16_values_mut().unwrap();
    for (v, b) in values.iter_mut().zip(odd_bits) {
        *v = f16::from_bits(b);
    }
    let bytes = odd.to_bytes().unwrap();
    let back = SpotOpenings::from_bytes(&bytes).unwrap();
    assert_eq!(back.to_bytes().unwrap(), bytes, "re-encodes to its bytes");
    match back.cells[0].kv.rows.values() {
        forge_proofs::RowsRef::F16(v) => assert_eq!(
            v[..odd_bits.len()]
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            odd_bits
        ),
        forge_proofs::RowsRef::F32(_) => panic!("key/value rows decode as f16"),
    }
}

#[test]
fn a_flex_receipt_replays_within_the_published_tolerance_and_a_nudged_row_does_not() {
    let (exact, dir) = common::tiny_model(1);
    let flex = Model::load(&dir.path().join("tiny.gguf"), forge_engine::Backend::Flex).unwrap();
    let req = GenerateRequest {
        sampling: SamplingParams::greedy(),
        ..request(&exact)
    };
    let (generation, c) = commit(&flex, &req);
    let r = build(&flex, &req, &generation, &c);
    assert_ne!(
        r.request.backend, "cpu-i8-kv16",
        "the receipt names the inexact backend"
    );
    let checker = SpotChecker::new(&exact);
    let cells = all_cells(&r);
    let openings = open_cells(&c, &req.prompt, &generation.tokens, &cells).unwrap();
    let report = checker.check_cells(&r, &cells, &openings).unwrap();
    assert!(!report.exact, "flex rows are compared within the tolerance");
    assert!(
        report
            .cells
            .iter()
            .all(|cell| cell.rel_l2 <= forge_proofs::DEFAULT_TOLERANCE),
        "{report:?}"
    );

    // An output row off by 5e-4 relative (a cheat the old, uncalibrated 1e-3 bound let through) fails.
    let (l, t) = (1, 2);
    let row: Vec<f32> = c
        .row(l, t)
        .unwrap()
        .iter()
        .map(|x| x * (1.0 + 5e-4))
        .collect();
    let mut sink = CommitmentSink::for_model(&flex).unwrap();
    let mut rec = TraceRecorder::new(D_MODEL);
    generate_into(&flex, &req, &mut rec);
    for ((kl, kt), kv) in rec.kv_rows() {
        sink.record_kv(kl, kt, kv.len(), kv);
    }
    for ((rl, rt), r) in rec.rows() {
        sink.record(rl, rt, if (rl, rt) == (l, t) { &row } else { r });
    }
    let nudged = sink.finish().unwrap();
    let r2 = build(&flex, &req, &generation, &nudged);
    let openings = open_cells(
        &nudged,
        &req.prompt,
        &generation.tokens,
        &[(l as u32, t as u32)],
    )
    .unwrap();
    let err = checker
        .check_cells(&r2, &[(l as u32, t as u32)], &openings)
        .unwrap_err();
    assert!(
        matches!(err, SpotError::ReplayMismatch { what: "output", .. }),
        "{err:?}"
    );
}
