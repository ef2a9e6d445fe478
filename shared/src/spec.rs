//! `InjectionSpec`: what the webhook decided a pod gets, and what the sidecar
//! reads back from its environment. Names and references only, never values.

use std::{collections::BTreeMap, fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{
    FileName, Identities, JsonPath, Rotation, SecretRef, Store,
    contract::{SPEC_ENV, SPEC_VERSION},
};

/// Where the CSI driver's users already read their files.
pub const DEFAULT_MOUNT_PATH: &str = "/mnt/secrets-store";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionSpec {
    /// [`SPEC_VERSION`] of the webhook that wrote it (1 before versions).
    #[serde(default = "first_version")]
    pub version: u32,
    /// One entry per file, sorted by file name; names are unique.
    pub objects: Vec<SecretObject>,
    pub mount_path: String,
    pub rotation: Rotation,
    /// Containers that get the read-only mount; `None` means every app container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<String>>,
    pub file_permission: FileMode,
    /// Who the sidecar is, per store; only the stores the objects use.
    #[serde(default, skip_serializing_if = "Identities::is_empty")]
    pub identities: Identities,
    /// The SecretProviderClass this spec was read from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_class: Option<String>,
    /// Kubernetes Secrets to keep in sync with the files (the CSI driver's
    /// `secretObjects`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_targets: Vec<SyncTarget>,
    /// The Secret the CSI volume named as `nodePublishSecretRef`, which the
    /// webhook mounts into the injected containers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_secret: Option<ProviderSecret>,
}

/// A Secret of the pod's namespace whose keys a store's provider reads as its
/// credentials (the CSI driver's `nodePublishSecretRef`: the Azure provider's
/// service principal `clientid`/`clientsecret`). Mounted at `dir` in the
/// injected containers only; the app's containers never see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSecret {
    pub secret_name: String,
    pub dir: String,
}

/// A Kubernetes Secret whose keys mirror some of the spec's files, as the CSI
/// driver's `spec.secretObjects` asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncTarget {
    pub secret_name: String,
    /// The Secret's type, `Opaque` unless the class says otherwise.
    #[serde(rename = "type")]
    pub secret_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Secret key → the spec's file whose content it carries.
    pub data: BTreeMap<String, FileName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretObject {
    pub file: FileName,
    pub source: SecretRef,
    /// How the stored value is encoded; the file gets the decoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<ObjectEncoding>,
    /// For a secret that backs a certificate: write it as PEM or PFX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ObjectFormat>,
    /// Write one field of a JSON value instead of the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_key: Option<String>,
    /// Write one top-level field of a YAML value (a string) instead of the
    /// whole value: the GCP CSI provider's `extractYAMLKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml_key: Option<String>,
    /// Write the JSON string this path selects (the AWS CSI provider's
    /// `jmesPath`); anything but a string is an error, as there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<JsonPath>,
    /// This file's mode, overriding the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_permission: Option<FileMode>,
    /// Asked when `source` cannot be reached (a 5xx, a timeout, no
    /// connection), never when it answers no: the AWS CSI provider's
    /// `failoverRegion` and `failoverObject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<SecretRef>,
}

impl SecretObject {
    pub fn new(file: FileName, source: SecretRef) -> Self {
        Self {
            file,
            source,
            encoding: None,
            format: None,
            json_key: None,
            yaml_key: None,
            json_path: None,
            file_permission: None,
            failover: None,
        }
    }
}

/// The CSI Azure provider's `objectEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectEncoding {
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "hex")]
    Hex,
    #[serde(rename = "base64")]
    Base64,
}

/// The CSI Azure provider's `objectFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectFormat {
    Pem,
    Pfx,
}

fn first_version() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "the spec in {SPEC_ENV} is version {spec}, and this sidecar reads versions up to {known}: the webhook is newer than the sidecar image; give the webhook a --sidecar-image at least as new as itself"
    )]
    NewerVersion { spec: u32, known: u32 },
    #[error("the spec in {SPEC_ENV} is not valid: {0}")]
    Malformed(String),
    #[error("the spec names file {0:?} more than once")]
    DuplicateFile(String),
    #[error("the spec names no object to fetch")]
    Empty,
    #[error(
        "synced Secret {secret:?} key {key:?} names file {file:?}, which the spec does not write"
    )]
    SyncFile {
        secret: String,
        key: String,
        file: String,
    },
    #[error("synced Secret {0:?} is named more than once")]
    DuplicateSyncTarget(String),
    #[error("the pod asks for {0} sets of files (volumes); at most {MAX_SETS} are accepted")]
    TooManySets(usize),
    #[error(
        "two sets of files would be written at {0} and {1}, one over or inside the other; give each volume its own path"
    )]
    SetMountPaths(String, String),
    #[error(
        "SecretProviderClass {0:?} is named by two volumes of the pod; name it once (both would write one PodStatus)"
    )]
    SetClass(String),
    #[error(
        "synced Secret {0:?} is named by two volumes' classes; each Secret may be synced from one only"
    )]
    SetSyncTarget(String),
    #[error(
        "synced Secret {secret:?} has type {secret_type:?}, which secret-injector never writes; accepted: {}",
        ALLOWED_SECRET_TYPES.join(", ")
    )]
    SyncType { secret: String, secret_type: String },
    #[error("synced Secret {secret:?} {what} {key:?} is not accepted: {rule}")]
    SyncMetadata {
        secret: String,
        what: &'static str,
        key: String,
        rule: &'static str,
    },
}

/// The Secret types a sync may write: the CSI driver's, less the ones whose
/// mere existence grants something (`kubernetes.io/service-account-token`
/// makes the token controller mint a token for any ServiceAccount it names;
/// `bootstrap.kubernetes.io/token` joins nodes).
pub const ALLOWED_SECRET_TYPES: &[&str] = &[
    "Opaque",
    "kubernetes.io/tls",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/dockerconfigjson",
    "kubernetes.io/dockercfg",
];

/// Label and annotation domains a synced Secret may not carry: Kubernetes'
/// own (`kubernetes.io/service-account.name` and the like steer controllers)
/// and secret-injector's (which marks the Secrets it made).
const RESERVED_DOMAINS: &[&str] = &["kubernetes.io", "k8s.io", "secret-injector.io"];

impl InjectionSpec {
    /// Sorts objects by file name and refuses duplicates and emptiness.
    pub fn new(
        mut objects: Vec<SecretObject>,
        mount_path: String,
        rotation: Rotation,
        containers: Option<Vec<String>>,
        file_permission: FileMode,
        identities: Identities,
    ) -> Result<Self, SpecError> {
        objects.sort_by(|a, b| a.file.cmp(&b.file));
        check_objects(&objects)?;
        Ok(Self {
            version: SPEC_VERSION,
            objects,
            mount_path,
            rotation,
            containers,
            file_permission,
            identities,
            provider_class: None,
            sync_targets: Vec::new(),
            provider_secret: None,
        })
    }

    /// Adds Secrets to keep in sync; each key must name one of the spec's files.
    pub fn with_sync_targets(mut self, targets: Vec<SyncTarget>) -> Result<Self, SpecError> {
        check_sync_targets(&self.objects, &targets)?;
        self.sync_targets = targets;
        Ok(self)
    }

    /// Records the SecretProviderClass the spec was read from.
    pub fn with_provider_class(mut self, name: impl Into<String>) -> Self {
        self.provider_class = Some(name.into());
        self
    }

    pub fn to_env_value(&self) -> String {
        // A struct of strings and numbers: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_env_value(value: &str) -> Result<Self, SpecError> {
        let json = parse_versioned(value)?;
        Self::from_json(json)
    }

    fn from_json(mut json: serde_json::Value) -> Result<Self, SpecError> {
        upgrade_v1(&mut json);
        let spec: Self =
            serde_json::from_value(json).map_err(|e| SpecError::Malformed(e.to_string()))?;
        check_objects(&spec.objects)?;
        check_sync_targets(&spec.objects, &spec.sync_targets)?;
        Ok(spec)
    }

    /// The distinct stores this spec reads from, with their object counts.
    pub fn stores(&self) -> BTreeMap<Store, usize> {
        let mut counts = BTreeMap::new();
        for object in &self.objects {
            *counts.entry(object.source.store()).or_default() += 1;
        }
        counts
    }

    pub fn uses(&self, store: Store) -> bool {
        self.objects.iter().any(|o| o.source.store() == store)
    }
}

/// JSON whose version this build reads. The version first: a newer spec's
/// unknown fields would otherwise be the error, and hide why.
fn parse_versioned(value: &str) -> Result<serde_json::Value, SpecError> {
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    if let Ok(Version {
        version: Some(spec),
    }) = serde_json::from_str::<Version>(value)
        && spec > SPEC_VERSION
    {
        return Err(SpecError::NewerVersion {
            spec,
            known: SPEC_VERSION,
        });
    }
    serde_json::from_str(value).map_err(|e| SpecError::Malformed(e.to_string()))
}

/// The most sets (volumes) one pod may get.
pub const MAX_SETS: usize = 16;

/// Every set of files one pod gets, one per volume (the pod's annotations,
/// and each Secrets Store CSI volume it carries): each is written atomically
/// on its own, with its own status file, PodStatus and synced Secrets. One
/// set travels as its spec, as before sets; several as
/// `{"version": N, "sets": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    sets: Vec<InjectionSpec>,
}

impl Injection {
    /// Refuses sets that would write over each other: the same mount path
    /// (or one inside another), the same class (one PodStatus name), the same
    /// synced Secret.
    pub fn new(sets: Vec<InjectionSpec>) -> Result<Self, SpecError> {
        if sets.is_empty() {
            return Err(SpecError::Empty);
        }
        if sets.len() > MAX_SETS {
            return Err(SpecError::TooManySets(sets.len()));
        }
        for (i, a) in sets.iter().enumerate() {
            for b in &sets[..i] {
                let (pa, pb) = (
                    a.mount_path.trim_end_matches('/'),
                    b.mount_path.trim_end_matches('/'),
                );
                let inside = |outer: &str, inner: &str| {
                    inner
                        .strip_prefix(outer)
                        .is_some_and(|rest| rest.starts_with('/'))
                };
                if pa == pb || inside(pa, pb) || inside(pb, pa) {
                    return Err(SpecError::SetMountPaths(
                        b.mount_path.clone(),
                        a.mount_path.clone(),
                    ));
                }
                if let (Some(ca), Some(cb)) = (&a.provider_class, &b.provider_class)
                    && ca == cb
                {
                    return Err(SpecError::SetClass(ca.clone()));
                }
                if let Some(target) = a.sync_targets.iter().find(|t| {
                    b.sync_targets
                        .iter()
                        .any(|u| u.secret_name == t.secret_name)
                }) {
                    return Err(SpecError::SetSyncTarget(target.secret_name.clone()));
                }
            }
        }
        Ok(Self { sets })
    }

    pub fn sets(&self) -> &[InjectionSpec] {
        &self.sets
    }

    pub fn into_sets(self) -> Vec<InjectionSpec> {
        self.sets
    }

    pub fn to_env_value(&self) -> String {
        match self.sets.as_slice() {
            [one] => one.to_env_value(),
            sets => serde_json::json!({ "version": SPEC_VERSION, "sets": sets }).to_string(),
        }
    }

    pub fn from_env_value(value: &str) -> Result<Self, SpecError> {
        let mut json = parse_versioned(value)?;
        let sets = match json.as_object_mut().and_then(|m| m.remove("sets")) {
            Some(serde_json::Value::Array(sets)) => sets
                .into_iter()
                .map(InjectionSpec::from_json)
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(SpecError::Malformed("sets is not an array".to_owned())),
            None => vec![InjectionSpec::from_json(json)?],
        };
        Self::new(sets)
    }
}

/// Version 1 carried Azure's identity as `azure`; version 2 keeps every
/// store's under `identities`. A newer sidecar reads an older webhook's spec.
fn upgrade_v1(json: &mut serde_json::Value) {
    let Some(map) = json.as_object_mut() else {
        return;
    };
    if map.get("version").and_then(|v| v.as_u64()).unwrap_or(1) >= 2 {
        return;
    }
    if let Some(azure) = map.remove("azure") {
        map.insert(
            "identities".to_owned(),
            serde_json::json!({ "azure": azure }),
        );
    }
}

fn check_objects(objects: &[SecretObject]) -> Result<(), SpecError> {
    if objects.is_empty() {
        return Err(SpecError::Empty);
    }
    let mut seen = std::collections::BTreeSet::new();
    for object in objects {
        if !seen.insert(object.file.as_str()) {
            return Err(SpecError::DuplicateFile(object.file.to_string()));
        }
    }
    Ok(())
}

fn check_sync_targets(objects: &[SecretObject], targets: &[SyncTarget]) -> Result<(), SpecError> {
    let mut names = std::collections::BTreeSet::new();
    for target in targets {
        if !names.insert(target.secret_name.as_str()) {
            return Err(SpecError::DuplicateSyncTarget(target.secret_name.clone()));
        }
        if !ALLOWED_SECRET_TYPES.contains(&target.secret_type.as_str()) {
            return Err(SpecError::SyncType {
                secret: target.secret_name.clone(),
                secret_type: target.secret_type.clone(),
            });
        }
        check_metadata(target, "label", target.labels.iter(), true)?;
        check_metadata(target, "annotation", target.annotations.iter(), false)?;
        for (key, file) in &target.data {
            if !objects.iter().any(|o| o.file == *file) {
                return Err(SpecError::SyncFile {
                    secret: target.secret_name.clone(),
                    key: key.clone(),
                    file: file.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn check_metadata<'a>(
    target: &SyncTarget,
    what: &'static str,
    entries: impl Iterator<Item = (&'a String, &'a String)>,
    is_label: bool,
) -> Result<(), SpecError> {
    let fail = |key: &str, rule| SpecError::SyncMetadata {
        secret: target.secret_name.clone(),
        what,
        key: key.to_owned(),
        rule,
    };
    for (key, value) in entries {
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        if !is_qualified_name_part(name) || prefix.is_some_and(|p| !is_dns_subdomain(p)) {
            return Err(fail(
                key,
                "a key is [prefix/]name: an optional DNS subdomain, and a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            ));
        }
        if prefix.is_some_and(|p| {
            RESERVED_DOMAINS
                .iter()
                .any(|d| p == *d || p.ends_with(&format!(".{d}")))
        }) {
            return Err(fail(
                key,
                "the kubernetes.io, k8s.io and secret-injector.io domains are reserved (their keys steer controllers)",
            ));
        }
        if is_label && !(value.is_empty() || is_qualified_name_part(value)) {
            return Err(fail(
                key,
                "a label value is empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            ));
        }
    }
    Ok(())
}

fn is_qualified_name_part(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A file mode of permission bits only (no setuid, setgid or sticky bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a file permission: use 3 or 4 octal digits from 0000 to 0777, such as 0644 or 0440"
)]
pub struct FileModeError(pub String);

impl FileMode {
    pub const DEFAULT: Self = Self(0o644);

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl FromStr for FileMode {
    type Err = FileModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || FileModeError(s.to_owned());
        if !(3..=4).contains(&s.len()) || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(err());
        }
        let bits = u32::from_str_radix(s, 8).map_err(|_| err())?;
        if bits > 0o777 {
            return Err(err());
        }
        Ok(Self(bits))
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl TryFrom<String> for FileMode {
    type Error = FileModeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<FileMode> for String {
    fn from(value: FileMode) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn object(file: &str, uri: &str) -> SecretObject {
        SecretObject::new(FileName::new(file).unwrap(), uri.parse().unwrap())
    }

    fn spec() -> InjectionSpec {
        InjectionSpec::new(
            vec![
                object("db-user", "azure://kv-aks-csi-weu-01/secrets/db-user"),
                object("db-pass", "azure://kv-aks-csi-weu-01/secrets/db-pass"),
            ],
            DEFAULT_MOUNT_PATH.into(),
            Rotation::Every(Duration::from_secs(120)),
            None,
            FileMode::DEFAULT,
            Identities::default(),
        )
        .unwrap()
    }

    #[test]
    fn env_value_round_trips_and_is_readable() {
        let spec = spec();
        let value = spec.to_env_value();
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
        assert!(
            value.contains(r#""source":"azure://kv-aks-csi-weu-01/secrets/db-pass""#),
            "{value}"
        );
        assert!(value.contains(r#""rotation":"2m""#), "{value}");
        assert!(value.contains(r#""filePermission":"0644""#), "{value}");
    }

    // The contract is versioned: a newer spec is refused by name, an unknown
    // field is refused rather than dropped, a spec without a version is 1.
    #[test]
    fn a_newer_spec_is_refused_naming_both_versions() {
        let value = spec().to_env_value();
        let current = format!(r#""version":{SPEC_VERSION}"#);
        assert!(value.starts_with(&format!("{{{current},")), "{value}");
        let next = SPEC_VERSION + 1;
        let newer = value.replacen(
            &current,
            &format!(r#""version":{next},"onRotation":{{"signal":"SIGHUP"}}"#),
            1,
        );
        let err = InjectionSpec::from_env_value(&newer).unwrap_err();
        assert_eq!(
            err,
            SpecError::NewerVersion {
                spec: next,
                known: SPEC_VERSION
            }
        );
        assert!(err.to_string().contains("--sidecar-image"), "{err}");
        // Several sets are refused the same way, before their fields are read.
        let sets = format!(r#"{{"version":{next},"sets":[{newer}],"hooks":[]}}"#);
        assert!(matches!(
            Injection::from_env_value(&sets),
            Err(SpecError::NewerVersion { spec, .. }) if spec == next
        ));
        let unknown = value.replacen(&current, &format!(r#"{current},"outputs":[]"#), 1);
        assert!(matches!(
            InjectionSpec::from_env_value(&unknown),
            Err(SpecError::Malformed(m)) if m.contains("outputs")
        ));
        let unversioned = value.replacen(&format!("{current},"), "", 1);
        assert_eq!(
            InjectionSpec::from_env_value(&unversioned).unwrap().objects,
            spec().objects
        );
    }

    fn set_at(mount_path: &str, class: &str, synced: &str) -> InjectionSpec {
        let mut set = spec().with_provider_class(class);
        set.mount_path = mount_path.to_owned();
        set.sync_targets = vec![SyncTarget {
            secret_name: synced.to_owned(),
            secret_type: "Opaque".to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            data: BTreeMap::new(),
        }];
        set
    }

    // One set travels as before sets (an older sidecar reads it); several
    // in a versioned wrapper, and they read back in order.
    #[test]
    fn sets_travel_in_one_env_value_and_read_back() {
        let one = Injection::new(vec![spec()]).unwrap();
        assert_eq!(one.to_env_value(), spec().to_env_value());
        assert_eq!(Injection::from_env_value(&one.to_env_value()).unwrap(), one);

        let mut second = set_at("/var/run/secret-injector/volumes/b", "b", "sb");
        second.provider_secret = Some(ProviderSecret {
            secret_name: "secrets-store-creds".into(),
            dir: "/var/run/secrets/secret-injector/provider/1".into(),
        });
        let two = Injection::new(vec![
            set_at("/var/run/secret-injector/volumes/a", "a", "sa"),
            second,
        ])
        .unwrap();
        let value = two.to_env_value();
        assert!(value.contains(r#""sets":[{"#), "{value}");
        assert!(
            value.ends_with(&format!(r#""version":{SPEC_VERSION}}}"#)),
            "{value}"
        );
        assert_eq!(Injection::from_env_value(&value).unwrap(), two);
        // A sidecar expecting one spec is told it is not one.
        assert!(InjectionSpec::from_env_value(&value).is_err());
    }

    // Sets that would write over each other are refused, naming what clashes.
    #[test]
    fn sets_that_would_write_over_each_other_are_refused() {
        let a = || set_at("/mnt/a", "a", "sa");
        let same_path = Injection::new(vec![a(), set_at("/mnt/a/", "b", "sb")]);
        assert!(matches!(same_path, Err(SpecError::SetMountPaths(..))));
        let nested = Injection::new(vec![a(), set_at("/mnt/a/inner", "b", "sb")]);
        assert!(
            matches!(nested, Err(SpecError::SetMountPaths(..))),
            "{nested:?}"
        );
        // A sibling that only shares a prefix is fine.
        assert!(Injection::new(vec![a(), set_at("/mnt/ab", "b", "sb")]).is_ok());
        let err = Injection::new(vec![a(), set_at("/mnt/b", "a", "sb")]).unwrap_err();
        assert_eq!(err, SpecError::SetClass("a".into()));
        assert!(err.to_string().contains("PodStatus"), "{err}");
        let err = Injection::new(vec![a(), set_at("/mnt/b", "b", "sa")]).unwrap_err();
        assert_eq!(err, SpecError::SetSyncTarget("sa".into()));
        assert!(matches!(Injection::new(vec![]), Err(SpecError::Empty)));
        let many = (0..=MAX_SETS)
            .map(|i| set_at(&format!("/mnt/{i}"), &format!("c{i}"), &format!("s{i}")))
            .collect();
        assert!(matches!(
            Injection::new(many),
            Err(SpecError::TooManySets(n)) if n == MAX_SETS + 1
        ));
    }

    // An older webhook's spec (version 1, Azure's identity as `azure`) is
    // read by this sidecar with the identity where version 2 keeps it.
    #[test]
    fn a_version_1_spec_keeps_its_azure_identity() {
        let current = format!(r#""version":{SPEC_VERSION},"#);
        let v1 = spec().to_env_value().replacen(
            &current,
            r#""version":1,"azure":{"clientId":"c1","tenantId":"t1"},"#,
            1,
        );
        let read = InjectionSpec::from_env_value(&v1).unwrap();
        assert_eq!(read.identities.azure.client_id.as_deref(), Some("c1"));
        assert_eq!(read.identities.azure.tenant_id.as_deref(), Some("t1"));
        let v2 = spec()
            .to_env_value()
            .replacen(&current, r#""version":2,"azure":{},"#, 1);
        assert!(
            matches!(InjectionSpec::from_env_value(&v2), Err(SpecError::Malformed(m)) if m.contains("azure")),
            "v2 has no azure field"
        );
    }

    #[test]
    fn identities_serialise_per_store_only_when_set() {
        let mut spec = spec();
        spec.identities.aws.role_arn = Some("arn:aws:iam::123456789012:role/app".into());
        let value = spec.to_env_value();
        assert!(
            value.contains(
                r#""identities":{"aws":{"roleArn":"arn:aws:iam::123456789012:role/app"}}"#
            ),
            "{value}"
        );
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
    }

    #[test]
    fn objects_are_sorted_by_file() {
        let files: Vec<_> = spec().objects.iter().map(|o| o.file.to_string()).collect();
        assert_eq!(files, ["db-pass", "db-user"]);
    }

    #[test]
    fn env_value_is_validated_again() {
        let bad = spec().to_env_value().replace("\"db-pass\"", "\"..data\"");
        assert!(matches!(
            InjectionSpec::from_env_value(&bad),
            Err(SpecError::Malformed(m)) if m.contains("..data")
        ));
        let dup = spec().to_env_value().replace("\"db-pass\"", "\"db-user\"");
        assert_eq!(
            InjectionSpec::from_env_value(&dup),
            Err(SpecError::DuplicateFile("db-user".into()))
        );
    }

    fn target(key: &str, file: &str) -> SyncTarget {
        SyncTarget {
            secret_name: "k8s-secret".into(),
            secret_type: "Opaque".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            data: BTreeMap::from([(key.to_owned(), FileName::new(file).unwrap())]),
        }
    }

    #[test]
    fn new_fields_are_left_out_when_unset() {
        let value = spec().to_env_value();
        for field in ["\"syncTargets\"", "\"providerClass\"", "\"identities\""] {
            assert!(!value.contains(field), "{value}");
        }
    }

    #[test]
    fn sync_targets_and_class_round_trip() {
        let spec = spec()
            .with_sync_targets(vec![target("password", "db-pass")])
            .unwrap()
            .with_provider_class("kv-aks-csi-weu-01");
        let value = spec.to_env_value();
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
        assert!(
            value.contains(r#""providerClass":"kv-aks-csi-weu-01""#),
            "{value}"
        );
    }

    #[test]
    fn sync_targets_name_files_of_the_spec_once() {
        assert_eq!(
            spec().with_sync_targets(vec![target("password", "db-password")]),
            Err(SpecError::SyncFile {
                secret: "k8s-secret".into(),
                key: "password".into(),
                file: "db-password".into(),
            })
        );
        assert_eq!(
            spec().with_sync_targets(vec![target("a", "db-pass"), target("b", "db-user")]),
            Err(SpecError::DuplicateSyncTarget("k8s-secret".into()))
        );
        let good = spec()
            .with_sync_targets(vec![target("password", "db-pass")])
            .unwrap()
            .to_env_value();
        let bad = good.replace(r#""password":"db-pass""#, r#""password":"db-password""#);
        assert!(matches!(
            InjectionSpec::from_env_value(&bad),
            Err(SpecError::SyncFile { file, .. }) if file == "db-password"
        ));
    }

    // H2: a class must not make a token Secret, nor steer controllers.
    #[test]
    fn h2_sync_targets_write_only_plain_secret_types_and_metadata() {
        let with = |f: &dyn Fn(&mut SyncTarget)| {
            let mut t = target("password", "db-pass");
            f(&mut t);
            spec().with_sync_targets(vec![t])
        };
        let err = with(&|t| t.secret_type = "kubernetes.io/service-account-token".into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("never writes; accepted: Opaque, kubernetes.io/tls"),
            "{err}"
        );
        assert!(with(&|t| t.secret_type = "kubernetes.io/tls".into()).is_ok());
        for key in [
            "kubernetes.io/service-account.name",
            "kubernetes.io/service-account.uid",
            "foo.kubernetes.io/x",
            "secret-injector.io/provider-class",
        ] {
            let err = with(&|t| {
                t.annotations.insert(key.into(), "x".into());
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("reserved"), "{key}: {err}");
        }
        assert!(
            with(&|t| {
                t.annotations
                    .insert("example.com/owner".into(), "team a".into());
                t.labels.insert("app".into(), "web".into());
            })
            .is_ok()
        );
        let err = with(&|t| {
            t.labels.insert("app".into(), "not a label value".into());
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("label \"app\""), "{err}");
        // The sidecar reads the spec back through the same checks.
        let good = spec()
            .with_sync_targets(vec![target("password", "db-pass")])
            .unwrap()
            .to_env_value();
        let bad = good.replace("\"Opaque\"", "\"kubernetes.io/service-account-token\"");
        assert!(matches!(
            InjectionSpec::from_env_value(&bad),
            Err(SpecError::SyncType { .. })
        ));
    }

    #[test]
    fn managed_identity_serialises_only_when_chosen() {
        let azure = crate::AzureIdentity {
            use_managed_identity: true,
            ..crate::AzureIdentity::default()
        };
        assert!(!azure.is_empty());
        assert_eq!(
            serde_json::to_string(&azure).unwrap(),
            r#"{"useManagedIdentity":true}"#
        );
        assert_eq!(
            serde_json::to_string(&crate::AzureIdentity::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn file_modes() {
        assert_eq!("0644".parse::<FileMode>().unwrap().bits(), 0o644);
        assert_eq!("440".parse::<FileMode>().unwrap().to_string(), "0440");
        for bad in ["", "8", "0888", "1777", "04444", "rw-r--r--"] {
            assert!(bad.parse::<FileMode>().is_err(), "{bad}");
        }
    }
}
