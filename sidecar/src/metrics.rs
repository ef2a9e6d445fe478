//! Prometheus metrics for the sidecar, served on `--metrics-addr` when an
//! operator asks for them (no port is opened by default: it could collide
//! with the app's). The same facts as the status file, for alerting.

use std::{net::SocketAddr, sync::Arc};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub file: String,
}

pub struct Metrics {
    registry: Registry,
    /// Per object per round: `ok` or the error's label (forbidden, not_found, ...).
    pub fetches: Family<OutcomeLabels, Counter>,
    /// 1 while the object's last fetch failed (its file keeps the last good value).
    pub failing: Family<FileLabels, Gauge>,
    pub writes: Counter,
    pub last_write: Gauge,
    /// When a lent value's lease ends (Unix seconds): dynamic credentials, certificates.
    pub lease_expiry: Family<FileLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("secret_injector_sidecar");
        let fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register("fetches", "Object fetches by outcome", fetches.clone());
        let failing = Family::<FileLabels, Gauge>::default();
        registry.register(
            "object_failing",
            "1 while the object's last fetch failed and its file holds the last good value",
            failing.clone(),
        );
        let writes = Counter::default();
        registry.register(
            "writes",
            "New sets written (rotations included)",
            writes.clone(),
        );
        let last_write = Gauge::default();
        registry.register(
            "last_write_timestamp_seconds",
            "When the files last changed",
            last_write.clone(),
        );
        let lease_expiry = Family::<FileLabels, Gauge>::default();
        registry.register(
            "lease_expiry_timestamp_seconds",
            "When the lease of the object's current value ends (dynamic secrets, certificates)",
            lease_expiry.clone(),
        );
        Arc::new(Self {
            registry,
            fetches,
            failing,
            writes,
            last_write,
            lease_expiry,
        })
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` (any path, in fact) over plain HTTP until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    use hyper::{Response, server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    loop {
        let (stream, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req| {
                let body = metrics.encode();
                async move {
                    Response::builder()
                        .header(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
