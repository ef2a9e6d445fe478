//! HashiCorp Vault / OpenBao through a small client of our own on reqwest
//! (the project's rustls): `vaultrs` drops the lease fields of dynamic
//! reads, has no `sys/leases` and no TLS server-name override. The calls:
//!
//! - `POST auth/<mount>/login {role, jwt}` (kubernetes and jwt auth), and
//!   `auth/token/renew-self` at two thirds of the token's TTL; a 403 logs in
//!   again (at most once per [`RELOGIN_EVERY`]) before it is reported;
//! - `GET sys/internal/ui/mounts/<path>`: which engine a `vault://` path is
//!   under, so a kv-v2 read gets `data/` inserted (cached per mount);
//! - `GET <path>` for the value, or `POST`/`PUT <path>` with the arguments
//!   as the JSON body for an engine that issues on write (`pki/issue/<role>`),
//!   with `X-Vault-Namespace` when one is set; the files that name one path
//!   share one request, so `#username` and `#password` of dynamic
//!   credentials are one pair;
//! - `PUT sys/leases/renew` for a lease, and on shutdown, when asked,
//!   `PUT sys/leases/revoke` and `auth/token/revoke-self`.
//!
//! A `vault://` reference without `#key` writes the secret's data as JSON;
//! one with `?api=true` (the Vault CSI provider's `secretPath`) is read as
//! that provider reads it (see [`reply`]).

pub mod config;
mod reply;

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use futures::{StreamExt, stream};
use reqwest::{Method, StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use shared::{SecretRef, VaultRef, WriteMethod};
use zeroize::Zeroizing;

pub use config::{VaultAuth, VaultConfig, VaultSetupError};

use crate::{
    lease::Lease,
    providers::{
        FetchError, Fetched, Provider, Request,
        chain::{SystemResolver, transport_error},
    },
};

/// Vault's answers are small; a larger body is refused, not buffered.
const MAX_BODY: usize = 1 << 20;

/// A 403 makes the sidecar log in again at most this often: a policy that
/// denies a path must not turn every poll into a login.
pub const RELOGIN_EVERY: Duration = Duration::from_secs(300);

/// The leases whose token generation is remembered (to bound them by that
/// token); the oldest are forgotten beyond it.
const MAX_TRACKED_LEASES: usize = 1024;

/// A token and when to renew it.
struct Token {
    value: Zeroizing<String>,
    /// Renew (or log in again) after this; `None`: never expires.
    renew_at: Option<Instant>,
    /// Renew-self may extend it. Cleared once a renewal grants less than
    /// the token's term: it has reached its max TTL, so log in again.
    renewable: bool,
    /// Its term in seconds, which a renewal should grant again.
    term: Duration,
    /// When it ends, and every lease it made with it.
    until: Option<SystemTime>,
    /// Which login made it.
    generation: u64,
}

/// The token a request used: its value and what bounds the leases it makes.
struct Used {
    value: Zeroizing<String>,
    generation: u64,
    until: Option<SystemTime>,
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
    logins: std::sync::atomic::AtomicU64,
    last_forced_login: Mutex<Option<Instant>>,
    mounts: Mutex<Vec<Mount>>,
    /// Lease id → (the token generation that made it, insertion order).
    leases: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl VaultProvider {
    pub async fn new(config: VaultConfig) -> Result<Self, VaultSetupError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the TLS server name itself, around the
            // pinning to the allowed address below (H1).
            .no_proxy()
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
            // name: the name is the URL's host, resolved to every address
            // of the address's host.
            let port = url.port_or_known_default().unwrap_or(443);
            let fixed: Vec<_> = config
                .resolve
                .iter()
                .filter(|(h, _)| h.eq_ignore_ascii_case(host))
                .map(|(_, a)| *a)
                .collect();
            let addrs = if !fixed.is_empty() {
                fixed
            } else if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                vec![std::net::SocketAddr::new(ip, port)]
            } else {
                SystemResolver::default()
                    .lookup(host)
                    .await
                    .map_err(|e| VaultSetupError::Http(e.to_string()))?
            };
            let addrs: Vec<_> = addrs
                .into_iter()
                .map(|a| std::net::SocketAddr::new(a.ip(), port))
                .collect();
            builder = builder.resolve_to_addrs(name, &addrs);
            base = format!("{}://{name}:{port}", url.scheme());
            // H1: the requests go to the name resolved as above, nowhere else.
            let same = reqwest::Url::parse(&base)
                .ok()
                .and_then(|u| u.host_str().map(|h| h == name.as_str()))
                .unwrap_or(false);
            if !same {
                return Err(VaultSetupError::BadServerName(name.clone()));
            }
        }
        let http = builder
            .build()
            .map_err(|e| VaultSetupError::Http(e.to_string()))?;
        Ok(Self {
            config,
            http,
            base,
            token: tokio::sync::Mutex::new(None),
            logins: std::sync::atomic::AtomicU64::new(0),
            last_forced_login: Mutex::new(None),
            mounts: Mutex::new(Vec::new()),
            leases: Mutex::new(BTreeMap::new()),
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
        let context = format!("Vault {}", self.config.address);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token).map_err(|_| {
                FetchError::Credential("the Vault token is not a valid header value".into())
            })?;
            // Kept out of debug output and HTTP/2 header tables.
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_error(&context, &e))?;
        let status = response.status();
        let mut bytes = Zeroizing::new(Vec::new());
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
        Ok((status, body))
    }

    /// A valid token: the cached one, renewed past two thirds of its TTL,
    /// or a new login.
    async fn token(&self) -> Result<Used, FetchError> {
        let mut slot = self.token.lock().await;
        let due = match slot.as_ref() {
            Some(t) => t.renew_at.is_some_and(|at| Instant::now() >= at),
            None => true,
        };
        if due
            && let Some(t) = slot.as_ref()
            && t.renewable
            && let Ok(renewed) = self.renew_self(t).await
        {
            *slot = Some(renewed);
        } else if due {
            *slot = Some(self.login().await?);
        }
        slot.as_ref()
            .map(|t| Used {
                value: t.value.clone(),
                generation: t.generation,
                until: t.until,
            })
            .ok_or_else(|| FetchError::Credential("no Vault token".into()))
    }

    async fn login(&self) -> Result<Token, FetchError> {
        let generation = self
            .logins
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let (mount, role, jwt_file) = match &self.config.auth {
            VaultAuth::Token(token) => {
                return Ok(Token {
                    value: token.clone(),
                    renew_at: None,
                    renewable: false,
                    term: Duration::ZERO,
                    until: None,
                    generation,
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
            let error = reply::classify(
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
        token_from(&reply["auth"], generation, None).ok_or_else(|| {
            FetchError::Credential(format!("auth/{mount}/login answered no client_token").into())
        })
    }

    async fn renew_self(&self, token: &Token) -> Result<Token, FetchError> {
        let (status, reply) = self
            .call(
                Method::POST,
                "auth/token/renew-self",
                Some(&token.value),
                Some(&json!({})),
            )
            .await?;
        if !status.is_success() {
            return Err(reply::classify(status, &reply, "renewing the token"));
        }
        token_from(&reply["auth"], token.generation, Some(token.term))
            .ok_or_else(|| FetchError::Credential("renew-self answered no token".into()))
    }

    /// After a 403: forget the token so the next request logs in again, if
    /// that may help (a login, not a fixed token) and was not done within
    /// [`RELOGIN_EVERY`]. The old token is not revoked: its leases live on.
    async fn may_log_in_again(&self) -> bool {
        if !matches!(self.config.auth, VaultAuth::Login { .. }) {
            return false;
        }
        let allowed = match self.last_forced_login.lock() {
            Ok(mut last) if !last.is_some_and(|at| at.elapsed() < RELOGIN_EVERY) => {
                *last = Some(Instant::now());
                true
            }
            _ => false,
        };
        if allowed {
            *self.token.lock().await = None;
        }
        allowed
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
            return Err(reply::classify(
                status,
                &reply,
                &format!("the mount of {r}"),
            ));
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
        let mut mounts = self.mounts.lock().map_err(|_| poisoned())?;
        if mounts.len() < 256 {
            mounts.push(mount.clone());
        }
        Ok(mount)
    }

    /// One request for `r` (a reference without its key): the reply, whether
    /// it is kv-v2's, and the token that made it. A 403 logs in again once.
    async fn request(&self, r: &VaultRef) -> Result<Answer, FetchError> {
        match self.request_once(r).await {
            Err(FetchError::Forbidden(_)) if self.may_log_in_again().await => {
                tracing::info!(reference = %r, "Vault denied the request; logged in again to retry once");
                self.request_once(r).await
            }
            other => other,
        }
    }

    async fn request_once(&self, r: &VaultRef) -> Result<Answer, FetchError> {
        let token = self.token().await?;
        if r.write.is_some()
            && let Ok(mount) = self.mount(r, &token.value).await
            && mount.kv_version.is_some()
        {
            // A kv path shaped like an issuing one: a write would overwrite it.
            return Err(FetchError::Invalid(
                format!("{r}: {} is a kv mount, where a write would change a secret; writes are for engines that issue", mount.path).into(),
            ));
        }
        let (api_path, kv2) = if r.api_path || r.write.is_some() {
            (r.path.clone(), false)
        } else {
            let mount = self.mount(r, &token.value).await?;
            match mount.kv_version {
                Some(2) => {
                    let rest = r.path.get(mount.path.len()..).unwrap_or_default();
                    (format!("{}data/{rest}", mount.path), true)
                }
                _ => (r.path.clone(), false),
            }
        };
        let (method, path, body) = match &r.write {
            Some(write) => {
                let args: serde_json::Map<String, Value> = write
                    .args
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let method = match write.method {
                    WriteMethod::Post => Method::POST,
                    WriteMethod::Put => Method::PUT,
                };
                (method, api_path, Some(Value::Object(args)))
            }
            None => {
                let query = r
                    .version
                    .map(|v| format!("?version={v}"))
                    .unwrap_or_default();
                (Method::GET, format!("{api_path}{query}"), None)
            }
        };
        let (status, reply) = self
            .call(method, &path, Some(&token.value), body.as_ref())
            .await?;
        if !status.is_success() {
            return Err(reply::read_error(status, &reply, r));
        }
        Ok(Answer { reply, kv2, token })
    }

    /// Every reference that names this path, from one request.
    async fn fetch_group(
        &self,
        keyless: &VaultRef,
        refs: &[&VaultRef],
    ) -> Vec<Result<Fetched, FetchError>> {
        let answer = match self.request(keyless).await {
            Ok(answer) => answer,
            Err(e) => return vec![Err(e); refs.len()],
        };
        let now = SystemTime::now();
        let lease = match reply::lease_of(&answer.reply, now, answer.token.until) {
            // A write that lends nothing is issued once, not at every poll
            // (a secret-id, a signed value): kept until the sidecar restarts.
            None if keyless.write.is_some() => {
                Some(Lease::granted(None, false, reply::MAX_TTL, now, None))
            }
            lease => lease,
        };
        if let Some(id) = lease.as_ref().and_then(|l| l.id.clone()) {
            self.track(id, answer.token.generation);
        }
        refs.iter()
            .map(|r| {
                reply::value_of(r, &answer.reply, answer.kv2).map(|fetched| Fetched {
                    lease: lease.clone(),
                    ..fetched
                })
            })
            .collect()
    }

    fn track(&self, lease_id: String, generation: u64) {
        if let Ok(mut leases) = self.leases.lock() {
            let order = leases.values().map(|(_, o)| *o).max().map_or(0, |o| o + 1);
            leases.insert(lease_id, (generation, order));
            // The oldest go first: a replaced lease is never asked again.
            while leases.len() > MAX_TRACKED_LEASES {
                let oldest = leases
                    .iter()
                    .min_by_key(|(_, (_, o))| *o)
                    .map(|(id, _)| id.clone());
                match oldest {
                    Some(id) => leases.remove(&id),
                    None => break,
                };
            }
        }
    }

    fn generation_of(&self, lease_id: &str) -> Option<u64> {
        self.leases.lock().ok()?.get(lease_id).map(|(g, _)| *g)
    }
}

/// A successful request's reply and its context.
struct Answer {
    reply: Value,
    kv2: bool,
    token: Used,
}

#[async_trait]
impl Provider for VaultProvider {
    async fn fetch(
        &self,
        source: &SecretRef,
        format: Option<shared::ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        self.fetch_batch(&[(source.clone(), format)], 1)
            .await
            .pop()
            .unwrap_or_else(|| Err(FetchError::Invalid("no answer".into())))
    }

    /// One request per path, however many keys of it are asked: dynamic
    /// credentials are issued per request, so a username and its password
    /// must come from the same one.
    async fn fetch_batch(
        &self,
        requests: &[Request],
        concurrency: usize,
    ) -> Vec<Result<Fetched, FetchError>> {
        let mut groups: Vec<(VaultRef, Vec<(usize, &VaultRef)>)> = Vec::new();
        let mut answers: Vec<Option<Result<Fetched, FetchError>>> = vec![None; requests.len()];
        for (i, (source, _)) in requests.iter().enumerate() {
            let SecretRef::Vault(r) = source else {
                answers[i] = Some(Err(FetchError::Unsupported(
                    format!("{source} is not a Vault reference").into(),
                )));
                continue;
            };
            let keyless = VaultRef {
                key: None,
                ..r.clone()
            };
            match groups.iter_mut().find(|(k, _)| *k == keyless) {
                Some((_, members)) => members.push((i, r)),
                None => groups.push((keyless, vec![(i, r)])),
            }
        }
        let mut fetches = Vec::with_capacity(groups.len());
        for (keyless, members) in &groups {
            fetches.push(async move {
                let refs: Vec<&VaultRef> = members.iter().map(|(_, r)| *r).collect();
                let results = self.fetch_group(keyless, &refs).await;
                members
                    .iter()
                    .map(|(i, _)| *i)
                    .zip(results)
                    .collect::<Vec<_>>()
            });
        }
        let results: Vec<Vec<(usize, Result<Fetched, FetchError>)>> = stream::iter(fetches)
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (i, result) in results.into_iter().flatten() {
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(result);
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(FetchError::Invalid("no answer".into()))))
            .collect()
    }

    fn reset_credentials(&self) {
        if let Ok(mut slot) = self.token.try_lock() {
            *slot = None;
        }
    }

    /// `PUT sys/leases/renew` asking for the lease's term again. A lease
    /// made under the current token ends with it (so the token's end bounds
    /// it); one made under an earlier token keeps the bound it had.
    async fn renew(&self, lease: &Lease) -> Result<Lease, FetchError> {
        let Some(id) = lease.id.as_ref().filter(|id| reply::is_lease_id(id)) else {
            return Err(FetchError::Unsupported(
                "a certificate is re-issued, not renewed".into(),
            ));
        };
        let token = self.token().await?;
        let body = json!({"lease_id": id, "increment": lease.term().as_secs()});
        let (status, reply) = self
            .call(
                Method::PUT,
                "sys/leases/renew",
                Some(&token.value),
                Some(&body),
            )
            .await?;
        if !status.is_success() {
            return Err(reply::classify(status, &reply, "renewing a lease"));
        }
        let bound = match self.generation_of(id) {
            Some(g) if g == token.generation => token.until,
            _ => None,
        };
        let renewed = lease.renewed(
            reply::ttl(&reply["lease_duration"]),
            SystemTime::now(),
            bound,
        );
        Ok(Lease {
            renewable: renewed.renewable && reply["renewable"].as_bool().unwrap_or(false),
            ..renewed
        })
    }

    /// With revoke on shutdown: each lease (`sys/leases/revoke`, which the
    /// role's policy must allow), then the sidecar's own token
    /// (`revoke-self`, which revokes what it made even where the policy
    /// does not allow the first), as Vault Agent's `revoke_on_shutdown`.
    async fn release(&self, leases: &[Lease]) {
        if !self.config.revoke_on_shutdown {
            return;
        }
        let Ok(token) = self.token().await else {
            tracing::warn!("no Vault token to revoke the leases with; they expire on their own");
            return;
        };
        let mut revoked = 0usize;
        for id in leases
            .iter()
            .filter_map(|l| l.id.as_deref())
            .filter(|id| reply::is_lease_id(id))
        {
            // The path form, so a policy can allow exactly these
            // (`sys/leases/revoke/database/creds/app/*`).
            let path = format!("sys/leases/revoke/{id}");
            match self
                .call(Method::PUT, &path, Some(&token.value), Some(&json!({})))
                .await
            {
                Ok((status, _)) if status.is_success() => revoked += 1,
                Ok((status, reply)) => {
                    let e = reply::classify(status, &reply, "revoking a lease");
                    tracing::warn!(kind = e.label(), error = %e, "a lease was not revoked");
                }
                Err(e) => tracing::warn!(kind = e.label(), error = %e, "a lease was not revoked"),
            }
        }
        if matches!(self.config.auth, VaultAuth::Login { .. }) {
            match self
                .call(
                    Method::POST,
                    "auth/token/revoke-self",
                    Some(&token.value),
                    Some(&json!({})),
                )
                .await
            {
                Ok((status, _)) if status.is_success() => {
                    tracing::info!(
                        leases = revoked,
                        "revoked the leases and the sidecar's Vault token"
                    );
                }
                Ok((status, reply)) => {
                    let e = reply::classify(status, &reply, "revoking the token");
                    tracing::warn!(kind = e.label(), error = %e, "the Vault token was not revoked");
                }
                Err(e) => {
                    tracing::warn!(kind = e.label(), error = %e, "the Vault token was not revoked")
                }
            }
        } else {
            tracing::info!(leases = revoked, "revoked the leases");
        }
    }
}

fn poisoned() -> FetchError {
    FetchError::Invalid("internal lock poisoned".into())
}

/// A login's or renewal's `auth`: the token, renewed at two thirds of its
/// TTL. After a renewal (`asked`: the term it had) that granted less, the
/// token is at its max TTL: the next step is a new login.
fn token_from(auth: &Value, generation: u64, asked: Option<Duration>) -> Option<Token> {
    let value = auth["client_token"].as_str().filter(|t| !t.is_empty())?;
    let ttl = reply::ttl(&auth["lease_duration"]);
    let now = Instant::now();
    let full = asked.is_none_or(|asked| ttl + Duration::from_secs(1) >= asked);
    Some(Token {
        value: Zeroizing::new(value.to_owned()),
        renew_at: (!ttl.is_zero()).then(|| now.checked_add(ttl * 2 / 3).unwrap_or(now)),
        renewable: auth["renewable"].as_bool().unwrap_or(false) && full,
        term: ttl,
        until: (!ttl.is_zero())
            .then(|| SystemTime::now().checked_add(ttl))
            .flatten(),
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_renew_at_two_thirds() {
        let t = token_from(
            &json!({"client_token": "s.x", "lease_duration": 3600, "renewable": true}),
            1,
            None,
        )
        .unwrap();
        let at = t.renew_at.unwrap();
        let left = at.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(2390) && left <= Duration::from_secs(2400),
            "{left:?}"
        );
        assert!(t.renewable);
        assert!(token_from(&json!({"client_token": ""}), 1, None).is_none());
        let root = token_from(
            &json!({"client_token": "root", "lease_duration": 0}),
            1,
            None,
        )
        .unwrap();
        assert!(root.renew_at.is_none() && root.until.is_none());
    }

    #[test]
    fn l1_a_token_renewed_short_of_its_term_is_replaced_by_a_login() {
        let renewed = json!({"client_token": "s.x", "lease_duration": 900, "renewable": true});
        let capped = token_from(&renewed, 1, Some(Duration::from_secs(3600))).unwrap();
        assert!(!capped.renewable, "at its max TTL: log in again next time");
        let full = token_from(&renewed, 1, Some(Duration::from_secs(900))).unwrap();
        assert!(full.renewable);
        // A server's absurd TTL neither overflows nor panics.
        let huge = json!({"client_token": "s.x", "lease_duration": u64::MAX, "renewable": true});
        assert_eq!(token_from(&huge, 1, None).unwrap().term, reply::MAX_TTL);
    }
}
