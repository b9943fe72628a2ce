//! Fuzzes the receipt decoder (`Receipt::from_bytes`) and everything a
//! verifier runs on what decodes: the canonical re-encoding, the JSON view,
//! `verify_offline`, and the embedded spot checks (openings decoding and
//! `SpotChecker` against the tiny model the seed corpus was made with).
//!
//! Properties: no panic, no abort, no unbounded allocation; a decoded
//! receipt (and decoded openings) re-encode to exactly the input bytes.
#![no_main]

use std::sync::OnceLock;

use forge_engine::testing::{tiny_model_gguf, TinySpec};
use forge_engine::{gguf::GgufFile, Backend, Model};
use forge_proofs::{Receipt, SpotChecker, SpotOpenings, TrustAnchor};
use libfuzzer_sys::fuzz_target;

struct Ctx {
    anchor: TrustAnchor,
    model: Model,
}

/// The CU key of the tests' setup (`setup([7; 32])`) and the model of
/// tests/tests/honest_seeds.rs, whose receipts seed the corpus.
fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let (_, vk) = forge_circuits::setup([7; 32]);
        let spec = TinySpec { layers: 3, d_model: 64, heads: 4, kv_heads: 2, ffn: 128, context_length: 64, seed: 5, untied_f16_head: false };
        let gguf = tiny_model_gguf(&spec).expect("tiny model builds");
        let model = Model::from_gguf(&GgufFile::parse(gguf).expect("parses"), Backend::Cpu).expect("loads");
        Ctx { anchor: TrustAnchor::new(vk), model }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(receipt) = Receipt::from_bytes(data) else { return };
    let again = receipt.to_bytes().expect("a decoded receipt encodes");
    assert_eq!(again, data, "decoding is not canonical");
    let _ = serde_json::to_string(&receipt).expect("JSON view");
    let ctx = ctx();
    let _ = receipt.verify_offline(&ctx.anchor);
    let checker = SpotChecker::new(&ctx.model);
    for audit in &receipt.audits {
        if let Ok(openings) = SpotOpenings::from_bytes(&audit.openings) {
            assert_eq!(openings.to_bytes().expect("decoded openings encode"), audit.openings, "openings decoding is not canonical");
            let _ = checker.check_cells(&receipt, &audit.cells, &openings);
            let _ = checker.check(&receipt, &audit.seed, audit.cells.len() as u32, &openings);
        }
    }
});
