//! The same transformer written over burn tensors, for any burn device
//! (flex on the CPU; wgpu and cuda with their features).
//!
//! burn's kernels are not batch-invariant (their reduction order depends on
//! the batch shape), so receipts from this path are checked against the
//! exact CPU path with a tolerance, not bit for bit. A quantised matrix's
//! input is first rounded to its per-block 8-bit grid (the CPU kernels'
//! integer activations), so the two paths differ by float rounding only.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::weights::Weights;
use crate::config::ModelConfig;
use crate::trace::TraceSink;

struct BurnLayer {
    attn_norm: Tensor<2>,
    wq: Proj,
    wk: Proj,
    wv: Proj,
    wo: Proj,
    ffn_norm: Tensor<2>,
    w_gate: Proj,
    w_up: Proj,
    w_down: Proj,
}

/// A projection's weights (`[in, out]`) and whether the CPU kernels run it
/// on 8-bit activations.
struct Proj {
    w: Tensor<2>,
    int8: bool,
}

impl Proj {
    fn new(device: &Device, m: &crate::kernels::QMatrix) -> Self {
        Self {
            w: matrix(device, m),
            int8: m.int8_activations(),
        }
    }

    /// `x · w`, on the 8-bit grid of the CPU kernels when they use one.
    fn apply(&self, x: Tensor<2>) -> Tensor<2> {
        let x = if self.int8 { int8_grid(x) } else { x };
        x.matmul(self.w.clone())
    }
}

/// Each 32-element block of each row rounded as the CPU kernels quantise
/// it: `q = round(x · (127 / max|x|))`, value `q · (max|x| / 127)`; blocks
/// whose maximum is below 2^-100 become zero.
fn int8_grid(x: Tensor<2>) -> Tensor<2> {
    let [n, cols] = x.dims();
    let blocks = x.reshape([n, cols / crate::quant::QK, crate::quant::QK]);
    let amax = blocks.clone().abs().max_dim(2);
    let tiny = amax.clone().lower_elem(2f32.powi(-100));
    let amax = amax.mask_fill(tiny.clone(), 1.0);
    let inv = amax.ones_like().mul_scalar(127.0) / amax.clone();
    let dx = (amax / 127.0).mask_fill(tiny, 0.0);
    (blocks * inv).round().mul(dx).reshape([n, cols])
}

/// Weights as dense f32 tensors on one device, matrices stored transposed
/// (`[in, out]`) so a projection is `x.matmul(w)`.
pub(crate) struct BurnModel {
    cfg: ModelConfig,
    device: Device,
    embed: Tensor<2>,
    lm_head: Proj,
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
                wq: Proj::new(&device, &l.wq),
                wk: Proj::new(&device, &l.wk),
                wv: Proj::new(&device, &l.wv),
                wo: Proj::new(&device, &l.wo),
                ffn_norm: row(&device, &l.ffn_norm),
                w_gate: Proj::new(&device, &l.w_gate),
                w_up: Proj::new(&device, &l.w_up),
                w_down: Proj::new(&device, &l.w_down),
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
            lm_head: Proj::new(&device, w.lm_head()),
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
            let q = self.rope(lw.wq.apply(hx.clone()), first, h);
            let k = self.rope(lw.wk.apply(hx.clone()), first, hkv);
            let v = lw.wv.apply(hx);
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
            x = x + lw.wo.apply(o);
            let hx = self.rms(x.clone(), &lw.ffn_norm);
            let g = silu(lw.w_gate.apply(hx.clone())) * lw.w_up.apply(hx);
            x = x + lw.w_down.apply(g);
            if let Some(s) = sink.as_deref_mut() {
                s.record(l, first, &to_vec(x.clone()));
            }
        }
        cache.len = total;
        to_vec(x)
    }

    pub(crate) fn logits(&self, last: &[f32]) -> Vec<f32> {
        let x = row(&self.device, last);
        to_vec(self.lm_head.apply(self.rms(x, &self.out_norm)))
    }
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap_or_default()
}
