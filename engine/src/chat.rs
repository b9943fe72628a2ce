//! The ChatML chat template (`<|im_start|>role\ncontent<|im_end|>\n`).
//!
//! Forge renders the template itself rather than running Jinja: it recognises
//! a GGUF template as ChatML and takes the template's built-in default system
//! message, which is inserted when the conversation does not start with one.

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

const START: &str = "<|im_start|>";
const END: &str = "<|im_end|>";

/// A ChatML template with its default system message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTemplate {
    default_system: Option<String>,
}

impl ChatTemplate {
    /// Recognise `template` (the GGUF `tokenizer.chat_template`) as ChatML.
    pub fn from_gguf_template(template: Option<&str>) -> Result<Self> {
        let t = template
            .ok_or_else(|| EngineError::Tokenizer("the model has no chat template".into()))?;
        if !t.contains(START) || !t.contains(END) {
            return Err(EngineError::Tokenizer(
                "unsupported chat template (Forge renders ChatML templates)".into(),
            ));
        }
        let marker = format!("{START}system\n");
        let default_system = t.find(&marker).and_then(|i| {
            let rest = &t[i + marker.len()..];
            rest.find(END).map(|j| rest[..j].to_string())
        });
        Ok(Self { default_system })
    }

    /// The system message used when the conversation has none.
    pub fn default_system(&self) -> Option<&str> {
        self.default_system.as_deref()
    }

    /// Render `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut out = String::new();
        for (i, m) in messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(EngineError::InvalidParameter {
                    param: "messages",
                    problem: format!("role `{}` (system, user or assistant)", m.role),
                });
            }
            if i == 0
                && m.role != "system"
                && let Some(sys) = &self.default_system
            {
                out.push_str(&format!("{START}system\n{sys}{END}\n"));
            }
            out.push_str(&format!("{START}{}\n{}{END}\n", m.role, m.content));
        }
        if add_generation_prompt {
            out.push_str(&format!("{START}assistant\n"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_named_system() {
        let t = ChatTemplate::from_gguf_template(Some(SMOL)).unwrap();
        let s = t
            .render(
                &[
                    ChatMessage::new("system", "You are a helpful assistant."),
                    ChatMessage::new("user", "Hi"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn inserts_the_templates_default_system_message() {
        let t = ChatTemplate::from_gguf_template(Some(SMOL)).unwrap();
        assert_eq!(
            t.default_system(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        let s = t.render(&[ChatMessage::new("user", "Hi")], false).unwrap();
        assert!(s.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
        assert!(s.ends_with("<|im_start|>user\nHi<|im_end|>\n"));
    }

    #[test]
    fn rejects_unknown_roles_and_templates() {
        let t = ChatTemplate::from_gguf_template(Some(SMOL)).unwrap();
        assert!(t.render(&[ChatMessage::new("tool", "x")], true).is_err());
        assert!(ChatTemplate::from_gguf_template(Some("{{ bos_token }}[INST]")).is_err());
        assert!(ChatTemplate::from_gguf_template(None).is_err());
    }
}
