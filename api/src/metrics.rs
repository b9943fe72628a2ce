//! A small Prometheus registry: counters, gauges and histograms on atomics,
//! rendered in the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A histogram with fixed upper bounds (observations are kept as
/// micro-units so sums stay integers).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

const LATENCY: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const ROWS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&self.buckets) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Prompt tokens of finished generations.
    pub prompt_tokens: Counter,
    /// Generated tokens.
    pub completion_tokens: Counter,
    /// Time from submission to the first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of one sequence.
    pub itl: Histogram,
    /// Compute served, in milli-CU (receipted work).
    pub milli_cu: Counter,
    /// Receipts signed and recorded.
    pub receipts: Counter,
    /// Requests waiting for a slot.
    pub queue_depth: Gauge,
    /// Sequences being generated.
    pub active: Gauge,
    /// The price quoted to the latest request, in thousandths of a CU per CU.
    pub price: Gauge,
    /// Requests refused because the queue was full.
    pub rejected_full: Counter,
    /// Batched engine steps.
    pub engine_steps: Counter,
    /// Sequences per engine step.
    pub batch_rows: Histogram,
    /// Wall time of one engine step.
    pub step_seconds: Histogram,
    /// Commitments kept for auditors' challenges.
    pub audit_commitments: Gauge,
    /// Bytes of committed rows those commitments hold.
    pub audit_bytes: Gauge,
    /// The bound on those bytes (`--audit-retain-mib`): past it the oldest
    /// commitments are dropped and their memory is reused.
    pub audit_limit_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            prompt_tokens: Counter::default(),
            completion_tokens: Counter::default(),
            ttft: Histogram::new(LATENCY),
            itl: Histogram::new(LATENCY),
            milli_cu: Counter::default(),
            receipts: Counter::default(),
            queue_depth: Gauge::default(),
            active: Gauge::default(),
            price: Gauge::default(),
            rejected_full: Counter::default(),
            engine_steps: Counter::default(),
            batch_rows: Histogram::new(ROWS),
            step_seconds: Histogram::new(LATENCY),
            audit_commitments: Gauge::default(),
            audit_bytes: Gauge::default(),
            audit_limit_bytes: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn request(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_string(), status)).or_default() += 1;
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP forge_http_requests_total HTTP requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE forge_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((route, status), n) in m.iter() {
                let route = route.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "forge_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        counter(
            &mut out,
            "forge_prompt_tokens_total",
            "Prompt tokens of finished generations.",
            self.prompt_tokens.get(),
        );
        counter(
            &mut out,
            "forge_completion_tokens_total",
            "Generated tokens.",
            self.completion_tokens.get(),
        );
        counter(
            &mut out,
            "forge_cu_served_milli_total",
            "Compute served and receipted, in milli-CU (1 CU = 10^9 FLOPs).",
            self.milli_cu.get(),
        );
        counter(
            &mut out,
            "forge_receipts_issued_total",
            "Receipts signed and recorded in the ledger.",
            self.receipts.get(),
        );
        counter(
            &mut out,
            "forge_rejected_queue_full_total",
            "Requests refused with 429 because the queue was full.",
            self.rejected_full.get(),
        );
        counter(
            &mut out,
            "forge_engine_steps_total",
            "Batched engine steps.",
            self.engine_steps.get(),
        );
        gauge(
            &mut out,
            "forge_audit_commitments_retained",
            "Commitments kept so auditors can challenge answered requests.",
            self.audit_commitments.get(),
        );
        gauge(
            &mut out,
            "forge_audit_retained_bytes",
            "Bytes of committed rows those commitments hold.",
            self.audit_bytes.get(),
        );
        gauge(
            &mut out,
            "forge_audit_retain_limit_bytes",
            "The bound on those bytes; past it the oldest commitments are dropped.",
            self.audit_limit_bytes.get(),
        );
        gauge(
            &mut out,
            "forge_queue_depth",
            "Requests waiting for a generation slot.",
            self.queue_depth.get(),
        );
        gauge(
            &mut out,
            "forge_active_sequences",
            "Sequences being generated.",
            self.active.get(),
        );
        gauge(
            &mut out,
            "forge_price_milli_per_cu",
            "Price quoted to the latest request (the base price before any), in thousandths of a CU charged per CU; it rises with load.",
            self.price.get(),
        );
        self.ttft.render(
            &mut out,
            "forge_time_to_first_token_seconds",
            "Time from submission to the first generated token.",
        );
        self.itl.render(
            &mut out,
            "forge_inter_token_latency_seconds",
            "Time between consecutive tokens of one sequence.",
        );
        self.batch_rows.render(
            &mut out,
            "forge_engine_batch_sequences",
            "Sequences forwarded together per engine step.",
        );
        self.step_seconds.render(
            &mut out,
            "forge_engine_step_seconds",
            "Wall time of one batched engine step.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request("/v1/models", 200);
        m.ttft.observe(0.02);
        m.queue_depth.inc();
        let t = m.render();
        assert!(t.contains("forge_http_requests_total{route=\"/v1/models\",status=\"200\"} 1"));
        assert!(t.contains("forge_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"));
        assert!(t.contains("forge_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(t.contains("forge_queue_depth 1"));
    }
}
