//! The trace hook: what the engine hands to a commitment scheme.

use half::f16;

use crate::kernels::widen_into;

/// Receives the residual stream after every layer at every forwarded
/// position, and the keys and values each layer's attention used.
///
/// For layer `l` and position `t` the row is exactly what layer `l + 1` (or,
/// for the last layer, the final norm) consumed. Calls for one forward pass
/// come layer by layer, `record_kv` before `record` for each layer; a
/// prefill hands a whole block of positions at once. The CPU engine makes
/// layer `l`'s calls while layer `l + 1` computes, from whichever thread of
/// its pool is free (hence `Send`), and returns from the pass only after
/// the last layer's. With no sink attached the engine does no extra work.
pub trait TraceSink: Send {
    /// `rows` holds `rows.len() / d_model` rows for positions
    /// `first_pos..`, the output of `layer`.
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]);

    /// `rows` holds one row of `width = 2 * kv_dim` floats per position
    /// `first_pos..`: the key (after RoPE) then the value that `layer`
    /// computed there, exactly
    /// the values its attention read from the cache. A verifier that trusts
    /// committed keys and values re-executes a layer at one position without
    /// recomputing them for the whole prefix. Sinks that only want the
    /// residual stream ignore it (the default).
    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        let _ = (layer, first_pos, width, rows);
    }

    /// [`TraceSink::record_kv`] with the keys and the values in two arrays
    /// of `kv_dim`-wide rows, as the CPU engine's cache holds them (f16,
    /// which widens to f32 exactly): the rows are `[keys[i] | values[i]]`
    /// widened. The default builds them and calls `record_kv`; a sink that
    /// copies rows anyway takes them from the two arrays and saves the
    /// engine a buffer per layer and step.
    fn record_keys_values(
        &mut self,
        layer: usize,
        first_pos: usize,
        kv_dim: usize,
        keys: &[f16],
        values: &[f16],
    ) {
        let mut rows = Vec::with_capacity(keys.len() + values.len());
        push_kv_rows(keys, values, kv_dim, &mut rows);
        self.record_kv(layer, first_pos, 2 * kv_dim, &rows);
    }
}

impl<T: TraceSink + ?Sized> TraceSink for &mut T {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        (**self).record(layer, first_pos, rows);
    }

    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        (**self).record_kv(layer, first_pos, width, rows);
    }

    fn record_keys_values(
        &mut self,
        layer: usize,
        first_pos: usize,
        kv_dim: usize,
        keys: &[f16],
        values: &[f16],
    ) {
        (**self).record_keys_values(layer, first_pos, kv_dim, keys, values);
    }
}

/// Appends the key/value rows `[keys[i] | values[i]]` of two arrays of
/// `kv_dim`-wide rows to `out`, widened to f32: the one definition of the
/// layout that [`TraceSink::record_kv`] receives.
pub fn push_kv_rows(keys: &[f16], values: &[f16], kv_dim: usize, out: &mut Vec<f32>) {
    for (k, v) in keys.chunks(kv_dim.max(1)).zip(values.chunks(kv_dim.max(1))) {
        widen_into(k, out);
        widen_into(v, out);
    }
}

/// A sink that keeps every row in memory, keyed by (layer, position).
#[derive(Clone, Debug, Default)]
pub struct TraceRecorder {
    d_model: usize,
    rows: std::collections::BTreeMap<(usize, usize), Vec<f32>>,
    kv: std::collections::BTreeMap<(usize, usize), Vec<f32>>,
}

impl TraceRecorder {
    /// A recorder for rows of `d_model` floats.
    pub fn new(d_model: usize) -> Self {
        Self {
            d_model,
            rows: Default::default(),
            kv: Default::default(),
        }
    }

    /// The row of `layer` at `pos`, if it was recorded.
    pub fn row(&self, layer: usize, pos: usize) -> Option<&[f32]> {
        self.rows.get(&(layer, pos)).map(Vec::as_slice)
    }

    /// The key-and-value row of `layer` at `pos`, if it was recorded.
    pub fn kv_row(&self, layer: usize, pos: usize) -> Option<&[f32]> {
        self.kv.get(&(layer, pos)).map(Vec::as_slice)
    }

    /// Number of rows recorded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All rows, ordered layer-major (all positions of layer 0, then layer 1, ...).
    pub fn rows(&self) -> impl Iterator<Item = ((usize, usize), &[f32])> {
        self.rows.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// Every key-and-value row, ordered by (layer, position).
    pub fn kv_rows(&self) -> impl Iterator<Item = ((usize, usize), &[f32])> {
        self.kv.iter().map(|(k, v)| (*k, v.as_slice()))
    }
}

impl TraceSink for TraceRecorder {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        for (i, r) in rows.chunks_exact(self.d_model).enumerate() {
            self.rows.insert((layer, first_pos + i), r.to_vec());
        }
    }

    fn record_kv(&mut self, layer: usize, first_pos: usize, width: usize, rows: &[f32]) {
        for (i, r) in rows.chunks_exact(width.max(1)).enumerate() {
            self.kv.insert((layer, first_pos + i), r.to_vec());
        }
    }
}

/// Reborrow an optional sink for a shorter lifetime (`as_deref_mut` cannot
/// shorten the trait object's own lifetime, a coercion can).
pub(crate) fn reborrow<'s>(
    sink: &'s mut Option<&mut dyn TraceSink>,
) -> Option<&'s mut dyn TraceSink> {
    match sink {
        Some(s) => Some(&mut **s),
        None => None,
    }
}
