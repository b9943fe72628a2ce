//! The same transformer written over burn tensors, for any burn device
//! (flex on the CPU; wgpu and cuda with their features).
//!
//! burn's kernels are not batch-invariant (their reduction order depends on
//! the batch shape), so receipts from this path are checked with a
//! tolerance, not bit for bit, against the CPU's float reference
//! ([`crate::Numerics::F32`]): the same f32 activations and dequantised
//! weights, reduced in one fixed order.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::weights::Weights;
use crate::config::ModelConfig;
use crate::trace::TraceSink;

struct BurnLayer {
    attn_norm: Tensor<2>,
    wq: Tensor<2>,
    wk: Tensor<2>,
    wv: Tensor<2>,
    wo: Tensor<2>,
    ffn_norm: Tensor<2>,
    w_gate: Tensor<2>,
    w_up: Tensor<2>,
    w_down: Tensor<2>,
}

/// Weights as dense f32 tensors on one device, matrices stored transposed
/// (`[in, out]`) so a projection is `x.matmul(w)`.
pub(crate) struct BurnModel {
    cfg: ModelConfig,
    device: Device,
    embed: Tensor<2>,
    lm_head: Tensor<2>,
    out_norm: Tensor<2>,
    layers: Vec<BurnLayer>,
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// Per-layer K and V tensors of `[positions, kv_dim]`.
#[derive(Clone, Default)]
pub(crate) struct BurnCache {
    k: Vec<Option<Tensor<2>>>,
    v: Vec<Option<Tensor<2>>>,
    pub(crate) len: usize,
}

impl std::fmt::Debug for BurnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnCache")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl BurnCache {
    pub(crate) fn new(layers: usize) -> Self {
        Self {
            k: vec![None; layers],
            v: vec![None; layers],
            len: 0,
        }
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = if len == 0 {
                None
            } else {
                t.take().map(|t| t.narrow(0, 0, len))
            };
        }
        self.len = len;
    }
}

fn matrix(device: &Device, m: &crate::kernels::QMatrix) -> Tensor<2> {
    let t = Tensor::<2>::from_data(TensorData::new(m.to_f32(), [m.rows(), m.cols()]), device);
    t.transpose()
}

fn row(device: &Device, v: &[f32]) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), device)
}

impl BurnModel {
    pub(crate) fn new(cfg: &ModelConfig, w: &Weights, device: Device, positions: usize) -> Self {
        let layers = w
            .layers
            .iter()
            .map(|l| BurnLayer {
                attn_norm: row(&device, &l.attn_norm),
                wq: matrix(&device, &l.wq),
                wk: matrix(&device, &l.wk),
                wv: matrix(&device, &l.wv),
                wo: matrix(&device, &l.wo),
                ffn_norm: row(&device, &l.ffn_norm),
                w_gate: matrix(&device, &l.w_gate),
                w_up: matrix(&device, &l.w_up),
                w_down: matrix(&device, &l.w_down),
            })
            .collect();
        let half = cfg.head_dim / 2;
        let table = crate::kernels::RopeTable::new(cfg.head_dim, cfg.rope_base, positions);
        let (mut cos, mut sin) = (
            Vec::with_capacity(positions * half),
            Vec::with_capacity(positions * half),
        );
        for p in 0..positions {
            let (c, s) = table.at(p);
            cos.extend_from_slice(c);
            sin.extend_from_slice(s);
        }
        let embed = Tensor::<2>::from_data(
            TensorData::new(w.embed.to_f32(), [cfg.vocab, cfg.d_model]),
            &device,
        );
        Self {
            cfg: cfg.clone(),
            lm_head: matrix(&device, w.lm_head()),
            embed,
            out_norm: row(&device, &w.out_norm),
            layers,
            cos: Tensor::from_data(TensorData::new(cos, [positions, half]), &device),
            sin: Tensor::from_data(TensorData::new(sin, [positions, half]), &device),
            device,
        }
    }

    fn rms(&self, x: Tensor<2>, w: &Tensor<2>) -> Tensor<2> {
        let ms = x.clone().powi_scalar(2).mean_dim(1);
        x * (ms + self.cfg.rms_eps).sqrt().recip() * w.clone()
    }

    fn rope(&self, t: Tensor<2>, first: usize, heads: usize) -> Tensor<2> {
        let n = t.dims()[0];
        let half = self.cfg.head_dim / 2;
        let t = t.reshape([n, heads, half, 2]);
        let a = t.clone().narrow(3, 0, 1);
        let b = t.narrow(3, 1, 1);
        let cos = self
            .cos
            .clone()
            .narrow(0, first, n)
            .reshape([n, 1, half, 1]);
        let sin = self
            .sin
            .clone()
            .narrow(0, first, n)
            .reshape([n, 1, half, 1]);
        let ra = a.clone() * cos.clone() - b.clone() * sin.clone();
        let rb = a * sin + b * cos;
        Tensor::cat(vec![ra, rb], 3).reshape([n, heads * half * 2])
    }

    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        cache: &mut BurnCache,
        mut sink: Option<&mut dyn TraceSink>,
    ) -> Vec<f32> {
        let cfg = &self.cfg;
        let (n, first) = (tokens.len(), cache.len);
        let (h, hkv, dh) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &self.device);
        let mut x = self.embed.clone().select(0, ids);
        let total = first + n;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                (0..total).map(move |j| {
                    if j <= first + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, total]), &self.device)
            .reshape([1, n, total]);
        let scale = 1.0 / (dh as f32).sqrt();
        for (l, lw) in self.layers.iter().enumerate() {
            let hx = self.rms(x.clone(), &lw.attn_norm);
            let q = self.rope(hx.clone().matmul(lw.wq.clone()), first, h);
            let k = self.rope(hx.clone().matmul(lw.wk.clone()), first, hkv);
            let v = hx.matmul(lw.wv.clone());
            if let Some(s) = sink.as_deref_mut() {
                let kv = Tensor::cat(vec![k.clone(), v.clone()], 1);
                s.record_kv(l, first, 2 * hkv * dh, &to_vec(kv));
            }
            let k = match cache.k[l].take() {
                Some(old) => Tensor::cat(vec![old, k], 0),
                None => k,
            };
            let v = match cache.v[l].take() {
                Some(old) => Tensor::cat(vec![old, v], 0),
                None => v,
            };
            cache.k[l] = Some(k.clone());
            cache.v[l] = Some(v.clone());
            let group = |t: Tensor<2>| {
                t.reshape([total, hkv, dh])
                    .swap_dims(0, 1)
                    .unsqueeze_dim::<4>(1)
                    .expand([hkv, h / hkv, total, dh])
                    .reshape([h, total, dh])
            };
            let qh = q.reshape([n, h, dh]).swap_dims(0, 1);
            let scores = qh.matmul(group(k).swap_dims(1, 2)) * scale + mask.clone();
            let o = softmax(scores, 2)
                .matmul(group(v))
                .swap_dims(0, 1)
                .reshape([n, h * dh]);
            x = x + o.matmul(lw.wo.clone());
            let hx = self.rms(x.clone(), &lw.ffn_norm);
            let g = silu(hx.clone().matmul(lw.w_gate.clone())) * hx.matmul(lw.w_up.clone());
            x = x + g.matmul(lw.w_down.clone());
            if let Some(s) = sink.as_deref_mut() {
                s.record(l, first, &to_vec(x.clone()));
            }
        }
        cache.len = total;
        to_vec(x)
    }

    pub(crate) fn logits(&self, last: &[f32]) -> Vec<f32> {
        let x = row(&self.device, last);
        to_vec(self.rms(x, &self.out_norm).matmul(self.lm_head.clone()))
    }
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap_or_default()
}
