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
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rustls::ServerConfig;
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
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        // For the webhook entry that selects namespaces labelled
        // secret-injector.io/csi-compat=enabled: CSI volumes are converted.
        .route("/mutate-csi", post(mutate_csi))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
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
        match admission::review_with(
            &body,
            &state.config,
            state.classes.as_ref(),
            state.accounts.as_ref(),
            csi_compat,
        ) {
            Ok(reviewed) => {
                let span = tracing::Span::current();
                span.record("uid", reviewed.subject.uid.as_str());
                span.record("namespace", reviewed.subject.namespace.as_str());
                span.record("pod", reviewed.subject.name.as_str());
                let outcome = reviewed.outcome.label();
                match reviewed.outcome {
                    admission::Outcome::Denied => {
                        let message = reviewed
                            .review
                            .response
                            .as_ref()
                            .map(|r| r.result.message.clone())
                            .unwrap_or_default();
                        tracing::info!(outcome, %message, "denied");
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

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish for at most `grace`.
pub async fn serve_tls(
    app: Router,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let drain = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "draining");
        drain.graceful_shutdown(Some(grace));
    });
    axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )?
    .handle(handle)
    .serve(app.into_make_service())
    .await
}
