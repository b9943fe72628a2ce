//! Log-probabilities on a tiny random Llama: opt-in, the same tokens with or
//! without them, taken after penalties and bias and before temperature.

use forge_engine::gguf::GgufFile;
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{
    Backend, GenerateRequest, Model, SamplingParams, Sequence, StepEvent, TraceRecorder, step,
};

fn model() -> Model {
    let file = GgufFile::parse(tiny_model_gguf(&TinySpec::default()).unwrap()).unwrap();
    Model::from_gguf(&file, Backend::Cpu).unwrap()
}

fn request(m: &Model, max_tokens: usize, sampling: SamplingParams) -> GenerateRequest {
    GenerateRequest {
        prompt: m.tokenizer().encode("the tin").unwrap(),
        max_tokens,
        sampling,
        stop: vec![],
    }
}

fn seq(m: &Model, req: &GenerateRequest, top: Option<usize>) -> Sequence<TraceRecorder> {
    let s = Sequence::new(m, req.clone(), Some(TraceRecorder::new(m.config().d_model))).unwrap();
    match top {
        Some(k) => s.with_logprobs(k),
        None => s,
    }
}

/// Steps all sequences together until done; the events of each, in order.
fn run_batch(m: &Model, seqs: &mut [Sequence<TraceRecorder>]) -> Vec<Vec<StepEvent>> {
    let mut out = vec![Vec::new(); seqs.len()];
    loop {
        let mut refs: Vec<&mut Sequence<TraceRecorder>> = seqs.iter_mut().collect();
        if refs.iter().all(|s| s.is_done()) {
            return out;
        }
        for (i, ev) in step(m, &mut refs).unwrap().into_iter().enumerate() {
            out[i].extend(ev);
        }
    }
}

fn sampled(seed: u64) -> SamplingParams {
    // Penalties, a bias and truncation: every part of the sampler is in play.
    SamplingParams {
        temperature: 1.1,
        top_k: 40,
        top_p: 0.9,
        seed,
        presence_penalty: 0.4,
        frequency_penalty: 0.3,
        logit_bias: vec![(68, 2.0), (2, -5.0)],
    }
}

#[test]
fn same_tokens_with_or_without_logprobs_batched_together() {
    let m = model();
    for seed in [1u64, 2, 3, 4] {
        let req = request(&m, 24, sampled(seed));
        // One with, one without, in the same batch, and one without alone.
        let mut both = [seq(&m, &req, Some(5)), seq(&m, &req, None)];
        let events = run_batch(&m, &mut both);
        let alone = run_batch(&m, &mut [seq(&m, &req, None)]);
        let tokens = |evs: &[StepEvent]| evs.iter().map(|e| e.token).collect::<Vec<_>>();
        assert_eq!(
            tokens(&events[0]),
            tokens(&alone[0]),
            "seed {seed}: asking for logprobs changed the tokens"
        );
        assert_eq!(tokens(&events[1]), tokens(&alone[0]), "seed {seed}");
        assert!(
            events[1].iter().all(|e| e.logprobs.is_none()),
            "logprobs computed for a sequence that did not ask"
        );
        let [with, without] = both;
        let (a, b) = (with.into_result(&m), without.into_result(&m));
        assert_eq!(a.0.text, b.0.text);
        let (ra, rb) = (a.1.unwrap(), b.1.unwrap());
        assert!(
            ra.rows().zip(rb.rows()).all(|(x, y)| x == y),
            "trace rows differ"
        );
        for e in &events[0] {
            let lp = e
                .logprobs
                .as_ref()
                .expect("every token of a sequence that asked has logprobs");
            assert_eq!(lp.token, e.token);
            assert!(lp.logprob <= 0.0 && lp.logprob.is_finite(), "{lp:?}");
            assert_eq!(lp.top.len(), 5);
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "{lp:?}");
            assert!(lp.top[0].1 >= lp.logprob);
            if let Some(&(_, p)) = lp.top.iter().find(|t| t.0 == e.token) {
                assert_eq!(p, lp.logprob);
            }
        }
    }
}

#[test]
fn greedy_tokens_are_the_most_likely_and_the_full_distribution_sums_to_one() {
    let m = model();
    let vocab = m.config().vocab;
    let req = request(&m, 8, SamplingParams::greedy());
    let events = run_batch(&m, &mut [seq(&m, &req, Some(vocab))]);
    for e in &events[0] {
        let lp = e.logprobs.as_ref().unwrap();
        assert_eq!(lp.top[0].0, e.token, "greedy picks the most likely token");
        assert_eq!(lp.top[0].1, lp.logprob);
        assert_eq!(lp.top.len(), vocab);
        let mass: f64 = lp.top.iter().map(|&(_, p)| f64::from(p).exp()).sum();
        assert!((mass - 1.0).abs() < 1e-4, "{mass}");
    }
    // Zero alternatives: the sampled token's logprob only.
    let events = run_batch(&m, &mut [seq(&m, &req, Some(0))]);
    assert!(events[0].iter().all(|e| {
        e.logprobs
            .as_ref()
            .is_some_and(|l| l.top.is_empty() && l.logprob <= 0.0)
    }));
}

#[test]
fn logprobs_follow_bias_and_penalties_but_not_temperature() {
    let m = model();
    let first = |sampling: SamplingParams| {
        let req = request(&m, 1, sampling);
        run_batch(&m, &mut [seq(&m, &req, Some(3))])
            .remove(0)
            .remove(0)
            .logprobs
            .unwrap()
    };
    let base = SamplingParams {
        seed: 9,
        ..SamplingParams::default()
    };
    // Temperature and truncation change how the draw is made, not the reported distribution.
    let a = first(SamplingParams {
        temperature: 0.3,
        ..base.clone()
    });
    let b = first(SamplingParams {
        temperature: 1.9,
        top_k: 2,
        top_p: 0.5,
        ..base.clone()
    });
    assert_eq!(a.top, b.top);
    // A +100 bias makes token 68 all but certain, and it is reported as such.
    let biased = first(SamplingParams {
        logit_bias: vec![(68, 100.0)],
        ..base.clone()
    });
    assert_eq!(biased.token, 68);
    assert!(biased.logprob > -1e-3, "{biased:?}");
    assert_eq!(biased.top[0].0, 68);
    // Penalties apply to tokens already generated: on the second step, the
    // first token (68, forced by a bias) is less likely under a penalty.
    let vocab = m.config().vocab;
    let second = |sampling: SamplingParams| {
        let req = request(
            &m,
            2,
            SamplingParams {
                temperature: 0.0,
                logit_bias: vec![(68, 8.0)],
                ..sampling
            },
        );
        let evs = run_batch(&m, &mut [seq(&m, &req, Some(vocab))]).remove(0);
        assert_eq!(evs[0].token, 68);
        let lp = evs[1].logprobs.clone().unwrap();
        lp.top.iter().find(|t| t.0 == 68).unwrap().1
    };
    let plain = second(base.clone());
    let penalised = second(SamplingParams {
        presence_penalty: 2.0,
        frequency_penalty: 2.0,
        ..base
    });
    assert!(penalised < plain - 1e-3, "{penalised} vs {plain}");
}

#[test]
fn token_bytes_invert_the_byte_level_vocabulary() {
    let m = model();
    let t = m.tokenizer();
    for b in 0..=255u8 {
        assert_eq!(
            t.token_bytes(3 + u32::from(b)),
            Some(vec![b]),
            "byte token {b}"
        );
    }
    assert_eq!(
        t.token_bytes(0).as_deref(),
        Some("<|endoftext|>".as_bytes())
    );
    let merged = t.encode(" the").unwrap();
    let bytes: Vec<u8> = merged
        .iter()
        .flat_map(|&id| t.token_bytes(id).unwrap())
        .collect();
    assert_eq!(bytes, b" the");
    assert_eq!(t.token_bytes(u32::MAX), None);
}
