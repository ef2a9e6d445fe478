//! Prometheus metrics: requests by outcome, latency, injections.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<OutcomeLabels, Counter>,
    pub duration: Histogram,
    pub injections: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("secret_injector_admission");
        let requests = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by outcome (injected, skipped, denied, ignored, undecodable, not_ready, bad_request, overloaded, timeout)",
            requests.clone(),
        );
        // 100 µs to about 1.6 s.
        let duration = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0001, 2.0, 15,
        ));
        registry.register(
            "duration_seconds",
            "Time to answer an admission request, from the body read to the response",
            duration.clone(),
        );
        let injections = Counter::default();
        registry.register(
            "injections",
            "Pods patched with the secret volume and containers",
            injections.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            injections,
        }
    }

    pub fn record(&self, outcome: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.duration.observe(seconds);
        if outcome == "injected" {
            self.injections.inc();
        }
    }

    /// A review turned away before it was read (`overloaded`, `timeout`).
    pub fn refused(&self, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
