//! The trace hook: what the engine hands to a commitment scheme.

/// Element type of traced rows. The CPU backend computes in f32, so rows are
/// f32 little-endian.
pub const TRACE_DTYPE: &str = "f32";

/// Receives the residual stream after every layer at every forwarded position.
///
/// For layer `l` and position `t` the row is exactly what layer `l + 1` (or,
/// for the last layer, the final norm) consumed. Calls for one forward pass
/// come layer by layer; a prefill hands a whole block of positions at once.
/// With no sink attached the engine does no extra work.
pub trait TraceSink: Send {
    /// `rows` holds `rows.len() / d_model` rows for positions
    /// `first_pos..`, the output of `layer`.
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]);
}

impl<T: TraceSink + ?Sized> TraceSink for &mut T {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        (**self).record(layer, first_pos, rows);
    }
}

/// A sink that keeps every row in memory, keyed by (layer, position).
#[derive(Clone, Debug, Default)]
pub struct TraceRecorder {
    d_model: usize,
    rows: std::collections::BTreeMap<(usize, usize), Vec<f32>>,
}

impl TraceRecorder {
    /// A recorder for rows of `d_model` floats.
    pub fn new(d_model: usize) -> Self {
        Self { d_model, rows: Default::default() }
    }

    /// The row of `layer` at `pos`, if it was recorded.
    pub fn row(&self, layer: usize, pos: usize) -> Option<&[f32]> {
        self.rows.get(&(layer, pos)).map(Vec::as_slice)
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
}

impl TraceSink for TraceRecorder {
    fn record(&mut self, layer: usize, first_pos: usize, rows: &[f32]) {
        for (i, r) in rows.chunks_exact(self.d_model).enumerate() {
            self.rows.insert((layer, first_pos + i), r.to_vec());
        }
    }
}

/// Reborrow an optional sink for a shorter lifetime (`as_deref_mut` cannot
/// shorten the trait object's own lifetime, a coercion can).
pub(crate) fn reborrow<'s>(sink: &'s mut Option<&mut dyn TraceSink>) -> Option<&'s mut dyn TraceSink> {
    match sink {
        Some(s) => Some(&mut **s),
        None => None,
    }
}
