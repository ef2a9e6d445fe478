//! Helpers for the emulator's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::Secret;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kv_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use serde_json::json;

pub const CLIENT_ID: &str = "app-1";
pub const CLIENT_SECRET: &str = "app-1-secret";
pub const API: &str = "api-version=2025-07-01";

pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn config() -> EmulatorConfig {
    let mut c = EmulatorConfig::default();
    c.client_secrets
        .insert(CLIENT_ID.into(), CLIENT_SECRET.into());
    c.extra_names.push("*.vault.azure.net".into());
    c
}

pub async fn start(config: EmulatorConfig) -> RunningEmulator {
    install_crypto();
    Emulator::start(config).await.expect("start emulator")
}

/// reqwest client trusting only the emulator's CA; `resolve` maps host names to it.
pub fn client(emu: &RunningEmulator, resolve: &[&str]) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([ca]).no_proxy();
    for host in resolve {
        b = b.resolve(host, SocketAddr::from(([127, 0, 0, 1], emu.addr().port())));
    }
    b.build().unwrap()
}

/// Client-credentials token for `scope` via the emulator's token endpoint.
pub async fn token_for(emu: &RunningEmulator, http: &reqwest::Client, scope: &str) -> String {
    let r = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            emu.url(),
            emu.tenant_id()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

pub async fn token(emu: &RunningEmulator, http: &reqwest::Client) -> String {
    token_for(emu, http, "https://vault.azure.net/.default").await
}

/// GET `{url}{path_and_query}` with an optional bearer token.
pub async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// An RS256 service-account-like assertion signed with `key_pem` (PKCS#8).
pub fn assertion(key_pem: &str, aud: &str, sub: &str, exp_offset: i64) -> String {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = json!({"aud": [aud], "exp": now + exp_offset, "iat": now, "iss": "https://kubernetes.default.svc", "sub": sub});
    let key = EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

/// Azure SDK client options: a transport trusting the emulator CA, the emulator as authority.
pub fn client_options(emu: &RunningEmulator) -> ClientOptions {
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .build()
        .unwrap();
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = emu.url();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

/// ClientSecretCredential for [`CLIENT_ID`] against the emulator.
pub fn credential(emu: &RunningEmulator) -> Arc<ClientSecretCredential> {
    ClientSecretCredential::new(
        emu.tenant_id(),
        CLIENT_ID.to_owned(),
        Secret::new(CLIENT_SECRET.to_owned()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(emu),
        }),
    )
    .unwrap()
}
