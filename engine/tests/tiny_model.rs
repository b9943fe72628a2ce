//! The engine on tiny random Llamas written as real GGUF files.

use std::ops::ControlFlow;

use forge_engine::gguf::GgufFile;
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{
    Backend, CellReplay, ChatMessage, EngineError, FinishReason, ForwardWork, GenerateRequest,
    Model, Numerics, SamplingParams, TraceRecorder, f16, generate, lm_head_flops, position_flops,
    request_flops,
};

fn model_with(spec: &TinySpec, backend: Backend) -> Model {
    let file = GgufFile::parse(tiny_model_gguf(spec).unwrap()).unwrap();
    Model::from_gguf(&file, backend).unwrap()
}

fn model() -> Model {
    model_with(&TinySpec::default(), Backend::Cpu)
}

fn request(
    model: &Model,
    text: &str,
    max_tokens: usize,
    sampling: SamplingParams,
) -> GenerateRequest {
    GenerateRequest {
        prompt: model.tokenizer().encode(text).unwrap(),
        max_tokens,
        sampling,
        stop: vec![],
    }
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        seed,
        ..SamplingParams::default()
    }
}

fn run(model: &Model, req: &GenerateRequest) -> (forge_engine::Generation, TraceRecorder) {
    let mut rec = TraceRecorder::new(model.config().d_model);
    let out = generate(model, req, Some(&mut rec), |_| ControlFlow::Continue(())).unwrap();
    (out, rec)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn loads_config_and_tokenizer_from_the_file() {
    let spec = TinySpec::default();
    let m = model();
    let c = m.config();
    assert_eq!(
        (c.layers, c.d_model, c.heads, c.kv_heads, c.head_dim, c.ffn),
        (3, 64, 4, 2, 16, 128)
    );
    assert_eq!(c.context_length, spec.context_length);
    assert!(c.tied_embeddings);
    let t = m.tokenizer();
    let ids = t.encode("<|im_start|>user\nthe tin<|im_end|>").unwrap();
    assert_eq!(ids[0], 1, "special token matched whole");
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(
        t.decode(&ids).unwrap(),
        "<|im_start|>user\nthe tin<|im_end|>"
    );
    // Merges apply: " t" + "he" -> " the" is one token.
    let the = t.encode(" the").unwrap();
    assert_eq!(the.len(), 1, "{the:?}");
    // Digits are split one by one.
    assert_eq!(t.encode("2024").unwrap().len(), 4);
}

#[test]
fn same_seed_same_tokens_and_rows_different_seed_differs() {
    let m = model();
    let req = request(&m, "hello there", 24, sampled(7));
    let (a, ra) = run(&m, &req);
    let (b, rb) = run(&m, &req);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(ra.len(), rb.len());
    for ((ka, va), (kb, vb)) in ra.rows().zip(rb.rows()) {
        assert_eq!(ka, kb);
        assert_eq!(bits(va), bits(vb));
    }
    let (c, _) = run(&m, &request(&m, "hello there", 24, sampled(8)));
    assert_ne!(a.tokens, c.tokens, "another seed should sample differently");
}

#[test]
fn rows_are_batch_invariant_prefill_decode_and_replay() {
    let m = model();
    let cfg = m.config().clone();
    let d = cfg.d_model;
    let req = request(&m, "in the tin the", 12, sampled(3));
    let (out, rec) = run(&m, &req);
    let all: Vec<u32> = req
        .prompt
        .iter()
        .chain(&out.tokens[..out.tokens.len() - 1])
        .copied()
        .collect();
    let t_total = all.len();
    assert_eq!(
        rec.len(),
        cfg.layers * t_total,
        "one row per layer and forwarded position"
    );

    // 1. Everything in one prefill block gives the same rows as prefill + decode steps.
    let mut block = TraceRecorder::new(d);
    let mut s = m.session();
    m.forward(&mut s, &all, Some(&mut block)).unwrap();
    // 2. Everything one token at a time, on a single thread.
    let mut single = TraceRecorder::new(d);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| {
        let mut s = m.session();
        for t in &all {
            m.forward(&mut s, &[*t], Some(&mut single)).unwrap();
        }
    });
    for l in 0..cfg.layers {
        for t in 0..t_total {
            let want = bits(rec.row(l, t).unwrap());
            assert_eq!(
                bits(block.row(l, t).unwrap()),
                want,
                "block vs generate at ({l},{t})"
            );
            assert_eq!(
                bits(single.row(l, t).unwrap()),
                want,
                "1-thread decode vs generate at ({l},{t})"
            );
            let kv = bits(rec.kv_row(l, t).expect("keys and values recorded"));
            assert_eq!(kv.len(), 2 * cfg.kv_dim());
            assert_eq!(
                bits(block.kv_row(l, t).unwrap()),
                kv,
                "block vs generate keys/values at ({l},{t})"
            );
            assert_eq!(
                bits(single.kv_row(l, t).unwrap()),
                kv,
                "1-thread decode vs generate keys/values at ({l},{t})"
            );
        }
    }
    // 3. A verifier re-executing layer l for rows 0..=t from the committed inputs.
    for l in 0..cfg.layers {
        for t in [0, t_total / 2, t_total - 1] {
            let inputs: Vec<f32> = (0..=t)
                .flat_map(|p| {
                    if l == 0 {
                        m.embedding(all[p]).unwrap()
                    } else {
                        rec.row(l - 1, p).unwrap().to_vec()
                    }
                })
                .collect();
            let replay = m.replay_layer(l, &inputs).unwrap();
            assert_eq!(
                bits(&replay[t * d..]),
                bits(rec.row(l, t).unwrap()),
                "replay of ({l},{t})"
            );
            let last = m.replay_layer_last(l, &inputs).unwrap();
            assert_eq!(
                bits(&last),
                bits(rec.row(l, t).unwrap()),
                "last-row replay of ({l},{t})"
            );
            // 4. One position from its input row and the committed keys/values of 0..t.
            let prefix: Vec<f32> = (0..t)
                .flat_map(|p| rec.kv_row(l, p).unwrap().to_vec())
                .collect();
            let cell = m.replay_cell(l, &inputs[t * d..], &prefix).unwrap();
            let same_as_cell = |r: &CellReplay, what: &str| {
                assert_eq!(bits(&r.kv), bits(&cell.kv), "{what} ({l},{t})");
                assert_eq!(bits(&r.output), bits(&cell.output), "{what} ({l},{t})");
            };
            // The rows apart, as an opening holds them: the same bits.
            let rows: Vec<&[f32]> = (0..t).map(|p| rec.kv_row(l, p).unwrap()).collect();
            let apart = m
                .replay_cell_rows_in(Numerics::Int8, l, &inputs[t * d..], &rows)
                .unwrap();
            same_as_cell(&apart, "rows apart");
            // The rows in f16, as the exact kernels' trace keeps them (they
            // are f16 values): copied into the replay's cache as they are.
            let halves: Vec<Vec<f16>> = rows
                .iter()
                .map(|r| r.iter().map(|&v| f16::from_f32(v)).collect())
                .collect();
            let from_f16 = m
                .replay_cell_rows_in(Numerics::Int8, l, &inputs[t * d..], &halves)
                .unwrap();
            same_as_cell(&from_f16, "f16 rows");
            assert_eq!(
                bits(&cell.kv),
                bits(rec.kv_row(l, t).unwrap()),
                "cell keys/values of ({l},{t})"
            );
            assert_eq!(
                bits(&cell.output),
                bits(rec.row(l, t).unwrap()),
                "cell replay of ({l},{t})"
            );
        }
    }
    // Ragged key/value prefixes and wrong input widths are errors, not panics.
    let kvw = 2 * cfg.kv_dim();
    assert!(
        m.replay_cell(0, &vec![0.0; d], &vec![0.0; kvw + 1])
            .is_err()
    );
    let ragged = [vec![0.0; kvw], vec![0.0; kvw - 1]];
    assert!(
        m.replay_cell_rows_in(Numerics::Int8, 0, &vec![0.0; d], &ragged)
            .is_err()
    );
    assert!(m.replay_cell(0, &vec![0.0; d - 1], &[]).is_err());
    assert!(m.replay_cell(cfg.layers, &vec![0.0; d], &[]).is_err());
}

#[test]
fn incremental_decode_equals_full_recompute() {
    let m = model();
    let req = request(&m, "the tin", 10, SamplingParams::greedy());
    let (out, _) = run(&m, &req);
    let all: Vec<u32> = req.prompt.iter().chain(&out.tokens).copied().collect();
    let d = m.config().d_model;
    // Full recompute of every prefix: its last row's logits pick the next token.
    for n in req.prompt.len()..all.len() {
        let mut s = m.session();
        let rows = m.forward(&mut s, &all[..n], None).unwrap();
        let logits = m.logits(&rows[rows.len() - d..]);
        assert_eq!(forge_engine::argmax(&logits), all[n], "prefix of {n}");
    }
}

#[test]
fn flops_follow_what_was_forwarded() {
    let m = model();
    let cfg = m.config().clone();
    let req = request(&m, "the tin the tin", 9, sampled(1));
    let (out, _) = run(&m, &req);
    let (np, ng) = (req.prompt.len() as u64, out.tokens.len() as u64);
    assert_eq!(out.work, ForwardWork::for_request(np, ng));
    let by_position: u128 = (0..np + ng - 1)
        .map(|p| position_flops(&cfg, p))
        .sum::<u128>()
        + u128::from(ng) * lm_head_flops(&cfg);
    assert_eq!(out.flops, by_position);
    assert_eq!(out.flops, request_flops(&cfg, out.work));
    // Tiny config by hand, 1-token prompt and 1 generated token: one position (p = 0).
    // P = 2·64·64 + 4·64·32 + 2·64·64 + 6·64·128 = 8192 + 8192 + 8192 + 49152 = 73,728;
    // attention 4·4·16·1 = 256; 3 layers: 3·73,984 = 221,952; head 2·64·263 = 33,664.
    let vocab = cfg.vocab as u128;
    assert_eq!(vocab, 263);
    assert_eq!(
        request_flops(&cfg, ForwardWork::for_request(1, 1)),
        221_952 + 33_664
    );
}

#[test]
fn finish_reasons_are_honest() {
    let m = model();
    let req = request(
        &m,
        "the",
        5,
        SamplingParams {
            logit_bias: vec![(2, -100.0), (0, -100.0)],
            ..SamplingParams::greedy()
        },
    );
    let (out, _) = run(&m, &req);
    assert_eq!(out.finish_reason, FinishReason::Length);
    assert_eq!(out.tokens.len(), 5);
    // Forcing the end token stops at once, and the stop token is not in the text.
    let req = request(
        &m,
        "the",
        5,
        SamplingParams {
            logit_bias: vec![(2, 100.0)],
            ..SamplingParams::greedy()
        },
    );
    let (out, _) = run(&m, &req);
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.tokens, vec![2]);
    assert_eq!(out.text, "");
    // A stop string cuts the text.
    let mut req = request(&m, "the", 40, sampled(5));
    let (free, _) = run(&m, &req);
    let cut = free
        .text
        .chars()
        .nth(3)
        .map(String::from)
        .unwrap_or_default();
    if !cut.is_empty() {
        req.stop = vec![cut.clone()];
        let (out, _) = run(&m, &req);
        assert_eq!(out.finish_reason, FinishReason::Stop);
        assert!(
            !out.text.contains(&cut),
            "{:?} still holds {cut:?}",
            out.text
        );
    }
    // The callback can cancel.
    let req = request(&m, "the", 30, sampled(5));
    let out = generate(&m, &req, None, |ev| {
        if ev.index >= 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let out = out.unwrap();
    assert!(out.tokens.len() <= 3);
}

#[test]
fn context_and_parameter_errors_are_typed() {
    let m = model();
    let ctx = m.config().context_length;
    let req = GenerateRequest {
        prompt: vec![5; ctx - 3],
        max_tokens: 10,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let err = generate(&m, &req, None, |_| ControlFlow::Continue(())).unwrap_err();
    assert!(
        matches!(err, EngineError::ContextLength { prompt_tokens, max_tokens: 10, context_length } if prompt_tokens == ctx - 3 && context_length == ctx),
        "{err}"
    );
    let req = GenerateRequest {
        prompt: vec![],
        max_tokens: 1,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    assert!(matches!(
        generate(&m, &req, None, |_| ControlFlow::Continue(())),
        Err(EngineError::InvalidParameter {
            param: "prompt",
            ..
        })
    ));
    let req = GenerateRequest {
        prompt: vec![100_000],
        max_tokens: 1,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    assert!(matches!(
        generate(&m, &req, None, |_| ControlFlow::Continue(())),
        Err(EngineError::InvalidParameter {
            param: "prompt",
            ..
        })
    ));
    let req = GenerateRequest {
        prompt: vec![5],
        max_tokens: 0,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    assert!(matches!(
        generate(&m, &req, None, |_| ControlFlow::Continue(())),
        Err(EngineError::InvalidParameter {
            param: "max_tokens",
            ..
        })
    ));
    assert!(m.replay_layer(99, &[0.0; 64]).is_err());
    assert!(m.replay_layer(0, &[0.0; 63]).is_err());
    // A session from another backend is refused, not a panic.
    let flex = model_with(&TinySpec::default(), Backend::Flex);
    let mut s = flex.session();
    assert!(m.forward(&mut s, &[5], None).is_err());
}

#[test]
fn chat_template_renders_and_generates() {
    let m = model();
    let t = m.chat_template().expect("ChatML recognised");
    let text = t.render(&[ChatMessage::new("user", "the")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    );
    let req = request(&m, &text, 4, SamplingParams::greedy());
    assert!(run(&m, &req).0.tokens.len() <= 4);
}

/// burn-flex, the arithmetic of every burn backend, against the CPU's float
/// reference, the way a spot check of a flex receipt replays it: every
/// recorded cell (layer, position) re-executed from its input row and the
/// recorded keys and values before it, and the last row's logits.
#[test]
fn burn_flex_backend_agrees_with_the_float_reference() {
    let rel = |a: &[f32], b: &[f32]| {
        let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
        let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
        (num / den).sqrt()
    };
    for spec in [
        TinySpec::default(),
        TinySpec {
            untied_f16_head: true,
            seed: 9,
            ..TinySpec::default()
        },
    ] {
        let cpu = model_with(&spec, Backend::Cpu);
        let flex = model_with(&spec, Backend::Flex);
        let prompt = cpu.tokenizer().encode("the tin in the").unwrap();
        let (d, layers) = (cpu.config().d_model, cpu.config().layers);
        let mut rec = TraceRecorder::new(d);
        let mut s = flex.session();
        // Prefill, then two decode steps.
        let mut last = Vec::new();
        for chunk in [prompt.clone(), vec![40], vec![41]] {
            let rows = flex.forward(&mut s, &chunk, Some(&mut rec)).unwrap();
            last = rows[rows.len() - d..].to_vec();
        }
        let tokens: Vec<u32> = prompt.iter().copied().chain([40, 41]).collect();
        for l in 0..layers {
            let prefix: Vec<f32> = (0..tokens.len())
                .flat_map(|t| rec.kv_row(l, t).unwrap().to_vec())
                .collect();
            let w = prefix.len() / tokens.len();
            for (t, &tok) in tokens.iter().enumerate() {
                let input = match l {
                    0 => cpu.embedding(tok).unwrap(),
                    _ => rec.row(l - 1, t).unwrap().to_vec(),
                };
                let cell = cpu
                    .replay_cell_in(Numerics::F32, l, &input, &prefix[..t * w])
                    .unwrap();
                let e = rel(&cell.output, rec.row(l, t).unwrap());
                assert!(e < 1e-4, "layer {l} position {t}: relative L2 error {e}");
                let e = rel(&cell.kv, rec.kv_row(l, t).unwrap());
                assert!(e < 1e-4, "keys/values {l} {t}: relative L2 error {e}");
            }
        }
        let (lc, lf) = (cpu.logits_in(Numerics::F32, &last), flex.logits(&last));
        assert!(
            rel(&lf, &lc) < 1e-4,
            "logits: relative L2 error {}",
            rel(&lf, &lc)
        );
        assert_eq!(forge_engine::argmax(&lc), forge_engine::argmax(&lf));
    }
}

#[test]
fn model_id_is_the_hash_of_the_tensor_data() {
    let a = model_with(&TinySpec::default(), Backend::Cpu);
    let b = model_with(
        &TinySpec {
            seed: 2,
            ..TinySpec::default()
        },
        Backend::Cpu,
    );
    assert_ne!(a.model_id(), b.model_id());
    assert_eq!(a.model_id(), model().model_id());
}

#[test]
fn truncated_session_reuses_a_prefix() {
    for backend in [Backend::Cpu, Backend::Flex] {
        let m = model_with(&TinySpec::default(), backend);
        let d = m.config().d_model;
        let a: Vec<u32> = m.tokenizer().encode("the tin in").unwrap();
        let b: Vec<u32> = m.tokenizer().encode(" the end").unwrap();
        let mut fresh = m.session();
        let want = m
            .forward(&mut fresh, &[a.clone(), b.clone()].concat(), None)
            .unwrap();
        // Run a, then something else, then rewind to a and continue with b.
        let mut s = m.session();
        m.forward(&mut s, &a, None).unwrap();
        m.forward(&mut s, &[7, 8, 9], None).unwrap();
        s.truncate(a.len());
        assert_eq!(s.len(), a.len());
        let got = m.forward(&mut s, &b, None).unwrap();
        let want_tail = &want[want.len() - b.len() * d..];
        if backend == Backend::Cpu {
            assert_eq!(bits(&got), bits(want_tail));
        } else {
            assert!(got.iter().zip(want_tail).all(|(x, y)| (x - y).abs() < 1e-3));
        }
    }
}

#[test]
fn batched_sequences_match_each_alone() {
    use forge_engine::{Sequence, step};
    let m = model();
    let d = m.config().d_model;
    let reqs: Vec<GenerateRequest> = [
        ("the tin", 7u64, 9usize),
        ("in the end the", 8, 5),
        ("t", 9, 12),
        ("the", 10, 1),
    ]
    .iter()
    .map(|(p, seed, n)| request(&m, p, *n, sampled(*seed)))
    .collect();
    let alone: Vec<_> = reqs.iter().map(|r| run(&m, r)).collect();
    // All four together; the last one joins two steps late (continuous batching).
    let mut seqs: Vec<Sequence<TraceRecorder>> = reqs[..3]
        .iter()
        .map(|r| Sequence::new(&m, r.clone(), Some(TraceRecorder::new(d))).unwrap())
        .collect();
    let mut late = None;
    for round in 0.. {
        if round == 2 {
            late = Some(Sequence::new(&m, reqs[3].clone(), Some(TraceRecorder::new(d))).unwrap());
        }
        let mut refs: Vec<&mut Sequence<TraceRecorder>> =
            seqs.iter_mut().chain(late.iter_mut()).collect();
        if refs.iter().all(|s| s.is_done()) {
            break;
        }
        step(&m, &mut refs).unwrap();
    }
    seqs.extend(late);
    for (seq, (want, want_rows)) in seqs.into_iter().zip(&alone) {
        let (got, rows) = seq.into_result(&m);
        let rows = rows.unwrap();
        assert_eq!(got.tokens, want.tokens);
        assert_eq!(got.text, want.text);
        assert_eq!(got.flops, want.flops);
        assert_eq!(got.finish_reason, want.finish_reason);
        assert_eq!(rows.len(), want_rows.len());
        for ((ka, va), (kb, vb)) in rows.rows().zip(want_rows.rows()) {
            assert_eq!(ka, kb);
            assert_eq!(bits(va), bits(vb), "row {ka:?}");
        }
    }
}

#[test]
fn logits_of_rows_in_a_batch_have_the_bits_of_each_alone() {
    // A verifier re-derives several sampled tokens in one LM head pass:
    // every row's logits must be those it gets alone, in both arithmetics
    // (the 8-bit kernels a `cpu-i8-kv16` receipt replays on, the float reference
    // a burn backend's receipt replays on), for batches of 1 to 9 rows.
    let m = model();
    let d = m.config().d_model;
    let rows: Vec<f32> = (0..9 * d)
        .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
        .collect();
    for numerics in [Numerics::Int8, Numerics::F32] {
        let alone: Vec<Vec<f32>> = rows
            .chunks_exact(d)
            .map(|r| m.logits_in(numerics, r))
            .collect();
        for n in 1..=9 {
            let batch = m.logits_in(numerics, &rows[..n * d]);
            let want: Vec<f32> = alone[..n].concat();
            assert_eq!(bits(&batch), bits(&want), "{numerics:?}, {n} rows");
        }
    }
}

/// A sink that logs its calls: (keys and values?, layer, first position,
/// rows).
#[derive(Default)]
struct CallLog(Vec<(bool, usize, usize, usize)>);

impl forge_engine::TraceSink for CallLog {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        self.0.push((false, layer, first_pos, rows.len()));
    }
    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        self.0.push((true, layer, first_pos, rows.len() / width));
    }
}

#[test]
fn sinks_get_each_layers_keys_and_values_then_its_rows_in_layer_order() {
    // The engine hands a layer's rows over while the next layer computes
    // (on whichever pool thread is free): the calls must still come layer
    // by layer, keys and values first, for each sequence of a batch, with
    // a sequence that has no sink in between, and cover every forwarded
    // position once.
    use forge_engine::{Sequence, step};
    let m = model();
    let c = m.config();
    let (d, layers) = (c.d_model, c.layers);
    let reqs = [
        request(&m, "the tin", 4, SamplingParams::default()),
        request(&m, "in the end", 6, SamplingParams::default()),
        request(&m, "t", 6, SamplingParams::default()),
    ];
    let mut seqs: Vec<Sequence<CallLog>> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| Sequence::new(&m, r.clone(), (i != 1).then(CallLog::default)).unwrap())
        .collect();
    while !seqs.iter().all(|s| s.is_done()) {
        let mut refs: Vec<&mut Sequence<CallLog>> = seqs.iter_mut().collect();
        step(&m, &mut refs).unwrap();
    }
    for (i, seq) in seqs.into_iter().enumerate() {
        let (got, log) = seq.into_result(&m);
        let Some(CallLog(log)) = log else {
            assert_eq!(i, 1);
            continue;
        };
        assert!(!log.is_empty() && log.len() % (2 * layers) == 0, "{log:?}");
        let mut next = 0;
        for pass in log.chunks(2 * layers) {
            let (first, n) = (pass[0].2, pass[0].3);
            assert_eq!(first, next, "passes cover the positions in order");
            let want: Vec<_> = (0..layers)
                .flat_map(|l| [(true, l, first, n), (false, l, first, n * d)])
                .collect();
            assert_eq!(pass, want.as_slice());
            next += n;
        }
        // Every prompt token and every generated one but the last is
        // forwarded.
        assert_eq!(next, reqs[i].prompt.len() + got.tokens.len() - 1);
    }
}
