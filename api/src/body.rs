//! The request-body extractor: every way a body can be wrong becomes the
//! OpenAI envelope (413, 415, bad UTF-8, bad JSON, unknown or unsupported
//! parameters, wrong types), never axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A JSON request body whose top-level keys are checked before it is typed.
pub(crate) trait ApiRequest: Sized {
    /// Whether this endpoint implements the top-level key `key`.
    fn is_known(key: &str) -> bool;

    /// Types the checked object.
    fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError>;
}

/// Keys of the OpenAI API this server does not implement, with the values
/// that mean "not used" (accepted, since they ask for nothing).
fn unsupported_but_harmless(key: &str, v: &Value) -> Option<bool> {
    let harmless = match key {
        "tools" | "functions" => v.as_array().is_some_and(Vec::is_empty),
        "tool_choice" | "function_call" => v.as_str() == Some("none"),
        "parallel_tool_calls" => v.is_boolean(),
        "store" => v == &Value::Bool(false),
        "modalities" => v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        "metadata" => v.as_object().is_some_and(Map::is_empty),
        "service_tier" => matches!(v.as_str(), Some("auto" | "default")),
        "audio" | "prediction" | "reasoning_effort" | "web_search_options" | "verbosity"
        | "prompt_cache_key" | "safety_identifier" => false,
        _ => return None,
    };
    Some(harmless || v.is_null())
}

/// The body, typed as `T`.
#[derive(Debug)]
pub(crate) struct OpenAiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: ApiRequest> FromRequest<S> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("(not ASCII)");
            let mime = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !(mime == "application/json" || mime.ends_with("+json")) {
                return Err(ApiError::unsupported_media_type(ct));
            }
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse(&bytes).map(Self)
    }
}

fn bytes_rejection(r: BytesRejection) -> ApiError {
    match r {
        BytesRejection::FailedToBufferBody(e)
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::payload_too_large()
        }
        other => ApiError::bad_request(format!("Could not read the request body: {other}")),
    }
}

/// Parse and check a body: UTF-8, JSON, an object, known keys, typed fields.
pub(crate) fn parse<T: ApiRequest>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "The request body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "The request body is empty; expected a JSON object",
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request ({e}). The OpenAI API expects a JSON payload"
        ))
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object",
        ));
    };
    let mut ignored = Vec::new();
    for (k, v) in &obj {
        if T::is_known(k) {
            continue;
        }
        match unsupported_but_harmless(k, v) {
            Some(true) => ignored.push(k.clone()),
            Some(false) => return Err(ApiError::unsupported_param(k)),
            None => return Err(ApiError::unknown_param(k)),
        }
    }
    for k in ignored {
        obj.remove(&k);
    }
    T::from_object(&obj)
}

/// Type `obj` as `T` (`T` ignores keys it does not name); a type error names
/// the parameter by its path (`messages[0].content`, `stream_options`).
pub(crate) fn typed<T: DeserializeOwned>(obj: &Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(obj.clone())).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let field = inner
            .strip_prefix("missing field `")
            .or_else(|| inner.strip_prefix("unknown field `"))
            .and_then(|rest| rest.split('`').next());
        let param = match (path.as_str(), field) {
            ("." | "", Some(f)) => f.to_string(),
            (p, Some(f)) if !p.ends_with(f) => format!("{p}.{f}"),
            (p, _) => p.to_string(),
        };
        ApiError::invalid_param(
            param.clone(),
            format!("Invalid value for `{param}`: {inner}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Demo {
        model: String,
        n: Option<u32>,
    }

    impl ApiRequest for Demo {
        fn is_known(key: &str) -> bool {
            ["model", "n"].contains(&key)
        }
        fn from_object(obj: &Map<String, Value>) -> Result<Self, ApiError> {
            typed(obj)
        }
    }

    fn err(body: &[u8]) -> ApiError {
        parse::<Demo>(body).unwrap_err()
    }

    #[test]
    fn bodies_are_checked_in_order() {
        assert!(err(b"\xff\xfe").message.contains("UTF-8"));
        assert!(err(b"").message.contains("empty"));
        assert!(err(b"{").message.contains("parse the JSON"));
        assert!(err(b"[1]").message.contains("JSON object"));
        assert_eq!(
            err(br#"{"model":"m","tools":[{"type":"function"}]}"#)
                .param
                .as_deref(),
            Some("tools")
        );
        assert_eq!(
            err(br#"{"model":"m","frobnicate":1}"#).param.as_deref(),
            Some("frobnicate")
        );
        assert_eq!(err(br#"{"n":1}"#).param.as_deref(), Some("model"));
        assert_eq!(err(br#"{"model":"m","n":"x"}"#).param.as_deref(), Some("n"));
        let ok = parse::<Demo>(br#"{"model":"m","tools":[],"tool_choice":"none","store":false}"#)
            .unwrap();
        assert_eq!((ok.model.as_str(), ok.n), ("m", None));
    }
}
