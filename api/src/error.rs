//! The one error shape: OpenAI's `{"error": {"message", "type", "param", "code"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client, in the OpenAI envelope.
///
/// Every failure the router can produce (handler errors, extractor
/// rejections, unknown routes, wrong methods, oversize bodies) becomes one
/// of these, so clients see one shape with the right status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {kind}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type` (`invalid_request_error`, `not_found_error`, ...).
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The request parameter at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code (`context_length_exceeded`, `insufficient_quota`, ...).
    pub code: Option<&'static str>,
    /// Seconds to send as `Retry-After`.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Names the parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds a `Retry-After` header.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 `invalid_request_error` naming `param`.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).with_param(param)
    }

    /// 400 `invalid_request_error` for a parameter this server does not implement.
    pub fn unsupported_param(param: &str) -> Self {
        Self::invalid_param(param, format!("`{param}` is not supported by this server"))
            .with_code("unsupported_parameter")
    }

    /// 400 `invalid_request_error` for a parameter OpenAI does not define.
    pub fn unknown_param(param: &str) -> Self {
        Self::invalid_param(
            param,
            format!("Unrecognized request argument supplied: {param}"),
        )
        .with_code("unknown_parameter")
    }

    /// 400 `invalid_request_error` with no parameter (malformed body).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 401: missing or unknown API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    /// 404 for an unknown route or object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code("not_found")
    }

    /// 410: the object existed but is no longer kept.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "invalid_request_error", message)
    }

    /// 404 for a model this node does not serve.
    pub fn model_not_found(model: &str, served: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist on this node (it serves `{served}`)"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 405 for a known route with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Method not allowed for this route",
        )
        .with_code("method_not_allowed")
    }

    /// 408: the request ran past the node's per-request time limit.
    pub fn timeout(secs: u64) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout_error",
            format!("The request did not finish within this node's limit of {secs} s"),
        )
        .with_code("request_timeout")
    }

    /// 408: generation ended but its receipts were not recorded within the
    /// node's per-request time limit (the receipt workers are backed up).
    /// The work was done and will be receipted and charged; `receipt_ids`
    /// are where the receipts will appear.
    pub fn receipt_timeout(secs: u64, receipt_ids: &[String]) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout_error",
            format!(
                "The answer was generated, but its receipt was not recorded within this node's limit of {secs} s; it will be served at GET /v1/receipts/{{id}} for {} once recorded",
                receipt_ids.join(", ")
            ),
        )
        .with_code("receipt_timeout")
    }

    /// 413 for a body above the limit.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "The request body is larger than this node's limit (`body_limit_bytes`)",
        )
        .with_code("payload_too_large")
    }

    /// 415 for a body that is declared as something other than JSON.
    pub fn unsupported_media_type(found: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!("Expected `Content-Type: application/json`, found `{found}`"),
        )
        .with_code("unsupported_media_type")
    }

    /// 429: the queue is full.
    pub fn overloaded(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "This node is at capacity (active sequences and wait queue are full); retry later",
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(retry_after)
    }

    /// 429 `insufficient_quota`: the account cannot pay for the request.
    pub fn insufficient_quota(needed: u64, available: i64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            format!(
                "You exceeded your current quota: this request may cost up to {needed} milli-CU and the account has {available} milli-CU available"
            ),
        )
        .with_code("insufficient_quota")
    }

    /// 503 while the model is loading.
    pub fn loading() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The model is still loading; retry shortly",
        )
        .with_code("model_loading")
        .with_retry_after(1)
    }

    /// 500 for a fault of the node itself (never for client input).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            .with_code("internal_error")
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request refused");
        }
        let mut res = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

impl ApiError {
    /// An engine error about a request; `prompt_param` names the prompt
    /// (`messages` for chat, `prompt` for completions).
    pub fn from_engine(e: forge_engine::EngineError, prompt_param: &str) -> Self {
        use forge_engine::EngineError as E;
        match e {
            E::ContextLength { prompt_tokens, max_tokens, context_length } => Self::invalid_param(
                prompt_param,
                format!(
                    "This model's maximum context length is {context_length} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {max_tokens} in the completion). Please reduce the length of the prompt or completion.",
                    prompt_tokens + max_tokens
                ),
            )
            .with_code("context_length_exceeded"),
            E::InvalidParameter { param, problem } => {
                let param = if param == "prompt" { prompt_param } else { param };
                Self::invalid_param(param, format!("Invalid `{param}`: {problem}"))
            }
            E::Tokenizer(m) => Self::invalid_param(prompt_param, format!("The prompt could not be tokenized: {m}")),
            other => Self::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_four_fields() {
        let v = ApiError::invalid_param("temperature", "too hot")
            .with_code("x")
            .body();
        assert_eq!(v["error"]["message"], "too hot");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["code"], "x");
        let v = ApiError::bad_request("no").body();
        assert!(v["error"]["param"].is_null() && v["error"]["code"].is_null());
    }
}
