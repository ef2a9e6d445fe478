//! `/admin/...`: unauthenticated HTTP mirror of [`State`]'s methods (see README.md).

// Handlers return a ready `Response` as the error of early exits (cold paths).
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;
use crate::http;
use crate::material::{CertificateSpec, KeyKind};
use crate::state::{Fault, FaultTarget, ObjectKind, SecretSpec, State};

pub(crate) fn router() -> Router<State> {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/vaults/{vault}/{kind}/{name}", post(create).delete(delete))
        .route(
            "/vaults/{vault}/{kind}/{name}/{version}/{action}",
            post(enable),
        )
        .route("/faults", post(set_fault).delete(clear_faults))
        .route("/denials", post(deny).delete(clear_denials))
        .route("/tokens/expire", post(expire_tokens))
        .route("/tokens/lifetime", put(token_lifetime))
        .route("/counters", get(counters).delete(reset_counters))
}

fn fail(e: &Error) -> Response {
    let status = match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Invalid(_) | Error::Config(_) => StatusCode::BAD_REQUEST,
        Error::Io(..) | Error::Crypto(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    http::json(status, &json!({ "error": e.to_string() }))
}

/// Parses a JSON body; an empty body is `{}`.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Response> {
    let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(raw).map_err(|e| fail(&Error::Invalid(format!("body: {e}"))))
}

fn kind(s: &str) -> Result<ObjectKind, Response> {
    s.parse::<ObjectKind>().map_err(|e| fail(&e))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyBody {
    kty: KeyKind,
}

async fn create(
    AxState(state): AxState<State>,
    Path((vault, kind_s, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> Response {
    let result = (|| -> Result<Response, Response> {
        let out = match kind(&kind_s)? {
            ObjectKind::Secrets => {
                let spec: SecretSpec = body(&bytes)?;
                let version = state
                    .set_secret_with(&vault, &name, spec)
                    .map_err(|e| fail(&e))?;
                json!({ "vault": vault, "name": name, "version": version })
            }
            ObjectKind::Certificates => {
                let spec: CertificateSpec = body(&bytes)?;
                let c = state
                    .create_certificate(&vault, &name, &spec)
                    .map_err(|e| fail(&e))?;
                json!({ "vault": vault, "name": name, "version": c.version, "x5t": c.x5t, "cer": STANDARD.encode(&c.der) })
            }
            ObjectKind::Keys => {
                let b: KeyBody = body(&bytes)?;
                let k = state
                    .create_key(&vault, &name, b.kty)
                    .map_err(|e| fail(&e))?;
                json!({ "vault": vault, "name": name, "version": k.version, "jwk": k.jwk })
            }
        };
        Ok(http::json(StatusCode::OK, &out))
    })();
    tracing::info!(%vault, kind = %kind_s, %name, "admin: create version");
    result.unwrap_or_else(|r| r)
}

async fn delete(
    AxState(state): AxState<State>,
    Path((vault, kind_s, name)): Path<(String, String, String)>,
) -> Response {
    match kind(&kind_s).and_then(|k| state.delete(&vault, k, &name).map_err(|e| fail(&e))) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn enable(
    AxState(state): AxState<State>,
    Path((vault, kind_s, name, version, action)): Path<(String, String, String, String, String)>,
) -> Response {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        other => {
            return fail(&Error::Invalid(format!(
                "unknown action {other:?} (enable|disable)"
            )));
        }
    };
    match kind(&kind_s).and_then(|k| {
        state
            .set_enabled(&vault, k, &name, &version, enabled)
            .map_err(|e| fail(&e))
    }) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FaultBody {
    #[serde(default = "all_vaults")]
    target: String,
    fault: String,
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    ms: Option<u64>,
}

fn all_vaults() -> String {
    "*".to_owned()
}

async fn set_fault(AxState(state): AxState<State>, bytes: Bytes) -> Response {
    let result = (|| -> Result<(), Response> {
        let b: FaultBody = body(&bytes)?;
        let target: FaultTarget = b.target.parse().map_err(|e| fail(&e))?;
        let fault = match b.fault.as_str() {
            "down" => Fault::Down,
            "throttle" => Fault::Throttle {
                retry_after_secs: b.retry_after.unwrap_or(1),
                count: b.count,
            },
            "latency" => Fault::Latency(Duration::from_millis(b.ms.unwrap_or(0))),
            other => {
                return Err(fail(&Error::Invalid(format!(
                    "unknown fault {other:?} (down|throttle|latency)"
                ))));
            }
        };
        tracing::info!(%target, ?fault, "admin: set fault");
        state.set_fault(target, fault);
        Ok(())
    })();
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct TargetQuery {
    target: Option<String>,
}

async fn clear_faults(AxState(state): AxState<State>, Query(q): Query<TargetQuery>) -> Response {
    match q.target.map(|t| t.parse::<FaultTarget>()).transpose() {
        Ok(t) => {
            state.clear_faults(t.as_ref());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => fail(&e),
    }
}

#[derive(Deserialize)]
struct DenyBody {
    vault: String,
    identity: String,
    object: String,
}

async fn deny(AxState(state): AxState<State>, bytes: Bytes) -> Response {
    let result = body::<DenyBody>(&bytes).and_then(|b| {
        state
            .deny(&b.vault, &b.identity, &b.object)
            .map_err(|e| fail(&e))
    });
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn clear_denials(AxState(state): AxState<State>) -> StatusCode {
    state.clear_denials();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(AxState(state): AxState<State>) -> StatusCode {
    state.expire_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LifetimeBody {
    seconds: u64,
}

async fn token_lifetime(AxState(state): AxState<State>, bytes: Bytes) -> Response {
    match body::<LifetimeBody>(&bytes) {
        Ok(b) => {
            state.set_token_lifetime(Duration::from_secs(b.seconds));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

async fn counters(AxState(state): AxState<State>) -> Response {
    http::json(StatusCode::OK, &json!(state.request_counts()))
}

async fn reset_counters(AxState(state): AxState<State>) -> StatusCode {
    state.reset_counts();
    StatusCode::NO_CONTENT
}
