//! `POST /v1/chat/completions`: the request.

use forge_engine::ChatMessage;
use serde_json::{Map, Value};

use super::params::{COMMON_KEYS, Params, check_response_format};
use crate::body::ApiRequest;
use crate::error::ApiError;

/// A checked chat completion request.
#[derive(Debug, Clone)]
pub(crate) struct ChatRequest {
    /// The shared parameters.
    pub(crate) params: Params,
    /// The conversation (`developer` messages become `system` ones).
    pub(crate) messages: Vec<ChatMessage>,
}

const CHAT_KEYS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "response_format",
];

/// Most alternatives `top_logprobs` may ask for (OpenAI's limit).
pub(crate) const MAX_TOP_LOGPROBS: u64 = 20;

impl ApiRequest for ChatRequest {
    fn is_known(key: &str) -> bool {
        COMMON_KEYS.contains(&key) || CHAT_KEYS.contains(&key)
    }

    fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError> {
        let messages = messages(obj.get("messages"))?;
        let mut params = Params::from_object(obj)?;
        params.logprobs = logprobs(obj)?;
        check_response_format(obj.get("response_format"))?;
        Ok(Self { params, messages })
    }
}

/// `logprobs` (a boolean) and `top_logprobs` (0..=20, only with `logprobs: true`).
fn logprobs(obj: &Map<String, Value>) -> Result<Option<usize>, ApiError> {
    let on = match obj.get("logprobs") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "logprobs",
                "`logprobs` must be a boolean",
            ));
        }
    };
    let top = match obj.get("top_logprobs") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) if k <= MAX_TOP_LOGPROBS => Some(k),
            Some(_) => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    format!("`top_logprobs` must be at most {MAX_TOP_LOGPROBS}"),
                ));
            }
            None => {
                return Err(ApiError::invalid_param(
                    "top_logprobs",
                    format!("`top_logprobs` must be an integer from 0 to {MAX_TOP_LOGPROBS}"),
                ));
            }
        },
    };
    match (on, top) {
        (false, Some(_)) => Err(ApiError::invalid_param(
            "top_logprobs",
            "The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
        )),
        // Bounded by MAX_TOP_LOGPROBS above.
        (true, top) => Ok(Some(top.unwrap_or(0) as usize)),
        (false, None) => Ok(None),
    }
}

fn messages(v: Option<&Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(
                "messages",
                "Missing required parameter: 'messages'",
            ));
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must be an array",
            ));
        }
    };
    if list.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect()
}

fn message(i: usize, m: &Value) -> Result<ChatMessage, ApiError> {
    let at = |k: &str| format!("messages[{i}].{k}");
    let obj = m.as_object().ok_or_else(|| {
        ApiError::invalid_param(format!("messages[{i}]"), "Each message must be an object")
    })?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "role" | "content") {
            if obj[k].is_null() {
                continue;
            }
            return Err(ApiError::unsupported_param(&at(k)));
        }
    }
    let role = match obj.get("role").and_then(Value::as_str) {
        Some(r @ ("system" | "user" | "assistant")) => r,
        Some("developer") => "system",
        Some(r @ ("tool" | "function")) => {
            return Err(ApiError::invalid_param(
                at("role"),
                format!("Messages with role `{r}` are not supported by this server"),
            )
            .with_code("unsupported_parameter"));
        }
        Some(r) => {
            return Err(ApiError::invalid_param(
                at("role"),
                format!("Invalid role `{r}`: expected system, developer, user or assistant"),
            ));
        }
        None => {
            return Err(ApiError::invalid_param(
                at("role"),
                "Each message needs a string `role`",
            ));
        }
    };
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                text.push_str(&part(i, j, p)?);
            }
            text
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(
                at("content"),
                "Each message needs `content` (a string or an array of text parts)",
            ));
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                at("content"),
                "`content` must be a string or an array of text parts",
            ));
        }
    };
    Ok(ChatMessage::new(role, &content))
}

fn part(i: usize, j: usize, p: &Value) -> Result<String, ApiError> {
    let at = format!("messages[{i}].content[{j}]");
    let obj = p.as_object().ok_or_else(|| {
        ApiError::invalid_param(at.clone(), "Each content part must be an object")
    })?;
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some(t) => {
            return Err(ApiError::invalid_param(
                format!("{at}.type"),
                format!("Content parts of type `{t}` are not supported by this server (text only)"),
            )
            .with_code("unsupported_parameter"));
        }
        None => {
            return Err(ApiError::invalid_param(
                format!("{at}.type"),
                "Each content part needs a string `type`",
            ));
        }
    }
    if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "type" | "text")) {
        return Err(ApiError::unsupported_param(&format!("{at}.{k}")));
    }
    obj.get("text")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::invalid_param(format!("{at}.text"), "A text part needs a string `text`")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::parse;

    fn param(body: Value) -> Option<String> {
        parse::<ChatRequest>(body.to_string().as_bytes())
            .unwrap_err()
            .param
    }

    #[test]
    fn messages_accept_strings_and_text_parts() {
        let r = parse::<ChatRequest>(
            serde_json::json!({"model": "m", "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            r.messages,
            vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi there")
            ]
        );
    }

    #[test]
    fn logprobs_and_top_logprobs() {
        let lp = |extra: Value| {
            let mut body =
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            parse::<ChatRequest>(body.to_string().as_bytes())
                .unwrap()
                .params
                .logprobs
        };
        assert_eq!(lp(serde_json::json!({})), None);
        assert_eq!(lp(serde_json::json!({"logprobs": false})), None);
        assert_eq!(lp(serde_json::json!({"logprobs": true})), Some(0));
        assert_eq!(
            lp(serde_json::json!({"logprobs": true, "top_logprobs": 20})),
            Some(20)
        );
        assert_eq!(
            lp(serde_json::json!({"logprobs": null, "top_logprobs": null})),
            None
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let user = serde_json::json!({"role": "user", "content": "x"});
        assert_eq!(
            param(serde_json::json!({"model": "m"})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": []})).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(serde_json::json!({"messages": [user]})).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(
                serde_json::json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]})
            )
            .as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}))
                .as_deref(),
            Some("messages[0].content[0].type")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]})).as_deref(),
            Some("messages[0].name")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [user], "logprobs": 1})).as_deref(),
            Some("logprobs")
        );
        for bad in [
            serde_json::json!({"logprobs": true, "top_logprobs": 21}),
            serde_json::json!({"logprobs": true, "top_logprobs": -1}),
            serde_json::json!({"logprobs": true, "top_logprobs": 2.5}),
            serde_json::json!({"logprobs": false, "top_logprobs": 2}),
            serde_json::json!({"top_logprobs": 0}),
        ] {
            let mut body = bad.clone();
            body["model"] = "m".into();
            body["messages"] = serde_json::json!([user]);
            assert_eq!(param(body).as_deref(), Some("top_logprobs"), "{bad}");
        }
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [user], "response_format": {"type": "json_schema"}})).as_deref(),
            Some("response_format")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [user], "tools": [{}]})).as_deref(),
            Some("tools")
        );
        assert_eq!(
            param(serde_json::json!({"model": "m", "messages": [user], "temperature": "hot"}))
                .as_deref(),
            Some("temperature")
        );
    }
}
