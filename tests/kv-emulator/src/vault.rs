//! Key Vault data plane: secrets, certificates and keys (read-only; writes go
//! through the admin API), with challenge auth, faults, denials and counters.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State as AxState;
use axum::http::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::http::{self, kv_error};
use crate::material::{ContentType, KeyKind};
use crate::state::{
    Attributes, CertificateVersion, FaultTarget, KeyVersion, ObjectKind, SecretVersion, State,
    Vault, valid_object_name,
};

/// Audiences Key Vault accepts in a token.
const VAULT_AUDIENCES: [&str; 2] = [
    "https://vault.azure.net",
    "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
];
const PAGE_MAX: usize = 25;

pub(crate) async fn data_plane(
    AxState(state): AxState<State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let shared = state.shared();
    let host = http::host(&headers, &uri, shared.url.trim_start_matches("https://"));
    let vault = http::vault_for_host(&host, &shared.default_vault);
    let path = uri.path().to_owned();

    let decision =
        state.fault_decision(&[FaultTarget::AllVaults, FaultTarget::Vault(vault.clone())]);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let token = bearer(&headers).and_then(|t| state.check_token(t));
    let identity = token.as_ref().map(|t| t.identity.clone());

    let resp = if decision.down {
        kv_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable (emulated outage).",
            None,
        )
    } else if let Some(retry_after) = decision.throttle_retry_after {
        let mut r = kv_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            None,
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after));
        r
    } else {
        match &token {
            Some(t) if VAULT_AUDIENCES.contains(&t.audience.trim_end_matches('/')) => {
                let ctx = Ctx {
                    state: &state,
                    vault: &vault,
                    identity: &t.identity,
                    base: format!("https://{host}"),
                    query: http::query(&uri),
                };
                ctx.handle(&method, &path)
            }
            Some(_) => challenge(
                &state,
                "AKV10022: Invalid audience. The token was not issued for Key Vault.",
            ),
            None if bearer(&headers).is_some() => challenge(
                &state,
                "AKV10032: The access token is invalid or has expired.",
            ),
            None => challenge(
                &state,
                "AKV10000: Request is missing a Bearer or PoP token.",
            ),
        }
    };
    tracing::info!(
        %vault,
        method = %method,
        %path,
        identity = identity.as_deref().unwrap_or("-"),
        status = resp.status().as_u16(),
        "data plane request"
    );
    state.record(
        &vault,
        method.as_str(),
        &path,
        identity.as_deref(),
        resp.status().as_u16(),
    );
    resp
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// 401 with the challenge the SDKs parse to find the authority and resource.
fn challenge(state: &State, message: &str) -> Response {
    let shared = state.shared();
    let value = format!(
        "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
        shared.authority_host, shared.tenant_id
    );
    let mut r = kv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    r
}

struct Ctx<'a> {
    state: &'a State,
    vault: &'a str,
    identity: &'a str,
    base: String,
    query: HashMap<String, String>,
}

enum Route<'p> {
    List,
    Latest(&'p str),
    Version(&'p str, &'p str),
    Versions(&'p str),
}

impl Ctx<'_> {
    fn handle(&self, method: &Method, path: &str) -> Response {
        let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if segs.len() > 1 && segs.last() == Some(&"") {
            segs.pop();
        }
        let kind = match segs.first().copied().map(str::parse::<ObjectKind>) {
            Some(Ok(k)) => k,
            _ => {
                return kv_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "The requested resource was not found.",
                    None,
                );
            }
        };
        let route = match segs[1..] {
            [] => Route::List,
            [name] => Route::Latest(name),
            [name, "versions"] => Route::Versions(name),
            [name, version] => Route::Version(name, version),
            _ => {
                return kv_error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "The requested resource was not found.",
                    None,
                );
            }
        };
        if method != Method::GET {
            return kv_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The emulator's data plane is read-only; use /admin to change objects.",
                None,
            );
        }
        if !self.query.contains_key("api-version") {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The 'api-version' query parameter is missing.",
                None,
            );
        }
        let name = match route {
            Route::List => "",
            Route::Latest(n) | Route::Version(n, _) | Route::Versions(n) => n,
        };
        if !name.is_empty() && !valid_object_name(name) {
            return kv_error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                &format!("The request URI contains an invalid name: {name}"),
                None,
            );
        }
        if self.state.is_denied(self.vault, self.identity, kind, name) {
            let op = if matches!(route, Route::Latest(_) | Route::Version(..)) {
                "get"
            } else {
                "list"
            };
            return kv_error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!(
                    "The user, group or application 'appid={};iss=https://sts.windows.net/{}/' does not have {} {op} permission on key vault '{};location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                    self.identity,
                    self.state.tenant_id(),
                    kind.as_str(),
                    self.vault
                ),
                Some("AccessDenied"),
            );
        }
        let key = name.to_ascii_lowercase();
        self.state.with_vault(self.vault, |v| match (kind, route) {
            (ObjectKind::Secrets, Route::List) => {
                self.list(&v.secrets, None, |x| self.secret_item(x, false), "/secrets")
            }
            (ObjectKind::Secrets, Route::Versions(_)) => {
                let path = format!("/secrets/{name}/versions");
                self.list(&v.secrets, Some(&key), |x| self.secret_item(x, true), &path)
            }
            (ObjectKind::Secrets, Route::Latest(_)) => self.secret(v, &key, name, None),
            (ObjectKind::Secrets, Route::Version(_, ver)) => self.secret(v, &key, name, Some(ver)),
            (ObjectKind::Certificates, Route::List) => self.list(
                &v.certificates,
                None,
                |x| self.cert_item(x, false),
                "/certificates",
            ),
            (ObjectKind::Certificates, Route::Versions(_)) => {
                let path = format!("/certificates/{name}/versions");
                self.list(
                    &v.certificates,
                    Some(&key),
                    |x| self.cert_item(x, true),
                    &path,
                )
            }
            (ObjectKind::Certificates, Route::Latest(_)) => self.certificate(v, &key, name, None),
            (ObjectKind::Certificates, Route::Version(_, ver)) => {
                self.certificate(v, &key, name, Some(ver))
            }
            (ObjectKind::Keys, Route::List) => {
                self.list(&v.keys, None, |x| self.key_item(x, false), "/keys")
            }
            (ObjectKind::Keys, Route::Versions(_)) => {
                let path = format!("/keys/{name}/versions");
                self.list(&v.keys, Some(&key), |x| self.key_item(x, true), &path)
            }
            (ObjectKind::Keys, Route::Latest(_)) => self.key(v, &key, name, None),
            (ObjectKind::Keys, Route::Version(_, ver)) => self.key(v, &key, name, Some(ver)),
        })
    }

    fn id(&self, kind: &str, name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{}/{kind}/{name}/{v}", self.base),
            None => format!("{}/{kind}/{name}", self.base),
        }
    }

    fn secret(&self, v: &Vault, key: &str, name: &str, version: Option<&str>) -> Response {
        let Some(s) = find(v.secrets.get(key), version, |s| &s.version) else {
            return not_found("SecretNotFound", "secret", name, version);
        };
        if !s.attributes.enabled {
            return kv_error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                Some("SecretDisabled"),
            );
        }
        // outContentType: Key Vault converts a certificate's PFX secret to PEM
        // on request; other formats are refused, other secrets come as they are.
        let mut value = &s.value;
        let mut content_type = s.content_type.as_deref();
        if let Some(out) = self.query.get("outContentType") {
            let pem = ContentType::Pem.as_str();
            if out != pem && out != ContentType::Pkcs12.as_str() {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    &format!("Unsupported outContentType '{out}'."),
                    None,
                );
            }
            if s.managed && content_type != Some(out.as_str()) {
                match (&s.pem, out.as_str() == pem) {
                    (Some(p), true) => {
                        value = p;
                        content_type = Some(pem);
                    }
                    _ => {
                        return kv_error(
                            StatusCode::BAD_REQUEST,
                            "BadParameter",
                            "Only PFX to PEM conversion is supported.",
                            None,
                        );
                    }
                }
            }
        }
        let mut body = Map::new();
        body.insert("value".into(), value.clone().into());
        if let Some(ct) = content_type {
            body.insert("contentType".into(), ct.into());
        }
        body.insert(
            "id".into(),
            self.id("secrets", &s.name, Some(&s.version)).into(),
        );
        body.insert("attributes".into(), attributes(&s.attributes));
        if !s.tags.is_empty() {
            body.insert("tags".into(), json!(s.tags));
        }
        if s.managed {
            body.insert(
                "kid".into(),
                self.id("keys", &s.name, Some(&s.version)).into(),
            );
            body.insert("managed".into(), true.into());
        }
        http::json(StatusCode::OK, &Value::Object(body))
    }

    fn secret_item(&self, s: &SecretVersion, with_version: bool) -> Value {
        let mut item = Map::new();
        let version = with_version.then_some(s.version.as_str());
        item.insert("id".into(), self.id("secrets", &s.name, version).into());
        item.insert("attributes".into(), attributes(&s.attributes));
        if let Some(ct) = &s.content_type {
            item.insert("contentType".into(), ct.clone().into());
        }
        if !s.tags.is_empty() {
            item.insert("tags".into(), json!(s.tags));
        }
        if s.managed {
            item.insert("managed".into(), true.into());
        }
        Value::Object(item)
    }

    fn certificate(&self, v: &Vault, key: &str, name: &str, version: Option<&str>) -> Response {
        let Some(c) = find(v.certificates.get(key), version, |c| &c.version) else {
            return not_found("CertificateNotFound", "certificate", name, version);
        };
        let (kty, key_props) = match c.key_kind {
            KeyKind::Rsa2048 => (
                "RSA",
                json!({"exportable": true, "kty": "RSA", "key_size": 2048, "reuse_key": false}),
            ),
            KeyKind::EcP256 => (
                "EC",
                json!({"exportable": true, "kty": "EC", "key_size": 256, "crv": "P-256", "reuse_key": false}),
            ),
            KeyKind::EcP384 => (
                "EC",
                json!({"exportable": true, "kty": "EC", "key_size": 384, "crv": "P-384", "reuse_key": false}),
            ),
        };
        let key_usage = if kty == "RSA" {
            json!(["digitalSignature", "keyEncipherment"])
        } else {
            json!(["digitalSignature"])
        };
        let mut x509 = json!({
            "subject": c.subject,
            "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
            "key_usage": key_usage,
            "validity_months": c.validity_months,
            "basic_constraints": {"ca": false},
        });
        if !c.dns_names.is_empty() {
            x509["sans"] = json!({ "dns_names": c.dns_names });
        }
        let policy = json!({
            "id": format!("{}/certificates/{}/policy", self.base, c.name),
            "key_props": key_props,
            "secret_props": {"contentType": c.content_type.as_str()},
            "x509_props": x509,
            "lifetime_actions": [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": "AutoRenew"}}],
            "issuer": {"name": "Self"},
            "attributes": {"enabled": true, "created": c.attributes.created, "updated": c.attributes.created},
        });
        let mut body = Map::new();
        body.insert(
            "id".into(),
            self.id("certificates", &c.name, Some(&c.version)).into(),
        );
        body.insert(
            "kid".into(),
            self.id("keys", &c.name, Some(&c.version)).into(),
        );
        body.insert(
            "sid".into(),
            self.id("secrets", &c.name, Some(&c.version)).into(),
        );
        body.insert("x5t".into(), c.x5t.clone().into());
        body.insert("cer".into(), STANDARD.encode(&c.der).into());
        body.insert("attributes".into(), attributes(&c.attributes));
        if !c.tags.is_empty() {
            body.insert("tags".into(), json!(c.tags));
        }
        body.insert("policy".into(), policy);
        http::json(StatusCode::OK, &Value::Object(body))
    }

    fn cert_item(&self, c: &CertificateVersion, with_version: bool) -> Value {
        let version = with_version.then_some(c.version.as_str());
        let mut item = json!({
            "id": self.id("certificates", &c.name, version),
            "x5t": c.x5t,
            "attributes": attributes(&c.attributes),
        });
        if !c.tags.is_empty() {
            item["tags"] = json!(c.tags);
        }
        item
    }

    fn key(&self, v: &Vault, key: &str, name: &str, version: Option<&str>) -> Response {
        let Some(k) = find(v.keys.get(key), version, |k| &k.version) else {
            return not_found("KeyNotFound", "key", name, version);
        };
        let mut jwk = Map::new();
        jwk.insert(
            "kid".into(),
            self.id("keys", &k.name, Some(&k.version)).into(),
        );
        jwk.insert("key_ops".into(), json!(k.jwk.key_ops()));
        k.jwk.fields(&mut jwk);
        let mut attrs = attributes(&k.attributes);
        attrs["exportable"] = json!(k.managed);
        let mut body = json!({ "key": Value::Object(jwk), "attributes": attrs });
        if k.managed {
            body["managed"] = json!(true);
        }
        http::json(StatusCode::OK, &body)
    }

    fn key_item(&self, k: &KeyVersion, with_version: bool) -> Value {
        let version = with_version.then_some(k.version.as_str());
        let mut item = json!({
            "kid": self.id("keys", &k.name, version),
            "attributes": attributes(&k.attributes),
        });
        if k.managed {
            item["managed"] = json!(true);
        }
        item
    }

    /// One page of a list: `maxresults` (1..=25, default 25) and an opaque
    /// `$skiptoken`; `nextLink` is absolute and keeps the page size.
    /// A page of the latest version of every object (`name: None`), or of
    /// every version of one object.
    fn list<T>(
        &self,
        objects: &BTreeMap<String, Vec<T>>,
        name: Option<&str>,
        item: impl Fn(&T) -> Value,
        path: &str,
    ) -> Response {
        let items = match name {
            None => objects
                .values()
                .filter_map(|l| l.last())
                .map(&item)
                .collect(),
            Some(name) => objects.get(name).into_iter().flatten().map(&item).collect(),
        };
        self.page(items, path)
    }

    fn page(&self, items: Vec<Value>, path: &str) -> Response {
        let max = match self.query.get("maxresults").map(|m| m.parse::<usize>()) {
            None => PAGE_MAX,
            Some(Ok(m)) if (1..=PAGE_MAX).contains(&m) => m,
            Some(_) => {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The value of the maxresults parameter must be between 1 and 25.",
                    None,
                );
            }
        };
        let skip = match self.query.get("$skiptoken").map(|t| decode_skiptoken(t)) {
            None => 0,
            Some(Some(n)) => n,
            Some(None) => {
                return kv_error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The $skiptoken is invalid.",
                    None,
                );
            }
        };
        let total = items.len();
        let value: Vec<Value> = items.into_iter().skip(skip).take(max).collect();
        let next = skip + value.len();
        let next_link = if next < total {
            let api = self.query.get("api-version").map_or("7.5", String::as_str);
            let token = URL_SAFE_NO_PAD.encode(format!("offset:{next}"));
            Value::String(format!(
                "{}{path}?api-version={api}&$skiptoken={token}&maxresults={max}",
                self.base
            ))
        } else {
            Value::Null
        };
        http::json(
            StatusCode::OK,
            &json!({ "value": value, "nextLink": next_link }),
        )
    }
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

/// Latest (last created) version, or the named one (case-insensitive).
fn find<'v, T>(
    list: Option<&'v Vec<T>>,
    version: Option<&str>,
    ver: impl Fn(&T) -> &String,
) -> Option<&'v T> {
    let list = list?;
    match version {
        None => list.last(),
        Some(want) => list.iter().find(|t| ver(t).eq_ignore_ascii_case(want)),
    }
}

fn not_found(code: &str, what: &str, name: &str, version: Option<&str>) -> Response {
    let id = match version {
        Some(v) => format!("{name}/{v}"),
        None => name.to_owned(),
    };
    kv_error(
        StatusCode::NOT_FOUND,
        code,
        &format!(
            "A {what} with (name/id) {id} was not found in this key vault. If you recently deleted this {what} you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
        None,
    )
}

fn attributes(a: &Attributes) -> Value {
    let mut m = Map::new();
    m.insert("enabled".into(), a.enabled.into());
    if let Some(nbf) = a.not_before {
        m.insert("nbf".into(), nbf.into());
    }
    if let Some(exp) = a.expires {
        m.insert("exp".into(), exp.into());
    }
    m.insert("created".into(), a.created.into());
    m.insert("updated".into(), a.updated.into());
    m.insert("recoveryLevel".into(), "Recoverable+Purgeable".into());
    m.insert("recoverableDays".into(), 90.into());
    Value::Object(m)
}
