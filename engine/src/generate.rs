//! The generation loop: prefill, decode, sampling, stop conditions, metering.

use std::ops::ControlFlow;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::detokenize::Detokenizer;
use crate::error::{EngineError, Result};
use crate::flops::{ForwardWork, request_flops};
use crate::logprobs::{TokenLogprobs, token_logprobs};
use crate::model::{BatchItem, Model, Session};
use crate::sampling::{SamplingParams, adjust, pick, sample};
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
        return Err(EngineError::InvalidParameter {
            param: "prompt",
            problem: "is empty".into(),
        });
    }
    if req.max_tokens == 0 {
        return Err(EngineError::InvalidParameter {
            param: "max_tokens",
            problem: "must be at least 1".into(),
        });
    }
    if req.prompt.len() + req.max_tokens > ctx {
        return Err(EngineError::ContextLength {
            prompt_tokens: req.prompt.len(),
            max_tokens: req.max_tokens,
            context_length: ctx,
        });
    }
    if let Some(&bad) = req
        .prompt
        .iter()
        .find(|&&t| t as usize >= model.config().vocab)
    {
        return Err(EngineError::InvalidParameter {
            param: "prompt",
            problem: format!("token id {bad} is outside the vocabulary"),
        });
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
    mut on_token: impl FnMut(&TokenEvent<'_>) -> ControlFlow<()> + Send,
) -> Result<Generation> {
    rayon::scope(|_| {
        let mut seq = Sequence::new(model, req.clone(), sink)?;
        while !seq.is_done() {
            for ev in step(model, &mut [&mut seq])?.into_iter().flatten() {
                let flow = on_token(&TokenEvent {
                    index: ev.index,
                    token: ev.token,
                    text: &ev.text,
                });
                if flow.is_break() {
                    seq.cancel();
                }
            }
        }
        Ok(seq.into_result(model).0)
    })
}

/// One generation in progress. [`step`] advances any number of them together
/// (continuous batching); each gets exactly the tokens and trace rows it would
/// get alone.
pub struct Sequence<S> {
    req: GenerateRequest,
    session: Session,
    sink: Option<S>,
    tokens: Vec<u32>,
    text: TextStream,
    detok: Detokenizer,
    /// Tokens to forward next: the prompt, then the last sampled token.
    input: Vec<u32>,
    finish: Option<FinishReason>,
    /// `Some(k)`: report each sampled token's log-probability and the `k`
    /// most likely alternatives (off by default: nothing extra is computed).
    logprobs: Option<usize>,
    prefill_secs: f64,
    decode_secs: f64,
}

impl<S> std::fmt::Debug for Sequence<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequence")
            .field("prompt_tokens", &self.req.prompt.len())
            .field("tokens", &self.tokens.len())
            .field("finish", &self.finish)
            .finish_non_exhaustive()
    }
}

/// What one [`step`] produced for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct StepEvent {
    /// Index of the token among the generated ones.
    pub index: usize,
    /// The sampled token.
    pub token: u32,
    /// Text that became final with it.
    pub text: String,
    /// Set when the sequence ended with this token.
    pub finish: Option<FinishReason>,
    /// The token's log-probabilities, when the sequence asked for them
    /// ([`Sequence::with_logprobs`]).
    pub logprobs: Option<TokenLogprobs>,
}

impl<S: TraceSink> Sequence<S> {
    /// A validated request, ready for its first step (the prefill).
    pub fn new(model: &Model, req: GenerateRequest, sink: Option<S>) -> Result<Self> {
        validate(model, &req)?;
        Ok(Self {
            session: model.session(),
            text: TextStream::new(&req.stop),
            detok: Detokenizer::default(),
            input: req.prompt.clone(),
            req,
            sink,
            tokens: Vec::new(),
            finish: None,
            logprobs: None,
            prefill_secs: 0.0,
            decode_secs: 0.0,
        })
    }

    /// Report, with every sampled token, its log-probability and those of
    /// the `top` most likely tokens (0: the sampled token's only). The tokens
    /// drawn are the same with or without it.
    pub fn with_logprobs(mut self, top: usize) -> Self {
        self.logprobs = Some(top);
        self
    }

    /// How many alternatives each token's log-probabilities list, if asked.
    pub fn logprobs(&self) -> Option<usize> {
        self.logprobs
    }

    /// Whether it has ended.
    pub fn is_done(&self) -> bool {
        self.finish.is_some()
    }

    /// Why it ended, if it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// End it now (the client went away); the tokens so far stand.
    pub fn cancel(&mut self) {
        self.finish.get_or_insert(FinishReason::Cancelled);
    }

    /// Tokens sampled so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The request.
    pub fn request(&self) -> &GenerateRequest {
        &self.req
    }

    /// The result, and the sink back.
    pub fn into_result(self, model: &Model) -> (Generation, Option<S>) {
        let work = ForwardWork {
            start: 0,
            end: self.session.len() as u64,
            logits: self.tokens.len() as u64,
        };
        let generation = Generation {
            text: self.text.finish(),
            prompt_tokens: self.req.prompt.len(),
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
            flops: request_flops(model.config(), work),
            work,
            tokens: self.tokens,
            prefill_secs: self.prefill_secs,
            decode_secs: self.decode_secs,
        };
        (generation, self.sink)
    }

    /// Draw this step's token from its logits, with its log-probabilities
    /// when asked. Both paths apply the same penalties, bias and draw
    /// ([`sample`] is `adjust` then `pick`), so asking does not change the token.
    fn draw(&self, logits: &[f32]) -> (u32, Option<TokenLogprobs>) {
        let (params, history, at) = (
            &self.req.sampling,
            self.tokens.as_slice(),
            self.tokens.len() as u64,
        );
        match self.logprobs {
            None => (sample(logits, params, history, at), None),
            Some(top) => {
                let adjusted = adjust(logits, params, history);
                let tok = pick(&adjusted, params, at);
                (tok, Some(token_logprobs(&adjusted, tok, top)))
            }
        }
    }

    /// Record the token sampled from this step's logits; returns its event.
    fn accept(
        &mut self,
        model: &Model,
        tok: u32,
        logprobs: Option<TokenLogprobs>,
    ) -> Result<StepEvent> {
        self.tokens.push(tok);
        let index = self.tokens.len() - 1;
        let mut text = String::new();
        if model.tokenizer().stop_ids().contains(&tok) {
            self.finish = Some(FinishReason::Stop);
        } else {
            let decoded = self.detok.decode(model.tokenizer(), &self.tokens)?;
            let (fresh, hit_stop) = self.text.push(decoded);
            text = fresh;
            if hit_stop {
                self.finish = Some(FinishReason::Stop);
            } else if self.tokens.len() >= self.req.max_tokens {
                self.finish = Some(FinishReason::Length);
            }
        }
        self.input = vec![tok];
        Ok(StepEvent {
            index,
            token: tok,
            text,
            finish: self.finish,
            logprobs,
        })
    }
}

/// Advance every unfinished sequence by one token: one batched forward pass
/// (prompts of new sequences and last tokens of running ones together), one
/// batched LM head, then sampling. Returns an event per sequence (`None` for
/// those already done).
pub fn step<S: TraceSink>(
    model: &Model,
    seqs: &mut [&mut Sequence<S>],
) -> Result<Vec<Option<StepEvent>>> {
    let start = Instant::now();
    let d = model.config().d_model;
    let rows = {
        let mut items: Vec<BatchItem<'_>> = seqs
            .iter_mut()
            .filter(|s| !s.is_done())
            .map(|s| {
                let Sequence {
                    session,
                    sink,
                    input,
                    ..
                } = &mut **s;
                BatchItem {
                    session,
                    tokens: input.as_slice(),
                    sink: sink.as_mut().map(|s| s as &mut dyn TraceSink),
                }
            })
            .collect();
        model.forward_batch(&mut items)?
    };
    let last: Vec<f32> = rows
        .iter()
        .flat_map(|r| r[r.len() - d..].iter().copied())
        .collect();
    let logits = model.logits_batch(&last);
    let secs = start.elapsed().as_secs_f64();
    let vocab = model.config().vocab;
    let mut events = Vec::with_capacity(seqs.len());
    let mut k = 0;
    for seq in seqs.iter_mut() {
        if seq.is_done() {
            events.push(None);
            continue;
        }
        if seq.tokens.is_empty() {
            seq.prefill_secs += secs;
        } else {
            seq.decode_secs += secs;
        }
        let l = &logits[k * vocab..(k + 1) * vocab];
        let (tok, logprobs) = seq.draw(l);
        events.push(Some(seq.accept(model, tok, logprobs)?));
        k += 1;
    }
    Ok(events)
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
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            emitted: 0,
            full: String::new(),
            stopped: false,
        }
    }

    /// Update with the decoded text of all tokens; returns the newly final
    /// text and whether a stop string was hit.
    fn push(&mut self, decoded: &str) -> (String, bool) {
        self.full = decoded.to_string();
        if let Some(cut) = self
            .stops
            .iter()
            .filter_map(|s| self.full.find(s.as_str()))
            .min()
        {
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
