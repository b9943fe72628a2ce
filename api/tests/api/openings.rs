//! `POST /v1/receipts/{id}/openings`: an auditor's challenge, answered from
//! the commitment the node kept; and every bad request to it.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use forge_api::ServerOptions;
use forge_proofs::{Receipt, SpotChecker, SpotOpenings};
use serde_json::json;

use crate::common::*;

async fn receipt(app: &App, id: &str) -> Receipt {
    let req = Request::builder()
        .uri(format!("/v1/receipts/{id}"))
        .header("accept", "application/octet-stream")
        .body(Body::empty())
        .unwrap();
    let r = send(&app.router, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    Receipt::from_bytes(&r.body).unwrap()
}

fn openings_uri(id: &str) -> String {
    format!("/v1/receipts/{id}/openings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_seed_gets_openings_that_re_execute() {
    let app = app();
    let v = chat(&app.router, &hello(10, 4)).await.json();
    let id = v["forge"]["receipt_id"].as_str().unwrap().to_string();
    let receipt = receipt(&app, &id).await;
    let model = tiny_model(&tiny_spec());
    let checker = SpotChecker::new(&model);
    for (seed, cells) in [([9u8; 32], 8), ([1u8; 32], 3)] {
        let r = post(
            &app.router,
            &openings_uri(&id),
            &json!({"seed": hex(&seed), "cells": cells}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.headers["content-type"], "application/octet-stream");
        let openings = SpotOpenings::from_bytes(&r.body).unwrap();
        assert_eq!(openings.cells.len(), cells as usize);
        let report = checker.check(&receipt, &seed, cells, &openings).unwrap();
        assert_eq!(report.cells.len(), cells as usize);
        // Openings for one seed do not answer another.
        assert!(checker.check(&receipt, &[2; 32], cells, &openings).is_err());
    }
    // No count: the default 8; upper-case hex is fine.
    let r = post(
        &app.router,
        &openings_uri(&id.to_uppercase()),
        &json!({"seed": "AB".repeat(32)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(SpotOpenings::from_bytes(&r.body).unwrap().cells.len(), 8);
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(metric(&m, "forge_audit_commitments_retained"), 1.0);
    // The rows as the commitment keeps them: output rows f32, key/value
    // rows f16 (the store had counted those as f32 too).
    let (t, c) = (&receipt.trace, &receipt.config);
    let kv_width = 2 * u64::from(c.kv_heads) * u64::from(c.head_dim);
    assert_eq!(
        metric(&m, "forge_audit_retained_bytes") as u64,
        u64::from(t.layers) * u64::from(t.positions) * (u64::from(c.d_model) * 4 + kv_width * 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_challenges_are_openai_errors() {
    let app = app();
    let v = chat(&app.router, &hello(4, 4)).await.json();
    let id = v["forge"]["receipt_id"].as_str().unwrap().to_string();
    let hash = v["forge"]["receipt_hash"].as_str().unwrap().to_string();
    let seed = "00".repeat(32);
    for (body, param) in [
        (json!({"seed": "00"}), "seed"),
        (json!({"seed": "zz".repeat(32)}), "seed"),
        (json!({"seed": 7}), "seed"),
        (json!({}), "seed"),
        (json!({"seed": seed, "cells": 0}), "cells"),
        (json!({"seed": seed, "cells": 65}), "cells"),
        (json!({"seed": seed, "cells": -1}), "cells"),
        (json!({"seed": seed, "cells": "8"}), "cells"),
        (json!({"seed": seed, "layer": 1}), "layer"),
    ] {
        let e = post(&app.router, &openings_uri(&id), &body)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert_eq!(e["param"], param, "{body}: {e}");
    }
    let raw = Request::builder()
        .method(Method::POST)
        .uri(openings_uri(&id))
        .header("content-type", "application/json")
        .body(Body::from("{\"seed\": "))
        .unwrap();
    send(&app.router, raw).await.error(StatusCode::BAD_REQUEST);
    // Openings hold the request's tokens: the hash (which may be public) does not name them.
    let e = post(&app.router, &openings_uri(&hash), &json!({"seed": seed}))
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(e["param"], "id");
    let e = post(
        &app.router,
        &openings_uri(&"ab".repeat(16)),
        &json!({"seed": seed}),
    )
    .await
    .error(StatusCode::NOT_FOUND);
    assert_eq!(e["param"], "id");
    let r = get(&app.router, &openings_uri(&id)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

/// `max_tokens` tokens exactly: the stop tokens are biased away.
fn forced(max_tokens: u64, seed: u64) -> serde_json::Value {
    let mut v = hello(max_tokens, seed);
    v["logit_bias"] = json!({"0": -100, "2": -100});
    v
}

/// Bytes of rows one `forced(max_tokens, _)` answer's commitment holds, as a
/// fresh server's store reports them.
async fn commitment_bytes(max_tokens: u64) -> u64 {
    let app = app();
    let _ = chat(&app.router, &forced(max_tokens, 1)).await;
    metric(
        &get(&app.router, "/metrics").await.text(),
        "forge_audit_retained_bytes",
    ) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commitments_past_the_bound_are_dropped_oldest_first() {
    // Room for about one tiny-model commitment: the second answer evicts the first.
    let one = commitment_bytes(6).await;
    assert!(one > 0);
    let opts = ServerOptions {
        audit_retain_bytes: one + one / 2,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &tiny_spec(), |_| {});
    // The bound is published, so a client can tell how full the store is.
    assert_eq!(
        metric(
            &get(&app.router, "/metrics").await.text(),
            "forge_audit_retain_limit_bytes"
        ) as u64,
        one + one / 2
    );
    let first = chat(&app.router, &forced(6, 1)).await.json()["forge"]["receipt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = chat(&app.router, &forced(6, 2)).await.json()["forge"]["receipt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"seed": "11".repeat(32), "cells": 2});
    let e = post(&app.router, &openings_uri(&first), &body)
        .await
        .error(StatusCode::GONE);
    assert_eq!(e["code"], "commitment_expired");
    let r = post(&app.router, &openings_uri(&second), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // 0 keeps none.
    let opts = ServerOptions {
        audit_retain_bytes: 0,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &tiny_spec(), |_| {});
    let id = chat(&app.router, &hello(4, 1)).await.json()["forge"]["receipt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = post(&app.router, &openings_uri(&id), &body)
        .await
        .error(StatusCode::GONE);
    assert_eq!(e["code"], "commitment_expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_gauges_count_every_commitment_with_several_receipt_workers() {
    // Same-length answers, so every commitment holds the same bytes.
    let one = commitment_bytes(5).await;
    let opts = ServerOptions {
        receipt_workers: 4,
        max_concurrent: 8,
        ..ServerOptions::default()
    };
    let app = app_with(opts, &tiny_spec(), |_| {});
    let n = 16u64;
    let answers = futures_util::future::join_all((0..n).map(|seed| {
        let router = app.router.clone();
        async move { chat(&router, &forced(5, seed)).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    // The receipt workers finish in any order; the gauges must end on the
    // store's final state, not on whichever worker set them last.
    let m = get(&app.router, "/metrics").await.text();
    assert_eq!(metric(&m, "forge_audit_commitments_retained") as u64, n);
    assert_eq!(metric(&m, "forge_audit_retained_bytes") as u64, n * one);
}
