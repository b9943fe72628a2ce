//! Every error is the OpenAI envelope with the right status; no 5xx for client input.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use forge_api::{AppState, Ledger, ServerOptions, router};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn routing_errors_are_envelopes() {
    let app = app();
    let e = get(&app.router, "/v1/nope")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "not_found");
    let e = send(
        &app.router,
        request(Method::GET, "/v1/chat/completions", None, None),
    )
    .await;
    assert_eq!(
        e.error(StatusCode::METHOD_NOT_ALLOWED)["code"],
        "method_not_allowed"
    );
    let e = send(
        &app.router,
        request(Method::DELETE, "/v1/models", None, None),
    )
    .await;
    e.error(StatusCode::METHOD_NOT_ALLOWED);
    let e = get(&app.router, "/v1/models/gpt-4")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("model_not_found"), Some("model"))
    );
    get(&app.router, "/v1/receipts/xyz")
        .await
        .error(StatusCode::NOT_FOUND);
    get(&app.router, &format!("/v1/receipts/{}", "ab".repeat(32)))
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_bodies_are_400_413_415() {
    let app = app_with(
        ServerOptions {
            body_limit: 4096,
            ..ServerOptions::default()
        },
        &tiny_spec(),
        |_| {},
    );
    let raw = |ct: Option<&str>, body: Vec<u8>| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions");
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(Body::from(body)).unwrap()
    };
    let json = Some("application/json");
    let e = send(
        &app.router,
        raw(json, b"{\"model\": \"tiny\", \"messages\": \xff}".to_vec()),
    )
    .await;
    assert!(
        e.error(StatusCode::BAD_REQUEST)["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    send(&app.router, raw(json, b"{\"model\":".to_vec()))
        .await
        .error(StatusCode::BAD_REQUEST);
    send(&app.router, raw(json, b"[]".to_vec()))
        .await
        .error(StatusCode::BAD_REQUEST);
    send(&app.router, raw(json, Vec::new()))
        .await
        .error(StatusCode::BAD_REQUEST);
    send(&app.router, raw(Some("text/plain"), b"{}".to_vec()))
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"model": "tiny", "messages": [{"role": "user", "content": "x".repeat(5000)}]})
        .to_string();
    let e = send(&app.router, raw(json, big.into_bytes()))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e["code"], "payload_too_large");
    // No content type at all is read as JSON (curl -d sends a form type; clients send JSON).
    let ok = send(&app.router, raw(None, hello(2, 1).to_string().into_bytes())).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test]
async fn parameters_are_checked_and_named() {
    let app = app();
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"model": "tiny", "messages": user, "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"model": "tiny", "messages": user, "tool_choice": "auto"}),
            "tool_choice",
        ),
        (
            json!({"model": "tiny", "messages": user, "functions": [{"name": "f"}]}),
            "functions",
        ),
        (
            json!({"model": "tiny", "messages": user, "response_format": {"type": "json_schema", "json_schema": {}}}),
            "response_format",
        ),
        (
            json!({"model": "tiny", "messages": user, "frobnicate": true}),
            "frobnicate",
        ),
        (json!({"model": "tiny", "messages": user, "n": 0}), "n"),
        (json!({"model": "tiny", "messages": user, "n": 9}), "n"),
        (json!({"model": "tiny", "messages": user, "n": 129}), "n"),
        (json!({"model": "tiny", "messages": user, "n": 1.5}), "n"),
        (json!({"model": "tiny", "messages": user, "n": "2"}), "n"),
        (json!({"model": "tiny", "messages": user, "n": -2}), "n"),
        (
            json!({"model": "tiny", "messages": user, "logprobs": "yes"}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "logprobs": 3}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "top_logprobs": 3}),
            "top_logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "logprobs": false, "top_logprobs": 3}),
            "top_logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "logprobs": true, "top_logprobs": -1}),
            "top_logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "logprobs": true, "top_logprobs": 1.5}),
            "top_logprobs",
        ),
        (
            json!({"model": "tiny", "messages": user, "temperature": 5}),
            "temperature",
        ),
        (
            json!({"model": "tiny", "messages": user, "top_p": 0}),
            "top_p",
        ),
        (
            json!({"model": "tiny", "messages": user, "presence_penalty": 3}),
            "presence_penalty",
        ),
        (
            json!({"model": "tiny", "messages": user, "logit_bias": {"99999": 1}}),
            "logit_bias",
        ),
        (
            json!({"model": "tiny", "messages": user, "logit_bias": {"5": 200}}),
            "logit_bias",
        ),
        (
            json!({"model": "tiny", "messages": user, "max_tokens": 0}),
            "max_tokens",
        ),
        (
            json!({"model": "tiny", "messages": user, "max_completion_tokens": 0}),
            "max_completion_tokens",
        ),
        (
            json!({"model": "tiny", "messages": user, "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"model": "tiny", "messages": user, "stop": 5}),
            "stop",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "user"}]}),
            "messages[0].content",
        ),
        (json!({"model": "tiny", "messages": "hi"}), "messages"),
        (json!({"model": 7, "messages": user}), "model"),
        (json!({"messages": user}), "model"),
    ];
    for (body, param) in cases {
        let e = chat(&app.router, &body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(e["param"], param, "{body}: {e}");
    }
    let e = chat(&app.router, &json!({"model": "gpt-4o", "messages": user}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "model_not_found");
    let completion_cases = [
        (
            json!({"model": "tiny", "prompt": "x", "logprobs": 6}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "prompt": "x", "logprobs": -1}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "prompt": "x", "logprobs": true}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "prompt": "x", "logprobs": 2.5}),
            "logprobs",
        ),
        (
            json!({"model": "tiny", "prompt": "x", "top_logprobs": 2}),
            "top_logprobs",
        ),
        (json!({"model": "tiny", "prompt": "x", "n": 0}), "n"),
        (json!({"model": "tiny", "prompt": "x", "n": 50}), "n"),
    ];
    for (body, param) in completion_cases {
        let e = post(&app.router, "/v1/completions", &body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(e["param"], param, "{body}: {e}");
    }
}

#[tokio::test]
async fn n_is_capped_by_the_batch_size() {
    let app = app_with(
        ServerOptions {
            max_concurrent: 2,
            ..ServerOptions::default()
        },
        &tiny_spec(),
        |_| {},
    );
    let mut body = hello(2, 1);
    body["n"] = json!(3);
    let e = chat(&app.router, &body)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert_eq!(e["param"], "n");
    assert!(e["message"].as_str().unwrap().contains("at most 2"), "{e}");
    body["n"] = json!(2);
    let ok = chat(&app.router, &body).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["choices"].as_array().unwrap().len(), 2);
    // Refused before any work: nothing was stepped for the refused request.
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(metric(&m, "forge_receipts_issued_total"), 2.0);
}

#[tokio::test]
async fn over_long_prompts_are_context_length_exceeded() {
    let app = app();
    let long = "the tin ".repeat(400);
    let e = chat(
        &app.router,
        &json!({"model": "tiny", "messages": [{"role": "user", "content": long}]}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("context_length_exceeded"), Some("messages"))
    );
    let e = post(
        &app.router,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": "hi", "max_tokens": 100000}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str()),
        (Some("context_length_exceeded"), Some("prompt"))
    );
    let e = post(
        &app.router,
        "/v1/completions",
        &json!({"model": "tiny", "prompt": [100000]}),
    )
    .await
    .error(StatusCode::BAD_REQUEST);
    assert_eq!(e["param"], "prompt");
}

#[tokio::test]
async fn health_is_503_until_the_model_is_installed() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(
        ServerOptions::default(),
        Ledger::open(&dir.path().join("l.sqlite")).unwrap(),
    );
    let r = router(state.clone());
    let e = get(&r, "/health").await;
    assert!(e.headers.contains_key("retry-after"));
    assert_eq!(
        e.error(StatusCode::SERVICE_UNAVAILABLE)["code"],
        "model_loading"
    );
    chat(&r, &hello(2, 1))
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    get(&r, "/v1/models")
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&r, "/metrics").await.status, StatusCode::OK);
    state
        .install(tiny_model(&tiny_spec()), MODEL, signer())
        .unwrap();
    let ok = get(&r, "/health").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["status"], "ok");
    assert!(
        state
            .install(tiny_model(&tiny_spec()), MODEL, signer())
            .is_err(),
        "one model per state"
    );
}

#[tokio::test]
async fn timeouts_are_408_envelopes() {
    let opts = ServerOptions {
        request_timeout: std::time::Duration::ZERO,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &tiny_spec(), |_| {});
    let e = chat(&app.router, &hello(5, 1))
        .await
        .error(StatusCode::REQUEST_TIMEOUT);
    assert_eq!(e["code"], "request_timeout");
    let mut body = hello(5, 1);
    body["stream"] = json!(true);
    let r = chat(&app.router, &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let data = sse_data(&r.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let err: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(err["error"]["code"], "request_timeout");
}
