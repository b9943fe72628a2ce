//! Accounts: bearer keys, quota held before any work, charges from receipts.

use axum::http::{Method, StatusCode};
use forge_api::ServerOptions;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn keys_balances_and_charges() {
    let mut key = String::new();
    let app = app_with(
        ServerOptions {
            price_milli_per_cu: 2000,
            ..ServerOptions::default()
        },
        &tiny_spec(),
        |l| {
            key = l.create_account("alice").unwrap().1;
        },
    );
    let body = hello(4, 1);
    let call = |k: Option<&str>| request(Method::POST, "/v1/chat/completions", Some(&body), k);
    let e = send(&app.router, call(None))
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(e["code"], "invalid_api_key");
    send(&app.router, call(Some("fk-wrong")))
        .await
        .error(StatusCode::UNAUTHORIZED);
    send(&app.router, request(Method::GET, "/v1/models", None, None))
        .await
        .error(StatusCode::UNAUTHORIZED);

    // No credit: refused before any work.
    let e = send(&app.router, call(Some(&key)))
        .await
        .error(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("insufficient_quota"), Some("insufficient_quota"))
    );
    let m = get_with(&app, "/metrics", &key).await.text();
    assert_eq!(metric(&m, "forge_engine_steps_total"), 0.0);

    let ledger = app.ledger();
    let alice = ledger.find_account("alice").unwrap();
    ledger.credit(&alice, 1_000_000, Some("test")).unwrap();
    let r = send(&app.router, call(Some(&key))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let forge = r.json()["forge"].clone();
    let (milli, charged) = (
        forge["milli_cu"].as_u64().unwrap(),
        forge["price"]["charged_milli_cu"].as_u64().unwrap(),
    );
    assert_eq!(charged, (milli * 2000).div_ceil(1000));
    assert_eq!(forge["price"]["milli_cu_per_cu"], 2000);

    let b = get_with(&app, "/v1/balance", &key).await.json();
    assert_eq!(b["account"], "alice");
    assert_eq!(b["spent_milli_cu"].as_u64(), Some(charged));
    assert_eq!(
        b["balance_milli_cu"].as_i64(),
        Some(1_000_000 - charged as i64)
    );
    assert_eq!(b["receipts"], 1);
    let bal = ledger.balance(&alice).unwrap();
    assert_eq!(bal.spent_milli_cu, charged);

    // A request whose worst case exceeds what is left is refused up front.
    let huge =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 400});
    let small = ledger.create_account("bob").unwrap().1;
    ledger
        .credit(&ledger.find_account("bob").unwrap(), 1, None)
        .unwrap();
    let e = send(
        &app.router,
        request(
            Method::POST,
            "/v1/chat/completions",
            Some(&huge),
            Some(&small),
        ),
    )
    .await;
    assert_eq!(
        e.error(StatusCode::TOO_MANY_REQUESTS)["code"],
        "insufficient_quota"
    );
}

async fn get_with(app: &App, uri: &str, key: &str) -> Reply {
    send(&app.router, request(Method::GET, uri, None, Some(key))).await
}
