//! The scheduler: continuous batching, a bounded queue, disconnects, metrics.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use forge_api::ServerOptions;
use forge_engine::testing::TinySpec;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::common::*;

fn forced(max_tokens: u64, seed: u64) -> serde_json::Value {
    // Never stops early: the stop tokens are biased away; sampled at temperature 1.
    json!({"model": MODEL, "messages": [{"role": "user", "content": "the tin"}], "max_tokens": max_tokens,
        "seed": seed, "logit_bias": {"0": -100, "2": -100}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_batched_and_match_solo_runs() {
    let app = app();
    let solo: Vec<String> = {
        let mut v = Vec::new();
        for s in 0..4 {
            v.push(
                chat(&app.router, &forced(24, s)).await.json()["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        v
    };
    let before = metric(
        &get(&app.router, "/metrics").await.text(),
        "forge_engine_steps_total",
    );
    let tasks: Vec<_> = (0..4)
        .map(|s| {
            let r = app.router.clone();
            tokio::spawn(async move { chat(&r, &forced(24, s)).await.json() })
        })
        .collect();
    for (s, t) in tasks.into_iter().enumerate() {
        let v = t.await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"].as_str().unwrap(),
            solo[s],
            "seed {s}: batching changed the answer"
        );
    }
    let m = get(&app.router, "/metrics").await.text();
    let steps = metric(&m, "forge_engine_steps_total") - before;
    assert!(
        steps < 4.0 * 24.0,
        "4 x 24 tokens took {steps} steps: not batched"
    );
    assert!(metric(&m, "forge_receipts_issued_total") >= 8.0);
    assert!(metric(&m, "forge_time_to_first_token_seconds_count") >= 8.0);
    assert!(metric(&m, "forge_inter_token_latency_seconds_count") >= 8.0 * 23.0);
    assert!(metric(&m, "forge_cu_served_milli_total") > 0.0);
    assert_eq!(metric(&m, "forge_queue_depth"), 0.0);
    assert!(m.contains("forge_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"));
}

/// A model slow enough that a long generation is still running when the next request comes.
fn slow_spec() -> TinySpec {
    TinySpec {
        layers: 4,
        d_model: 256,
        heads: 4,
        kv_heads: 2,
        ffn: 512,
        context_length: 2048,
        ..TinySpec::default()
    }
}

/// Starts a long streamed generation and waits until it is surely running.
async fn start_long_stream(app: &App) -> axum::body::Body {
    let mut long = forced(1800, 1);
    long["stream"] = json!(true);
    let res = app
        .router
        .clone()
        .oneshot(request(
            Method::POST,
            "/v1/chat/completions",
            Some(&long),
            None,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the long request was refused");
    let mut body = res.into_body();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 3 {
        let Some(frame) = body.frame().await else {
            panic!("the stream ended early: {seen}")
        };
        if let Ok(d) = frame.unwrap().into_data() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_free_slot_takes_a_request_even_without_a_wait_queue() {
    // Regression: with max_queue = 0 the queue was a rendezvous channel, which
    // refused every request that came while the engine was stepping.
    let opts = ServerOptions {
        max_concurrent: 2,
        max_queue: 0,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &slow_spec(), |_| {});
    let body = start_long_stream(&app).await;
    let second = chat(&app.router, &forced(2, 2)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let third = chat(&app.router, &forced(2, 3)).await;
    assert_eq!(
        third.status,
        StatusCode::OK,
        "the second request's slot was not given back: {}",
        third.text()
    );
    drop(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_is_429_with_retry_after_and_disconnect_frees_the_slot() {
    let opts = ServerOptions {
        max_concurrent: 1,
        max_queue: 0,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &slow_spec(), |_| {});
    let body = start_long_stream(&app).await;
    let busy = chat(&app.router, &forced(2, 2)).await;
    assert!(
        busy.headers.contains_key("retry-after"),
        "{:?}",
        busy.headers
    );
    assert_eq!(
        busy.error(StatusCode::TOO_MANY_REQUESTS)["code"],
        "rate_limit_exceeded"
    );

    // The client goes away: the sequence is cancelled, the slot freed, the work done so far receipted.
    drop(body);
    let start = Instant::now();
    loop {
        let m = get(&app.router, "/metrics").await.text();
        if metric(&m, "forge_active_sequences") == 0.0
            && metric(&m, "forge_receipts_issued_total") >= 1.0
        {
            assert!(
                metric(&m, "forge_completion_tokens_total") < 1800.0,
                "generation ran on after the disconnect"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the slot was not freed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = chat(&app.router, &forced(2, 2)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_price_rises_with_load_and_the_charge_follows_it() {
    let opts = ServerOptions {
        max_concurrent: 2,
        max_queue: 2,
        price_milli_per_cu: 1000,
        price_surge_percent: 100,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &slow_spec(), |_| {});
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(
        metric(&m, "forge_price_milli_per_cu"),
        1000.0,
        "before any request"
    );
    let price_of = |v: &serde_json::Value| {
        let f = &v["forge"];
        let (price, milli) = (
            f["price"]["milli_cu_per_cu"].as_u64().unwrap(),
            f["milli_cu"].as_u64().unwrap(),
        );
        assert_eq!(
            f["price"]["charged_milli_cu"].as_u64().unwrap(),
            (milli * price).div_ceil(1000),
            "the charge must use the quoted price: {f}"
        );
        price
    };
    let idle = chat(&app.router, &forced(2, 2)).await.json();
    assert_eq!(price_of(&idle), 1000, "idle: the base price");

    // One of the two slots taken: base + 50%.
    let body = start_long_stream(&app).await;
    let busy = chat(&app.router, &forced(2, 3)).await.json();
    assert_eq!(price_of(&busy), 1500);
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(metric(&m, "forge_price_milli_per_cu"), 1500.0);

    // The long request goes away: once its slot is free, the base again.
    drop(body);
    let start = Instant::now();
    while metric(
        &get(&app.router, "/metrics").await.text(),
        "forge_active_sequences",
    ) != 0.0
    {
        assert!(start.elapsed() < Duration::from_secs(30), "slot not freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = chat(&app.router, &forced(2, 4)).await.json();
    assert_eq!(price_of(&again), 1000);
}
