//! The emulator's state: vault contents, issued tokens, faults, denials and
//! request counters. [`State`] is a cheap clonable handle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::config::EmulatorConfig;
use crate::error::{Error, Result};
use crate::material::{self, CertificateSpec, ContentType, KeyKind, PublicJwk};

/// Handle on a running emulator's state; every admin operation of the HTTP
/// API is a method here. Names are case-insensitive like Key Vault's.
#[derive(Clone)]
pub struct State {
    shared: Arc<Shared>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub default_vault: String,
    pub tenant_id: String,
    pub url: String,
    pub authority_host: String,
    pub client_secrets: BTreeMap<String, String>,
    pub federated_keys: Vec<FederatedKey>,
    pub federated_subjects: BTreeMap<String, Vec<String>>,
    pub identity_header: Option<String>,
    pub imds: bool,
    data: Mutex<Data>,
}

pub(crate) struct FederatedKey {
    pub algorithm: jsonwebtoken::Algorithm,
    pub key: jsonwebtoken::DecodingKey,
}

struct Data {
    vaults: BTreeMap<String, Vault>,
    tokens: HashMap<String, TokenInfo>,
    token_lifetime: Duration,
    faults: BTreeMap<FaultTarget, FaultSet>,
    denials: Vec<Denial>,
    counters: BTreeMap<(String, String, String, Option<String>, u16), u64>,
}

/// One vault's objects; maps are keyed by lowercase name, versions in creation order.
#[derive(Default)]
pub(crate) struct Vault {
    pub secrets: BTreeMap<String, Vec<SecretVersion>>,
    pub certificates: BTreeMap<String, Vec<CertificateVersion>>,
    pub keys: BTreeMap<String, Vec<KeyVersion>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Attributes {
    pub enabled: bool,
    pub created: i64,
    pub updated: i64,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

#[derive(Clone)]
pub(crate) struct SecretVersion {
    pub name: String,
    pub version: String,
    pub value: String,
    pub content_type: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub attributes: Attributes,
    /// Backing secret of a certificate (`managed: true`, `kid` set).
    pub managed: bool,
    /// PEM form of a certificate's backing secret (for `outContentType`).
    pub pem: Option<String>,
}

#[derive(Clone)]
pub(crate) struct CertificateVersion {
    pub name: String,
    pub version: String,
    pub der: Vec<u8>,
    pub x5t: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub key_kind: KeyKind,
    pub content_type: ContentType,
    pub validity_months: u32,
    pub attributes: Attributes,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone)]
pub(crate) struct KeyVersion {
    pub name: String,
    pub version: String,
    pub jwk: PublicJwk,
    pub attributes: Attributes,
    pub managed: bool,
}

/// Issued access token's facts.
#[derive(Clone, Debug)]
pub(crate) struct TokenInfo {
    pub identity: String,
    pub audience: String,
    pub expires_at: SystemTime,
}

/// A secret version to create. `Debug` does not print the value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretSpec {
    /// The value.
    pub value: String,
    /// `contentType`, if any.
    pub content_type: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Whether the version is enabled (default true).
    pub enabled: bool,
    /// `nbf` attribute (epoch seconds).
    pub not_before: Option<i64>,
    /// `exp` attribute (epoch seconds).
    pub expires: Option<i64>,
}

impl Default for SecretSpec {
    fn default() -> Self {
        Self {
            value: String::new(),
            content_type: None,
            tags: BTreeMap::new(),
            enabled: true,
            not_before: None,
            expires: None,
        }
    }
}

impl From<&str> for SecretSpec {
    fn from(value: &str) -> Self {
        Self {
            value: value.to_owned(),
            ..Self::default()
        }
    }
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("value", &"<redacted>")
            .field("content_type", &self.content_type)
            .field("tags", &self.tags)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// Result of [`State::create_certificate`]. `Debug` does not print the secret value.
#[derive(Clone, Serialize)]
pub struct CreatedCertificate {
    /// Version shared by the certificate, its backing secret and key.
    pub version: String,
    /// The certificate's DER (what `cer` carries).
    #[serde(skip)]
    pub der: Vec<u8>,
    /// base64url SHA-1 thumbprint.
    pub x5t: String,
    /// The backing secret's value (PEM text or base64 PFX).
    #[serde(skip)]
    pub secret_value: String,
}

impl fmt::Debug for CreatedCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedCertificate")
            .field("version", &self.version)
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// Result of [`State::create_key`].
#[derive(Clone, Debug, Serialize)]
pub struct CreatedKey {
    /// The new version.
    pub version: String,
    /// The public JWK (`kty`, `n`/`e` or `crv`/`x`/`y`), without `kid`.
    pub jwk: serde_json::Value,
}

/// Object families of the data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// `/secrets`
    Secrets,
    /// `/certificates`
    Certificates,
    /// `/keys`
    Keys,
}

impl ObjectKind {
    /// The path segment (`secrets`, `certificates`, `keys`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Certificates => "certificates",
            Self::Keys => "keys",
        }
    }
}

impl FromStr for ObjectKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "secrets" => Ok(Self::Secrets),
            "certificates" => Ok(Self::Certificates),
            "keys" => Ok(Self::Keys),
            _ => Err(Error::Invalid(format!("unknown object kind {s:?}"))),
        }
    }
}

/// Where a fault applies. String form: `*`, `@identity`, or a vault name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultTarget {
    /// Every vault's data plane (`*`).
    AllVaults,
    /// One vault's data plane.
    Vault(String),
    /// The Entra token endpoints, the OpenID configuration and `/msi/token` (`@identity`).
    Identity,
}

impl FromStr for FaultTarget {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "*" => Ok(Self::AllVaults),
            "@identity" => Ok(Self::Identity),
            v => Ok(Self::Vault(vault_key(v)?)),
        }
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AllVaults => f.write_str("*"),
            Self::Vault(v) => f.write_str(v),
            Self::Identity => f.write_str("@identity"),
        }
    }
}

/// An injected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 `ServiceUnavailable` (connections stay open) until cleared.
    Down,
    /// Answer 429 with `Retry-After: retry_after_secs` to the next `count`
    /// requests (`None` = until cleared).
    Throttle {
        /// Seconds announced in `Retry-After`.
        retry_after_secs: u64,
        /// How many requests to throttle; `None` = all until cleared.
        count: Option<u32>,
    },
    /// Delay every response by this much.
    Latency(Duration),
}

#[derive(Clone, Debug, Default)]
struct FaultSet {
    down: bool,
    throttle: Option<(u64, Option<u32>)>,
    latency: Option<Duration>,
}

/// What the fault layer decided for one request.
#[derive(Debug, Default)]
pub(crate) struct FaultDecision {
    pub latency: Duration,
    pub down: bool,
    pub throttle_retry_after: Option<u64>,
}

#[derive(Clone, Debug)]
struct Denial {
    vault: String,
    identity: String,
    object: String,
}

/// One request counter: requests with the same target, method, path
/// (without query, trailing `/` removed), identity and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    /// Vault name, or `@identity` for the token endpoints.
    pub target: String,
    /// HTTP method.
    pub method: String,
    /// Path without query and trailing slash.
    pub path: String,
    /// Client id of the bearer token / token request, if known.
    pub identity: Option<String>,
    /// Response status.
    pub status: u16,
    /// How many such requests.
    pub count: u64,
}

pub(crate) fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn new_version() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Key Vault object names: 1-127 of `[0-9A-Za-z-]`.
pub(crate) fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn object_key(name: &str) -> Result<String> {
    if valid_object_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(format!(
            "object name {name:?} must be 1-127 of [0-9A-Za-z-]"
        )))
    }
}

fn vault_key(name: &str) -> Result<String> {
    if !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Error::Invalid(format!(
            "vault name {name:?} must be a DNS label"
        )))
    }
}

/// Normalises a request path for counters: no query, no trailing slash.
pub(crate) fn counter_path(path: &str) -> String {
    let p = path.split('?').next().unwrap_or(path);
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/".to_owned()
    } else {
        t.to_owned()
    }
}

impl State {
    pub(crate) fn new(config: &EmulatorConfig, url: String) -> Result<Self> {
        let mut federated_keys = Vec::new();
        for pem in &config.federated_keys {
            federated_keys.push(parse_federated_key(pem)?);
        }
        let authority_host = config
            .authority_host
            .clone()
            .unwrap_or_else(|| url.clone())
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            shared: Arc::new(Shared {
                default_vault: vault_key(&config.default_vault)
                    .map_err(|e| Error::Config(e.to_string()))?,
                tenant_id: config.tenant_id.clone(),
                url,
                authority_host,
                client_secrets: config.client_secrets.clone(),
                federated_keys,
                federated_subjects: config.federated_subjects.clone(),
                identity_header: config.identity_header.clone(),
                imds: config.imds_listen.is_some(),
                data: Mutex::new(Data {
                    vaults: BTreeMap::new(),
                    tokens: HashMap::new(),
                    token_lifetime: config.token_lifetime,
                    faults: BTreeMap::new(),
                    denials: Vec::new(),
                    counters: BTreeMap::new(),
                }),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        self.shared.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vault served for IP / `localhost` hosts.
    pub fn default_vault(&self) -> &str {
        &self.shared.default_vault
    }

    /// The configured tenant.
    pub fn tenant_id(&self) -> &str {
        &self.shared.tenant_id
    }

    // ---- objects -------------------------------------------------------

    /// Adds a new enabled version holding `value` (also how to "rotate");
    /// returns the version (32 lowercase hex).
    pub fn set_secret(&self, vault: &str, name: &str, value: &str) -> Result<String> {
        self.set_secret_with(vault, name, SecretSpec::from(value))
    }

    /// Adds a new version with content type, tags, enabled flag and dates.
    pub fn set_secret_with(&self, vault: &str, name: &str, spec: SecretSpec) -> Result<String> {
        let (vault, key) = (vault_key(vault)?, object_key(name)?);
        let now = now_epoch();
        let version = new_version();
        let mut data = self.data();
        let versions = data
            .vaults
            .entry(vault)
            .or_default()
            .secrets
            .entry(key)
            .or_default();
        if versions.first().is_some_and(|v| v.managed) {
            return Err(Error::Invalid(format!(
                "secret {name} backs a certificate; create a certificate version instead"
            )));
        }
        versions.push(SecretVersion {
            name: name.to_owned(),
            version: version.clone(),
            value: spec.value,
            content_type: spec.content_type,
            tags: spec.tags,
            attributes: Attributes {
                enabled: spec.enabled,
                created: now,
                updated: now,
                not_before: spec.not_before,
                expires: spec.expires,
            },
            managed: false,
            pem: None,
        });
        Ok(version)
    }

    /// Enables or disables one version. Disabling a certificate version also
    /// disables its backing secret and key versions, as Key Vault does.
    pub fn set_enabled(
        &self,
        vault: &str,
        kind: ObjectKind,
        name: &str,
        version: &str,
        enabled: bool,
    ) -> Result<()> {
        let (vault, key) = (vault_key(vault)?, object_key(name)?);
        let version = version.to_ascii_lowercase();
        let now = now_epoch();
        let mut data = self.data();
        let v = data
            .vaults
            .get_mut(&vault)
            .ok_or_else(|| Error::NotFound(format!("{}/{name}/{version}", kind.as_str())))?;
        let not_found = || Error::NotFound(format!("{}/{name}/{version}", kind.as_str()));
        fn set<T>(
            list: Option<&mut Vec<T>>,
            version: &str,
            f: impl Fn(&mut T) -> (&str, &mut Attributes),
            enabled: bool,
            now: i64,
        ) -> bool {
            let Some(list) = list else { return false };
            for item in list.iter_mut() {
                let (ver, attrs) = f(item);
                if ver == version {
                    attrs.enabled = enabled;
                    attrs.updated = now;
                    return true;
                }
            }
            false
        }
        let found = match kind {
            ObjectKind::Secrets => set(
                v.secrets.get_mut(&key),
                &version,
                |s| (&s.version, &mut s.attributes),
                enabled,
                now,
            ),
            ObjectKind::Keys => set(
                v.keys.get_mut(&key),
                &version,
                |s| (&s.version, &mut s.attributes),
                enabled,
                now,
            ),
            ObjectKind::Certificates => {
                let found = set(
                    v.certificates.get_mut(&key),
                    &version,
                    |s| (&s.version, &mut s.attributes),
                    enabled,
                    now,
                );
                if found {
                    set(
                        v.secrets.get_mut(&key),
                        &version,
                        |s| (&s.version, &mut s.attributes),
                        enabled,
                        now,
                    );
                    set(
                        v.keys.get_mut(&key),
                        &version,
                        |s| (&s.version, &mut s.attributes),
                        enabled,
                        now,
                    );
                }
                found
            }
        };
        if found { Ok(()) } else { Err(not_found()) }
    }

    /// Deletes every version of an object (a certificate takes its backing
    /// secret and key with it). Afterwards reads answer 404.
    pub fn delete(&self, vault: &str, kind: ObjectKind, name: &str) -> Result<()> {
        let (vault, key) = (vault_key(vault)?, object_key(name)?);
        let mut data = self.data();
        let not_found = || Error::NotFound(format!("{}/{name}", kind.as_str()));
        let v = data.vaults.get_mut(&vault).ok_or_else(not_found)?;
        let found = match kind {
            ObjectKind::Secrets => {
                if v.secrets
                    .get(&key)
                    .and_then(|l| l.first())
                    .is_some_and(|s| s.managed)
                {
                    return Err(Error::Invalid(format!(
                        "secret {name} backs a certificate; delete the certificate"
                    )));
                }
                v.secrets.remove(&key).is_some()
            }
            ObjectKind::Keys => {
                if v.keys
                    .get(&key)
                    .and_then(|l| l.first())
                    .is_some_and(|s| s.managed)
                {
                    return Err(Error::Invalid(format!(
                        "key {name} backs a certificate; delete the certificate"
                    )));
                }
                v.keys.remove(&key).is_some()
            }
            ObjectKind::Certificates => {
                let found = v.certificates.remove(&key).is_some();
                if found {
                    v.secrets.remove(&key);
                    v.keys.remove(&key);
                }
                found
            }
        };
        if found { Ok(()) } else { Err(not_found()) }
    }

    /// Creates a self-signed certificate version (a new version if the name
    /// exists) together with its backing secret (`managed`, `kid`, value PEM or
    /// base64 PFX per `spec.content_type`) and key, all sharing one version.
    pub fn create_certificate(
        &self,
        vault: &str,
        name: &str,
        spec: &CertificateSpec,
    ) -> Result<CreatedCertificate> {
        let (vault, key) = (vault_key(vault)?, object_key(name)?);
        {
            let data = self.data();
            if let Some(v) = data.vaults.get(&vault) {
                let plain_secret = v
                    .secrets
                    .get(&key)
                    .and_then(|l| l.first())
                    .is_some_and(|s| !s.managed);
                let plain_key = v
                    .keys
                    .get(&key)
                    .and_then(|l| l.first())
                    .is_some_and(|k| !k.managed);
                if plain_secret || plain_key {
                    return Err(Error::Invalid(format!(
                        "a secret or key named {name} exists; Key Vault refuses a certificate of that name"
                    )));
                }
            }
        }
        let m = material::self_signed(name, spec)?;
        let now = now_epoch();
        let version = new_version();
        let attributes = Attributes {
            enabled: true,
            created: now,
            updated: now,
            not_before: Some(m.not_before),
            expires: Some(m.not_after),
        };
        let days = if spec.validity_days == 0 {
            365
        } else {
            spec.validity_days
        };
        let x5t = material::x5t(&m.der);
        let mut data = self.data();
        let v = data.vaults.entry(vault).or_default();
        v.certificates
            .entry(key.clone())
            .or_default()
            .push(CertificateVersion {
                name: name.to_owned(),
                version: version.clone(),
                der: m.der.clone(),
                x5t: x5t.clone(),
                subject: m.subject,
                dns_names: spec.dns_names.clone(),
                key_kind: spec.key_type,
                content_type: spec.content_type,
                validity_months: days.div_ceil(30).max(1),
                attributes: attributes.clone(),
                tags: BTreeMap::new(),
            });
        v.secrets
            .entry(key.clone())
            .or_default()
            .push(SecretVersion {
                name: name.to_owned(),
                version: version.clone(),
                value: m.secret_value.clone(),
                content_type: Some(spec.content_type.as_str().to_owned()),
                tags: BTreeMap::new(),
                attributes: attributes.clone(),
                managed: true,
                pem: Some(m.pem),
            });
        v.keys.entry(key).or_default().push(KeyVersion {
            name: name.to_owned(),
            version: version.clone(),
            jwk: m.jwk,
            attributes,
            managed: true,
        });
        Ok(CreatedCertificate {
            version,
            der: m.der,
            x5t,
            secret_value: m.secret_value,
        })
    }

    /// Creates a key version (RSA 2048, EC P-256 or P-384); returns version and public JWK.
    pub fn create_key(&self, vault: &str, name: &str, kind: KeyKind) -> Result<CreatedKey> {
        let (vault, key) = (vault_key(vault)?, object_key(name)?);
        let (_, jwk) = material::generate_key(kind)?;
        let mut fields = serde_json::Map::new();
        jwk.fields(&mut fields);
        let now = now_epoch();
        let version = new_version();
        let mut data = self.data();
        let versions = data
            .vaults
            .entry(vault)
            .or_default()
            .keys
            .entry(key)
            .or_default();
        if versions.first().is_some_and(|k| k.managed) {
            return Err(Error::Invalid(format!("key {name} backs a certificate")));
        }
        versions.push(KeyVersion {
            name: name.to_owned(),
            version: version.clone(),
            jwk,
            attributes: Attributes {
                enabled: true,
                created: now,
                updated: now,
                not_before: None,
                expires: None,
            },
            managed: false,
        });
        Ok(CreatedKey {
            version,
            jwk: serde_json::Value::Object(fields),
        })
    }

    /// Runs `f` on a vault's objects (an empty vault if it has none).
    pub(crate) fn with_vault<R>(&self, vault: &str, f: impl FnOnce(&Vault) -> R) -> R {
        let data = self.data();
        match data.vaults.get(vault) {
            Some(v) => f(v),
            None => f(&Vault::default()),
        }
    }

    // ---- faults --------------------------------------------------------

    /// Adds a fault to a target (faults of other kinds on it stay).
    pub fn set_fault(&self, target: FaultTarget, fault: Fault) {
        let mut data = self.data();
        let set = data.faults.entry(target).or_default();
        match fault {
            Fault::Down => set.down = true,
            Fault::Throttle {
                retry_after_secs,
                count,
            } => set.throttle = Some((retry_after_secs, count)),
            Fault::Latency(d) => set.latency = Some(d),
        }
    }

    /// Clears the faults of one target, or of all targets with `None`.
    pub fn clear_faults(&self, target: Option<&FaultTarget>) {
        let mut data = self.data();
        match target {
            Some(t) => {
                data.faults.remove(t);
            }
            None => data.faults.clear(),
        }
    }

    /// Decides latency / outage / throttling for one request to `targets`
    /// (consuming one throttled request where counted).
    pub(crate) fn fault_decision(&self, targets: &[FaultTarget]) -> FaultDecision {
        let mut data = self.data();
        let mut decision = FaultDecision::default();
        for t in targets {
            if let Some(set) = data.faults.get(t) {
                decision.latency += set.latency.unwrap_or_default();
                decision.down |= set.down;
            }
        }
        if decision.down {
            return decision;
        }
        for t in targets {
            if let Some(set) = data.faults.get_mut(t)
                && let Some((retry_after, count)) = set.throttle
            {
                match count {
                    None => {}
                    Some(0) => {
                        set.throttle = None;
                        continue;
                    }
                    Some(n) => {
                        set.throttle = if n <= 1 {
                            None
                        } else {
                            Some((retry_after, Some(n - 1)))
                        }
                    }
                }
                decision.throttle_retry_after = Some(retry_after);
                break;
            }
        }
        decision
    }

    // ---- access --------------------------------------------------------

    /// Denies `identity` (a client id, or `*`) access to `object` in `vault`
    /// (`*` = every vault). `object` is `secrets/<name>`, `certificates/<name>`,
    /// `keys/<name>`, `<kind>/*` or `*`. Denied requests get 403 `Forbidden`
    /// (innererror `AccessDenied`), also for names that do not exist.
    pub fn deny(&self, vault: &str, identity: &str, object: &str) -> Result<()> {
        let vault = if vault == "*" {
            "*".to_owned()
        } else {
            vault_key(vault)?
        };
        let object = object.to_ascii_lowercase();
        if object != "*" {
            let (kind, name) = object.split_once('/').ok_or_else(|| {
                Error::Invalid(format!(
                    "object {object:?} must be <kind>/<name>, <kind>/* or *"
                ))
            })?;
            kind.parse::<ObjectKind>()?;
            if name != "*" {
                object_key(name)?;
            }
        }
        self.data().denials.push(Denial {
            vault,
            identity: identity.to_owned(),
            object,
        });
        Ok(())
    }

    /// Removes every denial.
    pub fn clear_denials(&self) {
        self.data().denials.clear();
    }

    /// `name` empty = a list operation on `kind`.
    pub(crate) fn is_denied(
        &self,
        vault: &str,
        identity: &str,
        kind: ObjectKind,
        name: &str,
    ) -> bool {
        let data = self.data();
        let name = name.to_ascii_lowercase();
        data.denials.iter().any(|d| {
            (d.vault == "*" || d.vault == vault)
                && (d.identity == "*" || d.identity == identity)
                && (d.object == "*"
                    || d.object == format!("{}/*", kind.as_str())
                    || (!name.is_empty() && d.object == format!("{}/{name}", kind.as_str())))
        })
    }

    // ---- tokens --------------------------------------------------------

    /// Makes every issued access token invalid (later requests with them get 401).
    pub fn expire_tokens(&self) {
        self.data().tokens.clear();
    }

    /// Lifetime of tokens issued from now on (0 = already expired when issued).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.data().token_lifetime = lifetime;
    }

    /// Current token lifetime.
    pub fn token_lifetime(&self) -> Duration {
        self.data().token_lifetime
    }

    /// Issues an opaque token; returns (token, lifetime seconds, expiry epoch).
    pub(crate) fn issue_token(&self, identity: &str, audience: &str) -> (String, u64, i64) {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut data = self.data();
        let lifetime = data.token_lifetime;
        let now = SystemTime::now();
        data.tokens.retain(|_, t| t.expires_at > now);
        data.tokens.insert(
            token.clone(),
            TokenInfo {
                identity: identity.to_owned(),
                audience: audience.to_owned(),
                expires_at: now + lifetime,
            },
        );
        let expires_on = now_epoch() + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        (token, lifetime.as_secs(), expires_on)
    }

    /// The token's facts if it was issued here and has not expired.
    pub(crate) fn check_token(&self, token: &str) -> Option<TokenInfo> {
        let data = self.data();
        data.tokens
            .get(token)
            .filter(|t| t.expires_at > SystemTime::now())
            .cloned()
    }

    // ---- counters ------------------------------------------------------

    pub(crate) fn record(
        &self,
        target: &str,
        method: &str,
        path: &str,
        identity: Option<&str>,
        status: u16,
    ) {
        let key = (
            target.to_owned(),
            method.to_owned(),
            counter_path(path),
            identity.map(str::to_owned),
            status,
        );
        *self.data().counters.entry(key).or_default() += 1;
    }

    /// Every counter since start (or the last [`Self::reset_counts`]).
    pub fn request_counts(&self) -> Vec<RequestCount> {
        self.data()
            .counters
            .iter()
            .map(
                |((target, method, path, identity, status), count)| RequestCount {
                    target: target.clone(),
                    method: method.clone(),
                    path: path.clone(),
                    identity: identity.clone(),
                    status: *status,
                    count: *count,
                },
            )
            .collect()
    }

    /// Successful (200) GETs of `path` in `vault` by any identity, e.g.
    /// `fetches("kv1", "/secrets/db")` counts `/secrets/db`, `/secrets/db/`;
    /// `/secrets/db/<version>` is a different path.
    pub fn fetches(&self, vault: &str, path: &str) -> u64 {
        let vault = vault.to_ascii_lowercase();
        let path = counter_path(path);
        self.data()
            .counters
            .iter()
            .filter(|((t, m, p, _, s), _)| *t == vault && m == "GET" && *p == path && *s == 200)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Zeroes every counter.
    pub fn reset_counts(&self) {
        self.data().counters.clear();
    }
}

fn parse_federated_key(pem: &str) -> Result<FederatedKey> {
    use jsonwebtoken::{Algorithm, DecodingKey};
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(FederatedKey {
            algorithm: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok(FederatedKey {
            algorithm: Algorithm::ES256,
            key,
        });
    }
    Err(Error::Config(
        "federated key is not an RSA or EC public key PEM".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new(&EmulatorConfig::default(), "https://127.0.0.1:1".into()).unwrap()
    }

    #[test]
    fn throttle_counts_down_then_clears() {
        let s = state();
        let t = [FaultTarget::AllVaults, FaultTarget::Vault("kv".into())];
        s.set_fault(
            FaultTarget::Vault("kv".into()),
            Fault::Throttle {
                retry_after_secs: 7,
                count: Some(2),
            },
        );
        assert_eq!(s.fault_decision(&t).throttle_retry_after, Some(7));
        assert_eq!(s.fault_decision(&t).throttle_retry_after, Some(7));
        assert_eq!(s.fault_decision(&t).throttle_retry_after, None);
    }

    #[test]
    fn names_are_case_insensitive_and_versions_hex() {
        let s = state();
        let v = s.set_secret("KV", "Db-Password", "x").unwrap();
        assert_eq!(v.len(), 32);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        s.with_vault("kv", |vault| {
            assert_eq!(vault.secrets["db-password"][0].name, "Db-Password")
        });
        assert!(s.set_secret("kv", "bad_name", "x").is_err());
    }

    #[test]
    fn denial_matching() {
        let s = state();
        s.deny("kv", "app", "secrets/db").unwrap();
        assert!(s.is_denied("kv", "app", ObjectKind::Secrets, "DB"));
        assert!(!s.is_denied("kv", "other", ObjectKind::Secrets, "db"));
        assert!(!s.is_denied("kv", "app", ObjectKind::Keys, "db"));
        assert!(!s.is_denied("kv", "app", ObjectKind::Secrets, ""));
        s.deny("*", "*", "keys/*").unwrap();
        assert!(s.is_denied("kv2", "x", ObjectKind::Keys, ""));
    }
}
