//! A loaded model: config, tokenizer, weights, and the forward pass on the
//! chosen backend.

mod aligned_rows;
mod backend;
mod burn_fwd;
mod cpu;
mod handover;
mod pool;
mod weights;

use std::path::Path;

pub use backend::Backend;
use burn_fwd::{BurnCache, BurnModel};
use cpu::{CpuForward, KvCache, Segment};
use pool::on_pool;
use weights::Weights;

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::kernels::{KvValue, Numerics, RopeTable};
use crate::tokenizer::Tokenizer;
use crate::trace::{TraceSink, reborrow};

/// A model ready to run.
pub struct Model {
    cfg: ModelConfig,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    model_id: [u8; 32],
    weights: Weights,
    rope: RopeTable,
    backend: Backend,
    burn: Option<BurnModel>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("cfg", &self.cfg)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// What [`Model::replay_cell`] recomputes at one position.
#[derive(Clone, Debug, PartialEq)]
pub struct CellReplay {
    /// The position's `[k | v]` row (key after RoPE, then value).
    pub kv: Vec<f32>,
    /// The layer's output row.
    pub output: Vec<f32>,
}

/// One session's share of a batched forward pass.
pub struct BatchItem<'a> {
    /// The session to extend.
    pub session: &'a mut Session,
    /// The tokens to forward at its next positions.
    pub tokens: &'a [u32],
    /// Where its layer rows go.
    pub sink: Option<&'a mut dyn TraceSink>,
}

fn foreign_session() -> EngineError {
    EngineError::InvalidParameter {
        param: "session",
        problem: "the session belongs to another model or backend".into(),
    }
}

/// The KV cache of one conversation with a model.
#[derive(Debug)]
pub struct Session {
    cache: SessionCache,
}

#[derive(Debug)]
enum SessionCache {
    Cpu(KvCache),
    Burn(BurnCache),
}

impl Session {
    /// Positions already in the cache.
    pub fn len(&self) -> usize {
        match &self.cache {
            SessionCache::Cpu(c) => c.len,
            SessionCache::Burn(c) => c.len,
        }
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget positions `len..` (to reuse a shared prefix).
    pub fn truncate(&mut self, len: usize) {
        match &mut self.cache {
            SessionCache::Cpu(c) => c.truncate(len),
            SessionCache::Burn(c) => c.truncate(len),
        }
    }
}

impl Model {
    /// Load a GGUF file for `backend`.
    pub fn load(path: &Path, backend: Backend) -> Result<Self> {
        Self::from_gguf(&GgufFile::open(path)?, backend)
    }

    /// Build from a parsed GGUF file.
    ///
    /// The first model a process builds also raises glibc's thresholds for
    /// handing freed memory back to the kernel (32 MiB blocks, 256 MiB of
    /// free heap top), so that each layer's activation buffers reuse the
    /// last layer's pages instead of faulting fresh ones in: a 512-token
    /// prefill ran 1.29x to 1.32x faster with them.
    pub fn from_gguf(file: &GgufFile, backend: Backend) -> Result<Self> {
        crate::heap::keep_freed_memory();
        let cfg = ModelConfig::from_gguf(file)?;
        let tokenizer = Tokenizer::from_gguf(file)?;
        if tokenizer.vocab_size() != cfg.vocab {
            return Err(EngineError::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                problem: format!(
                    "{} tokens but the embedding has {} rows",
                    tokenizer.vocab_size(),
                    cfg.vocab
                ),
            });
        }
        let template = ChatTemplate::from_gguf_template(tokenizer.chat_template()).ok();
        let weights = Weights::load(file, &cfg)?;
        let rope = RopeTable::new(cfg.head_dim, cfg.rope_base, cfg.context_length);
        let burn = backend
            .burn_device()?
            .map(|device| BurnModel::new(&cfg, &weights, device, cfg.context_length));
        Ok(Self {
            model_id: *blake3::hash(file.data_section()).as_bytes(),
            cfg,
            tokenizer,
            template,
            weights,
            rope,
            backend,
            burn,
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, if the model has a ChatML one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// blake3 of the GGUF tensor data: the model's identity in receipts.
    pub fn model_id(&self) -> [u8; 32] {
        self.model_id
    }

    /// The backend the model runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Bytes of weights read per decode step.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.weights.bytes_per_token()
    }

    /// Bytes of the LM head's weights, which every decode step and every
    /// check of a sampled token reads once (part of
    /// [`Self::weight_bytes_per_token`]).
    pub fn lm_head_bytes(&self) -> usize {
        self.weights.lm_head().bytes()
    }

    /// Asks Linux to move the weights onto 2 MiB pages (`MADV_COLLAPSE`,
    /// Linux 6.1 and later); returns the bytes moved (0 where the kernel
    /// declines or the platform has no such call; the weights then stay as
    /// they were, and the bits of every result are the same either way).
    /// A decode step streams every weight once, with one address
    /// translation per 4 KiB page on small pages: criterion's decode steps
    /// ran 1.03x to 1.15x faster on huge pages. The move copies the weights
    /// (0.1 to 0.2 s for SmolLM2 on the machine that measured it), so it
    /// pays off in a process that decodes for a while, a server, and not in
    /// a one-shot command.
    pub fn use_huge_pages(&self) -> usize {
        crate::heap::collapse_into_huge_pages(&self.weights.spans())
    }

    /// An empty session.
    pub fn session(&self) -> Session {
        let cache = match self.burn {
            Some(_) => SessionCache::Burn(BurnCache::new(self.cfg.layers)),
            None => SessionCache::Cpu(KvCache::new(self.cfg.layers, self.cfg.kv_dim())),
        };
        Session { cache }
    }

    fn cpu(&self) -> CpuForward<'_> {
        self.cpu_in(Numerics::Int8)
    }

    fn cpu_in(&self, numerics: Numerics) -> CpuForward<'_> {
        CpuForward {
            cfg: &self.cfg,
            w: &self.weights,
            rope: &self.rope,
            numerics,
        }
    }

    /// Forward `tokens` at the session's next positions, handing each layer's
    /// output rows to `sink`. Returns the last layer's rows (before the final
    /// norm), `tokens.len()` rows of `d_model`.
    pub fn forward(
        &self,
        session: &mut Session,
        tokens: &[u32],
        sink: Option<&mut dyn TraceSink>,
    ) -> Result<Vec<f32>> {
        let mut sink = sink;
        let mut items = [BatchItem {
            session,
            tokens,
            sink: reborrow(&mut sink),
        }];
        Ok(self.forward_batch(&mut items)?.pop().unwrap_or_default())
    }

    /// Forward several sessions at once (continuous batching): on the CPU
    /// backend the matrix products run over all sessions' rows together,
    /// and every row has exactly the bits it would have had alone. Returns
    /// each item's last-layer rows.
    pub fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>> {
        for it in items.iter() {
            self.check_input(it.session, it.tokens)?;
        }
        if let Some(b) = &self.burn {
            return items
                .iter_mut()
                .map(|it| match &mut it.session.cache {
                    SessionCache::Burn(c) if !it.tokens.is_empty() => {
                        Ok(b.forward(it.tokens, c, reborrow(&mut it.sink)))
                    }
                    SessionCache::Burn(_) => Ok(Vec::new()),
                    SessionCache::Cpu(_) => Err(foreign_session()),
                })
                .collect();
        }
        let mut segs = Vec::with_capacity(items.len());
        for it in items.iter_mut() {
            match &mut it.session.cache {
                SessionCache::Cpu(c) if c.k.len() == self.cfg.layers => segs.push(Segment {
                    tokens: it.tokens,
                    cache: c,
                    sink: reborrow(&mut it.sink),
                }),
                _ => return Err(foreign_session()),
            }
        }
        let cpu = self.cpu();
        Ok(on_pool(|| cpu.forward(&mut segs)))
    }

    fn check_input(&self, session: &Session, tokens: &[u32]) -> Result<()> {
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.cfg.vocab) {
            return Err(EngineError::InvalidParameter {
                param: "tokens",
                problem: format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.cfg.vocab
                ),
            });
        }
        let end = session.len() + tokens.len();
        if end > self.cfg.context_length {
            return Err(EngineError::ContextLength {
                prompt_tokens: end,
                max_tokens: 0,
                context_length: self.cfg.context_length,
            });
        }
        Ok(())
    }

    /// Logits of several last-layer rows at once (`rows.len() / d_model`
    /// rows), `vocab` values per row; each row's logits are those
    /// [`Model::logits`] gives it alone.
    pub fn logits_batch(&self, rows: &[f32]) -> Vec<f32> {
        match &self.burn {
            Some(b) => rows
                .chunks_exact(self.cfg.d_model)
                .flat_map(|r| b.logits(r))
                .collect(),
            None => self.logits_in(Numerics::Int8, rows),
        }
    }

    /// [`Model::logits_batch`] on the CPU in the given arithmetic, whatever
    /// this model's backend ([`Numerics::F32`] checks a burn backend's token).
    pub fn logits_in(&self, numerics: Numerics, rows: &[f32]) -> Vec<f32> {
        let cpu = self.cpu_in(numerics);
        on_pool(|| cpu.logits(rows))
    }

    /// Logits of one last-layer row (final norm, then LM head).
    pub fn logits(&self, last_row: &[f32]) -> Vec<f32> {
        match &self.burn {
            Some(b) => b.logits(last_row),
            None => self.logits_in(Numerics::Int8, last_row),
        }
    }

    /// Re-execute layer `layer` alone on the CPU kernels from its input rows
    /// for positions `0..n` (the previous layer's outputs, or token
    /// embeddings for layer 0). Returns the `n` output rows. On the CPU
    /// backend these are bit-identical to the rows the full forward produced.
    pub fn replay_layer(&self, layer: usize, inputs: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .cpu()
            .replay(self.replay_weights(layer, inputs)?, inputs))
    }

    /// The output row of the last input position only: what a spot check
    /// needs. Keys and values are computed for every input row, the query,
    /// attention and FFN for the last one alone (about 16x less work than
    /// [`Model::replay_layer`] on SmolLM2), with the same bits as that row of
    /// the full re-execution.
    pub fn replay_layer_last(&self, layer: usize, inputs: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .cpu()
            .replay_last(self.replay_weights(layer, inputs)?, inputs))
    }

    /// Re-execute layer `layer` at one position `t` from its input row (the
    /// previous layer's output at `t`, or the token embedding for layer 0)
    /// and the committed keys and values of positions `0..t` (`t` rows of
    /// `[k | v]`, `2 * kv_dim` floats each, as [`TraceSink::record_kv`]
    /// hands them). Returns the `[k | v]` row the layer computes at `t` and
    /// its output row: what a spot check compares with the committed ones.
    /// Costs one row of the layer plus attention over `t + 1` positions, and
    /// gives the same bits as the full forward on the CPU backend.
    pub fn replay_cell(
        &self,
        layer: usize,
        input: &[f32],
        kv_prefix: &[f32],
    ) -> Result<CellReplay> {
        self.replay_cell_in(Numerics::Int8, layer, input, kv_prefix)
    }

    /// [`Model::replay_cell`] in the given arithmetic: [`Numerics::F32`] is
    /// the reference for receipts from the burn backends. The first float
    /// replay of a layer dequantises its matrices (kept for later cells).
    pub fn replay_cell_in(
        &self,
        numerics: Numerics,
        layer: usize,
        input: &[f32],
        kv_prefix: &[f32],
    ) -> Result<CellReplay> {
        let w = 2 * self.cfg.kv_dim();
        if !kv_prefix.len().is_multiple_of(w) {
            return Err(EngineError::InvalidParameter {
                param: "kv_prefix",
                problem: format!("{} values is not 0..context rows of {w}", kv_prefix.len()),
            });
        }
        let rows: Vec<&[f32]> = kv_prefix.chunks_exact(w).collect();
        self.replay_cell_rows_in(numerics, layer, input, &rows)
    }

    /// [`Model::replay_cell_in`] with the prefix's `[k | v]` rows apart (a
    /// spot check's openings hold them so), which spares gathering them
    /// into one array first, in f32 or, as the CPU engine's trace keeps
    /// them, f16 ([`KvValue`]; an f16 row enters the replay's f16 cache as
    /// it is).
    pub fn replay_cell_rows_in<V: KvValue, R: AsRef<[V]> + Sync>(
        &self,
        numerics: Numerics,
        layer: usize,
        input: &[f32],
        kv_prefix: &[R],
    ) -> Result<CellReplay> {
        let (d, w) = (self.cfg.d_model, 2 * self.cfg.kv_dim());
        let lw = self.replay_weights(layer, input)?;
        if input.len() != d {
            return Err(EngineError::InvalidParameter {
                param: "input",
                problem: format!("{} values is not one row of {d}", input.len()),
            });
        }
        if kv_prefix.len() >= self.cfg.context_length {
            return Err(EngineError::InvalidParameter {
                param: "kv_prefix",
                problem: format!(
                    "{} rows is not 0..context ({}) rows",
                    kv_prefix.len(),
                    self.cfg.context_length
                ),
            });
        }
        if let Some((i, row)) = kv_prefix
            .iter()
            .enumerate()
            .find(|(_, r)| r.as_ref().len() != w)
        {
            return Err(EngineError::InvalidParameter {
                param: "kv_prefix",
                problem: format!("row {i} has {} values, not {w}", row.as_ref().len()),
            });
        }
        let cpu = self.cpu_in(numerics);
        let (kv, output) = on_pool(|| cpu.replay_cell(lw, input, kv_prefix));
        Ok(CellReplay { kv, output })
    }

    fn replay_weights(&self, layer: usize, inputs: &[f32]) -> Result<&weights::LayerWeights> {
        let d = self.cfg.d_model;
        let lw = self
            .weights
            .layers
            .get(layer)
            .ok_or(EngineError::InvalidParameter {
                param: "layer",
                problem: format!("{layer} >= {} layers", self.cfg.layers),
            })?;
        if inputs.is_empty()
            || !inputs.len().is_multiple_of(d)
            || inputs.len() / d > self.cfg.context_length
        {
            return Err(EngineError::InvalidParameter {
                param: "inputs",
                problem: format!("{} values is not 1..=context rows of {d}", inputs.len()),
            });
        }
        Ok(lw)
    }

    /// The token embedding row of `token` (the input of layer 0).
    pub fn embedding(&self, token: u32) -> Result<Vec<f32>> {
        if token as usize >= self.cfg.vocab {
            return Err(EngineError::InvalidParameter {
                param: "token",
                problem: format!("{token} is outside the vocabulary"),
            });
        }
        let mut row = vec![0.0; self.cfg.d_model];
        self.weights.embed.row_f32(token as usize, &mut row);
        Ok(row)
    }
}
