//! Routing and helpers shared by the data plane, Entra and admin handlers.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::Router;
use axum::extract::Query;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::state::State;

pub(crate) fn router(state: State) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(crate::entra::token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(crate::entra::openid_configuration),
        )
        .route("/msi/token", get(crate::entra::msi_token))
        .route(
            "/metadata/identity/oauth2/token",
            get(crate::entra::imds_token),
        )
        .nest("/admin", crate::admin::router())
        .fallback(crate::vault::data_plane)
        .with_state(state)
}

/// The request's host (with port, as sent): Host header, else the URI's authority.
pub(crate) fn host(headers: &HeaderMap, uri: &Uri, fallback: &str) -> String {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"', '\\']))
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| fallback.to_owned())
}

/// Vault name of a host: its first DNS label; IPs and `localhost` map to the default vault.
pub(crate) fn vault_for_host(host: &str, default_vault: &str) -> String {
    if host.starts_with('[') {
        return default_vault.to_owned();
    }
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") || name.is_empty() {
        return default_vault.to_owned();
    }
    name.split('.').next().unwrap_or(name).to_ascii_lowercase()
}

/// Query parameters, percent-decoded (a malformed query counts as empty).
pub(crate) fn query(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// A JSON response the way Key Vault / Entra send it (Content-Length set by the body).
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Key Vault's error envelope.
pub(crate) fn kv_error(
    status: StatusCode,
    code: &str,
    message: &str,
    inner: Option<&str>,
) -> Response {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    json(status, &json!({ "error": error }))
}

/// Random lowercase GUID-shaped string (trace / correlation ids).
pub(crate) fn guid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_from_hosts() {
        assert_eq!(
            vault_for_host("kv-aks-csi-weu-01.vault.azure.net", "d"),
            "kv-aks-csi-weu-01"
        );
        assert_eq!(vault_for_host("KV1.vault.azure.net:8443", "d"), "kv1");
        assert_eq!(vault_for_host("127.0.0.1:8443", "d"), "d");
        assert_eq!(vault_for_host("localhost:1", "d"), "d");
        assert_eq!(vault_for_host("[::1]:1", "d"), "d");
        assert_eq!(vault_for_host("10.88.0.1", "d"), "d");
    }
}
