//! The forward pass on Forge's batch-invariant CPU kernels.

use half::f16;

use super::aligned_rows::AlignedRows;
use super::handover::{Handover, alongside};
use super::weights::{LayerWeights, Weights};
use crate::config::ModelConfig;
use crate::kernels::{
    AttnSeq, AttnShape, KvElem, KvValue, Numerics, QMatrix, RopeTable, add_in_place, attention,
    attention_many, narrowed, rms_norm, rope_in_place, silu_mul, widen_into,
};
use crate::trace::TraceSink;

/// Keys and values of every layer for positions `0..len`, as the exact
/// kernels keep them: f16 (see `kernels::kv_elem`).
pub(crate) type KvCache = Cache<f16>;

/// Keys and values of every layer for positions `0..len`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache<T> {
    pub(crate) k: Vec<AlignedRows<T>>,
    pub(crate) v: Vec<AlignedRows<T>>,
    pub(crate) len: usize,
    kv_dim: usize,
}

impl<T: KvElem> Cache<T> {
    pub(crate) fn new(layers: usize, kv_dim: usize) -> Self {
        Self {
            k: vec![AlignedRows::default(); layers],
            v: vec![AlignedRows::default(); layers],
            len: 0,
            kv_dim,
        }
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
    pub(crate) numerics: Numerics,
}

/// One sequence of a batched forward pass: its new rows start at position
/// `first` and its cache is extended in place.
pub(crate) struct Segment<'c> {
    pub(crate) tokens: &'c [u32],
    pub(crate) cache: &'c mut KvCache,
    pub(crate) sink: Option<&'c mut dyn TraceSink>,
}

/// A segment's view of one layer's cache.
struct LayerSlot<'c, T> {
    first: usize,
    n: usize,
    k: &'c mut AlignedRows<T>,
    v: &'c mut AlignedRows<T>,
}

impl CpuForward<'_> {
    /// Forward every segment's tokens at positions `cache.len..` in one pass:
    /// the matrix products run over all rows at once (the kernels give each
    /// row the bits it would have alone); attention runs per segment. Returns
    /// each segment's last-layer rows, before the final norm.
    pub(crate) fn forward(&self, segs: &mut [Segment<'_>]) -> Vec<Vec<f32>> {
        let d = self.cfg.d_model;
        let total: usize = segs.iter().map(|s| s.tokens.len()).sum();
        let mut x = vec![0.0f32; total * d];
        for (row, &t) in x
            .chunks_exact_mut(d)
            .zip(segs.iter().flat_map(|s| s.tokens))
        {
            self.w.embed.row_f32(t as usize, row);
        }
        let kv_dim = self.cfg.kv_dim();
        for (l, lw) in self.w.layers.iter().enumerate() {
            // Layer l's cache slots, and layer l - 1's rows for the sinks,
            // handed over while layer l computes (see `handover`).
            let mut slots: Vec<LayerSlot<'_, f16>> = Vec::with_capacity(segs.len());
            let mut handovers = Vec::new();
            let mut offset = 0;
            for s in segs.iter_mut() {
                let (first, n) = (s.cache.len, s.tokens.len());
                let (done_k, rest_k) = s.cache.k.split_at_mut(l);
                let (done_v, rest_v) = s.cache.v.split_at_mut(l);
                slots.push(LayerSlot {
                    first,
                    n,
                    k: &mut rest_k[0],
                    v: &mut rest_v[0],
                });
                if let (Some(sink), Some(k), Some(v)) =
                    (s.sink.as_deref_mut(), done_k.last(), done_v.last())
                {
                    let rows = offset..offset + n;
                    handovers.push(Handover::new(sink, l - 1, first, rows, kv_dim, (k, v)));
                }
                offset += n;
            }
            self.layer(lw, &mut x, &mut slots, &mut handovers);
        }
        let last = self.w.layers.len() - 1;
        let mut out = Vec::with_capacity(segs.len());
        let mut offset = 0;
        for s in segs.iter_mut() {
            let (first, n) = (s.cache.len, s.tokens.len());
            // The last layer's rows: nothing left to run beside.
            if let Some(sink) = s.sink.as_deref_mut() {
                let cache = (&s.cache.k[last], &s.cache.v[last]);
                Handover::new(sink, last, first, offset..offset + n, kv_dim, cache).run(&x, d);
            }
            out.push(x[offset * d..(offset + n) * d].to_vec());
            s.cache.len += n;
            offset += n;
        }
        out
    }

    /// Layer `lw` alone over `inputs` (rows for positions `0..`), with a
    /// fresh cache: a verifier's re-execution.
    pub(crate) fn replay(&self, lw: &LayerWeights, inputs: &[f32]) -> Vec<f32> {
        match self.numerics {
            Numerics::Int8 => self.replay_with::<f16>(lw, inputs),
            Numerics::F32 => self.replay_with::<f32>(lw, inputs),
        }
    }

    fn replay_with<T: KvElem>(&self, lw: &LayerWeights, inputs: &[f32]) -> Vec<f32> {
        let mut x = inputs.to_vec();
        let (mut k, mut v) = (AlignedRows::<T>::default(), AlignedRows::<T>::default());
        let n = inputs.len() / self.cfg.d_model;
        self.layer(
            lw,
            &mut x,
            &mut [LayerSlot {
                first: 0,
                n,
                k: &mut k,
                v: &mut v,
            }],
            &mut [],
        );
        x
    }

    /// Layer `lw`'s output for the last row of `inputs` alone (positions
    /// `0..n`): keys and values for every row, everything else for the last.
    /// The same operations on the same row values as in [`Self::layer`], so
    /// the same bits.
    pub(crate) fn replay_last(&self, lw: &LayerWeights, inputs: &[f32]) -> Vec<f32> {
        match self.numerics {
            Numerics::Int8 => self.replay_last_with::<f16>(lw, inputs),
            Numerics::F32 => self.replay_last_with::<f32>(lw, inputs),
        }
    }

    fn replay_last_with<T: KvElem>(&self, lw: &LayerWeights, inputs: &[f32]) -> Vec<f32> {
        let cfg = self.cfg;
        let (d, dh, kvdim) = (cfg.d_model, cfg.head_dim, cfg.kv_dim());
        let t = inputs.len() / d - 1;
        let h = rms_norm(inputs, &lw.attn_norm, cfg.rms_eps);
        let mut k = self.mm(&lw.wk, &h);
        let v = self.mm(&lw.wv, &h);
        rope_in_place(&mut k, dh, kvdim, 0, self.rope);
        let mut q = self.mm(&lw.wq, &h[t * d..]);
        rope_in_place(&mut q, dh, d, t, self.rope);
        let shape = AttnShape {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: dh,
        };
        let (k, v) = (narrowed::<T>(&k), narrowed::<T>(&v));
        let a = attention(&q, &k, &v, shape, t);
        let mut x = inputs[t * d..].to_vec();
        add_in_place(&mut x, &self.mm(&lw.wo, &a));
        let h = rms_norm(&x, &lw.ffn_norm, cfg.rms_eps);
        let [mut g, up] = QMatrix::matmul_each_in(self.numerics, [&lw.w_gate, &lw.w_up], &h);
        silu_mul(&mut g, &up);
        add_in_place(&mut x, &self.mm(&lw.w_down, &g));
        x
    }

    /// Layer `lw` at position `t` alone, from its input row and the keys and
    /// values of positions `0..t` (`t` rows of `[k | v]`, as
    /// [`TraceSink::record_kv`] hands them): returns position `t`'s own
    /// `[k | v]` row and its output row. It runs [`Self::layer`] on one row
    /// whose cache holds the prefix, so the same operations give the same
    /// bits, at the cost of one row plus attention. The cache is made at
    /// its final size: grown row by row, a long prefix was zeroed and
    /// copied several times over.
    ///
    /// The prefix enters the cache as the forward pass puts rows there:
    /// rounded to the cache's element type. An honest trace's rows are
    /// already rounded (they are what attention read), so this changes
    /// nothing in them; a row whose values are not (which no honest run
    /// commits) is checked, as itself, by the cell at its own position,
    /// whose replay gives a rounded row that cannot equal it.
    pub(crate) fn replay_cell<V: KvValue, R: AsRef<[V]>>(
        &self,
        lw: &LayerWeights,
        input: &[f32],
        kv_prefix: &[R],
    ) -> (Vec<f32>, Vec<f32>) {
        match self.numerics {
            Numerics::Int8 => self.replay_cell_with::<f16, V, R>(lw, input, kv_prefix),
            Numerics::F32 => self.replay_cell_with::<f32, V, R>(lw, input, kv_prefix),
        }
    }

    fn replay_cell_with<T: KvElem, V: KvValue, R: AsRef<[V]>>(
        &self,
        lw: &LayerWeights,
        input: &[f32],
        kv_prefix: &[R],
    ) -> (Vec<f32>, Vec<f32>) {
        let kvdim = self.cfg.kv_dim();
        let t = kv_prefix.len();
        let mut k = AlignedRows::<T>::with_capacity((t + 1) * kvdim);
        let mut v = AlignedRows::<T>::with_capacity((t + 1) * kvdim);
        for row in kv_prefix {
            let (kr, vr) = row.as_ref().split_at(kvdim);
            k.extend_with(kvdim, |dst| T::from_committed(kr, dst));
            v.extend_with(kvdim, |dst| T::from_committed(vr, dst));
        }
        let mut x = input.to_vec();
        self.layer(
            lw,
            &mut x,
            &mut [LayerSlot {
                first: t,
                n: 1,
                k: &mut k,
                v: &mut v,
            }],
            &mut [],
        );
        let mut kv = Vec::with_capacity(2 * kvdim);
        widen_into(&k.as_slice()[t * kvdim..], &mut kv);
        widen_into(&v.as_slice()[t * kvdim..], &mut kv);
        (kv, x)
    }

    /// One transformer block over the rows `x` of all slots, in slot order,
    /// in place, extending the slots' caches; `handovers` (the previous
    /// layer's rows for trace sinks) run beside its query, key and value
    /// products, before `x` changes.
    fn layer<T: KvElem>(
        &self,
        lw: &LayerWeights,
        x: &mut [f32],
        slots: &mut [LayerSlot<'_, T>],
        handovers: &mut [Handover<'_>],
    ) {
        let cfg = self.cfg;
        let (dh, qdim, kvdim) = (cfg.head_dim, cfg.d_model, cfg.kv_dim());
        let h = rms_norm(x, &lw.attn_norm, cfg.rms_eps);
        let [mut q, mut kn, vn] = alongside(handovers, x, qdim, || {
            QMatrix::matmul_each_in(self.numerics, [&lw.wq, &lw.wk, &lw.wv], &h)
        });
        let shape = AttnShape {
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            head_dim: dh,
        };
        let mut row = 0;
        for slot in slots.iter_mut() {
            let (qs, ks) = (
                row * qdim..(row + slot.n) * qdim,
                row * kvdim..(row + slot.n) * kvdim,
            );
            rope_in_place(&mut q[qs], dh, qdim, slot.first, self.rope);
            rope_in_place(&mut kn[ks.clone()], dh, kvdim, slot.first, self.rope);
            slot.k.truncate(slot.first * kvdim);
            slot.v.truncate(slot.first * kvdim);
            let (kr, vr) = (&kn[ks.clone()], &vn[ks]);
            slot.k.extend_with(kr.len(), |dst| T::narrow_into(kr, dst));
            slot.v.extend_with(vr.len(), |dst| T::narrow_into(vr, dst));
            row += slot.n;
        }
        let mut row = 0;
        let seqs: Vec<AttnSeq<'_, T>> = slots
            .iter()
            .map(|slot| {
                let seq = AttnSeq {
                    q: &q[row * qdim..(row + slot.n) * qdim],
                    k: slot.k.as_slice(),
                    v: slot.v.as_slice(),
                    first_pos: slot.first,
                };
                row += slot.n;
                seq
            })
            .collect();
        let a = attention_many(&seqs, shape);
        add_in_place(x, &self.mm(&lw.wo, &a));
        let h = rms_norm(x, &lw.ffn_norm, cfg.rms_eps);
        let [mut g, up] = QMatrix::matmul_each_in(self.numerics, [&lw.w_gate, &lw.w_up], &h);
        silu_mul(&mut g, &up);
        add_in_place(x, &self.mm(&lw.w_down, &g));
    }

    /// Logits of one last-layer row: final norm, then the LM head.
    pub(crate) fn logits(&self, row: &[f32]) -> Vec<f32> {
        let h = rms_norm(row, &self.w.out_norm, self.cfg.rms_eps);
        self.mm(self.w.lm_head(), &h)
    }

    /// `m · x` in this pass's arithmetic.
    fn mm(&self, m: &QMatrix, x: &[f32]) -> Vec<f32> {
        m.matmul_in(self.numerics, x)
    }
}
