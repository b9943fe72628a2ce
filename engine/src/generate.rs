//! The generation loop: prefill, decode, sampling, stop conditions, metering.

use std::ops::ControlFlow;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::flops::{ForwardWork, request_flops};
use crate::model::{Model, Session};
use crate::sampling::{SamplingParams, sample};
use crate::trace::TraceSink;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// The prompt, already tokenized (chat template applied).
    pub prompt: Vec<u32>,
    /// Upper bound on generated tokens (>= 1).
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Strings that end generation; the text is cut before the first match.
    pub stop: Vec<String>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop token or stop string was produced.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller's callback asked to stop (e.g. the client went away).
    Cancelled,
}

impl FinishReason {
    /// The OpenAI name (`stop` or `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One generated token, as handed to the streaming callback.
#[derive(Clone, Debug)]
pub struct TokenEvent<'a> {
    /// Index of the token among the generated ones.
    pub index: usize,
    /// The token id.
    pub token: u32,
    /// Text that became final with this token (may be empty while a UTF-8
    /// sequence or a possible stop string is incomplete).
    pub text: &'a str,
}

/// The result of a generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated text (stop token and stop string excluded).
    pub text: String,
    /// Every sampled token id, a final stop token included.
    pub tokens: Vec<u32>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Positions forwarded and logits taken.
    pub work: ForwardWork,
    /// Exact FLOPs of `work`.
    pub flops: u128,
    /// Wall time of the prompt's forward pass (seconds).
    pub prefill_secs: f64,
    /// Wall time of the decode steps (seconds).
    pub decode_secs: f64,
}

impl Generation {
    /// Prompt tokens per second.
    pub fn prefill_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_secs)
    }

    /// Generated tokens per second over the decode steps (each step forwards
    /// one token and samples the next).
    pub fn decode_tps(&self) -> f64 {
        rate(self.tokens.len().saturating_sub(1), self.decode_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// Check a request against the model before any work.
pub fn validate(model: &Model, req: &GenerateRequest) -> Result<()> {
    let ctx = model.config().context_length;
    if req.prompt.is_empty() {
        return Err(EngineError::InvalidParameter { param: "prompt", problem: "is empty".into() });
    }
    if req.max_tokens == 0 {
        return Err(EngineError::InvalidParameter { param: "max_tokens", problem: "must be at least 1".into() });
    }
    if req.prompt.len() + req.max_tokens > ctx {
        return Err(EngineError::ContextLength {
            prompt_tokens: req.prompt.len(),
            max_tokens: req.max_tokens,
            context_length: ctx,
        });
    }
    if let Some(&bad) = req.prompt.iter().find(|&&t| t as usize >= model.config().vocab) {
        return Err(EngineError::InvalidParameter { param: "prompt", problem: format!("token id {bad} is outside the vocabulary") });
    }
    req.sampling.validate(model.config().vocab)
}

/// Run `req` in a fresh session. `on_token` sees each token as it is
/// sampled and may stop generation with `ControlFlow::Break`.
///
/// The loop runs on a worker of the current rayon pool, so the thread that
/// drives generation also computes its share of every parallel kernel
/// instead of waking the pool and waiting (a measurable share of a decode step).
pub fn generate(
    model: &Model,
    req: &GenerateRequest,
    sink: Option<&mut dyn TraceSink>,
    on_token: impl FnMut(&TokenEvent<'_>) -> ControlFlow<()> + Send,
) -> Result<Generation> {
    rayon::scope(|_| generate_here(model, req, sink, on_token))
}

fn generate_here(
    model: &Model,
    req: &GenerateRequest,
    mut sink: Option<&mut dyn TraceSink>,
    mut on_token: impl FnMut(&TokenEvent<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    validate(model, req)?;
    let mut session: Session = model.session();
    let stops = model.tokenizer().stop_ids().to_vec();
    let mut text = TextStream::new(&req.stop);
    let mut tokens: Vec<u32> = Vec::new();

    let t0 = Instant::now();
    let rows = model.forward(&mut session, &req.prompt, reborrow(&mut sink))?;
    let d = model.config().d_model;
    let mut last = rows[rows.len() - d..].to_vec();
    let prefill_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();

    let finish = loop {
        let logits = model.logits(&last);
        let step = tokens.len() as u64;
        let tok = sample(&logits, &req.sampling, &tokens, step);
        tokens.push(tok);
        if stops.contains(&tok) {
            break FinishReason::Stop;
        }
        let piece = model.tokenizer().decode(&tokens)?;
        let (fresh, hit_stop) = text.push(&piece);
        let flow = on_token(&TokenEvent { index: tokens.len() - 1, token: tok, text: &fresh });
        if hit_stop {
            break FinishReason::Stop;
        }
        if flow.is_break() {
            break FinishReason::Cancelled;
        }
        if tokens.len() >= req.max_tokens {
            break FinishReason::Length;
        }
        let rows = model.forward(&mut session, &[tok], reborrow(&mut sink))?;
        last = rows;
    };
    let decode_secs = t1.elapsed().as_secs_f64();
    let work = ForwardWork { start: 0, end: session.len() as u64, logits: tokens.len() as u64 };
    debug_assert_eq!(work, ForwardWork::for_request(req.prompt.len() as u64, tokens.len() as u64));
    Ok(Generation {
        text: text.finish(),
        prompt_tokens: req.prompt.len(),
        finish_reason: finish,
        flops: request_flops(model.config(), work),
        work,
        tokens,
        prefill_secs,
        decode_secs,
    })
}

fn reborrow<'a>(sink: &'a mut Option<&mut dyn TraceSink>) -> Option<&'a mut dyn TraceSink> {
    match sink {
        Some(s) => Some(&mut **s),
        None => None,
    }
}

/// Turns the decoded text of all tokens so far into final pieces: holds back
/// incomplete UTF-8 (decoded as U+FFFD) and any tail that could still become
/// a stop string, and cuts the text at the first stop string.
#[derive(Debug)]
struct TextStream {
    stops: Vec<String>,
    /// Text handed out so far.
    emitted: usize,
    full: String,
    stopped: bool,
}

impl TextStream {
    fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), emitted: 0, full: String::new(), stopped: false }
    }

    /// Update with the decoded text of all tokens; returns the newly final
    /// text and whether a stop string was hit.
    fn push(&mut self, decoded: &str) -> (String, bool) {
        self.full = decoded.to_string();
        if let Some(cut) = self.stops.iter().filter_map(|s| self.full.find(s.as_str())).min() {
            self.full.truncate(cut);
            self.stopped = true;
            let fresh = self.full.get(self.emitted..).unwrap_or("").to_string();
            self.emitted = self.full.len();
            return (fresh, true);
        }
        let mut safe = self.full.len();
        if self.full.ends_with('\u{FFFD}') {
            safe = self.full.trim_end_matches('\u{FFFD}').len();
        }
        // Hold back a suffix that is a prefix of some stop string.
        for s in &self.stops {
            for k in (1..s.len()).rev() {
                if s.is_char_boundary(k) && self.full[..safe].ends_with(&s[..k]) {
                    safe -= k;
                    break;
                }
            }
        }
        if safe <= self.emitted || !self.full.is_char_boundary(safe) {
            return (String::new(), false);
        }
        let fresh = self.full[self.emitted..safe].to_string();
        self.emitted = safe;
        (fresh, false)
    }

    fn finish(self) -> String {
        let mut s = self.full;
        if !self.stopped {
            while s.ends_with('\u{FFFD}') {
                s.pop();
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::TextStream;

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let mut t = TextStream::new(&["END".to_string()]);
        assert_eq!(t.push("Hello E"), ("Hello ".to_string(), false));
        assert_eq!(t.push("Hello EN"), (String::new(), false));
        assert_eq!(t.push("Hello ENX"), ("ENX".to_string(), false));
        assert_eq!(t.push("Hello ENX END more"), (" ".to_string(), true));
        assert_eq!(t.finish(), "Hello ENX ");
    }

    #[test]
    fn incomplete_utf8_is_held_back() {
        let mut t = TextStream::new(&[]);
        assert_eq!(t.push("caf\u{FFFD}"), ("caf".to_string(), false));
        assert_eq!(t.push("café"), ("é".to_string(), false));
        assert_eq!(t.finish(), "café");
    }
}
