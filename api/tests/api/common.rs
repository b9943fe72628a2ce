//! Shared helpers: a tiny model, a served state, one-shot calls, SSE parsing.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use forge_api::{AppState, Ledger, ReceiptSigner, ServerOptions, router};
use forge_circuits::{ProvingKey, VerifyingKey};
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{Backend, Model};
use forge_proofs::NodeKey;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub(crate) const MODEL: &str = "tiny";

pub(crate) fn keys() -> &'static (ProvingKey, VerifyingKey) {
    static KEYS: OnceLock<(ProvingKey, VerifyingKey)> = OnceLock::new();
    KEYS.get_or_init(|| forge_circuits::setup([7; 32]))
}

pub(crate) fn signer() -> ReceiptSigner {
    let (pk, vk) = keys().clone();
    ReceiptSigner::new(NodeKey::from_secret(&[3; 32]), pk, vk)
}

pub(crate) fn tiny_spec() -> TinySpec {
    TinySpec {
        context_length: 512,
        ..TinySpec::default()
    }
}

pub(crate) fn tiny_model(spec: &TinySpec) -> Model {
    let bytes = tiny_model_gguf(spec).unwrap();
    let file = forge_engine::gguf::GgufFile::parse(bytes).unwrap();
    Model::from_gguf(&file, Backend::Cpu).unwrap()
}

/// A served app and its temp dir (ledger).
pub(crate) struct App {
    pub(crate) router: Router,
    pub(crate) dir: tempfile::TempDir,
}

impl App {
    pub(crate) fn ledger(&self) -> Ledger {
        Ledger::open(&self.dir.path().join("ledger.sqlite")).unwrap()
    }
}

/// An app whose ledger is prepared by `setup` before the state opens it.
pub(crate) fn app_with(
    options: ServerOptions,
    spec: &TinySpec,
    setup: impl FnOnce(&Ledger),
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
    setup(&ledger);
    let state = AppState::new(options, ledger);
    state.install(tiny_model(spec), MODEL, signer()).unwrap();
    App {
        router: router(state),
        dir,
    }
}

pub(crate) fn app() -> App {
    app_with(
        ServerOptions {
            keep_alive: Duration::from_secs(1),
            ..ServerOptions::default()
        },
        &tiny_spec(),
        |_| {},
    )
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts the OpenAI error envelope with `status`; returns its `error`.
    pub(crate) fn error(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        e
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) async fn send(router: &Router, req: Request<Body>) -> Reply {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub(crate) fn request(
    method: Method,
    uri: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

pub(crate) async fn get(router: &Router, uri: &str) -> Reply {
    send(router, request(Method::GET, uri, None, None)).await
}

pub(crate) async fn post(router: &Router, uri: &str, body: &Value) -> Reply {
    send(router, request(Method::POST, uri, Some(body), None)).await
}

pub(crate) async fn chat(router: &Router, body: &Value) -> Reply {
    post(router, "/v1/chat/completions", body).await
}

/// The `data:` payloads of an SSE body, in order.
pub(crate) fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| {
            let lines: Vec<&str> = ev
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

pub(crate) fn hello(max_tokens: u64, seed: u64) -> Value {
    serde_json::json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "the tin"}],
        "max_tokens": max_tokens,
        "seed": seed,
    })
}

/// A value of `name` in the Prometheus text, summed over label sets.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            let base = k.split('{').next()?;
            (base == name).then(|| v.parse::<f64>().ok()).flatten()
        })
        .sum()
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The tokens the server makes of a one-message chat (the chat template, then the tokenizer).
pub(crate) fn chat_prompt(model: &Model, content: &str) -> Vec<u32> {
    let text = model
        .chat_template()
        .unwrap()
        .render(&[forge_engine::ChatMessage::new("user", content)], true)
        .unwrap();
    model.tokenizer().encode(&text).unwrap()
}

/// A body that never stops early (stop tokens biased away), sampled at
/// temperature 1 with `seed`.
pub(crate) fn unstoppable(max_tokens: u64, seed: u64) -> Value {
    serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": "the tin"}], "max_tokens": max_tokens,
        "seed": seed, "logit_bias": {"0": -100, "2": -100}})
}

/// The JSON chunks of an SSE body (`[DONE]` left out) and every `data:` payload.
pub(crate) fn sse_chunks(body: &str) -> (Vec<Value>, Vec<String>) {
    let data = sse_data(body);
    let json = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (json, data)
}
