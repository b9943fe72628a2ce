//! Log-probabilities in OpenAI's two shapes: chat's `logprobs.content`
//! (a list of `{token, logprob, bytes, top_logprobs}`) and text completions'
//! `logprobs` (`tokens`, `token_logprobs`, `top_logprobs` as dicts,
//! `text_offset`).

use forge_engine::{TokenLogprobs, Tokenizer};
use serde_json::{Map, Value, json};

use super::Kind;

/// What OpenAI reports for a token whose probability is zero to machine
/// precision (JSON has no `-inf`).
const FLOOR: f64 = -9999.0;

/// One token as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tok {
    /// Its text; a token holding part of a UTF-8 character is written
    /// `bytes:\xNN...` (as OpenAI's text completions write such tokens).
    pub(crate) token: String,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
    /// Its log-probability.
    pub(crate) logprob: f32,
}

/// A sampled token and its most likely alternatives, as text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenInfo {
    pub(crate) chosen: Tok,
    pub(crate) top: Vec<Tok>,
}

fn tok(tokenizer: &Tokenizer, id: u32, logprob: f32) -> Tok {
    let bytes = tokenizer.token_bytes(id).unwrap_or_default();
    let token = match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!(
            "bytes:{}",
            bytes
                .iter()
                .map(|b| format!("\\x{b:02x}"))
                .collect::<String>()
        ),
    };
    Tok {
        token,
        bytes,
        logprob,
    }
}

/// The engine's ids and numbers, as token texts and bytes.
pub(crate) fn describe(tokenizer: &Tokenizer, lp: &TokenLogprobs) -> TokenInfo {
    TokenInfo {
        chosen: tok(tokenizer, lp.token, lp.logprob),
        top: lp
            .top
            .iter()
            .map(|&(id, p)| tok(tokenizer, id, p))
            .collect(),
    }
}

/// A log-probability as JSON: the shortest decimal that reads back as the
/// same f32 (not the f32 widened to f64, which prints 17 digits of noise),
/// and [`FLOOR`] for `-inf`.
fn number(p: f32) -> f64 {
    if !p.is_finite() {
        return FLOOR;
    }
    p.to_string()
        .parse::<f64>()
        .unwrap_or(f64::from(p))
        .max(FLOOR)
}

/// Chat: the `logprobs` object of a choice (or of a chunk) for `tokens`.
fn chat_json(tokens: &[TokenInfo]) -> Value {
    let one = |t: &Tok| json!({"token": t.token, "logprob": number(t.logprob), "bytes": t.bytes});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut v = one(&t.chosen);
            v["top_logprobs"] = t.top.iter().map(one).collect();
            v
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// Text completions: the `logprobs` object, built token by token. It keeps
/// the character offset of the text so far across stream chunks.
#[derive(Debug, Clone)]
pub(crate) struct CompletionLogprobs {
    /// Characters of complete text before the next token (prompt included,
    /// as OpenAI counts `text_offset` from the start of the prompt).
    offset: usize,
    /// Bytes of an incomplete UTF-8 character carried to the next token.
    partial: Vec<u8>,
    tokens: Vec<String>,
    token_logprobs: Vec<f64>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<usize>,
}

impl CompletionLogprobs {
    /// Offsets start after `prompt_chars` characters of prompt.
    fn new(prompt_chars: usize) -> Self {
        Self {
            offset: prompt_chars,
            partial: Vec::new(),
            tokens: Vec::new(),
            token_logprobs: Vec::new(),
            top_logprobs: Vec::new(),
            text_offset: Vec::new(),
        }
    }

    /// Adds one token. Its `top_logprobs` dict holds the top alternatives
    /// and the sampled token, as OpenAI's does (up to `logprobs + 1` entries).
    fn push(&mut self, t: &TokenInfo) {
        let mut top = Map::new();
        for alt in t.top.iter().chain(std::iter::once(&t.chosen)) {
            top.entry(alt.token.clone())
                .or_insert_with(|| json!(number(alt.logprob)));
        }
        self.tokens.push(t.chosen.token.clone());
        self.token_logprobs.push(number(t.chosen.logprob));
        self.top_logprobs.push(Value::Object(top));
        self.text_offset.push(self.offset);
        self.advance(&t.chosen.bytes);
    }

    /// Moves the offset past the characters `bytes` completes; an invalid
    /// byte counts as the one U+FFFD the text shows for it.
    fn advance(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    self.offset += s.chars().count();
                    self.partial.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Checked by from_utf8: the first `valid` bytes are UTF-8.
                    self.offset += String::from_utf8_lossy(&self.partial[..valid])
                        .chars()
                        .count();
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next token.
                        None => {
                            self.partial.drain(..valid);
                            return;
                        }
                        Some(bad) => {
                            self.offset += 1;
                            self.partial.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// The `logprobs` object of the tokens pushed since the last call (the
    /// whole answer, or one stream chunk); the offset carries on.
    fn take_json(&mut self) -> Value {
        json!({
            "tokens": std::mem::take(&mut self.tokens),
            "token_logprobs": std::mem::take(&mut self.token_logprobs),
            "top_logprobs": std::mem::take(&mut self.top_logprobs),
            "text_offset": std::mem::take(&mut self.text_offset),
        })
    }
}

/// The log-probabilities of one choice, in its endpoint's shape.
#[derive(Debug, Clone)]
pub(crate) enum ChoiceLogprobs {
    /// Chat: entries since the last [`ChoiceLogprobs::take_json`].
    Chat(Vec<TokenInfo>),
    /// Text completions.
    Completion(CompletionLogprobs),
}

impl ChoiceLogprobs {
    /// For `kind`; `prompt_chars` is where text completions' offsets start.
    pub(crate) fn new(kind: Kind, prompt_chars: usize) -> Self {
        match kind {
            Kind::Chat => Self::Chat(Vec::new()),
            Kind::Completion => Self::Completion(CompletionLogprobs::new(prompt_chars)),
        }
    }

    /// Adds one token.
    pub(crate) fn push(&mut self, t: TokenInfo) {
        match self {
            Self::Chat(v) => v.push(t),
            Self::Completion(c) => c.push(&t),
        }
    }

    /// The `logprobs` object of the tokens added since the last call.
    pub(crate) fn take_json(&mut self) -> Value {
        match self {
            Self::Chat(v) => chat_json(&std::mem::take(v)),
            Self::Completion(c) => c.take_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(token: &str, bytes: &[u8], logprob: f32) -> Tok {
        Tok {
            token: token.into(),
            bytes: bytes.to_vec(),
            logprob,
        }
    }

    #[test]
    fn chat_shape_and_numbers() {
        let info = TokenInfo {
            chosen: t("Hi", b"Hi", -0.1),
            top: vec![t("Hi", b"Hi", -0.1), t(" a", b" a", f32::NEG_INFINITY)],
        };
        let v = chat_json(&[info]);
        assert_eq!(v["refusal"], Value::Null);
        let c = &v["content"][0];
        assert_eq!(c["token"], "Hi");
        assert_eq!(c["logprob"], json!(-0.1), "shortest decimal of the f32");
        assert_eq!(c["bytes"], json!([72, 105]));
        assert_eq!(
            c["top_logprobs"][1],
            json!({"token": " a", "logprob": -9999.0, "bytes": [32, 97]})
        );
    }

    #[test]
    fn completion_offsets_count_characters_across_split_utf8() {
        // "é" (2 bytes) split over two tokens, then "x".
        let mut c = CompletionLogprobs::new(5);
        for (tok, bytes) in [
            ("bytes:\\xc3", &[0xc3u8][..]),
            ("bytes:\\xa9", &[0xa9][..]),
            ("x", b"x"),
            ("bytes:\\xff", &[0xff][..]),
            ("y", b"y"),
        ] {
            c.push(&TokenInfo {
                chosen: t(tok, bytes, -1.0),
                top: vec![],
            });
        }
        let v = c.take_json();
        assert_eq!(v["text_offset"], json!([5, 5, 6, 7, 8]));
        assert_eq!(v["tokens"][2], "x");
        assert_eq!(
            v["top_logprobs"][2],
            json!({"x": -1.0}),
            "the sampled token is always in the dict"
        );
        // The next chunk continues where the last one stopped.
        c.push(&TokenInfo {
            chosen: t("z", b"z", -2.0),
            top: vec![t("w", b"w", -0.5)],
        });
        let v = c.take_json();
        assert_eq!(v["text_offset"], json!([9]));
        assert_eq!(v["top_logprobs"][0], json!({"w": -0.5, "z": -2.0}));
    }
}
