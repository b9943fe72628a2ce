//! Parameters shared by chat and text completions, and their checks.

use std::collections::BTreeMap;

use forge_engine::SamplingParams;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::body::typed;
use crate::error::ApiError;

/// Most stop strings (the OpenAI API's limit).
pub(crate) const MAX_STOP: usize = 4;
/// Most choices (`n`) a request may ask for, whatever the node's batch
/// size (OpenAI's own limit is 128; each choice here is a sequence in the
/// batch with its own receipt, so the node caps it lower).
pub(crate) const MAX_CHOICES: usize = 8;
/// Longest stop string, in bytes (the engine re-checks a stop string's
/// prefixes after every token, so its cost grows with the square of this).
pub(crate) const MAX_STOP_BYTES: usize = 256;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
    include_obfuscation: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    model: String,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u64>,
    seed: Option<serde_json::Number>,
    stop: Option<Stop>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<BTreeMap<String, f32>>,
    n: Option<u64>,
    user: Option<String>,
}

/// What chat and text completions share, checked and typed.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    /// The model asked for.
    pub(crate) model: String,
    /// `max_completion_tokens` or `max_tokens` (the first one set), with the name used.
    pub(crate) max_tokens: Option<(u64, &'static str)>,
    /// Sampling, with the seed chosen (random when the client gave none).
    pub(crate) sampling: SamplingParams,
    /// Stop strings.
    pub(crate) stop: Vec<String>,
    /// Stream the answer as server-sent events.
    pub(crate) stream: bool,
    /// Send a final usage chunk in the stream.
    pub(crate) include_usage: bool,
    /// The client's end-user id (logged only).
    pub(crate) user: Option<String>,
    /// Choices to generate (`n`, at least 1; the node's cap is checked
    /// where the node's options are known).
    pub(crate) n: usize,
    /// Log-probabilities: `Some(k)` lists, with every token, its own and the
    /// `k` most likely alternatives (set by the endpoint, whose parameters differ).
    pub(crate) logprobs: Option<usize>,
}

/// The keys [`Params::from_object`] reads.
pub(crate) const COMMON_KEYS: &[&str] = &[
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "n",
    "user",
];

impl Params {
    /// Reads the shared parameters from a checked body.
    pub(crate) fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let r: Raw = typed(obj)?;
        let n = match r.n {
            None => 1,
            Some(0) => return Err(ApiError::invalid_param("n", "`n` must be at least 1")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let stream = r.stream.unwrap_or(false);
        let include_usage = match &r.stream_options {
            Some(_) if !stream => {
                return Err(ApiError::invalid_param(
                    "stream_options",
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                ));
            }
            Some(o) => {
                if o.include_obfuscation == Some(true) {
                    return Err(ApiError::unsupported_param(
                        "stream_options.include_obfuscation",
                    ));
                }
                o.include_usage.unwrap_or(false)
            }
            None => false,
        };
        let stop = match r.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid_param(
                "stop",
                format!("At most {MAX_STOP} stop sequences are allowed"),
            ));
        }
        if stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid_param(
                "stop",
                format!("A stop sequence may be at most {MAX_STOP_BYTES} bytes long"),
            ));
        }
        let mut logit_bias = Vec::new();
        for (k, b) in r.logit_bias.unwrap_or_default() {
            let t: u32 = k.trim().parse().map_err(|_| {
                ApiError::invalid_param(
                    "logit_bias",
                    format!("Invalid key `{k}` in `logit_bias`: keys are token ids"),
                )
            })?;
            logit_bias.push((t, b));
        }
        if logit_bias.len() > forge_proofs::MAX_LOGIT_BIAS as usize {
            return Err(ApiError::invalid_param(
                "logit_bias",
                format!(
                    "At most {} entries are allowed in `logit_bias`",
                    forge_proofs::MAX_LOGIT_BIAS
                ),
            ));
        }
        let seed = match r.seed {
            None => random_seed(),
            Some(n) => n
                .as_u64()
                .or_else(|| n.as_i64().map(|v| v as u64))
                .ok_or_else(|| {
                    ApiError::invalid_param("seed", format!("`seed` must be an integer, got {n}"))
                })?,
        };
        let top_k = match r.top_k {
            None => 0,
            Some(k) => usize::try_from(k)
                .ok()
                .filter(|&k| k <= u32::MAX as usize)
                .ok_or_else(|| ApiError::invalid_param("top_k", "`top_k` is too large"))?,
        };
        let max_tokens = match (r.max_completion_tokens, r.max_tokens) {
            (Some(m), _) => Some((m, "max_completion_tokens")),
            (None, Some(m)) => Some((m, "max_tokens")),
            (None, None) => None,
        };
        Ok(Self {
            model: r.model,
            max_tokens,
            sampling: SamplingParams {
                temperature: r.temperature.unwrap_or(1.0),
                top_k,
                top_p: r.top_p.unwrap_or(1.0),
                seed,
                presence_penalty: r.presence_penalty.unwrap_or(0.0),
                frequency_penalty: r.frequency_penalty.unwrap_or(0.0),
                logit_bias,
            },
            stop,
            stream,
            include_usage,
            user: r.user,
            n,
            logprobs: None,
        })
    }

    /// The sampling parameters of choice `index`: the request's, with a seed
    /// of its own. Choice 0 keeps the request's seed (so `n: 1` and choice 0
    /// of `n: 2` give the same answer); choice i > 0 uses the first 8 bytes
    /// (little-endian) of blake3 in key-derivation mode, context
    /// [`CHOICE_SEED_CONTEXT`], over the seed and i as little-endian u64s.
    /// Every receipt records the seed its choice was sampled with.
    pub(crate) fn choice_sampling(&self, index: usize) -> SamplingParams {
        let mut sampling = self.sampling.clone();
        sampling.seed = choice_seed(self.sampling.seed, index);
        sampling
    }
}

/// The key-derivation context of choice seeds.
pub(crate) const CHOICE_SEED_CONTEXT: &str = "forge.api.choice-seed.v1";

/// The seed of choice `index` of a request with seed `seed` (see [`Params::choice_sampling`]).
pub(crate) fn choice_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        return seed;
    }
    let mut h = blake3::Hasher::new_derive_key(CHOICE_SEED_CONTEXT);
    h.update(&seed.to_le_bytes());
    h.update(&(index as u64).to_le_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

/// A seed from the OS random source (requests without `seed` are not
/// reproducible, as in the OpenAI API; the receipt records the seed used).
fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // Without entropy the seed is 0: still a valid, recorded seed.
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// Reject a `response_format` other than plain text.
pub(crate) fn check_response_format(v: Option<&Value>) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("text") && o.len() == 1 => Ok(()),
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str).is_some() => Err(ApiError {
            message: "`response_format` other than `{\"type\": \"text\"}` is not supported by this server".into(),
            ..ApiError::unsupported_param("response_format")
        }),
        Some(_) => Err(ApiError::invalid_param("response_format", "`response_format` must be an object with a `type`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Value) -> Result<Params, ApiError> {
        Params::from_object(v.as_object().unwrap())
    }

    #[test]
    fn shared_parameters_are_typed_and_checked() {
        let ok = p(serde_json::json!({
            "model": "m", "max_tokens": 5, "temperature": 0.5, "seed": -1, "stop": "x",
            "stream": true, "stream_options": {"include_usage": true}, "logit_bias": {"7": -100}
        }))
        .unwrap();
        assert_eq!(ok.max_tokens, Some((5, "max_tokens")));
        assert_eq!(ok.sampling.seed, u64::MAX);
        assert_eq!(ok.stop, vec!["x".to_string()]);
        assert!(ok.stream && ok.include_usage);
        assert_eq!(ok.sampling.logit_bias, vec![(7, -100.0)]);
        let param = |v| p(v).unwrap_err().param;
        assert_eq!(
            param(serde_json::json!({"model": "m", "n": 0})).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "n": 1.5})).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "n": "2"})).as_deref(),
            Some("n")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "n": -1})).as_deref(),
            Some("n")
        );
        assert_eq!(p(serde_json::json!({"model": "m", "n": 3})).unwrap().n, 3);
        assert_eq!(
            param(serde_json::json!({"model": "m", "stream_options": {}})).as_deref(),
            Some("stream_options")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "logit_bias": {"a": 1}})).as_deref(),
            Some("logit_bias")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "stop": ["a","b","c","d","e"]})).as_deref(),
            Some("stop")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "stop": "x".repeat(257)})).as_deref(),
            Some("stop")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "max_tokens": -1})).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "seed": 1.5})).as_deref(),
            Some("seed")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "stream": true, "stream_options": {"x": 1}}))
                .as_deref(),
            Some("stream_options.x")
        );
    }

    #[test]
    fn choice_seeds_are_derived_and_distinct() {
        assert_eq!(choice_seed(42, 0), 42);
        let seeds: std::collections::BTreeSet<u64> =
            (0..MAX_CHOICES).map(|i| choice_seed(42, i)).collect();
        assert_eq!(seeds.len(), MAX_CHOICES);
        assert_eq!(choice_seed(42, 3), choice_seed(42, 3));
        assert_ne!(choice_seed(42, 1), choice_seed(43, 1));
        let p = p(serde_json::json!({"model": "m", "seed": 42, "temperature": 0.5})).unwrap();
        assert_eq!(p.choice_sampling(2).seed, choice_seed(42, 2));
        assert_eq!(p.choice_sampling(2).temperature, 0.5);
    }

    #[test]
    fn response_format_text_only() {
        assert!(check_response_format(Some(&serde_json::json!({"type": "text"}))).is_ok());
        let e = check_response_format(Some(
            &serde_json::json!({"type": "json_schema", "json_schema": {}}),
        ))
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("response_format"));
    }
}
