//! Hostile and broken GGUF files are errors that name the problem, never panics.

use forge_engine::gguf::{GgufFile, GgufValue, GgufWriter};
use forge_engine::quant::GgmlType;
use forge_engine::testing::{TinySpec, tiny_model_gguf};
use forge_engine::{Backend, EngineError, Model};

fn load(bytes: Vec<u8>) -> Result<Model, EngineError> {
    Model::from_gguf(&GgufFile::parse(bytes)?, Backend::Cpu)
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = tiny_model_gguf(&TinySpec {
        layers: 1,
        ..TinySpec::default()
    })
    .unwrap();
    // Every prefix in the header, then a stride through the data.
    let cuts: Vec<usize> = (0..4096.min(bytes.len()))
        .chain((4096..bytes.len()).step_by(997))
        .collect();
    for n in cuts {
        assert!(
            load(bytes[..n].to_vec()).is_err(),
            "prefix of {n} bytes loaded"
        );
    }
    assert!(load(bytes).is_ok());
}

#[test]
fn bad_magic_version_and_counts() {
    let bytes = tiny_model_gguf(&TinySpec::default()).unwrap();
    let mut b = bytes.clone();
    b[0] = b'X';
    assert!(matches!(GgufFile::parse(b), Err(EngineError::Gguf(m)) if m.contains("magic")));
    let mut b = bytes.clone();
    b[4] = 9;
    assert!(matches!(GgufFile::parse(b), Err(EngineError::Gguf(m)) if m.contains("version")));
    // A tensor count of 2^60 must not allocate or hang.
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(GgufFile::parse(b).is_err());
    let mut b = bytes;
    b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(GgufFile::parse(b).is_err());
}

#[test]
fn unsupported_tensor_type_names_the_tensor() {
    let mut bytes = tiny_model_gguf(&TinySpec::default()).unwrap();
    // Patch token_embd.weight's type id (after name, n_dims, 2 dims) to Q4_K (12).
    let name = b"token_embd.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let ty = at + 4 + 16;
    assert_eq!(
        u32::from_le_bytes(bytes[ty..ty + 4].try_into().unwrap()),
        GgmlType::Q8_0.id()
    );
    bytes[ty..ty + 4].copy_from_slice(&12u32.to_le_bytes());
    let err = GgufFile::parse(bytes).unwrap_err().to_string();
    assert!(
        err.contains("token_embd.weight") && err.contains("q4_k"),
        "{err}"
    );
}

#[test]
fn wrong_shapes_and_missing_tensors_and_keys() {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", GgufValue::String("gpt-neox".into()));
    assert!(matches!(load(w.to_bytes()), Err(EngineError::Architecture(a)) if a == "gpt-neox"));

    let mut w = GgufWriter::new();
    w.meta("general.architecture", GgufValue::String("llama".into()));
    w.tensor("token_embd.weight", &[32, 4], GgmlType::F32, &[0.0; 128])
        .unwrap();
    let err = load(w.to_bytes()).unwrap_err().to_string();
    assert!(err.contains("llama.embedding_length"), "{err}");

    // A layer tensor with rows that are not whole Q4_1 blocks is refused at write and parse time.
    let mut w = GgufWriter::new();
    assert!(w.tensor("x", &[33, 2], GgmlType::Q4_1, &[0.0; 66]).is_err());
}

#[test]
fn random_byte_flips_never_panic() {
    let bytes = tiny_model_gguf(&TinySpec {
        layers: 1,
        ..TinySpec::default()
    })
    .unwrap();
    let header_end = 6000.min(bytes.len());
    let mut state = 0x1234_5678_u64;
    for _ in 0..600 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pos = (state >> 33) as usize % header_end;
        let mut b = bytes.clone();
        b[pos] ^= 1 << ((state >> 20) % 8);
        let _ = load(b); // Ok or Err, but no panic.
    }
}

#[test]
fn merges_outside_the_vocabulary_are_refused_at_load() {
    let bytes = tiny_model_gguf(&TinySpec {
        layers: 1,
        ..TinySpec::default()
    })
    .unwrap();
    let file = GgufFile::parse(bytes).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata() {
        let v = if k == "tokenizer.ggml.merges" {
            GgufValue::Array(vec![GgufValue::String("q z".into())])
        } else {
            v.clone()
        };
        w.meta(k, v);
    }
    for t in file.tensors() {
        let mut vals = vec![0.0f32; t.elems()];
        for (row, chunk) in vals.chunks_exact_mut(t.dims[0]).zip(
            file.tensor_bytes(t)
                .chunks_exact(t.ty.row_bytes(t.dims[0]).unwrap()),
        ) {
            forge_engine::quant::dequantize_row(t.ty, chunk, row);
        }
        w.tensor(&t.name, &t.dims, t.ty, &vals).unwrap();
    }
    let err = load(w.to_bytes()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.ggml.merges") && err.contains("q z"),
        "{err}"
    );
}
