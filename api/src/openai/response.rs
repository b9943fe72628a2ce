//! The JSON shapes of answers: full responses and stream chunks, for chat
//! (`chat.completion`, `chat.completion.chunk`) and text completions
//! (`text_completion`).

use serde_json::{Value, json};

use crate::forge_info::ForgeInfo;

/// Which API an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

impl Kind {
    /// The parameter that carries the prompt.
    pub(crate) fn prompt_param(self) -> &'static str {
        match self {
            Self::Chat => "messages",
            Self::Completion => "prompt",
        }
    }

    /// Prefix of response ids.
    pub(crate) fn id_prefix(self) -> &'static str {
        match self {
            Self::Chat => "chatcmpl-",
            Self::Completion => "cmpl-",
        }
    }
}

/// What every answer of one request repeats.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// API kind.
    pub(crate) kind: Kind,
    /// Response id.
    pub(crate) id: String,
    /// Unix seconds.
    pub(crate) created: u64,
    /// The model id.
    pub(crate) model: String,
    /// `system_fingerprint`: derived from the model id and backend.
    pub(crate) fingerprint: String,
    /// Whether chunks carry `"usage": null` (stream with include_usage).
    pub(crate) include_usage: bool,
}

/// Token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Prompt tokens.
    pub(crate) prompt_tokens: usize,
    /// Generated tokens (a final stop token included).
    pub(crate) completion_tokens: usize,
}

impl Usage {
    fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

impl Meta {
    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        })
    }

    /// The non-streamed answer.
    pub(crate) fn response(&self, text: &str, finish_reason: &str, usage: Usage, forge: Option<&ForgeInfo>) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": finish_reason,
            }),
            Kind::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}),
        };
        let object = match self.kind {
            Kind::Chat => "chat.completion",
            Kind::Completion => "text_completion",
        };
        let mut v = self.envelope(object, json!([choice]));
        v["usage"] = usage.to_json();
        v["forge"] = forge.map_or(Value::Null, ForgeInfo::to_json);
        v
    }

    fn chunk(&self, delta: Value, text: &str, finish_reason: Option<&str>) -> Value {
        let (object, choice) = match self.kind {
            Kind::Chat => (
                "chat.completion.chunk",
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}),
            ),
            Kind::Completion => (
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason}),
            ),
        };
        let mut v = self.envelope(object, json!([choice]));
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The first chat chunk: the assistant's role (chat only).
    pub(crate) fn role_chunk(&self) -> Value {
        self.chunk(json!({"role": "assistant", "content": ""}), "", None)
    }

    /// A chunk of generated text.
    pub(crate) fn content_chunk(&self, text: &str) -> Value {
        self.chunk(json!({"content": text}), text, None)
    }

    /// The chunk that ends the choice, with the receipt.
    pub(crate) fn finish_chunk(&self, finish_reason: &str, forge: Option<&ForgeInfo>) -> Value {
        let mut v = self.chunk(json!({}), "", Some(finish_reason));
        v["forge"] = forge.map_or(Value::Null, ForgeInfo::to_json);
        v
    }

    /// The final usage chunk (`choices: []`), sent with `include_usage`.
    pub(crate) fn usage_chunk(&self, usage: Usage, forge: Option<&ForgeInfo>) -> Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        let mut v = self.envelope(object, json!([]));
        v["usage"] = usage.to_json();
        v["forge"] = forge.map_or(Value::Null, ForgeInfo::to_json);
        v
    }
}
