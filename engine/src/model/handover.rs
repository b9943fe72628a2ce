//! Handing a layer's rows to a trace sink while the next layer computes.
//!
//! A sink copies every row it is handed (a commitment keeps them for
//! openings), and on a decode step the destinations are cold: the weights
//! streamed since the last step pushed them out of the caches. Called
//! between layers, that copy ran on the engine thread with the pool's other
//! threads idle. Layer `l`'s rows do not change while layer `l + 1` computes
//! its query, key and value products (they change at its first residual
//! add), so the hand-over runs beside those products instead, as the other
//! half of a `rayon::join`: an idle thread takes it and then joins the
//! products. The sink sees the same calls in the same order.

use std::ops::Range;

use half::f16;

use super::aligned_rows::AlignedRows;
use crate::trace::TraceSink;

/// One segment's rows of one layer, waiting to be handed to its sink.
pub(super) struct Handover<'a> {
    pub(super) sink: &'a mut dyn TraceSink,
    pub(super) layer: usize,
    pub(super) first: usize,
    /// The segment's rows within the pass's residual stream.
    pub(super) rows: Range<usize>,
    pub(super) kv_dim: usize,
    pub(super) keys: &'a [f16],
    pub(super) values: &'a [f16],
}

impl<'a> Handover<'a> {
    /// Segment rows `rows` (positions `first..`) of `layer`, with their
    /// keys and values in the layer's cache.
    pub(super) fn new(
        sink: &'a mut dyn TraceSink,
        layer: usize,
        first: usize,
        rows: Range<usize>,
        kv_dim: usize,
        cache: (&'a AlignedRows<f16>, &'a AlignedRows<f16>),
    ) -> Self {
        Self {
            sink,
            layer,
            first,
            rows,
            kv_dim,
            keys: &cache.0.as_slice()[first * kv_dim..],
            values: &cache.1.as_slice()[first * kv_dim..],
        }
    }

    /// The calls the trace contract asks for: keys and values, then the
    /// output rows, taken from `x` (rows of `d` floats).
    pub(super) fn run(&mut self, x: &[f32], d: usize) {
        let (l, first) = (self.layer, self.first);
        self.sink
            .record_keys_values(l, first, self.kv_dim, self.keys, self.values);
        self.sink
            .record(l, first, &x[self.rows.start * d..self.rows.end * d]);
    }
}

/// `work()`, with `handovers` run beside it (on another thread when one is
/// idle) when there are any; `x` is what they read.
pub(super) fn alongside<R: Send>(
    handovers: &mut [Handover<'_>],
    x: &[f32],
    d: usize,
    work: impl FnOnce() -> R + Send,
) -> R {
    if handovers.is_empty() {
        return work();
    }
    rayon::join(work, || {
        for h in handovers.iter_mut() {
            h.run(x, d);
        }
    })
    .0
}
