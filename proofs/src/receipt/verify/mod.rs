//! Offline verification of a receipt against a trust anchor.

mod anchor;
mod error;
mod report;

use forge_circuits::{CircuitError, CuProof, CuStatement, vk_hash};
use forge_engine::{ForwardWork, request_flops};

pub use anchor::{KnownModel, TrustAnchor};
pub use error::VerifyError;
pub use report::{Check, Report};

use super::Receipt;
use crate::key::verify_signature;
use crate::merkle::Hash;

impl Receipt {
    /// Verifies everything that needs no model weights: shape, FLOPs,
    /// signature, verifying key, CU proof, audit signatures. Spot checks of
    /// the trace itself are separate.
    pub fn verify_offline(&self, anchor: &TrustAnchor) -> Result<Report, VerifyError> {
        let header_hash = self.header_hash()?;
        // Hashing a receipt with openings (megabytes) and its audits'
        // signed hashes is most of the work besides the pairing check: the
        // three run side by side. Errors are still reported in checklist
        // order: encoding, then the header's checks, then the audits.
        let (receipt_hash, (header, audits)) = rayon::join(
            || self.hash(),
            || {
                rayon::join(
                    || self.verify_header(anchor, header_hash),
                    || self.verify_audit_signatures(header_hash),
                )
            },
        );
        let receipt_hash = receipt_hash?;
        let mut checks = header?;
        audits?;
        if !self.audits.is_empty() {
            checks.push(Check::AuditSignatures);
        }
        Ok(Report {
            receipt_hash,
            header_hash,
            provider: self.provider.public_key,
            model_id: self.request.model_id,
            flops: self.cost.flops,
            milli_cu: self.cost.milli_cu,
            audits: self.audits.len(),
            checks,
        })
    }

    /// Format through CU proof: the checks on the signed header.
    fn verify_header(
        &self,
        anchor: &TrustAnchor,
        header_hash: Hash,
    ) -> Result<Vec<Check>, VerifyError> {
        let mut checks = vec![Check::Format];
        self.check_shape()?;
        checks.push(Check::Shape);
        if !anchor.models.is_empty() {
            let model_id = self.request.model_id;
            let known = anchor
                .models
                .iter()
                .find(|m| m.model_id == model_id)
                .ok_or(VerifyError::UnknownModel { model_id })?;
            if known.config != self.config {
                return Err(VerifyError::ConfigMismatch {
                    expected: known.config,
                    received: self.config,
                });
            }
            checks.push(Check::Model);
        }
        self.check_flops()?;
        checks.push(Check::Flops);
        let p = &self.provider;
        verify_signature(&p.public_key, &header_hash, &p.signature)
            .map_err(VerifyError::Signature)?;
        checks.push(Check::Signature);
        let expected = vk_hash(&anchor.vk);
        if expected != self.vk_hash {
            return Err(VerifyError::VkMismatch {
                expected,
                received: self.vk_hash,
            });
        }
        checks.push(Check::VerifyingKey);
        let proof = CuProof::from_bytes(&self.cu_proof)
            .map_err(|e| VerifyError::MalformedProof(e.to_string()))?;
        match forge_circuits::verify(&anchor.vk, &self.cu_statement(header_hash), &proof) {
            Ok(()) => checks.push(Check::CuProof),
            Err(CircuitError::ProofRejected) => return Err(VerifyError::ProofRejected),
            Err(e) => return Err(VerifyError::MalformedProof(e.to_string())),
        }
        Ok(checks)
    }

    fn verify_audit_signatures(&self, header_hash: Hash) -> Result<(), VerifyError> {
        for (index, a) in self.audits.iter().enumerate() {
            let msg = a.signed_hash(&header_hash)?;
            verify_signature(&a.auditor, &msg, &a.signature)
                .map_err(|source| VerifyError::AuditSignature { index, source })?;
        }
        Ok(())
    }

    /// The CU statement this receipt claims, for a given header hash.
    pub fn cu_statement(&self, header_hash: Hash) -> CuStatement {
        CuStatement {
            cfg: self.config.flop_config(),
            n_prompt: self.request.n_prompt.into(),
            n_gen: self.request.n_gen.into(),
            start: self.request.forwarded.start.into(),
            flops: self.cost.flops,
            activation_root: self.trace.root,
            header_hash,
        }
    }

    /// Request shape, trace shape and model dimensions agree.
    pub(crate) fn check_shape(&self) -> Result<(), VerifyError> {
        let (q, c, t) = (&self.request, &self.config, &self.trace);
        let eq = |field, expected: u128, received: u128| {
            if expected == received {
                Ok(())
            } else {
                Err(VerifyError::Inconsistent {
                    field,
                    expected,
                    received,
                })
            }
        };
        if q.n_gen == 0 {
            return Err(VerifyError::InvalidField {
                field: "request.n_gen",
                problem: "must be at least 1",
            });
        }
        let end = u128::from(q.n_prompt) + u128::from(q.n_gen) - 1;
        eq("request.forwarded.end", end, q.forwarded.end.into())?;
        if q.forwarded.start >= q.forwarded.end {
            return Err(VerifyError::InvalidField {
                field: "request.forwarded.start",
                problem: "must be below forwarded.end",
            });
        }
        eq(
            "trace.positions",
            (q.forwarded.end - q.forwarded.start).into(),
            t.positions.into(),
        )?;
        eq("trace.layers", c.layers.into(), t.layers.into())?;
        if c.heads == 0 || c.kv_heads == 0 || c.heads % c.kv_heads != 0 {
            return Err(VerifyError::InvalidField {
                field: "config.kv_heads",
                problem: "must divide config.heads",
            });
        }
        eq(
            "config.d_model",
            u128::from(c.heads) * u128::from(c.head_dim),
            c.d_model.into(),
        )
    }

    fn check_flops(&self) -> Result<(), VerifyError> {
        let q = &self.request;
        let circuit = forge_circuits::flops(
            &self.config.flop_config(),
            q.n_prompt.into(),
            q.n_gen.into(),
            q.forwarded.start.into(),
        )
        .ok_or(VerifyError::InvalidField {
            field: "cost.flops",
            problem: "the formula overflows u128 for this shape",
        })?;
        let work = ForwardWork {
            start: q.forwarded.start.into(),
            end: q.forwarded.end.into(),
            logits: q.n_gen.into(),
        };
        let engine = request_flops(&self.config.engine_config(), work);
        if engine != circuit {
            return Err(VerifyError::FlopFormulasDisagree { engine, circuit });
        }
        if self.cost.flops != circuit {
            return Err(VerifyError::FlopsMismatch {
                expected: circuit,
                received: self.cost.flops,
            });
        }
        let milli = forge_engine::milli_cu(circuit);
        if u128::from(self.cost.milli_cu) != milli {
            return Err(VerifyError::MilliCuMismatch {
                expected: milli,
                received: self.cost.milli_cu,
            });
        }
        Ok(())
    }
}
