//! `n > 1`: choices as sequences of one batch, each with its own seed and
//! receipt; usage, the `forge` summary, the header and charges over all of them.

use axum::http::{Method, StatusCode};
use forge_api::ServerOptions;
use forge_engine::{ForwardWork, milli_cu, request_flops};
use forge_proofs::{Receipt, TrustAnchor};
use serde_json::{Value, json};

use crate::common::*;

fn texts(v: &Value) -> Vec<String> {
    v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn n_choices_have_their_own_seeds_and_receipts() {
    let app = app();
    let mut body = unstoppable(12, 21);
    body["n"] = json!(3);
    let r = chat(&app.router, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let got = texts(&v);
    let one = chat(&app.router, &unstoppable(12, 21)).await.json();
    assert_eq!(got[0], texts(&one)[0], "choice 0 uses the request's seed");
    assert!(
        got[1] != got[0] || got[2] != got[0],
        "the choices were sampled with the same seed: {got:?}"
    );

    // Usage: the prompt once, the completions summed.
    assert_eq!(v["usage"]["prompt_tokens"], one["usage"]["prompt_tokens"]);
    assert_eq!(v["usage"]["completion_tokens"], 36);

    // Three receipts: in the header, in the summary, each its own, each verifying.
    let forge = &v["forge"];
    let ids: Vec<String> = forge["receipt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(r.headers["x-forge-receipt"], ids.join(","));
    assert_eq!(forge["receipt_id"], ids[0].as_str());
    let receipts = forge["receipts"].as_array().unwrap();
    let sum = |k: &str| receipts.iter().map(|x| x[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(forge["flops"].as_u64(), Some(sum("flops")));
    assert_eq!(
        forge["price"]["charged_milli_cu"].as_u64(),
        Some(sum("charged_milli_cu"))
    );
    assert_eq!(
        sum("flops"),
        3 * one["forge"]["flops"].as_u64().unwrap(),
        "each choice forwarded the prompt and 12 tokens"
    );
    let anchor = TrustAnchor::new(keys().1.clone());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(receipts[i]["index"], i);
        assert_eq!(receipts[i]["receipt_id"], id.as_str());
        let mut req = request(Method::GET, &format!("/v1/receipts/{id}"), None, None);
        req.headers_mut()
            .insert("accept", "application/octet-stream".parse().unwrap());
        let receipt = Receipt::from_bytes(&send(&app.router, req).await.body).unwrap();
        assert_eq!(hex(&receipt.request.id), *id);
        assert_eq!(receipt.request.n_gen, 12);
        receipt.verify_offline(&anchor).unwrap();
        // The receipt records the choice's seed, and that seed alone reproduces the choice.
        let seed = get(&app.router, &format!("/v1/receipts/{id}")).await.json()["request"]["sampling"]["seed"].as_u64().unwrap();
        if i == 0 {
            assert_eq!(seed, 21);
        }
        let alone = chat(&app.router, &unstoppable(12, seed)).await.json();
        assert_eq!(
            texts(&alone)[0],
            got[i],
            "choice {i} is the answer of its own seed"
        );
    }
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(metric(&m, "forge_queue_depth"), 0.0);
    assert_eq!(metric(&m, "forge_active_sequences"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_choices_interleave_with_their_index() {
    let app = app();
    let mut body = unstoppable(16, 8);
    body["n"] = json!(2);
    body["logprobs"] = json!(true);
    let whole = chat(&app.router, &body).await.json();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = chat(&app.router, &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let header: Vec<String> = r.headers["x-forge-receipt"]
        .to_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    assert_eq!(header.len(), 2);
    let (chunks, data) = sse_chunks(&r.text());
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    assert_eq!(data.last().unwrap(), "[DONE]");
    // A role chunk per choice first.
    assert_eq!(chunks[0]["choices"][0]["index"], 0);
    assert_eq!(chunks[1]["choices"][0]["index"], 1);
    assert!(
        chunks[..2]
            .iter()
            .all(|c| c["choices"][0]["delta"]["role"] == "assistant")
    );
    let mut text = [String::new(), String::new()];
    let mut tokens = [0usize, 0];
    let mut order = Vec::new();
    let mut finishes = Vec::new();
    for c in &chunks[2..chunks.len() - 1] {
        let ch = &c["choices"][0];
        let i = ch["index"].as_u64().unwrap() as usize;
        if ch["finish_reason"].is_string() {
            assert_eq!(
                c["forge"]["receipt_id"],
                header[i].as_str(),
                "each choice's finish chunk has its own receipt"
            );
            assert_eq!(c["forge"]["receipt_ids"], json!([header[i]]));
            finishes.push(i);
            continue;
        }
        order.push(i);
        text[i].push_str(ch["delta"]["content"].as_str().unwrap());
        tokens[i] += ch["logprobs"]["content"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(
        text.to_vec(),
        texts(&whole),
        "streamed choices equal the non-streamed ones"
    );
    assert_eq!(tokens, [16, 16]);
    finishes.sort_unstable();
    assert_eq!(finishes, vec![0, 1]);
    // Interleaved: choice 1 had tokens before choice 0's last one (they share each step).
    let last0 = order.iter().rposition(|&i| i == 0).unwrap();
    let first1 = order.iter().position(|&i| i == 1).unwrap();
    assert!(
        first1 < last0,
        "the choices were not interleaved: {order:?}"
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 32);
    assert_eq!(usage["forge"]["receipt_ids"], json!(header));
}

#[tokio::test]
async fn accounts_are_held_and_charged_for_every_choice() {
    let mut key = String::new();
    let app = app_with(ServerOptions::default(), &tiny_spec(), |l| {
        key = l.create_account("carol").unwrap().1;
    });
    let ledger = app.ledger();
    let carol = ledger.find_account("carol").unwrap();
    // Credit for one choice's worst case, not two.
    let m = tiny_model(&tiny_spec());
    let p = chat_prompt(&m, "the tin").len() as u64;
    let worst = u64::try_from(milli_cu(request_flops(
        m.config(),
        ForwardWork::for_request(p, 12),
    )))
    .unwrap();
    ledger.credit(&carol, 2 * worst - 1, None).unwrap();
    let mut body = unstoppable(12, 3);
    body["n"] = json!(2);
    let call = |b: &Value| request(Method::POST, "/v1/chat/completions", Some(b), Some(&key));
    let e = send(&app.router, call(&body))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(e["code"], "insufficient_quota");
    assert_eq!(
        ledger.balance(&carol).unwrap().receipts,
        0,
        "refused before any work"
    );

    ledger.credit(&carol, 10 * worst, None).unwrap();
    let r = send(&app.router, call(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let forge = r.json()["forge"].clone();
    let b = ledger.balance(&carol).unwrap();
    assert_eq!(b.receipts, 2);
    assert_eq!(
        Some(b.spent_milli_cu),
        forge["price"]["charged_milli_cu"].as_u64()
    );
    let each: Vec<u64> = forge["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["charged_milli_cu"].as_u64().unwrap())
        .collect();
    assert_eq!(b.spent_milli_cu, each.iter().sum::<u64>());
}
