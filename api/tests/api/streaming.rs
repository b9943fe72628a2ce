//! Server-sent events exactly as the OpenAI API sends them.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn chunks(body: &str) -> (Vec<Value>, Vec<String>) {
    let data = sse_data(body);
    let json = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (json, data)
}

#[tokio::test]
async fn chat_stream_with_usage() {
    let app = app();
    let mut body = hello(10, 3);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = chat(&app.router, &body).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let (chunks, data) = chunks(&r.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    let n = chunks.len();
    assert!(n >= 3, "{data:?}");
    // Role first.
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks[0]["usage"].is_null() && chunks[0].get("usage").is_some(),
        "usage: null on every chunk but the last"
    );
    // Content deltas, then the finish chunk with the receipt, then usage with no choices.
    let finish = &chunks[n - 2];
    let reason = finish["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(reason == "stop" || reason == "length");
    assert!(finish["forge"]["receipt_id"].is_string());
    for c in &chunks[1..n - 2] {
        assert!(c["choices"][0]["finish_reason"].is_null());
        assert!(c["choices"][0]["delta"]["content"].is_string());
    }
    let usage = &chunks[n - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["forge"]["receipt_id"], finish["forge"]["receipt_id"]);
    // The receipt id is in the header too, sent before generation, and it resolves.
    let id = r.headers["x-forge-receipt"].to_str().unwrap().to_string();
    assert_eq!(finish["forge"]["receipt_id"], id.as_str());
    let receipt = get(&app.router, &format!("/v1/receipts/{id}")).await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.text());
    assert_eq!(receipt.json()["request"]["id"], id.as_str());
    let streamed: String = chunks[1..n - 2]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    let ids: Vec<&Value> = chunks.iter().map(|c| &c["id"]).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one id per stream");

    // The same request without streaming gives the same text and usage.
    let mut plain = hello(10, 3);
    plain["stream"] = json!(false);
    let v = chat(&app.router, &plain).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        streamed
    );
    assert_eq!(v["usage"], usage["usage"]);
    assert_eq!(v["choices"][0]["finish_reason"], reason);
}

#[tokio::test]
async fn completion_stream_without_usage() {
    let app = app();
    let body = json!({"model": MODEL, "prompt": "the", "max_tokens": 6, "seed": 5, "stream": true});
    let r = post(&app.router, "/v1/completions", &body).await;
    let (chunks, data) = chunks(&r.text());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let last = chunks.last().unwrap();
    assert_eq!(last["object"], "text_completion");
    assert!(last["choices"][0]["finish_reason"].is_string());
    assert!(last["forge"]["receipt_id"].is_string());
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "no usage key without include_usage"
    );
    assert!(chunks.iter().all(|c| c["choices"][0]["text"].is_string()));
}

#[tokio::test]
async fn held_back_text_is_flushed_at_the_end() {
    // A stop string that never completes: its prefix is held back while it
    // could still match, and must reach the client when generation ends.
    let app = app();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 4,
        "temperature": 0, "logit_bias": {"68": 100}, "stop": ["AAAAAZ"], "stream": true});
    let r = chat(&app.router, &body).await;
    let (chunks, _) = chunks(&r.text());
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "AAAA");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}
