//! The model's weights, taken from a GGUF file and repacked for the kernels.

use crate::config::ModelConfig;
use crate::error::{Result, tensor_err};
use crate::gguf::GgufFile;
use crate::kernels::QMatrix;
use crate::quant::dequantize_row;

/// One transformer block.
#[derive(Clone, Debug)]
pub(crate) struct LayerWeights {
    pub(crate) attn_norm: Vec<f32>,
    pub(crate) wq: QMatrix,
    pub(crate) wk: QMatrix,
    pub(crate) wv: QMatrix,
    pub(crate) wo: QMatrix,
    pub(crate) ffn_norm: Vec<f32>,
    pub(crate) w_gate: QMatrix,
    pub(crate) w_up: QMatrix,
    pub(crate) w_down: QMatrix,
}

impl LayerWeights {
    /// The layer's seven matrices.
    pub(crate) fn matrices(&self) -> [&QMatrix; 7] {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w_gate,
            &self.w_up,
            &self.w_down,
        ]
    }
}

/// All weights.
#[derive(Clone, Debug)]
pub(crate) struct Weights {
    pub(crate) embed: QMatrix,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) out_norm: Vec<f32>,
    /// `None` when the LM head is the embedding (tied).
    pub(crate) lm_head: Option<QMatrix>,
}

impl Weights {
    /// Where the matrices' arrays lie in memory: (address, bytes) of each.
    pub(crate) fn spans(&self) -> Vec<(usize, usize)> {
        let layers = self.layers.iter().flat_map(LayerWeights::matrices);
        std::iter::once(&self.embed)
            .chain(layers)
            .chain(&self.lm_head)
            .flat_map(QMatrix::spans)
            .collect()
    }

    pub(crate) fn load(file: &GgufFile, cfg: &ModelConfig) -> Result<Self> {
        let (d, kv, f, v) = (cfg.d_model, cfg.kv_dim(), cfg.ffn, cfg.vocab);
        let matrix = |name: &str, rows: usize, cols: usize| -> Result<QMatrix> {
            let t = file.tensor(name)?;
            if t.dims != [cols, rows] {
                return Err(tensor_err(
                    name,
                    format!("shape {:?}, expected [{cols}, {rows}]", t.dims),
                ));
            }
            QMatrix::from_gguf(name, t.ty, rows, cols, file.tensor_bytes(t))
        };
        let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
            let t = file.tensor(name)?;
            if t.dims != [n] {
                return Err(tensor_err(
                    name,
                    format!("shape {:?}, expected [{n}]", t.dims),
                ));
            }
            let mut out = vec![0.0; n];
            dequantize_row(t.ty, file.tensor_bytes(t), &mut out);
            Ok(out)
        };
        let layers = (0..cfg.layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(LayerWeights {
                    attn_norm: vector(&n("attn_norm"), d)?,
                    wq: matrix(&n("attn_q"), d, d)?,
                    wk: matrix(&n("attn_k"), kv, d)?,
                    wv: matrix(&n("attn_v"), kv, d)?,
                    wo: matrix(&n("attn_output"), d, d)?,
                    ffn_norm: vector(&n("ffn_norm"), d)?,
                    w_gate: matrix(&n("ffn_gate"), f, d)?,
                    w_up: matrix(&n("ffn_up"), f, d)?,
                    w_down: matrix(&n("ffn_down"), d, f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tied_embeddings {
            None
        } else {
            Some(matrix("output.weight", v, d)?)
        };
        Ok(Self {
            embed: matrix("token_embd.weight", v, d)?,
            layers,
            out_norm: vector("output_norm.weight", d)?,
            lm_head,
        })
    }

    pub(crate) fn lm_head(&self) -> &QMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes the kernels read for one decode step (every matrix once, LM head included).
    pub(crate) fn bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .flat_map(LayerWeights::matrices)
            .map(QMatrix::bytes)
            .sum();
        layers + self.lm_head().bytes()
    }
}
