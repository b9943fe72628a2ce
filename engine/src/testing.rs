//! Tiny random Llama models written as real GGUF files, so tests, benches and
//! fuzzers exercise the same parsing and loading path as a downloaded model.

use crate::error::Result;
use crate::gguf::{GgufValue, GgufWriter};
use crate::quant::GgmlType;

/// Shape of a tiny model.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// Transformer blocks.
    pub layers: usize,
    /// Model width (multiple of 32).
    pub d_model: usize,
    /// Query heads.
    pub heads: usize,
    /// KV heads.
    pub kv_heads: usize,
    /// FFN width (multiple of 32).
    pub ffn: usize,
    /// Context window.
    pub context_length: usize,
    /// Weight seed.
    pub seed: u64,
    /// With a separate F16 `output.weight` instead of tied embeddings.
    pub untied_f16_head: bool,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            layers: 3,
            d_model: 64,
            heads: 4,
            kv_heads: 2,
            ffn: 128,
            context_length: 256,
            seed: 1,
            untied_f16_head: false,
        }
    }
}

/// The special tokens of the tiny vocabulary (ids 0, 1, 2).
pub const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GPT-2's byte-to-character map used by byte-level BPE vocabularies.
pub fn byte_level_alphabet() -> Vec<char> {
    crate::tokenizer::byte_level_alphabet()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.next()).collect()
    }
}

/// Build the GGUF bytes of a tiny random Llama with a ChatML template: a
/// byte-level vocabulary (3 specials, 256 bytes, a few merges), Q8_0
/// embeddings, Q4_1 projections, F32 norms.
pub fn tiny_model_gguf(spec: &TinySpec) -> Result<Vec<u8>> {
    let alphabet = byte_level_alphabet();
    let mut tokens: Vec<String> = TINY_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(alphabet.iter().map(|c| c.to_string()));
    let g = alphabet[b' ' as usize];
    let merges = [
        (format!("{g}"), "t".to_string()),
        ("h".into(), "e".into()),
        (format!("{g}t"), "he".to_string()),
        ("i".into(), "n".into()),
    ];
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
    }
    let vocab = tokens.len();
    let types: Vec<GgufValue> = (0..vocab)
        .map(|i| GgufValue::I32(if i < TINY_SPECIALS.len() { 3 } else { 1 }))
        .collect();
    let (d, f, l) = (spec.d_model, spec.ffn, spec.layers);
    let dh = d / spec.heads;
    let kv = spec.kv_heads * dh;

    let mut w = GgufWriter::new();
    let u = |v: usize| GgufValue::U32(v as u32);
    w.meta("general.architecture", GgufValue::String("llama".into()))
        .meta("general.name", GgufValue::String("forge-tiny".into()))
        .meta("llama.block_count", u(l))
        .meta("llama.context_length", u(spec.context_length))
        .meta("llama.embedding_length", u(d))
        .meta("llama.feed_forward_length", u(f))
        .meta("llama.attention.head_count", u(spec.heads))
        .meta("llama.attention.head_count_kv", u(spec.kv_heads))
        .meta("llama.rope.freq_base", GgufValue::F32(10_000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-5))
        .meta("llama.vocab_size", u(vocab))
        .meta("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .meta("tokenizer.ggml.tokens", GgufValue::Array(tokens.into_iter().map(GgufValue::String).collect()))
        .meta("tokenizer.ggml.token_type", GgufValue::Array(types))
        .meta(
            "tokenizer.ggml.merges",
            GgufValue::Array(merges.iter().map(|(a, b)| GgufValue::String(format!("{a} {b}"))).collect()),
        )
        .meta("tokenizer.ggml.eos_token_id", u(2))
        .meta(
            "tokenizer.chat_template",
            GgufValue::String(
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}".into(),
            ),
        );
    let mut rng = Rng(spec.seed);
    let ws = 1.0 / (d as f32).sqrt();
    w.tensor(
        "token_embd.weight",
        &[d, vocab],
        GgmlType::Q8_0,
        &rng.vec(d * vocab, 1.0, 0.0),
    )?;
    for i in 0..l {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        w.tensor(&n("attn_norm"), &[d], GgmlType::F32, &rng.vec(d, 0.1, 1.0))?;
        w.tensor(
            &n("attn_q"),
            &[d, d],
            GgmlType::Q4_1,
            &rng.vec(d * d, ws, 0.0),
        )?;
        w.tensor(
            &n("attn_k"),
            &[d, kv],
            GgmlType::Q4_1,
            &rng.vec(d * kv, ws, 0.0),
        )?;
        w.tensor(
            &n("attn_v"),
            &[d, kv],
            GgmlType::Q4_1,
            &rng.vec(d * kv, ws, 0.0),
        )?;
        w.tensor(
            &n("attn_output"),
            &[d, d],
            GgmlType::Q4_1,
            &rng.vec(d * d, ws, 0.0),
        )?;
        w.tensor(&n("ffn_norm"), &[d], GgmlType::F32, &rng.vec(d, 0.1, 1.0))?;
        w.tensor(
            &n("ffn_gate"),
            &[d, f],
            GgmlType::Q4_1,
            &rng.vec(d * f, ws, 0.0),
        )?;
        w.tensor(
            &n("ffn_up"),
            &[d, f],
            GgmlType::Q4_1,
            &rng.vec(d * f, ws, 0.0),
        )?;
        w.tensor(
            &n("ffn_down"),
            &[f, d],
            GgmlType::Q4_1,
            &rng.vec(f * d, 1.0 / (f as f32).sqrt(), 0.0),
        )?;
    }
    // A small final norm keeps logits near unit scale, so sampling has real choices.
    w.tensor(
        "output_norm.weight",
        &[d],
        GgmlType::F32,
        &rng.vec(d, 0.05, 0.2),
    )?;
    if spec.untied_f16_head {
        w.tensor(
            "output.weight",
            &[d, vocab],
            GgmlType::F16,
            &rng.vec(d * vocab, 1.0, 0.0),
        )?;
    }
    Ok(w.to_bytes())
}
