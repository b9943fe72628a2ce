//! Byte-level BPE tokenizer built from the GGUF vocabulary, and the chat template.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use crate::error::{EngineError, Result, meta_err};
use crate::gguf::GgufFile;

/// GGUF token type of control tokens (`<|im_start|>` and friends).
const TOKEN_TYPE_CONTROL: u64 = 3;

/// The model's tokenizer: GPT-2 style byte-level BPE with whole-token
/// matching of special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos: u32,
    stop_ids: Vec<u32>,
    vocab: usize,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.vocab)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Build the tokenizer from `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let model = file
            .get("tokenizer.ggml.model")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        if model != "gpt2" {
            return Err(meta_err(
                "tokenizer.ggml.model",
                format!("`{model}` (only byte-level BPE, `gpt2`, is supported)"),
            ));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            file.get(key)
                .and_then(|v| v.as_array())
                .ok_or_else(|| meta_err(key, "missing or not an array"))?
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| meta_err(key, "holds a non-string"))
                })
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        meta_err("tokenizer.ggml.merges", format!("merge `{m}` has no space"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let types: Vec<u64> = match file
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        // A merge whose parts or result are not tokens would only fail later,
        // inside `encode`: refuse the file now, naming the merge.
        let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        if let Some((a, b)) = merges.iter().find(|(a, b)| {
            !known.contains(a.as_str())
                || !known.contains(b.as_str())
                || !known.contains(format!("{a}{b}").as_str())
        }) {
            return Err(meta_err(
                "tokenizer.ggml.merges",
                format!("merge `{a} {b}` uses or makes a token missing from the vocabulary"),
            ));
        }
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre = Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
        ]);
        inner.with_pre_tokenizer(Some(pre));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(specials).map_err(tok_err)?;

        let id = |key: &str| file.get(key).and_then(|v| v.as_u64()).map(|v| v as u32);
        let eos = id("tokenizer.ggml.eos_token_id")
            .ok_or_else(|| meta_err("tokenizer.ggml.eos_token_id", "missing"))?;
        if eos as usize >= tokens.len() {
            return Err(meta_err(
                "tokenizer.ggml.eos_token_id",
                format!("{eos} is outside the vocabulary"),
            ));
        }
        // Generation stops at EOS and at the ChatML / end-of-text markers.
        let mut stop_ids = vec![eos];
        for s in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(i) = tokens.iter().position(|t| t == s)
                && !stop_ids.contains(&(i as u32))
            {
                stop_ids.push(i as u32);
            }
        }
        let chat_template = file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(Self {
            inner,
            eos,
            stop_ids,
            vocab: tokens.len(),
            chat_template,
        })
    }

    /// Token ids of `text`. Special tokens written in the text are matched whole.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tok_err)
    }

    /// The end-of-sequence token.
    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Tokens that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The string of one token, as stored in the vocabulary.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes one token stands for: its vocabulary string read back
    /// through GPT-2's byte-to-character map (a special token, whose string is
    /// not byte-mapped, as its UTF-8). A token may hold part of a UTF-8
    /// character, so the bytes need not be valid UTF-8.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let s = self.inner.id_to_token(id)?;
        let bytes = byte_of_char();
        Some(
            s.chars()
                .map(|c| bytes.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| s.into_bytes()),
        )
    }

    /// The GGUF chat template, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }
}

/// GPT-2's byte-to-character map: printable Latin-1 bytes stand for
/// themselves, the other bytes for the characters from U+0100 on, in order.
pub(crate) fn byte_level_alphabet() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                extra += 1;
                255 + extra
            };
            char::from_u32(c).unwrap_or('?')
        })
        .collect()
}

/// The inverse of [`byte_level_alphabet`], built once.
fn byte_of_char() -> &'static std::collections::HashMap<char, u8> {
    static MAP: std::sync::OnceLock<std::collections::HashMap<char, u8>> =
        std::sync::OnceLock::new();
    MAP.get_or_init(|| byte_level_alphabet().into_iter().zip(0..=255u8).collect())
}
