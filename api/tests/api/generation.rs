//! Non-streamed answers: shape, usage, the `forge` object, receipts that verify.

use axum::http::{Method, StatusCode};
use forge_engine::{ForwardWork, request_flops};
use forge_proofs::{Receipt, TrustAnchor};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn chat_answer_carries_usage_and_a_verifiable_receipt() {
    let app = app();
    let r = chat(&app.router, &hello(8, 42)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["model"], MODEL);
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    let finish = choice["finish_reason"].as_str().unwrap();
    let (p, c) = (
        v["usage"]["prompt_tokens"].as_u64().unwrap(),
        v["usage"]["completion_tokens"].as_u64().unwrap(),
    );
    assert_eq!(v["usage"]["total_tokens"].as_u64().unwrap(), p + c);
    assert!(
        finish == "length" && c == 8 || finish == "stop" && c <= 8,
        "{finish} {c}"
    );

    let forge = &v["forge"];
    let id = forge["receipt_id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "a receipt id is the receipt's request id");
    assert_eq!(r.headers["x-forge-receipt"], id);
    assert_eq!(forge["receipt_ids"], json!([id]));
    assert_eq!(forge["receipts"].as_array().unwrap().len(), 1);
    assert_eq!(forge["receipts"][0]["receipt_hash"], forge["receipt_hash"]);
    assert_eq!(v["id"], format!("chatcmpl-{id}"));
    let model = tiny_model(&tiny_spec());
    let flops = request_flops(model.config(), ForwardWork::for_request(p, c));
    assert_eq!(forge["flops"].as_u64().unwrap() as u128, flops);
    assert_eq!(
        forge["milli_cu"].as_u64().unwrap() as u128,
        flops / 1_000_000
    );
    assert_eq!(
        forge["price"]["charged_milli_cu"], forge["milli_cu"],
        "default price is 1 CU per CU"
    );
    assert_eq!(forge["activation_root"].as_str().unwrap().len(), 64);

    // The receipt, as JSON and as the canonical binary that verifies offline.
    let j = get(&app.router, &format!("/v1/receipts/{id}")).await;
    assert_eq!(j.status, StatusCode::OK);
    let j = j.json();
    assert_eq!(
        (j["id"].as_str(), j["hash"].as_str()),
        (Some(id), forge["receipt_hash"].as_str())
    );
    assert_eq!(j["request"]["id"].as_str(), Some(id));
    assert_eq!(j["request"]["n_prompt"].as_u64(), Some(p));
    assert_eq!(j["request"]["n_gen"].as_u64(), Some(c));
    assert_eq!(j["trace"]["root"], forge["activation_root"]);
    let mut req = request(Method::GET, &format!("/v1/receipts/{id}"), None, None);
    req.headers_mut()
        .insert("accept", "application/octet-stream".parse().unwrap());
    let bin = send(&app.router, req).await;
    assert_eq!(bin.headers["content-type"], "application/octet-stream");
    let receipt = Receipt::from_bytes(&bin.body).unwrap();
    assert_eq!(crate::common::hex(&receipt.request.id), id);
    let hash = crate::common::hex(&receipt.hash().unwrap());
    assert_eq!(forge["receipt_hash"].as_str(), Some(hash.as_str()));
    // The hash names the same receipt.
    let by_hash = get(&app.router, &format!("/v1/receipts/{hash}")).await;
    assert_eq!(by_hash.json()["id"].as_str(), Some(id));
    let report = receipt
        .verify_offline(&TrustAnchor::new(keys().1.clone()))
        .unwrap();
    assert_eq!(report.flops, flops);
    // The verifying key endpoint serves the key it verifies under.
    let vk = get(&app.router, "/v1/receipts/verifying-key").await;
    assert_eq!(
        vk.body.as_ref(),
        forge_circuits::vk_to_bytes(&keys().1).as_slice()
    );
}

#[tokio::test]
async fn seeds_make_answers_reproducible_and_params_take_effect() {
    let app = app();
    let mut body = hello(12, 7);
    body["temperature"] = json!(1.0);
    let a = chat(&app.router, &body).await.json();
    let b = chat(&app.router, &body).await.json();
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
    assert_ne!(
        a["forge"]["receipt_id"], b["forge"]["receipt_id"],
        "each request has its own receipt"
    );

    // A logit bias forcing one byte token: exactly max_tokens of it, finish_reason length.
    let forced = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5,
        "temperature": 0, "logit_bias": {"68": 100}});
    let v = chat(&app.router, &forced).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text.len(), 5, "{text:?}");
    let c = text.chars().next().unwrap();
    assert!(text.chars().all(|x| x == c));

    // The same with a stop string on that character: stops at once, text cut before it.
    let mut stopped = forced.clone();
    stopped["stop"] = json!([c.to_string()]);
    let v = chat(&app.router, &stopped).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert_eq!(v["usage"]["completion_tokens"], 1);
}

#[tokio::test]
async fn text_completions_take_text_or_token_prompts() {
    let app = app();
    let r = post(
        &app.router,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "the tin", "max_tokens": 4, "seed": 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert!(v["choices"][0]["text"].is_string());
    assert!(v["forge"]["receipt_id"].is_string());
    let tokens = post(
        &app.router,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": [[70, 71, 72]], "max_tokens": 2}),
    )
    .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    assert_eq!(tokens.json()["usage"]["prompt_tokens"], 3);
}

#[tokio::test]
async fn models_list_the_served_model() {
    let app = app();
    let v = get(&app.router, "/v1/models").await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["object"], "model");
    let m = get(&app.router, "/v1/models/tiny").await.json();
    assert_eq!(m["id"], MODEL);
    assert_eq!(m["owned_by"], "forge");
    let doc = get(&app.router, "/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/chat/completions"]["post"].is_object());
}
