//! The HTTPS admission server: routes, and serving with a bounded drain.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    BoxError, Router,
    body::Bytes,
    error_handling::HandleErrorLayer,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rustls::ServerConfig;
use tower::ServiceBuilder;
use tracing::Instrument;

use crate::{
    accounts::{NoAccounts, ServiceAccounts},
    admission,
    classes::{NoClasses, ProviderClasses},
    config::InjectorConfig,
    metrics::Metrics,
};

/// Pods are small; a body this large is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Answers kept for identical pod CREATEs (at most 64 KiB of object each).
pub const DEFAULT_ANSWERS: usize = 256;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<InjectorConfig>,
    pub metrics: Arc<Metrics>,
    /// False until the server can answer reviews (certificate loaded, mode decided).
    pub ready: Arc<AtomicBool>,
    pub classes: Arc<dyn ProviderClasses>,
    pub accounts: Arc<dyn ServiceAccounts>,
    /// Convert Secrets Store CSI volumes on `/mutate` too, not only on `/mutate-csi`.
    pub csi_compat_everywhere: bool,
    /// Set on SIGTERM: answers close their connection, so clients stop
    /// reusing one to a replica about to go.
    pub draining: Arc<AtomicBool>,
    pub limits: Limits,
    /// Recent answers to identical pod CREATEs.
    pub answers: Arc<admission::Answers>,
}

/// Bounds on the review routes (health, readiness and metrics have none, so
/// they answer while reviews are saturated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reviews in progress at once, body read included; one more is answered 503.
    pub max_concurrent_reviews: usize,
    /// From the first byte of the body to the answer; past it, 504. A little
    /// under the webhook configuration's `timeoutSeconds` (5).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_reviews: 64,
            request_timeout: Duration::from_secs(4),
        }
    }
}

impl AppState {
    pub fn new(config: InjectorConfig) -> Self {
        Self {
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(AtomicBool::new(false)),
            classes: Arc::new(NoClasses),
            accounts: Arc::new(NoAccounts),
            csi_compat_everywhere: false,
            draining: Arc::new(AtomicBool::new(false)),
            limits: Limits::default(),
            answers: Arc::new(admission::Answers::new(DEFAULT_ANSWERS)),
        }
    }

    /// Serving, not draining, and both caches listed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.classes.synced() && self.accounts.synced()
    }
}

pub fn router(state: AppState) -> Router {
    let limits = state.limits;
    let counted = state.metrics.clone();
    // Outermost first: refusals become answers; a review that finds every
    // slot taken is shed at once rather than queued; the timeout sits inside
    // the limit, so a slow body gives its slot back.
    let bounded = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |error: BoxError| {
            let counted = counted.clone();
            async move { refused(&counted, &error, limits) }
        }))
        .load_shed()
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_concurrent_reviews,
        ))
        .timeout(limits.request_timeout);
    let reviews = Router::new()
        .route("/mutate", post(mutate))
        // For the webhook entry that selects namespaces labelled
        // secret-injector.io/csi-compat=enabled: CSI volumes are converted.
        .route("/mutate-csi", post(mutate_csi))
        .layer(bounded);
    Router::new()
        .merge(reviews)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The answer to a review the limits turned away.
fn refused(metrics: &Metrics, error: &BoxError, limits: Limits) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        metrics.refused("overloaded");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!(
                "{} reviews are in progress, the most this replica takes at once; retry\n",
                limits.max_concurrent_reviews
            ),
        )
            .into_response()
    } else if error.is::<tower::timeout::error::Elapsed>() {
        metrics.refused("timeout");
        (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the review took longer than {} ms\n",
                limits.request_timeout.as_millis()
            ),
        )
            .into_response()
    } else {
        tracing::error!(error = %error, "review failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "review failed\n").into_response()
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    // Say what is missing: an operator reading a failed probe learns why.
    let mut missing = Vec::new();
    if !state.ready.load(Ordering::Acquire) {
        missing.push("serving (starting or draining)");
    }
    if !state.classes.synced() {
        missing.push("SecretProviderClasses not listed");
    }
    if !state.accounts.synced() {
        missing.push("ServiceAccounts not listed");
    }
    let body = format!("not ready: {}\n", missing.join(", "));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn mutate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let csi = state.csi_compat_everywhere;
    handle(state, headers, body, csi).await
}

async fn mutate_csi(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, body, true).await
}

async fn handle(state: AppState, headers: HeaderMap, body: Bytes, csi_compat: bool) -> Response {
    let draining = state.draining.clone();
    let mut response = review(state, headers, body, csi_compat).await;
    if draining.load(Ordering::Acquire) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn review(state: AppState, headers: HeaderMap, body: Bytes, csi_compat: bool) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "admission",
        uid = tracing::field::Empty,
        namespace = tracing::field::Empty,
        pod = tracing::field::Empty
    );
    async move {
        if !is_json(&headers) {
            state.metrics.record("bad_request", started.elapsed().as_secs_f64());
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "POST /mutate takes Content-Type: application/json (an admission.k8s.io/v1 AdmissionReview)\n",
            )
                .into_response();
        }
        match admission::review_cached(
            &body,
            &state.config,
            state.classes.as_ref(),
            state.accounts.as_ref(),
            csi_compat,
            Some(&state.answers),
        ) {
            Ok(reviewed) => {
                let span = tracing::Span::current();
                span.record("uid", reviewed.subject.uid.as_str());
                span.record("namespace", reviewed.subject.namespace.as_str());
                span.record("pod", reviewed.subject.name.as_str());
                let outcome = reviewed.outcome.label();
                match reviewed.outcome {
                    admission::Outcome::Denied | admission::Outcome::NotReady => {
                        // Debug escapes what the pod wrote (newlines included).
                        let message = reviewed.denial().unwrap_or_default();
                        tracing::info!(outcome, ?message, "denied");
                    }
                    admission::Outcome::Injected => tracing::info!(outcome, "injected"),
                    _ => tracing::debug!(outcome, "answered"),
                }
                state.metrics.record(outcome, started.elapsed().as_secs_f64());
                match admission::encode(reviewed.review) {
                    Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode the response");
                        (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the response\n").into_response()
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "bad request");
                state.metrics.record("bad_request", started.elapsed().as_secs_f64());
                (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// How connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// After shutdown starts, how long in-flight requests may take.
    pub grace: Duration,
    /// A request's headers must arrive within this; it is also how long a
    /// kept-alive connection may sit idle.
    pub header_read_timeout: Duration,
}

impl Default for Serving {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` over TLS on `listener`, HTTP/1.1 only (no HTTP/2, not even
/// with prior knowledge), until `shutdown` resolves, then lets in-flight
/// requests finish for at most `serving.grace`.
pub async fn serve_tls(
    app: Router,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    serving: Serving,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let drain = handle.clone();
    let grace = serving.grace;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "draining");
        drain.graceful_shutdown(Some(grace));
    });
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    .handle(handle)
    .http1_only();
    server
        .http_builder()
        .http1()
        .header_read_timeout(serving.header_read_timeout);
    server.serve(app.into_make_service()).await
}
