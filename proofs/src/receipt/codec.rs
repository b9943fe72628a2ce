//! The canonical encoding of a receipt, and the hashes over it.

use super::{
    AuditEntry, CU_PROOF_BYTES, Cost, Forwarded, MAX_AUDIT_CELLS, MAX_AUDITS, MAX_BACKEND_TAG,
    MAX_LOGIT_BIAS, MAX_OPENINGS_BYTES, ModelDims, OutputInfo, Provider, RECEIPT_MAGIC,
    RECEIPT_VERSION, Receipt, RequestInfo, Sampling, TraceInfo, Verdict,
};
use crate::codec::{DecodeError, EncodeError, Reader, Writer};
use crate::digest::RECEIPT_DOMAIN;
use crate::merkle::{DType, Hash};

impl Receipt {
    /// The canonical encoding. Fails only if a variable-length field is
    /// above its bound (which decoding would refuse).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.encode(&mut w)?;
        Ok(w.into_bytes())
    }

    fn encode(&self, w: &mut Writer) -> Result<(), EncodeError> {
        self.encode_header(w)?;
        w.array(&self.provider.signature);
        w.array(&self.cu_proof);
        w.count("audits", self.audits.len(), MAX_AUDITS)?;
        for a in &self.audits {
            a.encode_unsigned(w)?;
            w.array(&a.signature);
        }
        Ok(())
    }

    /// Strict decoding: wrong magic, unknown version, truncation, oversize
    /// vectors, unknown tags and trailing bytes are errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        r.magic(RECEIPT_MAGIC)?;
        r.version(RECEIPT_VERSION)?;
        let request = decode_request(&mut r)?;
        let output = OutputInfo {
            tokens_hash: r.array("output.tokens_hash")?,
        };
        let trace = TraceInfo {
            root: r.array("trace.root")?,
            layers: r.u32("trace.layers")?,
            positions: r.u32("trace.positions")?,
            dtype: {
                let tag = r.u8("trace.dtype")?;
                DType::from_tag(tag)
                    .ok_or_else(|| invalid("trace.dtype", format!("unknown dtype tag {tag}")))?
            },
        };
        let cost = Cost {
            flops: r.u128("cost.flops")?,
            milli_cu: r.u64("cost.milli_cu")?,
        };
        let config = ModelDims {
            layers: r.u32("config.layers")?,
            d_model: r.u32("config.d_model")?,
            heads: r.u32("config.heads")?,
            kv_heads: r.u32("config.kv_heads")?,
            head_dim: r.u32("config.head_dim")?,
            ffn: r.u32("config.ffn")?,
            vocab: r.u32("config.vocab")?,
        };
        let vk_hash = r.array("vk_hash")?;
        let provider = Provider {
            public_key: r.array("provider.public_key")?,
            signature: r.array("provider.signature")?,
        };
        let cu_proof = r.array::<CU_PROOF_BYTES>("cu_proof")?;
        // An audit entry takes at least 32 + 4 + 4 + 1 + 32 + 64 bytes.
        let n = r.count("audits", MAX_AUDITS, 137)?;
        let audits = (0..n)
            .map(|_| decode_audit(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self {
            request,
            output,
            trace,
            cost,
            config,
            vk_hash,
            provider,
            cu_proof,
            audits,
        })
    }

    /// The hash the provider signs and the CU proof binds: blake3 (domain
    /// `forge.receipt.v1`) of the encoding from the magic through
    /// `provider.public_key`.
    pub fn header_hash(&self) -> Result<Hash, EncodeError> {
        let mut w = Writer::hashing(blake3::Hasher::new_derive_key(RECEIPT_DOMAIN));
        self.encode_header(&mut w)?;
        Ok(w.finalize())
    }

    /// blake3 of the full encoding: the receipt's key in ledgers.
    pub fn hash(&self) -> Result<Hash, EncodeError> {
        let mut w = Writer::hashing(blake3::Hasher::new());
        self.encode(&mut w)?;
        Ok(w.finalize())
    }

    fn encode_header(&self, w: &mut Writer) -> Result<(), EncodeError> {
        w.array(&RECEIPT_MAGIC);
        w.u16(RECEIPT_VERSION);
        let q = &self.request;
        w.array(&q.id);
        w.array(&q.model_id);
        w.string("request.backend", &q.backend, MAX_BACKEND_TAG)?;
        let s = &q.sampling;
        w.u32(s.temperature.to_bits());
        w.u32(s.top_k);
        w.u32(s.top_p.to_bits());
        w.u64(s.seed);
        w.u32(s.presence_penalty.to_bits());
        w.u32(s.frequency_penalty.to_bits());
        w.count(
            "request.sampling.logit_bias",
            s.logit_bias.len(),
            MAX_LOGIT_BIAS,
        )?;
        for &(token, bias) in &s.logit_bias {
            w.u32(token);
            w.u32(bias.to_bits());
        }
        w.array(&q.prompt_hash);
        w.u32(q.n_prompt);
        w.u32(q.n_gen);
        w.u32(q.forwarded.start);
        w.u32(q.forwarded.end);
        w.array(&self.output.tokens_hash);
        w.array(&self.trace.root);
        w.u32(self.trace.layers);
        w.u32(self.trace.positions);
        w.u8(self.trace.dtype.tag());
        w.u128(self.cost.flops);
        w.u64(self.cost.milli_cu);
        let c = &self.config;
        for v in [
            c.layers, c.d_model, c.heads, c.kv_heads, c.head_dim, c.ffn, c.vocab,
        ] {
            w.u32(v);
        }
        w.array(&self.vk_hash);
        w.array(&self.provider.public_key);
        Ok(())
    }
}

fn invalid(field: &'static str, problem: String) -> DecodeError {
    DecodeError::InvalidValue { field, problem }
}

fn decode_request(r: &mut Reader<'_>) -> Result<RequestInfo, DecodeError> {
    let id = r.array("request.id")?;
    let model_id = r.array("request.model_id")?;
    let backend = r.string("request.backend", MAX_BACKEND_TAG)?.to_string();
    let f32_at = |r: &mut Reader<'_>, field| r.u32(field).map(f32::from_bits);
    let temperature = f32_at(r, "request.sampling.temperature")?;
    let top_k = r.u32("request.sampling.top_k")?;
    let top_p = f32_at(r, "request.sampling.top_p")?;
    let seed = r.u64("request.sampling.seed")?;
    let presence_penalty = f32_at(r, "request.sampling.presence_penalty")?;
    let frequency_penalty = f32_at(r, "request.sampling.frequency_penalty")?;
    let n = r.count("request.sampling.logit_bias", MAX_LOGIT_BIAS, 8)?;
    let logit_bias = (0..n)
        .map(|_| {
            Ok((
                r.u32("request.sampling.logit_bias")?,
                f32_at(r, "request.sampling.logit_bias")?,
            ))
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let sampling = Sampling {
        temperature,
        top_k,
        top_p,
        seed,
        presence_penalty,
        frequency_penalty,
        logit_bias,
    };
    Ok(RequestInfo {
        id,
        model_id,
        backend,
        sampling,
        prompt_hash: r.array("request.prompt_hash")?,
        n_prompt: r.u32("request.n_prompt")?,
        n_gen: r.u32("request.n_gen")?,
        forwarded: Forwarded {
            start: r.u32("request.forwarded.start")?,
            end: r.u32("request.forwarded.end")?,
        },
    })
}

fn decode_audit(r: &mut Reader<'_>) -> Result<AuditEntry, DecodeError> {
    let seed = r.array("audit.seed")?;
    let n = r.count("audit.cells", MAX_AUDIT_CELLS, 8)?;
    let cells = (0..n)
        .map(|_| Ok((r.u32("audit.cells")?, r.u32("audit.cells")?)))
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let openings = r.bytes("audit.openings", MAX_OPENINGS_BYTES)?.to_vec();
    let tag = r.u8("audit.verdict")?;
    let verdict = Verdict::from_tag(tag)
        .ok_or_else(|| invalid("audit.verdict", format!("unknown verdict tag {tag}")))?;
    Ok(AuditEntry {
        seed,
        cells,
        openings,
        verdict,
        auditor: r.array("audit.auditor")?,
        signature: r.array("audit.signature")?,
    })
}
