//! The wait for receipts ends at the request's deadline: backed-up receipt
//! workers give a 408 (or a stream error event), never a hung request, and
//! the receipts still appear once the workers catch up.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use forge_api::ServerOptions;
use serde_json::json;

use crate::common::*;

/// The 32-hex-digit words of `text`.
fn ids_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 32)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backed_up_receipt_workers_give_408_not_a_hang() {
    let opts = ServerOptions {
        request_timeout: Duration::from_secs(2),
        receipt_workers: 1,
        keep_alive: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let app = app_with(opts, &tiny_spec(), |_| {});
    // Another connection holds the ledger's write lock: the receipt worker
    // blocks on its insert (SQLite's busy timeout is 10 s) after generation.
    let lock = rusqlite::Connection::open(app.dir.path().join("ledger.sqlite")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let mut streamed = hello(3, 2);
    streamed["stream"] = json!(true);
    let plain = hello(3, 1);
    let both = async { tokio::join!(chat(&app.router, &plain), chat(&app.router, &streamed)) };
    let (plain, stream) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("the requests hung on their receipts");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(9),
        "{waited:?}"
    );

    let e = plain.error(StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("timeout_error"), Some("receipt_timeout"))
    );
    let plain_ids = ids_in(e["message"].as_str().unwrap());
    assert_eq!(plain_ids.len(), 1, "{e}");

    assert_eq!(stream.status, StatusCode::OK);
    let stream_id = stream.headers["x-forge-receipt"]
        .to_str()
        .unwrap()
        .to_string();
    let (chunks, data) = sse_chunks(&stream.text());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let err = chunks.last().unwrap();
    assert_eq!(err["error"]["code"], "receipt_timeout", "{err}");
    assert_eq!(
        ids_in(err["error"]["message"].as_str().unwrap()),
        vec![stream_id.clone()]
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["delta"]["content"].is_string()),
        "the text was streamed before the error"
    );

    // The workers catch up: both receipts are recorded under the ids given.
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    for id in plain_ids.iter().chain([&stream_id]) {
        let start = Instant::now();
        loop {
            let r = get(&app.router, &format!("/v1/receipts/{id}")).await;
            if r.status == StatusCode::OK {
                assert_eq!(r.json()["request"]["id"], id.as_str());
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "receipt {id} never appeared: {}",
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
