//! The benchmark's client: streamed chat completions over plain HTTP, timed
//! as the events arrive.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::sse::{SseParser, StreamEvent, StreamTrace, parse_event};
use crate::prompts::SYSTEM;

/// What every request of a run asks for (the same for both servers).
#[derive(Clone, Debug)]
pub struct RequestShape {
    /// `max_tokens`.
    pub max_tokens: usize,
    /// Token ids given a bias of -100 (`logit_bias`), so that generation
    /// runs to `max_tokens`: the end-of-turn tokens, unless `--natural-stop`.
    pub banned: Vec<u32>,
    /// `temperature` (0: greedy); every stream sends `seed` 0.
    pub temperature: f32,
}

/// The JSON body of a streamed chat completion of `user` (after the
/// benchmark's system message) for `model`, at the shape's temperature.
pub fn chat_body(model: &str, user: &str, shape: &RequestShape) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
        ],
        "stream": true,
        "stream_options": {"include_usage": true},
        "temperature": shape.temperature,
        "max_tokens": shape.max_tokens,
        "seed": 0,
    });
    if !shape.banned.is_empty() {
        body["logit_bias"] = shape
            .banned
            .iter()
            .map(|t| (t.to_string(), json!(-100)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    body
}

/// The first model id `GET /v1/models` lists.
pub async fn first_model_id(http: &reqwest::Client, base_url: &str) -> Result<String, String> {
    let url = format!("{base_url}/v1/models");
    let r = http
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| format!("{url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url} answered {status}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{url}: not JSON: {e}"))?;
    v.pointer("/data/0/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{url} lists no model: {text}"))
}

/// Send one streamed chat completion and record its timeline. `Err` when
/// the request fails, the answer is not 200, or the body is not a stream of
/// chunks; an error event inside the stream is kept in the trace.
pub async fn stream_chat(
    http: &reqwest::Client,
    base_url: &str,
    body: &Value,
) -> Result<StreamTrace, String> {
    let url = format!("{base_url}/v1/chat/completions");
    let body = body.to_string();
    // The clock starts before the request is written: TTFT includes
    // connecting, queueing in the server and prefill.
    let sent = Instant::now();
    let mut resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{url} answered {status}: {}", text.trim()));
    }
    let mut parser = SseParser::new();
    let mut trace = StreamTrace::default();
    while let Some(bytes) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the stream from {url}: {e}"))?
    {
        let t = sent.elapsed().as_secs_f64();
        for data in parser.push(&bytes) {
            let event = parse_event(&data)?;
            trace.on(t, &event);
            if event == StreamEvent::Done {
                return Ok(trace);
            }
        }
    }
    Ok(trace)
}
