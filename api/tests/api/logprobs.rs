//! `logprobs` / `top_logprobs`: OpenAI's shapes, the engine's numbers, streamed or not.

use axum::http::StatusCode;
use forge_engine::{GenerateRequest, SamplingParams, Sequence, TraceRecorder, step};
use serde_json::{Value, json};

use crate::common::*;

/// The engine's own log-probabilities for the chat prompt "the tin".
fn engine_logprobs(
    sampling: SamplingParams,
    max_tokens: usize,
    top: usize,
) -> Vec<forge_engine::TokenLogprobs> {
    let m = tiny_model(&tiny_spec());
    let prompt = chat_prompt(&m, "the tin");
    let req = GenerateRequest {
        prompt,
        max_tokens,
        sampling,
        stop: vec![],
    };
    let mut seq = Sequence::new(&m, req, Some(TraceRecorder::new(m.config().d_model)))
        .unwrap()
        .with_logprobs(top);
    let mut out = Vec::new();
    while !seq.is_done() {
        for ev in step(&m, &mut [&mut seq]).unwrap().into_iter().flatten() {
            out.push(ev.logprobs.unwrap());
        }
    }
    out
}

fn f32_of(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

#[tokio::test]
async fn chat_logprobs_are_the_engines_in_openais_shape() {
    let app = app();
    let mut body = unstoppable(6, 5);
    body["temperature"] = json!(0.8);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let r = chat(&app.router, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let lp = &v["choices"][0]["logprobs"];
    assert!(lp["refusal"].is_null());
    let content = lp["content"].as_array().unwrap();
    assert_eq!(content.len(), 6, "one entry per generated token: {lp}");

    let sampling = SamplingParams {
        temperature: 0.8,
        seed: 5,
        logit_bias: vec![(0, -100.0), (2, -100.0)],
        ..SamplingParams::default()
    };
    let want = engine_logprobs(sampling, 6, 3);
    let m = tiny_model(&tiny_spec());
    let t = m.tokenizer();
    let mut bytes = Vec::new();
    for (entry, w) in content.iter().zip(&want) {
        let b: Vec<u8> = entry["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(b, t.token_bytes(w.token).unwrap());
        assert_eq!(f32_of(&entry["logprob"]), w.logprob, "{entry}");
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        for (alt, (id, p)) in top.iter().zip(&w.top) {
            assert_eq!(
                alt.as_object().unwrap().len(),
                3,
                "token, logprob, bytes: {alt}"
            );
            assert_eq!(f32_of(&alt["logprob"]), *p);
            let ab: Vec<u8> = alt["bytes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u8)
                .collect();
            assert_eq!(ab, t.token_bytes(*id).unwrap());
            match std::str::from_utf8(&ab) {
                Ok(s) => assert_eq!(alt["token"], s),
                Err(_) => assert!(
                    alt["token"].as_str().unwrap().starts_with("bytes:\\x"),
                    "{alt}"
                ),
            }
        }
        bytes.extend(b);
    }
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    if let Ok(s) = std::str::from_utf8(&bytes) {
        assert_eq!(s, text, "the tokens spell the answer");
    }
}

#[tokio::test]
async fn logprobs_change_nothing_else_and_are_null_when_not_asked() {
    let app = app();
    let plain = chat(&app.router, &unstoppable(10, 11)).await.json();
    assert!(plain["choices"][0]["logprobs"].is_null());
    let mut body = unstoppable(10, 11);
    body["logprobs"] = json!(true);
    let with = chat(&app.router, &body).await.json();
    assert_eq!(
        with["choices"][0]["message"],
        plain["choices"][0]["message"]
    );
    assert_eq!(with["usage"], plain["usage"]);
    let content = with["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 10);
    assert!(
        content.iter().all(|e| e["top_logprobs"] == json!([])),
        "logprobs without top_logprobs lists no alternatives"
    );

    // A forced token: its text, bytes and a logprob of (nearly) zero.
    let forced = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 3,
        "temperature": 0, "logit_bias": {"68": 100}, "logprobs": true, "top_logprobs": 2});
    let v = chat(&app.router, &forced).await.json();
    for e in v["choices"][0]["logprobs"]["content"].as_array().unwrap() {
        assert_eq!(
            (e["token"].as_str(), &e["bytes"]),
            (Some("A"), &json!([65]))
        );
        assert!(e["logprob"].as_f64().unwrap() > -1e-3, "{e}");
        assert_eq!(e["top_logprobs"][0]["token"], "A");
        assert!(
            e["top_logprobs"][1]["logprob"].as_f64().unwrap() < -50.0,
            "{e}"
        );
    }
}

#[tokio::test]
async fn streamed_chat_logprobs_match_the_answer() {
    let app = app();
    let mut body = unstoppable(8, 4);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let whole = chat(&app.router, &body).await.json();
    body["stream"] = json!(true);
    let r = chat(&app.router, &body).await;
    let (chunks, _) = sse_chunks(&r.text());
    let mut streamed = Vec::new();
    for c in &chunks {
        let lp = &c["choices"][0]["logprobs"];
        if let Some(entries) = lp["content"].as_array() {
            assert_eq!(entries.len(), 1, "one token per chunk: {c}");
            streamed.extend(entries.iter().cloned());
        }
    }
    assert_eq!(
        Value::Array(streamed),
        whole["choices"][0]["logprobs"]["content"]
    );
    // The role and finish chunks carry no logprobs.
    assert!(chunks[0]["choices"][0]["logprobs"].is_null());
}

#[tokio::test]
async fn completion_logprobs_have_tokens_dicts_and_offsets() {
    let app = app();
    let body = json!({"model": MODEL, "prompt": "the tin", "max_tokens": 5, "seed": 3, "logprobs": 2,
        "logit_bias": {"0": -100, "2": -100}});
    let r = post(&app.router, "/v1/completions", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    let lps = lp["token_logprobs"].as_array().unwrap();
    let tops = lp["top_logprobs"].as_array().unwrap();
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(
        (tokens.len(), lps.len(), tops.len(), offsets.len()),
        (5, 5, 5, 5)
    );
    assert_eq!(offsets[0], 7, "offsets count from the start of the prompt");
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    for ((tok, p), top) in tokens.iter().zip(lps).zip(tops) {
        let top = top.as_object().unwrap();
        assert!(
            top.len() == 2 || top.len() == 3,
            "the top 2 and the sampled token: {top:?}"
        );
        assert_eq!(
            top[tok.as_str().unwrap()],
            *p,
            "the sampled token is in the dict"
        );
        assert!(p.as_f64().unwrap() <= 0.0);
    }

    // Streamed: the same entries, split over chunks, offsets carried on.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (chunks, _) = sse_chunks(&post(&app.router, "/v1/completions", &streamed).await.text());
    let (mut st, mut so) = (Vec::new(), Vec::new());
    for c in &chunks {
        let l = &c["choices"][0]["logprobs"];
        if l.is_object() {
            st.extend(l["tokens"].as_array().unwrap().iter().cloned());
            so.extend(
                l["text_offset"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap()),
            );
        }
    }
    assert_eq!(&st, tokens);
    assert_eq!(so, offsets);

    // A forced token: offsets advance one character per token.
    let forced = json!({"model": MODEL, "prompt": "ab", "max_tokens": 4, "temperature": 0, "logit_bias": {"68": 100}, "logprobs": 0});
    let v = post(&app.router, "/v1/completions", &forced).await.json();
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["A", "A", "A", "A"]));
    assert_eq!(lp["text_offset"], json!([2, 3, 4, 5]));
    assert_eq!(
        lp["top_logprobs"][0].as_object().unwrap().len(),
        1,
        "logprobs 0: the sampled token only"
    );
}
