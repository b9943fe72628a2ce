//! `POST /v1/completions`: the request.

use serde_json::{Map, Value};

use super::params::{COMMON_KEYS, Params};
use crate::body::ApiRequest;
use crate::error::ApiError;

/// The prompt of a text completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prompt {
    /// Text, tokenized by the node (special tokens written in it are matched whole).
    Text(String),
    /// Token ids, used as they are.
    Tokens(Vec<u32>),
}

/// A checked text completion request.
#[derive(Debug, Clone)]
pub(crate) struct CompletionRequest {
    /// The shared parameters.
    pub(crate) params: Params,
    /// The prompt.
    pub(crate) prompt: Prompt,
}

const COMPLETION_KEYS: &[&str] = &["prompt", "logprobs", "echo", "suffix", "best_of"];

/// Most alternatives `logprobs` may ask for (OpenAI's limit for completions).
pub(crate) const MAX_LOGPROBS: u64 = 5;

impl ApiRequest for CompletionRequest {
    fn is_known(key: &str) -> bool {
        COMMON_KEYS.contains(&key) || COMPLETION_KEYS.contains(&key)
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let prompt = prompt(obj.get("prompt"))?;
        let mut params = Params::from_object(obj)?;
        params.logprobs = match obj.get("logprobs") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(k) if k <= MAX_LOGPROBS => Some(k as usize),
                _ => {
                    return Err(ApiError::invalid_param(
                        "logprobs",
                        format!("`logprobs` must be an integer from 0 to {MAX_LOGPROBS}"),
                    ));
                }
            },
        };
        let unused = |k: &str, ok: fn(&Value) -> bool| match obj.get(k) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if ok(v) => Ok(()),
            Some(_) => Err(ApiError::unsupported_param(k)),
        };
        unused("echo", |v| v == &Value::Bool(false))?;
        unused("suffix", |v| v.as_str() == Some(""))?;
        unused("best_of", |v| v.as_u64() == Some(1))?;
        Ok(Self { params, prompt })
    }
}

fn prompt(v: Option<&Value>) -> Result<Prompt, ApiError> {
    let bad = |m: &str| ApiError::invalid_param("prompt", m.to_string());
    let tokens = |a: &[Value]| -> Result<Prompt, ApiError> {
        a.iter()
            .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
            .collect::<Option<Vec<u32>>>()
            .map(Prompt::Tokens)
            .ok_or_else(|| bad("A token-id prompt must be an array of non-negative integers"))
    };
    match v {
        None | Some(Value::Null) => Err(bad("Missing required parameter: 'prompt'")),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(Value::Array(a)) if a.is_empty() => Err(bad("`prompt` must not be empty")),
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => tokens(a),
        Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
            Value::String(s) => Ok(Prompt::Text(s.clone())),
            Value::Array(t) => tokens(t),
            _ => Err(bad("`prompt` must be a string, an array of token ids, or a one-element list of either")),
        },
        Some(Value::Array(_)) => Err(ApiError::invalid_param(
            "prompt",
            "This node completes one prompt per request; send a list of several prompts as separate requests",
        )
        .with_code("unsupported_parameter")),
        Some(_) => Err(bad("`prompt` must be a string or an array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::parse;

    fn req(body: Value) -> Result<CompletionRequest, ApiError> {
        parse::<CompletionRequest>(body.to_string().as_bytes())
    }

    #[test]
    fn prompts_of_every_supported_shape() {
        let p = |v: Value| req(serde_json::json!({"model": "m", "prompt": v})).map(|r| r.prompt);
        assert_eq!(
            p(serde_json::json!("hi")).unwrap(),
            Prompt::Text("hi".into())
        );
        assert_eq!(
            p(serde_json::json!(["hi"])).unwrap(),
            Prompt::Text("hi".into())
        );
        assert_eq!(
            p(serde_json::json!([1, 2])).unwrap(),
            Prompt::Tokens(vec![1, 2])
        );
        assert_eq!(
            p(serde_json::json!([[3]])).unwrap(),
            Prompt::Tokens(vec![3])
        );
        for bad in [
            serde_json::json!(["a", "b"]),
            serde_json::json!([-1]),
            serde_json::json!({}),
            serde_json::json!([]),
        ] {
            assert_eq!(p(bad).unwrap_err().param.as_deref(), Some("prompt"));
        }
    }

    #[test]
    fn unsupported_parameters_are_named() {
        for (k, v) in [
            ("echo", serde_json::json!(true)),
            ("logprobs", serde_json::json!(6)),
            ("logprobs", serde_json::json!(true)),
            ("logprobs", serde_json::json!(1.5)),
            ("best_of", serde_json::json!(3)),
            ("suffix", serde_json::json!("x")),
            ("top_logprobs", serde_json::json!(2)),
            ("n", serde_json::json!(0)),
        ] {
            let mut body = serde_json::json!({"model": "m", "prompt": "x"});
            body[k] = v;
            assert_eq!(req(body).unwrap_err().param.as_deref(), Some(k));
        }
        let lp = |v: Value| {
            req(serde_json::json!({"model": "m", "prompt": "x", "logprobs": v}))
                .unwrap()
                .params
                .logprobs
        };
        assert_eq!(
            (
                lp(serde_json::json!(0)),
                lp(serde_json::json!(5)),
                lp(Value::Null)
            ),
            (Some(0), Some(5), None)
        );
        let e = req(serde_json::json!({"model": "m", "prompt": "x", "max_completion_tokens": 3}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_completion_tokens"));
    }
}
