//! Server-sent events as OpenAI-style servers stream them, and the parts of a
//! chat completion chunk the serving benchmark needs. Pure code, no I/O: the
//! HTTP body arrives in pieces that may end anywhere (inside a line, inside a
//! UTF-8 sequence), so the parser buffers bytes until a line is complete.

use serde_json::Value;

/// Incremental parser of a `text/event-stream` body: feed it the body's
/// bytes as they arrive, get back the `data` of each complete event.
///
/// Lines end with LF or CRLF (axum sends LF, sse-starlette CRLF); a bare CR
/// as line end, which neither server sends, is not supported. Comment lines
/// (`: keep-alive`) and fields other than `data` are ignored; several `data`
/// lines of one event are joined with `\n`, as the SSE specification says.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes after the last complete line.
    pending: Vec<u8>,
    /// `data` lines of the event being read.
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consume `bytes`; returns the data of every event they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        // Split at LF at the byte level: an LF byte never occurs inside a
        // multi-byte UTF-8 sequence, so each line is whole UTF-8.
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let line = &self.pending[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            if let Some(data) = self.line(&line) {
                events.push(data);
            }
            start = end + 1;
        }
        self.pending.drain(..start);
        events
    }

    /// One complete line; returns the event's data when it ends one.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return self.data.take();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        None
    }
}

/// Token counts of a stream's `usage` object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Prompt tokens, as the server counted them.
    pub prompt_tokens: usize,
    /// Generated tokens, as the server counted them.
    pub completion_tokens: usize,
}

/// What one event of a chat completion stream says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// Text of the choices' `delta.content`, concatenated (empty when none:
    /// the role chunk, the finish chunk, the usage chunk).
    pub content: String,
    /// A choice's `finish_reason`, when one is set.
    pub finish_reason: Option<String>,
    /// The `usage` object, when present and not null.
    pub usage: Option<Usage>,
    /// `forge.receipt_id`: Forge's signed receipt of the request.
    pub receipt_id: Option<String>,
    /// The message of an OpenAI error envelope sent inside the stream.
    pub error: Option<String>,
}

/// One event's data, interpreted.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// `data: [DONE]`, the end of the stream.
    Done,
    /// A JSON chunk.
    Chunk(Chunk),
}

/// Interpret the data of one event: `[DONE]`, or a JSON chunk. `Err` when
/// the data is neither.
pub fn parse_event(data: &str) -> Result<StreamEvent, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(StreamEvent::Done);
    }
    let v: Value = serde_json::from_str(data)
        .map_err(|e| format!("an event is not JSON ({e}): {}", clip(data, 200)))?;
    let mut chunk = Chunk::default();
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        chunk.error = Some(
            err.get("message")
                .and_then(Value::as_str)
                .map_or_else(|| err.to_string(), str::to_string),
        );
    }
    for choice in v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(text) = choice.pointer("/delta/content").and_then(Value::as_str) {
            chunk.content.push_str(text);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            chunk.finish_reason = Some(reason.to_string());
        }
    }
    if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
        let count = |k: &str| u.get(k).and_then(Value::as_u64).map(|n| n as usize);
        if let (Some(prompt_tokens), Some(completion_tokens)) =
            (count("prompt_tokens"), count("completion_tokens"))
        {
            chunk.usage = Some(Usage {
                prompt_tokens,
                completion_tokens,
            });
        }
    }
    chunk.receipt_id = v
        .pointer("/forge/receipt_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(StreamEvent::Chunk(chunk))
}

/// Where a stream's token count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TokenCount {
    /// The server's `usage`.
    #[serde(rename = "usage")]
    Usage,
    /// `max_tokens`, the stream having ended with `finish_reason: "length"`.
    #[serde(rename = "length")]
    Length,
    /// The number of non-empty content deltas.
    #[serde(rename = "deltas")]
    Deltas,
}

/// The timeline of one streamed request, times in seconds since the request
/// was sent. Built from the events as they arrive ([`StreamTrace::on`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StreamTrace {
    /// First non-empty content delta (TTFT).
    pub first_content: Option<f64>,
    /// Last non-empty content delta.
    pub last_content: Option<f64>,
    /// Non-empty content deltas received.
    pub content_deltas: usize,
    /// Bytes of content received.
    pub content_bytes: usize,
    /// The last `finish_reason` seen.
    pub finish_reason: Option<String>,
    /// The server's `usage`, when it sent one.
    pub usage: Option<Usage>,
    /// Forge's receipt id, when the stream carried one.
    pub receipt_id: Option<String>,
    /// `[DONE]`.
    pub done: Option<f64>,
    /// An error sent inside the stream.
    pub error: Option<String>,
}

impl StreamTrace {
    /// Record `event`, received `t` seconds after the request was sent.
    pub fn on(&mut self, t: f64, event: &StreamEvent) {
        match event {
            StreamEvent::Done => {
                self.done.get_or_insert(t);
            }
            StreamEvent::Chunk(c) => {
                if !c.content.is_empty() {
                    self.first_content.get_or_insert(t);
                    self.last_content = Some(t);
                    self.content_deltas += 1;
                    self.content_bytes += c.content.len();
                }
                if c.finish_reason.is_some() {
                    self.finish_reason.clone_from(&c.finish_reason);
                }
                if c.usage.is_some() {
                    self.usage = c.usage;
                }
                if c.receipt_id.is_some() {
                    self.receipt_id.clone_from(&c.receipt_id);
                }
                if c.error.is_some() {
                    self.error.clone_from(&c.error);
                }
            }
        }
    }

    /// Generated tokens and where the count comes from: the server's
    /// `usage.completion_tokens`; without usage (llama-cpp-python's server
    /// ignores `stream_options`), `max_tokens` when the stream ended with
    /// `finish_reason: "length"` (it generated exactly that many), else the
    /// number of content deltas (one token each on a server that streams
    /// token by token; a lower bound where text is held back and merged).
    pub fn completion_tokens(&self, max_tokens: usize) -> (usize, TokenCount) {
        match self.usage {
            Some(u) => (u.completion_tokens, TokenCount::Usage),
            None if self.finish_reason.as_deref() == Some("length") => {
                (max_tokens, TokenCount::Length)
            }
            None => (self.content_deltas, TokenCount::Deltas),
        }
    }

    /// Why the stream is not a complete answer, if it is not: an error
    /// event, no `[DONE]`, no finish reason, or no content.
    pub fn problem(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("the server sent an error: {e}"));
        }
        if self.done.is_none() {
            return Some("the stream ended without `[DONE]`".into());
        }
        if self.finish_reason.is_none() {
            return Some("the stream ended without a finish_reason (interrupted?)".into());
        }
        if self.first_content.is_none() {
            return Some("the stream carried no content".into());
        }
        None
    }
}

/// Decode tokens/s of one stream: the tokens after the first over the time
/// from the first content delta to the last one (so neither the prefill
/// nor what the server does after the last token counts). `None` with fewer
/// than two tokens or no measurable interval.
pub fn decode_tps(tokens: usize, first: Option<f64>, last: Option<f64>) -> Option<f64> {
    let (first, last) = (first?, last?);
    (tokens >= 2 && last > first).then(|| (tokens - 1) as f64 / (last - first))
}

/// `a / b` when both are known and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn clip(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_give_the_same_data() {
        let body = "data: {\"a\":1}\n\n: keep-alive\n\ndata: caf\u{e9}\n\nevent: x\nid: 3\ndata: [DONE]\n\n";
        let mut whole = SseParser::new();
        let expected = whole.push(body.as_bytes());
        assert_eq!(expected, vec!["{\"a\":1}", "caf\u{e9}", "[DONE]"]);
        // Every split point, including inside the two-byte `é`.
        for cut in 0..=body.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&body.as_bytes()[..cut]);
            got.extend(p.push(&body.as_bytes()[cut..]));
            assert_eq!(got, expected, "cut at {cut}");
        }
        // Byte by byte.
        let mut p = SseParser::new();
        let got: Vec<String> = body.bytes().flat_map(|b| p.push(&[b])).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn crlf_multiline_data_and_no_space_after_the_colon() {
        let mut p = SseParser::new();
        let got = p.push(b"data:one\r\ndata: two\r\n\r\ndata\r\n\r\n:comment\r\n\r\n");
        assert_eq!(got, vec!["one\ntwo".to_string(), String::new()]);
        // An event is only complete at its blank line.
        assert!(p.push(b"data: tail").is_empty());
        assert!(p.push(b"\n").is_empty());
        assert_eq!(p.push(b"\n"), vec!["tail".to_string()]);
    }

    #[test]
    fn chunks_of_a_forge_stream() {
        let role = r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Paris"},"finish_reason":null}]}"#;
        let finish = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"forge":{"receipt_id":"ab12","flops":1}}"#;
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":27,"completion_tokens":48,"total_tokens":75},"forge":{"receipt_id":"ab12"}}"#;
        assert_eq!(parse_event(role), Ok(StreamEvent::Chunk(Chunk::default())));
        let Ok(StreamEvent::Chunk(c)) = parse_event(text) else {
            panic!()
        };
        assert_eq!(c.content, "Paris");
        let Ok(StreamEvent::Chunk(f)) = parse_event(finish) else {
            panic!()
        };
        assert_eq!(
            (f.finish_reason.as_deref(), f.receipt_id.as_deref()),
            (Some("length"), Some("ab12"))
        );
        let Ok(StreamEvent::Chunk(u)) = parse_event(usage) else {
            panic!()
        };
        assert_eq!(
            u.usage,
            Some(Usage {
                prompt_tokens: 27,
                completion_tokens: 48
            })
        );
        assert_eq!(parse_event(" [DONE] "), Ok(StreamEvent::Done));
    }

    #[test]
    fn errors_and_garbage() {
        let err = r#"{"error":{"message":"the receipt failed","type":"server_error"}}"#;
        let Ok(StreamEvent::Chunk(c)) = parse_event(err) else {
            panic!()
        };
        assert_eq!(c.error.as_deref(), Some("the receipt failed"));
        assert!(parse_event("not json").is_err());
        // A null usage (llama.cpp's chunks carry none) is no usage.
        let Ok(StreamEvent::Chunk(c)) = parse_event(r#"{"choices":[],"usage":null}"#) else {
            panic!()
        };
        assert_eq!(c.usage, None);
    }

    #[test]
    fn a_trace_records_ttft_tokens_and_the_end() {
        let chunk = |content: &str| {
            StreamEvent::Chunk(Chunk {
                content: content.into(),
                ..Chunk::default()
            })
        };
        let mut t = StreamTrace::default();
        t.on(0.01, &chunk(""));
        t.on(0.50, &chunk("The"));
        t.on(0.60, &chunk(" capital"));
        t.on(0.70, &chunk(" is"));
        assert_eq!(
            t.problem().as_deref(),
            Some("the stream ended without `[DONE]`")
        );
        t.on(
            0.75,
            &StreamEvent::Chunk(Chunk {
                finish_reason: Some("stop".into()),
                receipt_id: Some("r".into()),
                ..Chunk::default()
            }),
        );
        assert_eq!(
            t.completion_tokens(64),
            (3, TokenCount::Deltas),
            "no usage: one token per delta"
        );
        t.on(
            0.76,
            &StreamEvent::Chunk(Chunk {
                usage: Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 4,
                }),
                ..Chunk::default()
            }),
        );
        t.on(0.77, &StreamEvent::Done);
        assert_eq!(t.problem(), None);
        assert_eq!(
            (t.first_content, t.last_content, t.done),
            (Some(0.50), Some(0.70), Some(0.77))
        );
        assert_eq!((t.content_deltas, t.content_bytes), (3, 14));
        assert_eq!(t.completion_tokens(64), (4, TokenCount::Usage));
        assert_eq!(t.receipt_id.as_deref(), Some("r"));
        let tps = decode_tps(4, t.first_content, t.last_content).unwrap();
        assert!((tps - 15.0).abs() < 1e-9, "{tps}");
    }

    #[test]
    fn without_usage_a_length_finish_means_max_tokens() {
        let mut t = StreamTrace::default();
        for i in 0..5 {
            t.on(
                0.1 * f64::from(i),
                &StreamEvent::Chunk(Chunk {
                    content: "x".into(),
                    ..Chunk::default()
                }),
            );
        }
        t.on(
            0.6,
            &StreamEvent::Chunk(Chunk {
                finish_reason: Some("length".into()),
                ..Chunk::default()
            }),
        );
        assert_eq!(t.completion_tokens(6), (6, TokenCount::Length));
        t.finish_reason = Some("stop".into());
        assert_eq!(t.completion_tokens(6), (5, TokenCount::Deltas));
    }

    #[test]
    fn interrupted_and_empty_streams_are_problems() {
        let mut t = StreamTrace::default();
        t.on(
            0.1,
            &StreamEvent::Chunk(Chunk {
                content: "x".into(),
                ..Chunk::default()
            }),
        );
        t.on(0.2, &StreamEvent::Done);
        assert!(t.problem().unwrap().contains("finish_reason"));
        let mut e = StreamTrace::default();
        e.on(
            0.1,
            &StreamEvent::Chunk(Chunk {
                error: Some("boom".into()),
                ..Chunk::default()
            }),
        );
        e.on(0.2, &StreamEvent::Done);
        assert!(e.problem().unwrap().contains("boom"));
    }

    #[test]
    fn rates_and_ratios() {
        assert_eq!(decode_tps(1, Some(0.1), Some(0.1)), None);
        assert_eq!(decode_tps(5, Some(0.2), Some(0.2)), None);
        assert_eq!(decode_tps(5, None, Some(1.0)), None);
        assert_eq!(decode_tps(5, Some(1.0), Some(3.0)), Some(2.0));
        assert_eq!(ratio(Some(6.0), Some(2.0)), Some(3.0));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
