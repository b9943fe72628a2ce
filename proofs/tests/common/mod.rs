//! Shared test helpers: a tiny random Llama written as a real GGUF file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use forge_engine::gguf::{GgufValue, GgufWriter};
use forge_engine::quant::GgmlType;
use forge_engine::{Backend, Model};

/// Dimensions of the tiny model.
pub(crate) const LAYERS: usize = 3;
pub(crate) const D_MODEL: usize = 64;
pub(crate) const HEADS: usize = 4;
pub(crate) const KV_HEADS: usize = 2;
pub(crate) const FFN: usize = 96;
pub(crate) const CONTEXT: usize = 128;

/// Byte-level BPE's printable stand-ins for the 256 bytes (GPT-2's table).
fn byte_tokens() -> Vec<String> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~')).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut next = 256;
    (0u32..256)
        .map(|b| {
            let c = if printable.contains(&b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).unwrap().to_string()
        })
        .collect()
}

/// Deterministic pseudo-random values in [-scale, scale).
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Writes the tiny model (weights drawn from `seed`) to `dir/tiny.gguf`.
pub(crate) fn write_tiny_model(dir: &Path, seed: u64) -> PathBuf {
    let mut tokens = byte_tokens();
    tokens.extend(["<|im_start|>", "<|im_end|>", "<|endoftext|>"].map(String::from));
    let vocab = tokens.len();
    let mut types = vec![GgufValue::I32(1); 256];
    types.extend(std::iter::repeat_n(GgufValue::I32(3), 3));
    let u32v = |v: usize| GgufValue::U32(v as u32);

    let mut w = GgufWriter::new();
    w.meta("general.architecture", GgufValue::String("llama".into()))
        .meta("llama.block_count", u32v(LAYERS))
        .meta("llama.context_length", u32v(CONTEXT))
        .meta("llama.embedding_length", u32v(D_MODEL))
        .meta("llama.feed_forward_length", u32v(FFN))
        .meta("llama.attention.head_count", u32v(HEADS))
        .meta("llama.attention.head_count_kv", u32v(KV_HEADS))
        .meta("llama.rope.freq_base", GgufValue::F32(10_000.0))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        )
        .meta("tokenizer.ggml.model", GgufValue::String("gpt2".into()))
        .meta(
            "tokenizer.ggml.tokens",
            GgufValue::Array(tokens.into_iter().map(GgufValue::String).collect()),
        )
        .meta("tokenizer.ggml.token_type", GgufValue::Array(types))
        .meta("tokenizer.ggml.merges", GgufValue::Array(vec![]))
        .meta("tokenizer.ggml.eos_token_id", u32v(vocab - 1));

    let kv = KV_HEADS * (D_MODEL / HEADS);
    let mut seed = seed;
    let mut next = |n: usize, scale: f32| {
        seed += 1;
        values(seed, n, scale)
    };
    let (d, f) = (D_MODEL, FFN);
    w.tensor(
        "token_embd.weight",
        &[d, vocab],
        GgmlType::Q8_0,
        &next(d * vocab, 1.0),
    )
    .unwrap();
    for l in 0..LAYERS {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        w.tensor(&n("attn_norm"), &[d], GgmlType::F32, &vec![1.0; d])
            .unwrap();
        w.tensor(&n("ffn_norm"), &[d], GgmlType::F32, &vec![1.0; d])
            .unwrap();
        let s = 0.3;
        w.tensor(&n("attn_q"), &[d, d], GgmlType::Q4_1, &next(d * d, s))
            .unwrap();
        w.tensor(&n("attn_k"), &[d, kv], GgmlType::Q4_1, &next(d * kv, s))
            .unwrap();
        w.tensor(&n("attn_v"), &[d, kv], GgmlType::Q4_1, &next(d * kv, s))
            .unwrap();
        w.tensor(&n("attn_output"), &[d, d], GgmlType::Q4_1, &next(d * d, s))
            .unwrap();
        w.tensor(&n("ffn_gate"), &[d, f], GgmlType::Q4_1, &next(d * f, s))
            .unwrap();
        w.tensor(&n("ffn_up"), &[d, f], GgmlType::Q4_1, &next(d * f, s))
            .unwrap();
        w.tensor(&n("ffn_down"), &[f, d], GgmlType::Q4_1, &next(f * d, s))
            .unwrap();
    }
    w.tensor("output_norm.weight", &[d], GgmlType::F32, &vec![1.0; d])
        .unwrap();
    let path = dir.join("tiny.gguf");
    w.write(&path).unwrap();
    path
}

/// The tiny model, loaded on the CPU backend, and the directory that holds it.
pub(crate) fn tiny_model(seed: u64) -> (Model, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_tiny_model(dir.path(), seed);
    (Model::load(&path, Backend::Cpu).unwrap(), dir)
}

/// The CU proving and verifying keys of a fixed test setup, made once.
pub(crate) fn cu_keys() -> &'static (forge_circuits::ProvingKey, forge_circuits::VerifyingKey) {
    static KEYS: std::sync::OnceLock<(forge_circuits::ProvingKey, forge_circuits::VerifyingKey)> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| forge_circuits::setup([7; 32]))
}
