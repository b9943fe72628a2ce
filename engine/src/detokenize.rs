//! A generation's text, decoded as its tokens arrive.
//!
//! Decoding all of a sequence's tokens at every step costs time in the
//! answer's length at every step (about 65 ns a token with SmolLM2's
//! tokenizer: 134 us a step at 2,048 tokens, per sequence, on the thread
//! that samples a batch), so a long answer's decoding grew with its square.
//! Byte-level BPE (the only kind [`Tokenizer`] loads) decodes a token list
//! as the UTF-8 of its tokens' bytes put end to end, invalid or unfinished
//! characters replaced by U+FFFD; so where the tokens so far end on a whole
//! character, the text of everything after them decodes on its own and is
//! appended. [`Detokenizer`] keeps the text up to the last such point and
//! decodes only the tokens since.

use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// The decoded text of a growing token list.
///
/// ```no_run
/// # fn demo(tokenizer: &forge_engine::Tokenizer, tokens: &[u32]) -> forge_engine::Result<()> {
/// let mut text = forge_engine::Detokenizer::default();
/// for n in 1..=tokens.len() {
///     assert_eq!(text.decode(tokenizer, &tokens[..n])?, tokenizer.decode(&tokens[..n])?);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Detokenizer {
    /// The text of the last list decoded; its first `settled_bytes` bytes
    /// are `decode(tokens[..settled])`, which ended on a whole character.
    text: String,
    settled: usize,
    settled_bytes: usize,
}

impl Detokenizer {
    /// `tokenizer.decode(tokens)`, for a list that extends the one of the
    /// previous call by any number of tokens (a shorter list starts over).
    pub fn decode(&mut self, tokenizer: &Tokenizer, tokens: &[u32]) -> Result<&str> {
        if tokens.len() < self.settled {
            *self = Self::default();
        }
        let tail = tokenizer.decode(&tokens[self.settled..])?;
        self.text.truncate(self.settled_bytes);
        self.text.push_str(&tail);
        // A tail ending in U+FFFD may end in an unfinished character that a
        // later token completes: keep decoding from the same point.
        if !tail.ends_with(char::REPLACEMENT_CHARACTER) {
            self.settled = tokens.len();
            self.settled_bytes = self.text.len();
        }
        Ok(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::testing::{TinySpec, tiny_model_gguf};

    #[test]
    fn every_prefix_decodes_as_the_whole_list_does() {
        // The tiny vocabulary holds every single byte, so random ids give
        // split multi-byte characters, invalid bytes and specials between
        // them.
        let file = GgufFile::parse(tiny_model_gguf(&TinySpec::default()).unwrap()).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let vocab = tok.vocab_size() as u64;
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        // UTF-8 of 2, 3 and 4 bytes, a lone continuation byte, and 0xFF.
        let bytes: Vec<u32> = "é€😀"
            .bytes()
            .chain([0x80, 0xFF])
            .map(|b| byte_token(&tok, b))
            .collect();
        for _ in 0..200 {
            let len = 1 + next(40) as usize;
            let ids: Vec<u32> = (0..len)
                .map(|_| match next(3) {
                    0 => bytes[next(bytes.len() as u64) as usize],
                    _ => next(vocab) as u32,
                })
                .collect();
            let mut d = Detokenizer::default();
            // One token at a time, and sometimes several at once.
            let mut end = 0;
            while end < ids.len() {
                end = (end + 1 + next(3) as usize / 2).min(ids.len());
                let want = tok.decode(&ids[..end]).unwrap();
                assert_eq!(
                    d.decode(&tok, &ids[..end]).unwrap(),
                    want,
                    "{:?}",
                    &ids[..end]
                );
            }
        }
    }

    #[test]
    fn a_shorter_list_is_decoded_afresh() {
        let file = GgufFile::parse(tiny_model_gguf(&TinySpec::default()).unwrap()).unwrap();
        let tok = Tokenizer::from_gguf(&file).unwrap();
        let (a, b) = (byte_token(&tok, b'a'), byte_token(&tok, b'b'));
        let mut d = Detokenizer::default();
        assert_eq!(d.decode(&tok, &[a, a, a]).unwrap(), "aaa");
        assert_eq!(d.decode(&tok, &[b]).unwrap(), "b");
        assert_eq!(d.decode(&tok, &[b, a]).unwrap(), "ba");
    }

    /// The id of the single-byte token for `b`.
    fn byte_token(tok: &Tokenizer, b: u8) -> u32 {
        (0..tok.vocab_size() as u32)
            .find(|&id| tok.token_bytes(id).as_deref() == Some(&[b][..]))
            .expect("every byte has a token")
    }
}
