//! HashiCorp Vault / OpenBao through a small client of our own on reqwest
//! (the project's rustls): `vaultrs` drops the lease fields of dynamic
//! reads, has no `sys/leases` and no TLS server-name override. The calls:
//!
//! - `POST auth/<mount>/login {role, jwt}` (kubernetes and jwt auth), and
//!   `auth/token/renew-self` at two thirds of the token's TTL; a 403 logs in
//!   again once before it is reported;
//! - `GET sys/internal/ui/mounts/<path>`: which engine a `vault://` path is
//!   under, so a kv-v2 read gets `data/` inserted (cached per mount);
//! - `GET <path>` for the value, with `X-Vault-Namespace` when one is set.
//!
//! A `vault://` reference without `#key` writes the secret's data as JSON;
//! one with `?api=true` (the Vault CSI provider's `secretPath`) is read as
//! that provider reads it: the key in kv-v2's `data.data`, else in `data`,
//! and without a key the whole response. Versions (the PodStatus's): a
//! kv-v2 secret's version number, else the lease id, else a digest of the
//! value (the CSI provider's HMAC needs a key this sidecar does not hold).

pub mod config;

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use shared::{ObjectFormat, SecretRef, VaultRef};
use zeroize::Zeroizing;

pub use config::{VaultAuth, VaultConfig, VaultSetupError};

use crate::{
    providers::{
        Detail, FetchError, Fetched, Provider,
        chain::{SystemResolver, transport_error},
    },
    secret::SecretBytes,
};

/// Vault's answers are small; a larger body is refused, not buffered.
const MAX_BODY: usize = 1 << 20;

/// A token and when to renew it.
struct Token {
    value: Zeroizing<String>,
    /// Renew (or log in again) after this; `None`: never expires.
    renew_at: Option<Instant>,
    renewable: bool,
}

/// The engine a path is under, from `sys/internal/ui/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `secret/` (with the trailing slash, as Vault names it).
    path: String,
    kv_version: Option<u8>,
}

pub struct VaultProvider {
    config: VaultConfig,
    http: reqwest::Client,
    /// Where requests go: the address, or the TLS server name resolved to
    /// the address's host (the certificate is checked for that name).
    base: String,
    token: tokio::sync::Mutex<Option<Token>>,
    mounts: Mutex<Vec<Mount>>,
}

impl VaultProvider {
    pub async fn new(config: VaultConfig) -> Result<Self, VaultSetupError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(SystemResolver::default());
        if let Some(pem) = &config.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| VaultSetupError::CaBundle)?;
            if certs.is_empty() {
                return Err(VaultSetupError::CaBundle);
            }
            builder = builder.tls_certs_merge(certs);
        }
        for (host, addr) in &config.resolve {
            builder = builder.resolve(host, *addr);
        }
        let url = reqwest::Url::parse(&config.address)
            .map_err(|_| VaultSetupError::BadAddress(config.address.clone()))?;
        let mut base = config.address.clone();
        if let (Some(name), Some(host)) = (&config.tls_server_name, url.host_str()) {
            // Connect to the address's host, check the certificate for the
            // name: the name is the URL's host, resolved to the address's.
            let port = url.port_or_known_default().unwrap_or(443);
            let fixed = config
                .resolve
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(host))
                .map(|(_, a)| vec![*a]);
            let addrs = match fixed {
                Some(a) => a,
                None => SystemResolver::default()
                    .lookup(host)
                    .await
                    .map_err(|e| VaultSetupError::Http(e.to_string()))?,
            };
            for addr in addrs {
                builder = builder.resolve(name, std::net::SocketAddr::new(addr.ip(), port));
            }
            base = format!("{}://{name}:{port}", url.scheme());
        }
        let http = builder
            .build()
            .map_err(|e| VaultSetupError::Http(e.to_string()))?;
        Ok(Self {
            config,
            http,
            base,
            token: tokio::sync::Mutex::new(None),
            mounts: Mutex::new(Vec::new()),
        })
    }

    /// One call: the status and the JSON body (`null` when empty).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), FetchError> {
        let url = format!("{}/v1/{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let context = format!("Vault {}", self.config.address);
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&context, &e))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&context, &e))?
        {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::Invalid(
                    format!("{context} answered more than {MAX_BODY} bytes").into(),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            // Vault answers JSON; a proxy's HTML page is an error below.
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        bytes.iter_mut().for_each(|b| *b = 0);
        Ok((status, body))
    }

    /// A valid token: the cached one, renewed past two thirds of its TTL,
    /// or a new login.
    async fn token(&self) -> Result<Zeroizing<String>, FetchError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            match t.renew_at {
                Some(at) if Instant::now() >= at => {}
                _ => return Ok(t.value.clone()),
            }
            if t.renewable
                && let Ok(renewed) = self.renew(&t.value).await
            {
                *slot = Some(renewed);
                return slot
                    .as_ref()
                    .map(|t| t.value.clone())
                    .ok_or_else(|| FetchError::Credential("no token".into()));
            }
        }
        let fresh = self.login().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn login(&self) -> Result<Token, FetchError> {
        let (mount, role, jwt_file) = match &self.config.auth {
            VaultAuth::Token(token) => {
                return Ok(Token {
                    value: token.clone(),
                    renew_at: None,
                    renewable: false,
                });
            }
            VaultAuth::Login {
                mount,
                role,
                jwt_file,
            } => (mount, role, jwt_file),
        };
        let jwt = Zeroizing::new(std::fs::read_to_string(jwt_file).map_err(|e| {
            FetchError::Credential(
                format!("the ServiceAccount token {}: {e}", jwt_file.display()).into(),
            )
        })?);
        let body = json!({"role": role, "jwt": jwt.trim()});
        let path = format!("auth/{mount}/login");
        let (status, reply) = self.call(Method::POST, &path, None, Some(&body)).await?;
        if !status.is_success() {
            let error = classify(
                status,
                &reply,
                &format!("login at auth/{mount} as role {role}"),
            );
            // A refused login is the credential's fault, not the secret's.
            return Err(match error {
                FetchError::Forbidden(d) | FetchError::Invalid(d) | FetchError::NotFound(d) => {
                    FetchError::Credential(d)
                }
                other => other,
            });
        }
        token_from(&reply["auth"]).ok_or_else(|| {
            FetchError::Credential(format!("auth/{mount}/login answered no client_token").into())
        })
    }

    async fn renew(&self, token: &str) -> Result<Token, FetchError> {
        let (status, reply) = self
            .call(
                Method::POST,
                "auth/token/renew-self",
                Some(token),
                Some(&json!({})),
            )
            .await?;
        if !status.is_success() {
            return Err(classify(status, &reply, "renewing the token"));
        }
        token_from(&reply["auth"]).ok_or_else(|| FetchError::Credential("renew-self".into()))
    }

    /// The mount `r` is under: cached, else asked of Vault.
    async fn mount(&self, r: &VaultRef, token: &str) -> Result<Mount, FetchError> {
        let cached = self
            .mounts
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .find(|m| format!("{}/", r.path).starts_with(&m.path))
            .cloned();
        if let Some(m) = cached {
            return Ok(m);
        }
        let path = format!("sys/internal/ui/mounts/{}", r.path);
        let (status, reply) = self.call(Method::GET, &path, Some(token), None).await?;
        if !status.is_success() {
            return Err(classify(status, &reply, &format!("the mount of {r}")));
        }
        let data = &reply["data"];
        let mount = Mount {
            path: data["path"].as_str().unwrap_or_default().to_owned(),
            kv_version: (data["type"] == "kv").then(|| match data["options"]["version"].as_str() {
                Some("2") => 2,
                _ => 1,
            }),
        };
        if mount.path.is_empty() || !format!("{}/", r.path).starts_with(&mount.path) {
            return Err(FetchError::NotFound(
                format!("{r}: no secrets engine is mounted at this path").into(),
            ));
        }
        self.mounts
            .lock()
            .map_err(|_| poisoned())?
            .push(mount.clone());
        Ok(mount)
    }

    async fn read(&self, r: &VaultRef, retried: bool) -> Result<Fetched, FetchError> {
        let token = self.token().await?;
        let (api_path, kv2) = if r.api_path {
            (r.path.clone(), false)
        } else {
            let mount = self.mount(r, &token).await?;
            match mount.kv_version {
                Some(2) => {
                    let rest = r.path.get(mount.path.len()..).unwrap_or_default();
                    (format!("{}data/{rest}", mount.path), true)
                }
                _ => (r.path.clone(), false),
            }
        };
        let query = r
            .version
            .map(|v| format!("?version={v}"))
            .unwrap_or_default();
        let (status, reply) = self
            .call(
                Method::GET,
                &format!("{api_path}{query}"),
                Some(&token),
                None,
            )
            .await?;
        if status == StatusCode::FORBIDDEN
            && !retried
            && matches!(self.config.auth, VaultAuth::Login { .. })
        {
            // The token may have been revoked or outlived: log in once more.
            *self.token.lock().await = None;
            return Box::pin(self.read(r, true)).await;
        }
        if !status.is_success() {
            return Err(read_error(status, &reply, r));
        }
        value_of(r, &reply, kv2)
    }
}

#[async_trait]
impl Provider for VaultProvider {
    async fn fetch(
        &self,
        source: &SecretRef,
        _format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        match source {
            SecretRef::Vault(r) => self.read(r, false).await,
            other => Err(FetchError::Unsupported(
                format!("{other} is not a Vault reference").into(),
            )),
        }
    }

    fn reset_credentials(&self) {
        if let Ok(mut slot) = self.token.try_lock() {
            *slot = None;
        }
    }
}

fn poisoned() -> FetchError {
    FetchError::Invalid("internal lock poisoned".into())
}

/// A login's or renewal's `auth`: the token, renewed at two thirds of its TTL.
fn token_from(auth: &Value) -> Option<Token> {
    let value = auth["client_token"].as_str().filter(|t| !t.is_empty())?;
    let ttl = auth["lease_duration"].as_u64().unwrap_or(0);
    Some(Token {
        value: Zeroizing::new(value.to_owned()),
        renew_at: (ttl > 0).then(|| Instant::now() + Duration::from_secs(ttl * 2 / 3)),
        renewable: auth["renewable"].as_bool().unwrap_or(false),
    })
}

/// Vault's `{"errors": [...]}` as one line.
fn errors_of(reply: &Value) -> String {
    let errors: Vec<&str> = reply["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if errors.is_empty() {
        "no error text".to_owned()
    } else {
        errors.join("; ")
    }
}

fn classify(status: StatusCode, reply: &Value, what: &str) -> FetchError {
    let detail = Detail::new(&format!("{what}: {} {}", status.as_u16(), errors_of(reply)));
    match status.as_u16() {
        400 => FetchError::Invalid(detail),
        401 => FetchError::Unauthorized(detail),
        403 => FetchError::Forbidden(detail),
        404 => FetchError::NotFound(detail),
        412 | 429 => FetchError::Throttled {
            retry_after: None,
            detail,
        },
        s if s >= 500 => FetchError::Unavailable(detail),
        _ => FetchError::Invalid(detail),
    }
}

/// A failed read; a kv-v2 latest version that was deleted or destroyed
/// says so (Vault answers 404 with the version's metadata).
fn read_error(status: StatusCode, reply: &Value, r: &VaultRef) -> FetchError {
    let metadata = &reply["data"]["metadata"];
    if status == StatusCode::NOT_FOUND && metadata.is_object() {
        let version = metadata["version"].as_u64().unwrap_or(0);
        if metadata["destroyed"] == true {
            return FetchError::NotFound(
                format!(
                    "{r}: version {version} was destroyed; write a new one or ask ?version=<n>"
                )
                .into(),
            );
        }
        if let Some(at) = metadata["deletion_time"].as_str().filter(|t| !t.is_empty()) {
            return FetchError::NotFound(
                format!(
                    "{r}: version {version} was deleted at {at}; undelete it or write a new one"
                )
                .into(),
            );
        }
    }
    classify(status, reply, &r.to_string())
}

/// The file's bytes and version from a read's reply.
fn value_of(r: &VaultRef, reply: &Value, kv2: bool) -> Result<Fetched, FetchError> {
    let data = &reply["data"];
    // What a key is looked up in: kv-v2's inner map, as the CSI provider
    // does for any reply that has one.
    let fields = match (&data["data"], kv2 || r.api_path) {
        (Value::Object(inner), true) => inner,
        _ => match data {
            Value::Object(map) => map,
            _ if kv2 => {
                return Err(FetchError::NotFound(
                    format!("{r}: the latest version has no data").into(),
                ));
            }
            _ => &Map::new(),
        },
    };
    let bytes = match &r.key {
        Some(key) => match fields.get(key) {
            Some(Value::String(s)) => s.as_bytes().to_vec(),
            Some(other) => serde_json::to_vec(other).unwrap_or_default(),
            None => {
                let keys: Vec<&str> = fields.keys().map(String::as_str).take(20).collect();
                return Err(FetchError::NotFound(
                    format!(
                        "{r}: the secret has no key {key:?} (keys: {})",
                        keys.join(", ")
                    )
                    .into(),
                ));
            }
        },
        None if r.api_path => whole_response(reply),
        None => serde_json::to_vec(fields).unwrap_or_default(),
    };
    let version = data["metadata"]["version"]
        .as_u64()
        .filter(|_| kv2 || r.api_path)
        .map(|v| v.to_string())
        .or_else(|| {
            reply["lease_id"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| digest(&bytes));
    Ok(Fetched {
        value: SecretBytes::new(bytes),
        version,
    })
}

/// The reply as the Vault CSI provider writes a file without `secretKey`
/// (Go's `json.Marshal` of its `api.Secret`: these fields, in this order).
fn whole_response(reply: &Value) -> Vec<u8> {
    let fields = [
        "request_id",
        "lease_id",
        "lease_duration",
        "renewable",
        "data",
        "warnings",
    ];
    let mut text = String::from("{");
    for (i, name) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let value = reply.get(*name).cloned().unwrap_or(Value::Null);
        text.push_str(&format!("{}:{}", json!(name), value));
    }
    text.push('}');
    text.into_bytes()
}

/// A version for a value Vault gives none: the first 16 hex digits of its
/// SHA-256 (changes with the value, says nothing of it).
fn digest(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    d.as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(s: &str) -> VaultRef {
        match s.parse::<SecretRef>() {
            Ok(SecretRef::Vault(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn text(f: &Fetched) -> String {
        String::from_utf8(f.value.expose().to_vec()).unwrap()
    }

    #[test]
    fn kv2_keys_data_and_versions() {
        let reply = json!({"lease_id": "", "data": {"data": {"user": "u", "n": 3, "o": {"a": [1]}},
                           "metadata": {"version": 7, "deletion_time": "", "destroyed": false}}});
        let f = value_of(&vault("vault://secret/db#user"), &reply, true).unwrap();
        assert_eq!((text(&f), f.version.as_str()), ("u".into(), "7"));
        let n = value_of(&vault("vault://secret/db#n"), &reply, true).unwrap();
        assert_eq!(text(&n), "3");
        let o = value_of(&vault("vault://secret/db#o"), &reply, true).unwrap();
        assert_eq!(text(&o), r#"{"a":[1]}"#);
        let all = value_of(&vault("vault://secret/db"), &reply, true).unwrap();
        assert_eq!(text(&all), r#"{"n":3,"o":{"a":[1]},"user":"u"}"#);
        let missing = value_of(&vault("vault://secret/db#pass"), &reply, true).unwrap_err();
        assert_eq!(missing.label(), "not_found");
        assert!(
            missing.to_string().contains("keys: n, o, user"),
            "{missing}"
        );
        assert!(
            !missing.to_string().contains("\"u\""),
            "no value in {missing}"
        );
    }

    #[test]
    fn kv1_and_dynamic_reads_version_by_lease_or_digest() {
        let kv1 = json!({"lease_id": "", "lease_duration": 2764800, "data": {"k": "v"}});
        let f = value_of(&vault("vault://kv1/app#k"), &kv1, false).unwrap();
        assert_eq!(text(&f), "v");
        assert_eq!(f.version.len(), 16);
        let again = value_of(&vault("vault://kv1/app#k"), &kv1, false).unwrap();
        assert_eq!(f.version, again.version, "stable for one value");
        let db = json!({"lease_id": "database/creds/app/abc", "lease_duration": 120,
                        "renewable": true, "data": {"username": "v-u", "password": "p"}});
        let f = value_of(&vault("vault://database/creds/app#username"), &db, false).unwrap();
        assert_eq!(
            (text(&f), f.version.as_str()),
            ("v-u".into(), "database/creds/app/abc")
        );
    }

    #[test]
    fn the_csi_providers_reading_of_secret_path() {
        let reply = json!({"request_id": "r1", "lease_id": "", "lease_duration": 0, "renewable": false,
                           "data": {"data": {"bar1": "x"}, "metadata": {"version": 2}}, "warnings": null,
                           "mount_type": "kv"});
        let f = value_of(
            &vault("vault://secret/data/kv1?api=true#bar1"),
            &reply,
            false,
        )
        .unwrap();
        assert_eq!((text(&f), f.version.as_str()), ("x".into(), "2"));
        let whole = value_of(&vault("vault://secret/data/kv1?api=true"), &reply, false).unwrap();
        assert_eq!(
            text(&whole),
            r#"{"request_id":"r1","lease_id":"","lease_duration":0,"renewable":false,"data":{"data":{"bar1":"x"},"metadata":{"version":2}},"warnings":null}"#
        );
        // kv-v1 through the API path: the key in `data`.
        let v1 = json!({"data": {"bar1": "y"}});
        let f = value_of(&vault("vault://kv/app?api=true#bar1"), &v1, false).unwrap();
        assert_eq!(text(&f), "y");
    }

    #[test]
    fn deleted_and_destroyed_latest_versions_say_so() {
        let deleted = json!({"data": {"data": null, "metadata": {"version": 3,
            "deletion_time": "2026-12-03T10:00:00Z", "destroyed": false}}});
        let e = read_error(
            StatusCode::NOT_FOUND,
            &deleted,
            &vault("vault://secret/db#k"),
        );
        assert!(
            e.to_string()
                .contains("version 3 was deleted at 2026-12-03T10:00:00Z"),
            "{e}"
        );
        let destroyed = json!({"data": {"data": null, "metadata": {"version": 4,
            "deletion_time": "", "destroyed": true}}});
        let e = read_error(
            StatusCode::NOT_FOUND,
            &destroyed,
            &vault("vault://secret/db#k"),
        );
        assert!(e.to_string().contains("version 4 was destroyed"), "{e}");
        let plain = read_error(
            StatusCode::NOT_FOUND,
            &json!({"errors": []}),
            &vault("vault://secret/x#k"),
        );
        assert_eq!(plain.label(), "not_found");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let denied = json!({"errors": ["permission denied"]});
        for (status, kind) in [
            (400, "invalid"),
            (403, "forbidden"),
            (404, "not_found"),
            (429, "throttled"),
            (503, "unavailable"),
        ] {
            let e = classify(StatusCode::from_u16(status).unwrap(), &denied, "x");
            assert_eq!(e.label(), kind, "{status}");
        }
        assert!(
            classify(StatusCode::FORBIDDEN, &denied, "x")
                .to_string()
                .contains("permission denied")
        );
    }

    #[test]
    fn tokens_renew_at_two_thirds() {
        let t =
            token_from(&json!({"client_token": "s.x", "lease_duration": 3600, "renewable": true}))
                .unwrap();
        let at = t.renew_at.unwrap();
        let left = at.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(2390) && left <= Duration::from_secs(2400),
            "{left:?}"
        );
        assert!(token_from(&json!({"client_token": ""})).is_none());
        assert!(
            token_from(&json!({"client_token": "root", "lease_duration": 0}))
                .unwrap()
                .renew_at
                .is_none()
        );
    }
}
