//! Building and signing a receipt for a finished generation.

use forge_circuits::rand_core::SeedableRng;
use forge_circuits::{ChaCha20Rng, CircuitError, CuStatement, ProvingKey, prove, vk_hash, vk_of};
use forge_engine::{GenerateRequest, Generation, Model};
use thiserror::Error;

use super::{
    CU_PROOF_BYTES, Cost, Forwarded, MAX_BACKEND_TAG, MAX_LOGIT_BIAS, ModelDims, OutputInfo,
    Provider, Receipt, RequestInfo, Sampling, TraceInfo,
};
use crate::codec::EncodeError;
use crate::commit::Commitment;
use crate::digest::{output_hash, prompt_hash};
use crate::key::{KeyError, NodeKey};
use crate::merkle::Hash;

/// Why a receipt could not be built.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The generation, request, model and commitment do not describe the
    /// same run.
    #[error("`{field}`: expected {expected}, found {found}")]
    Mismatch {
        /// What differs.
        field: &'static str,
        /// The value the model or generation implies.
        expected: u128,
        /// The value found.
        found: u128,
    },
    /// A value does not fit its receipt field.
    #[error("`{field}` = {value} does not fit the receipt")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// The value.
        value: u128,
    },
    /// A variable-length field is above its bound.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The CU circuit refused the statement.
    #[error("CU proof: {0}")]
    Circuit(#[from] CircuitError),
    /// No randomness for the proof.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Signs receipts for one model with one node key and CU proving key.
#[derive(Debug)]
pub struct ReceiptBuilder<'a> {
    model: &'a Model,
    key: &'a NodeKey,
    pk: &'a ProvingKey,
    vk_hash: Hash,
}

impl<'a> ReceiptBuilder<'a> {
    /// A builder for `model`, signing with `key` and proving with `pk`.
    pub fn new(model: &'a Model, key: &'a NodeKey, pk: &'a ProvingKey) -> Self {
        Self {
            model,
            key,
            pk,
            vk_hash: vk_hash(&vk_of(pk)),
        }
    }

    /// The signed, proved receipt of `generation`, the answer to `request`
    /// whose trace went into `commitment`.
    pub fn build(
        &self,
        id: [u8; 16],
        request: &GenerateRequest,
        generation: &Generation,
        commitment: &Commitment,
    ) -> Result<Receipt, BuildError> {
        let cfg = self.model.config();
        let config = ModelDims::from_engine(cfg).ok_or(BuildError::TooLarge {
            field: "config",
            value: u32::MAX as u128 + 1,
        })?;
        let n_prompt = to_u32("request.n_prompt", request.prompt.len())?;
        let n_gen = to_u32("request.n_gen", generation.tokens.len())?;
        let work = generation.work;
        let expect = |field, expected: u128, found: u128| {
            if expected == found {
                Ok(())
            } else {
                Err(BuildError::Mismatch {
                    field,
                    expected,
                    found,
                })
            }
        };
        expect(
            "generation.prompt_tokens",
            n_prompt.into(),
            generation.prompt_tokens as u128,
        )?;
        expect("generation.work.logits", n_gen.into(), work.logits.into())?;
        expect(
            "commitment.layers",
            config.layers.into(),
            commitment.layers() as u128,
        )?;
        expect(
            "commitment.d_model",
            config.d_model.into(),
            commitment.d_model() as u128,
        )?;
        expect(
            "commitment.start",
            work.start.into(),
            commitment.start() as u128,
        )?;
        expect(
            "commitment.positions",
            work.positions().into(),
            commitment.positions() as u128,
        )?;
        // The last sampled token is never forwarded.
        expect(
            "generation.work.end",
            u128::from(n_prompt) + u128::from(n_gen) - 1,
            work.end.into(),
        )?;
        let start = to_u32("request.forwarded.start", work.start as usize)?;
        let end = to_u32("request.forwarded.end", work.end as usize)?;
        let fc = config.flop_config();
        let flops = forge_circuits::flops(&fc, n_prompt.into(), n_gen.into(), start.into());
        expect("generation.flops", flops.unwrap_or(0), generation.flops)?;
        let milli_cu = forge_engine::milli_cu(generation.flops);
        let milli_cu = u64::try_from(milli_cu).map_err(|_| BuildError::TooLarge {
            field: "cost.milli_cu",
            value: milli_cu,
        })?;
        let sampling = Sampling::from_engine(&request.sampling).ok_or(BuildError::TooLarge {
            field: "request.sampling.top_k",
            value: request.sampling.top_k as u128,
        })?;
        if sampling.logit_bias.len() > MAX_LOGIT_BIAS as usize {
            return Err(BuildError::TooLarge {
                field: "request.sampling.logit_bias",
                value: sampling.logit_bias.len() as u128,
            });
        }
        let backend = self.model.backend().tag();
        if backend.len() > MAX_BACKEND_TAG as usize {
            return Err(BuildError::TooLarge {
                field: "request.backend",
                value: backend.len() as u128,
            });
        }
        let mut receipt = Receipt {
            request: RequestInfo {
                id,
                model_id: self.model.model_id(),
                backend,
                sampling,
                prompt_hash: prompt_hash(&request.prompt),
                n_prompt,
                n_gen,
                forwarded: Forwarded { start, end },
            },
            output: OutputInfo {
                tokens_hash: output_hash(&generation.tokens),
            },
            trace: TraceInfo {
                root: commitment.root(),
                layers: config.layers,
                positions: end - start,
                dtype: commitment.dtype(),
            },
            cost: Cost {
                flops: generation.flops,
                milli_cu,
            },
            config,
            vk_hash: self.vk_hash,
            provider: Provider {
                public_key: self.key.public_key(),
                signature: [0; 64],
            },
            cu_proof: [0; CU_PROOF_BYTES],
            audits: Vec::new(),
        };
        let header_hash = receipt.header_hash()?;
        receipt.provider.signature = self.key.sign(&header_hash);
        let stmt = CuStatement {
            cfg: fc,
            n_prompt: n_prompt.into(),
            n_gen: n_gen.into(),
            start: start.into(),
            flops: generation.flops,
            activation_root: receipt.trace.root,
            header_hash,
        };
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Entropy(e.to_string()))?;
        receipt.cu_proof = prove(self.pk, &stmt, &mut ChaCha20Rng::from_seed(seed))?.to_bytes();
        Ok(receipt)
    }
}

fn to_u32(field: &'static str, v: usize) -> Result<u32, BuildError> {
    u32::try_from(v).map_err(|_| BuildError::TooLarge {
        field,
        value: v as u128,
    })
}
