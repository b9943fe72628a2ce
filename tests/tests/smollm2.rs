//! The real SmolLM2-135M-Instruct model: answers, tokenizer and logits
//! against independent references, metering, determinism, batch invariance.

use std::ops::ControlFlow;

use forge_engine::{
    ChatMessage, FinishReason, ForwardWork, GenerateRequest, SamplingParams, TraceRecorder,
    generate, request_flops,
};
use forge_tests::{reference, smollm2};

fn chat(system: &str, user: &str) -> Vec<u32> {
    let m = smollm2();
    let text = m
        .chat_template()
        .unwrap()
        .render(
            &[
                ChatMessage::new("system", system),
                ChatMessage::new("user", user),
            ],
            true,
        )
        .unwrap();
    m.tokenizer().encode(&text).unwrap()
}

#[test]
fn greedy_answers_paris() {
    let m = smollm2();
    let req = GenerateRequest {
        prompt: chat(
            "You are a helpful assistant.",
            "What is the capital of France?",
        ),
        max_tokens: 32,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let out = generate(m, &req, None, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(out.text, "The capital of France is Paris.");
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(
        out.flops,
        request_flops(
            m.config(),
            ForwardWork::for_request(out.prompt_tokens as u64, out.tokens.len() as u64)
        )
    );
}

#[test]
fn tokenizer_matches_llama_cpp() {
    let m = smollm2();
    for case in reference() {
        assert_eq!(
            m.tokenizer().encode(&case.prompt).unwrap(),
            case.tokens,
            "prompt {:?}",
            case.prompt
        );
        assert_eq!(m.tokenizer().decode(&case.tokens).unwrap(), case.prompt);
    }
}

/// Our logits against a float64 numpy forward pass over the same
/// dequantised weights with float activations (tolerance: 1.0 absolute on
/// logits of size ~20-40; the kernels' 8-bit activations, which llama.cpp's
/// CPU kernels also use for these formats, put them 0.54 and 0.32 away on
/// the two cases, and a last-bit change of `exp` moved the first from 0.44:
/// rounding to 8 bits turns tiny differences into steps; the f32 kernels
/// before them were within 0.02), the five most likely tokens in numpy's
/// order, and the argmax against llama.cpp's. A wrong RoPE pairing, GQA
/// head mapping or tokenizer moves logits by whole units and reorders them.
#[test]
fn logits_match_independent_references() {
    let m = smollm2();
    let d = m.config().d_model;
    for case in reference() {
        let mut s = m.session();
        let rows = m.forward(&mut s, &case.tokens, None).unwrap();
        let logits = m.logits(&rows[rows.len() - d..]);
        let mut worst = 0.0f64;
        for &(id, want) in &case.numpy_top {
            worst = worst.max((f64::from(logits[id as usize]) - want).abs());
        }
        assert!(worst < 1.0, "max |ours - numpy| over the top 40 = {worst}");
        // The ranking is the sharper test: the five most likely tokens, in
        // numpy's order wherever numpy puts them more than RANK_GAP apart.
        // Closer pairs may swap: stop 25's f16 key/value cache (llama.cpp's
        // default too) swapped the second case's fifth and sixth, 0.117
        // apart in numpy, with every logit still within 1.0.
        const RANK_GAP: f64 = 0.25;
        let mut ours_top: Vec<u32> = (0..logits.len() as u32).collect();
        ours_top.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let top = &case.numpy_top;
        for (i, &(a, la)) in top.iter().enumerate().take(6) {
            for &(b, lb) in &top[i + 1..7] {
                if la - lb > RANK_GAP {
                    assert!(
                        logits[a as usize] > logits[b as usize],
                        "numpy ranks {a} {:.3} above {b}; ours do not",
                        la - lb
                    );
                }
            }
        }
        let fifth = top[4].1;
        for t in &ours_top[..5] {
            assert!(
                top.iter().any(|&(id, l)| id == *t && l > fifth - RANK_GAP),
                "our top 5 {:?} holds {t}, not within {RANK_GAP} of numpy's top 5",
                &ours_top[..5]
            );
        }
        let ours = forge_engine::argmax(&logits);
        assert_eq!(ours, case.numpy_top[0].0);
        assert_eq!(ours, case.llama_cpp_top[0], "llama.cpp's greedy token");
    }
}

#[test]
fn one_token_prompt_one_token_answer_costs_what_paper_says() {
    let m = smollm2();
    let req = GenerateRequest {
        prompt: vec![504],
        max_tokens: 1,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let out = generate(m, &req, None, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(out.tokens.len(), 1);
    // 30·(7,077,888 + 2,304) + 2·576·49,152 = 212,405,760 + 56,623,104 (see engine/src/flops.rs).
    assert_eq!(out.flops, 269_028_864);
}

#[test]
fn sampling_is_deterministic_per_seed_rows_included() {
    let m = smollm2();
    let mk = |seed| GenerateRequest {
        prompt: chat(
            "You are a helpful assistant.",
            "Write a short poem about the sea.",
        ),
        max_tokens: 12,
        sampling: SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            seed,
            ..SamplingParams::default()
        },
        stop: vec![],
    };
    let d = m.config().d_model;
    let run = |seed| {
        let mut rec = TraceRecorder::new(d);
        let out = generate(m, &mk(seed), Some(&mut rec), |_| ControlFlow::Continue(())).unwrap();
        (out, rec)
    };
    let (a, ra) = run(11);
    let (b, rb) = run(11);
    assert_eq!(a.tokens, b.tokens);
    assert!(ra.rows().zip(rb.rows()).all(|((ka, va), (kb, vb))| ka == kb
        && va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits())));
    let (c, _) = run(12);
    assert_ne!(a.tokens, c.tokens);
}

#[test]
fn replayed_layers_reproduce_committed_rows() {
    let m = smollm2();
    let d = m.config().d_model;
    let req = GenerateRequest {
        prompt: chat("You are a helpful assistant.", "Name three colours."),
        max_tokens: 6,
        sampling: SamplingParams::greedy(),
        stop: vec![],
    };
    let mut rec = TraceRecorder::new(d);
    let out = generate(m, &req, Some(&mut rec), |_| ControlFlow::Continue(())).unwrap();
    let all: Vec<u32> = req.prompt.iter().chain(&out.tokens).copied().collect();
    let t_total = out.work.end as usize;
    for (l, t) in [
        (0, 0),
        (0, t_total - 1),
        (7, t_total / 2),
        (29, t_total - 1),
        (15, 3),
    ] {
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
        let want: Vec<u32> = rec.row(l, t).unwrap().iter().map(|x| x.to_bits()).collect();
        let got: Vec<u32> = replay[t * d..].iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "cell ({l},{t})");
        let last: Vec<u32> = m
            .replay_layer_last(l, &inputs)
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(last, want, "last-row replay of cell ({l},{t})");
        // The spot check's replay: one input row plus the committed keys and values of 0..t.
        let kv_prefix: Vec<f32> = (0..t)
            .flat_map(|p| rec.kv_row(l, p).unwrap().to_vec())
            .collect();
        let cell = m.replay_cell(l, &inputs[t * d..], &kv_prefix).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        assert_eq!(bits(&cell.output), want, "cell replay of ({l},{t})");
        assert_eq!(
            bits(&cell.kv),
            bits(rec.kv_row(l, t).unwrap()),
            "cell replay's keys/values at ({l},{t})"
        );
    }
    // The last layer's row at the last forwarded position yields the last token.
    let last = rec.row(29, t_total - 1).unwrap();
    assert_eq!(
        forge_engine::argmax(&m.logits(last)),
        *out.tokens.last().unwrap()
    );
}
