//! Forge's engine counters, read from its Prometheus `/metrics` before and
//! after each level: how many batched steps ran, how many sequences each
//! forwarded, and how long they took. They tell whether the engine really
//! batched the concurrent streams and how busy its thread was. Also the
//! state of its audit store ([`AuditStore`]), which the benchmark fills
//! before measuring.

use serde::Serialize;

/// Cumulative counters (or, from [`EngineCounters::since`], their change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct EngineCounters {
    /// `forge_engine_steps_total`.
    pub steps: f64,
    /// `forge_engine_batch_sequences_sum`: sequences forwarded, over all steps.
    pub sequences: f64,
    /// `forge_engine_step_seconds_sum`: time inside batched steps.
    pub step_secs: f64,
    /// `forge_completion_tokens_total`.
    pub completion_tokens: f64,
    /// `forge_receipts_issued_total`.
    pub receipts: f64,
}

impl EngineCounters {
    /// Read the counters from Prometheus text; absent ones are 0.
    pub fn parse(text: &str) -> Self {
        let mut c = Self::default();
        for (name, v) in samples(text) {
            match name {
                "forge_engine_steps_total" => c.steps = v,
                "forge_engine_batch_sequences_sum" => c.sequences = v,
                "forge_engine_step_seconds_sum" => c.step_secs = v,
                "forge_completion_tokens_total" => c.completion_tokens = v,
                "forge_receipts_issued_total" => c.receipts = v,
                _ => {}
            }
        }
        c
    }

    /// The change from `before` to `self`.
    pub fn since(&self, before: &Self) -> Self {
        Self {
            steps: self.steps - before.steps,
            sequences: self.sequences - before.sequences,
            step_secs: self.step_secs - before.step_secs,
            completion_tokens: self.completion_tokens - before.completion_tokens,
            receipts: self.receipts - before.receipts,
        }
    }

    /// The sum of two changes.
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            steps: self.steps + o.steps,
            sequences: self.sequences + o.sequences,
            step_secs: self.step_secs + o.step_secs,
            completion_tokens: self.completion_tokens + o.completion_tokens,
            receipts: self.receipts + o.receipts,
        }
    }

    /// Sequences forwarded per step, on average.
    pub fn mean_batch(&self) -> Option<f64> {
        (self.steps > 0.0).then(|| self.sequences / self.steps)
    }

    /// Milliseconds per step, on average.
    pub fn mean_step_ms(&self) -> Option<f64> {
        (self.steps > 0.0).then(|| 1e3 * self.step_secs / self.steps)
    }
}

/// The commitments Forge keeps for auditors: how many, their bytes, and
/// the bound past which the oldest are dropped (and their memory reused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct AuditStore {
    /// `forge_audit_commitments_retained`.
    pub commitments: f64,
    /// `forge_audit_retained_bytes`.
    pub bytes: f64,
    /// `forge_audit_retain_limit_bytes`; `None` from a server without it.
    pub limit_bytes: Option<f64>,
}

impl AuditStore {
    /// Read the gauges from Prometheus text; absent ones are 0 (the limit:
    /// `None`).
    pub fn parse(text: &str) -> Self {
        let mut a = Self::default();
        for (name, v) in samples(text) {
            match name {
                "forge_audit_commitments_retained" => a.commitments = v,
                "forge_audit_retained_bytes" => a.bytes = v,
                "forge_audit_retain_limit_bytes" => a.limit_bytes = Some(v),
                _ => {}
            }
        }
        a
    }

    /// Whether the store has dropped a commitment between `before` and
    /// `self`, `answered` requests later: each answer adds one commitment
    /// unless the bound made the store drop some (or not keep it).
    pub fn dropped_since(&self, before: &Self, answered: usize) -> bool {
        self.commitments < before.commitments + answered as f64
    }
}

/// `(name, value)` of each sample line of Prometheus text.
fn samples(text: &str) -> impl Iterator<Item = (&str, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.trim(), value.trim().parse::<f64>().ok()?))
        })
}

/// `/metrics`' text; `None` when the server does not answer.
async fn metrics_text(http: &reqwest::Client, base_url: &str) -> Option<String> {
    let r = http
        .get(format!("{base_url}/metrics"))
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// Read the engine counters; `None` when the server does not answer (the
/// table then lacks the engine columns, nothing else).
pub async fn scrape(http: &reqwest::Client, base_url: &str) -> Option<EngineCounters> {
    Some(EngineCounters::parse(&metrics_text(http, base_url).await?))
}

/// Read the audit store's gauges; `None` when the server does not answer.
pub async fn scrape_audit(http: &reqwest::Client, base_url: &str) -> Option<AuditStore> {
    Some(AuditStore::parse(&metrics_text(http, base_url).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP forge_engine_steps_total Batched engine steps.
# TYPE forge_engine_steps_total counter
forge_engine_steps_total 120
forge_completion_tokens_total 480
forge_receipts_issued_total 8
forge_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 8
forge_engine_batch_sequences_bucket{le=\"1\"} 10
forge_engine_batch_sequences_bucket{le=\"+Inf\"} 120
forge_engine_batch_sequences_sum 900
forge_engine_batch_sequences_count 120
forge_engine_step_seconds_sum 6.5
forge_engine_step_seconds_count 120
";

    #[test]
    fn counters_from_prometheus_text() {
        let c = EngineCounters::parse(TEXT);
        assert_eq!(
            c,
            EngineCounters {
                steps: 120.0,
                sequences: 900.0,
                step_secs: 6.5,
                completion_tokens: 480.0,
                receipts: 8.0
            }
        );
        assert_eq!(c.mean_batch(), Some(7.5));
        assert!((c.mean_step_ms().unwrap() - 6500.0 / 120.0).abs() < 1e-9);
        let before = EngineCounters {
            steps: 20.0,
            sequences: 100.0,
            step_secs: 0.5,
            completion_tokens: 80.0,
            receipts: 1.0,
        };
        let d = c.since(&before);
        assert_eq!(
            d,
            EngineCounters {
                steps: 100.0,
                sequences: 800.0,
                step_secs: 6.0,
                completion_tokens: 400.0,
                receipts: 7.0
            }
        );
        assert_eq!(d.plus(&before), c);
        assert_eq!(EngineCounters::parse("garbage\n\n").mean_batch(), None);
    }

    #[test]
    fn audit_store_from_prometheus_text() {
        let text = "\
# TYPE forge_audit_commitments_retained gauge
forge_audit_commitments_retained 12
forge_audit_retained_bytes 1048576
forge_audit_retain_limit_bytes 1073741824
";
        let a = AuditStore::parse(text);
        assert_eq!(
            a,
            AuditStore {
                commitments: 12.0,
                bytes: 1048576.0,
                limit_bytes: Some(1073741824.0)
            }
        );
        // An older server publishes no limit.
        assert_eq!(AuditStore::parse(TEXT).limit_bytes, None);
        // 8 answers, 8 more commitments: nothing dropped; 7 more: one was.
        let before = AuditStore {
            commitments: 4.0,
            ..a
        };
        let kept = |n: f64| AuditStore {
            commitments: n,
            ..a
        };
        assert!(!kept(12.0).dropped_since(&before, 8));
        assert!(kept(11.0).dropped_since(&before, 8));
        assert!(kept(3.0).dropped_since(&before, 8));
    }
}
