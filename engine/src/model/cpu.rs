//! The forward pass on Forge's batch-invariant CPU kernels.

use super::weights::{LayerWeights, Weights};
use crate::config::ModelConfig;
use crate::kernels::{AttnShape, RopeTable, add_in_place, attention, rms_norm, rope_in_place, silu_mul};
use crate::trace::TraceSink;

/// Keys and values of every layer for positions `0..len`.
#[derive(Clone, Debug, Default)]
pub(crate) struct KvCache {
    pub(crate) k: Vec<Vec<f32>>,
    pub(crate) v: Vec<Vec<f32>>,
    pub(crate) len: usize,
    kv_dim: usize,
}

impl KvCache {
    pub(crate) fn new(layers: usize, kv_dim: usize) -> Self {
        Self { k: vec![Vec::new(); layers], v: vec![Vec::new(); layers], len: 0, kv_dim }
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        for rows in self.k.iter_mut().chain(self.v.iter_mut()) {
            rows.truncate(self.len * self.kv_dim);
        }
    }
}

pub(crate) struct CpuForward<'a> {
    pub(crate) cfg: &'a ModelConfig,
    pub(crate) w: &'a Weights,
    pub(crate) rope: &'a RopeTable,
}

impl CpuForward<'_> {
    /// Forward `tokens` at positions `cache.len..`; returns the last layer's
    /// rows (`tokens.len()` rows of d_model), before the final norm.
    pub(crate) fn forward(&self, tokens: &[u32], cache: &mut KvCache, mut sink: Option<&mut dyn TraceSink>) -> Vec<f32> {
        let d = self.cfg.d_model;
        let first = cache.len;
        let mut x = vec![0.0f32; tokens.len() * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            self.w.embed.row_f32(t as usize, row);
        }
        for (l, lw) in self.w.layers.iter().enumerate() {
            self.layer(lw, &mut x, &mut cache.k[l], &mut cache.v[l], first);
            if let Some(s) = sink.as_deref_mut() {
                s.record(l, first, &x);
            }
        }
        cache.len += tokens.len();
        x
    }

    /// One transformer block over rows `x` at positions `first..`, appending
    /// to this layer's cache `k`/`v`.
    pub(crate) fn layer(&self, lw: &LayerWeights, x: &mut [f32], k: &mut Vec<f32>, v: &mut Vec<f32>, first: usize) {
        let cfg = self.cfg;
        let (dh, qdim, kvdim) = (cfg.head_dim, cfg.d_model, cfg.kv_dim());
        let h = rms_norm(x, &lw.attn_norm, cfg.rms_eps);
        let mut q = lw.wq.matmul(&h);
        let mut kn = lw.wk.matmul(&h);
        let vn = lw.wv.matmul(&h);
        rope_in_place(&mut q, dh, qdim, first, self.rope);
        rope_in_place(&mut kn, dh, kvdim, first, self.rope);
        k.truncate(first * kvdim);
        v.truncate(first * kvdim);
        k.extend_from_slice(&kn);
        v.extend_from_slice(&vn);
        let shape = AttnShape { heads: cfg.heads, kv_heads: cfg.kv_heads, head_dim: dh };
        let a = attention(&q, k, v, shape, first);
        add_in_place(x, &lw.wo.matmul(&a));
        let h = rms_norm(x, &lw.ffn_norm, cfg.rms_eps);
        let mut g = lw.w_gate.matmul(&h);
        silu_mul(&mut g, &lw.w_up.matmul(&h));
        add_in_place(x, &lw.w_down.matmul(&g));
    }

    /// Logits of one last-layer row: final norm, then the LM head.
    pub(crate) fn logits(&self, row: &[f32]) -> Vec<f32> {
        let h = rms_norm(row, &self.w.out_norm, self.cfg.rms_eps);
        self.w.lm_head().matmul(&h)
    }
}
