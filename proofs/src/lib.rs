//! # forge-proofs
//!
//! Forge's evidence layer: everything a node needs to turn one inference
//! into a receipt that anyone can check offline.
//!
//! - **Canonical encoding** ([`Writer`], [`Reader`]): fixed-width
//!   little-endian integers, raw byte arrays, length-prefixed vectors with an
//!   explicit maximum; decoding errors name the field ([`DecodeError`]).
//! - **Merkle trees** ([`MerkleTree`], [`verify_range`]): blake3, leaves and
//!   nodes under separate keys, odd node promoted, minimal range proofs.
//! - **Trace commitment** ([`CommitmentSink`] → [`Commitment`]): a
//!   [`forge_engine::TraceSink`] that hashes every layer's rows on a worker
//!   thread and can open any range of rows later ([`RangeOpening`]).
//! - **Receipts** ([`Receipt`], DESIGN.md section 5): strict binary format
//!   `FRGR` v1, a JSON view, [`ReceiptBuilder`] to sign and prove one, and
//!   [`Receipt::verify_offline`] against a [`TrustAnchor`].
//! - **Node key** ([`NodeKey`]): the ed25519 identity in `node.key`.
//! - **Spot checks** ([`challenge_cells`], [`open_cells`], [`SpotChecker`]):
//!   cells drawn from a merlin transcript, opened by the provider, re-executed
//!   by the verifier with the real weights; an auditor signs the verdict as an
//!   [`AuditEntry`].
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use forge_engine::{Backend, GenerateRequest, Model, SamplingParams, generate};
//! use forge_proofs::{CommitmentSink, NodeKey, Receipt, ReceiptBuilder, TrustAnchor};
//!
//! let model = Model::load("model.gguf".as_ref(), Backend::Cpu)?;
//! let key = NodeKey::load_or_create("node-dir".as_ref())?;
//! let (pk, vk) = forge_circuits::setup([7; 32]);
//!
//! let req = GenerateRequest {
//!     prompt: model.tokenizer().encode("Hello")?,
//!     max_tokens: 16,
//!     sampling: SamplingParams::greedy(),
//!     stop: vec![],
//! };
//! // The element types of the backend's trace (f16 keys and values on the CPU).
//! let mut sink = CommitmentSink::for_model(&model)?;
//! let generation = generate(&model, &req, Some(&mut sink), |_| ControlFlow::Continue(()))?;
//! let commitment = sink.finish()?;
//!
//! let receipt = ReceiptBuilder::new(&model, &key, &pk).build([0; 16], &req, &generation, &commitment)?;
//! let bytes = receipt.to_bytes()?;
//!
//! // Anyone, offline, with the pinned verifying key:
//! let report = Receipt::from_bytes(&bytes)?.verify_offline(&TrustAnchor::new(vk))?;
//! println!("{} FLOPs verified", report.flops);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod check_id;
mod codec;
mod commit;
mod digest;
mod hex;
mod key;
mod merkle;
mod receipt;
mod spot;

pub use check_id::CheckId;
pub use codec::{DecodeError, EncodeError, Reader, Writer};
pub use commit::{
    CommitCost, CommitError, Commitment, CommitmentSink, OpenedRows, RangeOpening, RowsRef,
    SinkOptions,
};
pub use digest::{
    AUDIT_DOMAIN, OUTPUT_DOMAIN, PROMPT_DOMAIN, RECEIPT_DOMAIN, domain_hash, output_hash,
    prompt_hash,
};
pub use key::{KeyError, NodeKey, SignatureError, verify_signature};
pub use merkle::{
    DType, Elem, Hash, KV_BLOCK, MerkleError, MerkleTree, OUTPUT_BLOCK, RangeProof, RowGroup,
    empty_root, leaf_hash, node_hash, row_blocks, verify_range,
};
pub use receipt::{
    AuditEntry, BuildError, CU_PROOF_BYTES, Check, Cost, Forwarded, KnownModel, MAX_AUDIT_CELLS,
    MAX_AUDITS, MAX_BACKEND_TAG, MAX_LOGIT_BIAS, MAX_OPENINGS_BYTES, ModelDims, OutputInfo,
    Provider, RECEIPT_MAGIC, RECEIPT_VERSION, Receipt, ReceiptBuilder, Report, RequestInfo,
    Sampling, TraceInfo, TrustAnchor, Verdict, VerifyError,
};
pub use spot::{
    CellOpening, CellResult, DEFAULT_TOLERANCE, FIAT_SHAMIR_DOMAIN, SPOT_TRANSCRIPT_LABEL,
    SelfAuditError, SpotChecker, SpotError, SpotOpenings, SpotReport, attach_self_audit,
    challenge_cells, fiat_shamir_seed, open_cells, relative_l2, verify_openings,
};
