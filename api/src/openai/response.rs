//! The JSON shapes of answers: full responses and stream chunks, for chat
//! (`chat.completion`, `chat.completion.chunk`) and text completions
//! (`text_completion`).

use serde_json::{Value, json};

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

/// Token counts. With `n > 1`, as in OpenAI's API, the prompt counts once
/// and the completion tokens of every choice are summed (the `forge`
/// object's FLOPs, by contrast, bill each choice's own prefill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Prompt tokens.
    pub(crate) prompt_tokens: usize,
    /// Generated tokens over all choices (a final stop token included).
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

/// One choice of a non-streamed answer.
#[derive(Debug, Clone)]
pub(crate) struct ChoiceOut {
    /// Its index (`0..n`).
    pub(crate) index: usize,
    /// Its text.
    pub(crate) text: String,
    /// `stop` or `length`.
    pub(crate) finish_reason: &'static str,
    /// Its `logprobs` object, when asked (`null` otherwise).
    pub(crate) logprobs: Option<Value>,
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

    /// The non-streamed answer; `forge` is the receipts' summary.
    pub(crate) fn response(&self, choices: &[ChoiceOut], usage: Usage, forge: Value) -> Value {
        let choices: Vec<Value> = choices
            .iter()
            .map(|c| match self.kind {
                Kind::Chat => json!({
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text, "refusal": null},
                    "logprobs": c.logprobs,
                    "finish_reason": c.finish_reason,
                }),
                Kind::Completion => {
                    json!({"index": c.index, "text": c.text, "logprobs": c.logprobs, "finish_reason": c.finish_reason})
                }
            })
            .collect();
        let object = match self.kind {
            Kind::Chat => "chat.completion",
            Kind::Completion => "text_completion",
        };
        let mut v = self.envelope(object, Value::Array(choices));
        v["usage"] = usage.to_json();
        v["forge"] = forge;
        v
    }

    fn chunk(
        &self,
        index: usize,
        delta: Value,
        text: &str,
        finish_reason: Option<&str>,
        logprobs: Option<Value>,
    ) -> Value {
        let (object, choice) = match self.kind {
            Kind::Chat => (
                "chat.completion.chunk",
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}),
            ),
            Kind::Completion => (
                "text_completion",
                json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}),
            ),
        };
        let mut v = self.envelope(object, json!([choice]));
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// The first chat chunk of choice `index`: the assistant's role (chat only).
    pub(crate) fn role_chunk(&self, index: usize) -> Value {
        self.chunk(
            index,
            json!({"role": "assistant", "content": ""}),
            "",
            None,
            None,
        )
    }

    /// A chunk of choice `index`: generated text (possibly empty when the
    /// chunk carries only a token's log-probabilities).
    pub(crate) fn content_chunk(&self, index: usize, text: &str, logprobs: Option<Value>) -> Value {
        self.chunk(index, json!({"content": text}), text, None, logprobs)
    }

    /// The chunk that ends choice `index`, with its receipt (`forge`).
    pub(crate) fn finish_chunk(&self, index: usize, finish_reason: &str, forge: Value) -> Value {
        let mut v = self.chunk(index, json!({}), "", Some(finish_reason), None);
        v["forge"] = forge;
        v
    }

    /// The final usage chunk (`choices: []`), sent with `include_usage`,
    /// with the summary of every choice's receipt.
    pub(crate) fn usage_chunk(&self, usage: Usage, forge: Value) -> Value {
        let object = match self.kind {
            Kind::Chat => "chat.completion.chunk",
            Kind::Completion => "text_completion",
        };
        let mut v = self.envelope(object, json!([]));
        v["usage"] = usage.to_json();
        v["forge"] = forge;
        v
    }
}
