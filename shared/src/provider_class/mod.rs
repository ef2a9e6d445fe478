//! The CSI form: a `secrets-store.csi.x-k8s.io/v1` `SecretProviderClass`,
//! read into an [`InjectionSpec`] so the CSI driver's users keep their
//! manifests unchanged. One module per provider (`spec.provider`) reads its
//! `spec.parameters`: [`azure`], [`aws`] and [`vault`]; what they share lives here:
//! the class's type, `spec.secretObjects` (Secret sync), bounded YAML
//! without anchors, and the operator's limits applied per pod.
//!
//! "Deny" below fails the conversion with a [`ProviderClassError`]; "warn"
//! returns a warning (for the AdmissionResponse's `warnings`) and goes on.
//!
//! `spec.secretObjects` become [`SyncTarget`]s: `secretName` (a DNS subdomain)
//! is required and unique, `type` defaults to `Opaque` and must be one of
//! [`crate::ALLOWED_SECRET_TYPES`] (never a ServiceAccount token), labels
//! and annotations stay out of the `kubernetes.io`, `k8s.io` and
//! `secret-injector.io` domains, and each
//! `data[j].objectName` must match a file this spec writes (an object's
//! alias or name, as each provider names its files).

pub mod aws;
pub mod azure;
pub mod gcp;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::{
    Defaults, FileName, Identities, InjectionSpec, ReferenceError, SecretObject, SpecError,
    SyncTarget,
};

pub use azure::AzureCloud;

/// The providers whose classes are read.
const ACCEPTED_PROVIDERS: &str = "azure, aws, vault or gcp";

/// The API group of the CSI driver's resources.
pub const CSI_GROUP: &str = "secrets-store.csi.x-k8s.io";
pub const PROVIDER_CLASS_API_VERSION: &str = "secrets-store.csi.x-k8s.io/v1";
pub const PROVIDER_CLASS_KIND: &str = "SecretProviderClass";
/// The Secret type of a sync target that names none.
pub const DEFAULT_SECRET_TYPE: &str = "Opaque";

const ACCEPTED_BOOL: &str = "\"true\" or \"false\"";
/// Why a SecretProviderClass cannot be used. Every message names the class,
/// the field, the value and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderClassError {
    #[error(
        "the object is apiVersion {api_version:?} kind {kind:?}, not a SecretProviderClass; accepted: apiVersion {PROVIDER_CLASS_API_VERSION} (or {CSI_GROUP}/v1alpha1), kind {PROVIDER_CLASS_KIND}"
    )]
    NotAProviderClass { api_version: String, kind: String },
    #[error("SecretProviderClass {class}: {field} is missing; accepted: {accepted}")]
    Missing {
        class: String,
        field: String,
        accepted: String,
    },
    #[error("SecretProviderClass {class}: {field} {value:?} is not valid; accepted: {accepted}")]
    Invalid {
        class: String,
        field: String,
        value: String,
        accepted: String,
    },
    #[error(
        "SecretProviderClass {class}: {field} is not valid YAML ({message}); accepted: {accepted}"
    )]
    Yaml {
        class: String,
        field: String,
        message: String,
        accepted: &'static str,
    },
    #[error(
        "SecretProviderClass {class}: parameters.usePodIdentity {value:?} is not supported: AAD pod identity is deprecated and not supported; accepted: \"false\" or absent, with workload identity (parameters.clientID) or parameters.useVMManagedIdentity: \"true\""
    )]
    PodIdentity { class: String, value: String },
    #[error(
        "SecretProviderClass {class}: {field} writes file {file:?}, which {first} already writes; accepted: a distinct objectAlias per object"
    )]
    DuplicateFile {
        class: String,
        field: String,
        file: String,
        first: String,
    },
    #[error(
        "SecretProviderClass {class}: {field} {object_name:?} matches no object's objectAlias or objectName; accepted: {known}"
    )]
    UnknownSyncObject {
        class: String,
        field: String,
        object_name: String,
        known: String,
    },
    #[error("SecretProviderClass {class}: {field} {value:?} is refused: {source}")]
    Host {
        class: String,
        field: &'static str,
        value: String,
        #[source]
        source: crate::HostRefused,
    },
    #[error("SecretProviderClass {class}: {source}")]
    Spec {
        class: String,
        #[source]
        source: SpecError,
    },
}

impl ProviderClassError {
    /// A short, stable name for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotAProviderClass { .. } => "not_a_provider_class",
            Self::Missing { .. } => "missing",
            Self::Invalid { .. } => "invalid",
            Self::Yaml { .. } => "yaml",
            Self::PodIdentity { .. } => "pod_identity",
            Self::DuplicateFile { .. } => "duplicate_file",
            Self::UnknownSyncObject { .. } => "unknown_sync_object",
            Self::Host { .. } => "host",
            Self::Spec { .. } => "spec",
        }
    }
}

/// Reads a SecretProviderClass (as the API server returns it, or as YAML
/// decoded into JSON) into a spec, with warnings for what is ignored. The mount
/// path, rotation and default file mode come from `defaults`; the caller
/// overrides them from the pod.
pub fn spec_from_provider_class(
    class: &Value,
    defaults: &Defaults,
) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
    read(class)?.spec(defaults)
}

/// A SecretProviderClass read once (a cache does it per watch event, not per
/// admission): what it fetches and syncs, and what it warns about. The pod's
/// options and the operator's limits apply in [`ParsedClass::spec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedClass {
    name: String,
    objects: Objects,
    identities: Identities,
    sync_targets: Vec<SyncTarget>,
    warnings: Vec<String>,
    /// The field that names the store host and its value, for refusals
    /// (`parameters.keyvaultName`).
    host: Option<(&'static str, String)>,
}

/// A class's objects, ready, or waiting for what only the operator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Objects {
    Ready(Vec<SecretObject>),
    /// An AWS class without `parameters.region`: the operator's region.
    AwsRegion(aws::Pending),
}

/// What one provider's reader makes of `spec.parameters`.
struct StoreClass {
    objects: Objects,
    identities: Identities,
    /// Each file the class writes → the field that names it.
    files: BTreeMap<FileName, String>,
    host: Option<(&'static str, String)>,
}

/// Reads a SecretProviderClass, without the pod's options.
pub fn read(class: &Value) -> Result<ParsedClass, ProviderClassError> {
    check_type(class)?;
    let name = class
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let mut reader = Reader {
        class: name.to_owned(),
        warnings: Vec::new(),
    };
    let mut parsed = reader.read(class)?;
    parsed.warnings = reader.warnings;
    Ok(parsed)
}

impl ParsedClass {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The spec for one pod: the pod's mount path, rotation and file mode
    /// (`defaults`), checked against the operator's limits.
    pub fn spec(
        &self,
        defaults: &Defaults,
    ) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
        let limits = &defaults.limits;
        if self.identities.azure.use_managed_identity && !limits.allow_managed_identity {
            return Err(ProviderClassError::Invalid {
                class: self.name.clone(),
                field: "parameters.useVMManagedIdentity".to_owned(),
                value: "true".to_owned(),
                accepted: "\"false\": the operator does not allow the node's managed identity (--allow-managed-identity)".to_owned(),
            });
        }
        if let Some(address) = &self.identities.vault.address {
            let field = "parameters.vaultAddress";
            let (host, port) = crate::parse_vault_address(address).map_err(|rule| {
                ProviderClassError::Invalid {
                    class: self.name.clone(),
                    field: field.to_owned(),
                    value: address.clone(),
                    accepted: rule.to_owned(),
                }
            })?;
            limits
                .store_hosts
                .check(&host, port)
                .map_err(|source| ProviderClassError::Host {
                    class: self.name.clone(),
                    field,
                    value: address.clone(),
                    source,
                })?;
        }
        let objects = match &self.objects {
            Objects::Ready(objects) => objects.clone(),
            Objects::AwsRegion(pending) => pending.resolve(&self.name, defaults)?,
        };
        for object in &objects {
            if let Some((host, port)) = object.source.named_host() {
                limits.store_hosts.check(&host, port).map_err(|source| {
                    let (field, value) = self.host.clone().unwrap_or_default();
                    ProviderClassError::Host {
                        class: self.name.clone(),
                        field,
                        value,
                        source,
                    }
                })?;
            }
        }
        let spec = InjectionSpec::new(
            objects,
            defaults.mount_path.clone(),
            defaults.rotation,
            None,
            defaults.file_permission,
            self.identities.clone(),
        )
        .and_then(|spec| spec.with_sync_targets(self.sync_targets.clone()))
        .map(|spec| spec.with_provider_class(self.name.clone()))
        .map_err(|source| ProviderClassError::Spec {
            class: self.name.clone(),
            source,
        })?;
        Ok((spec, self.warnings.clone()))
    }
}

fn check_type(class: &Value) -> Result<(), ProviderClassError> {
    let api_version = class
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = class
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group_ok = matches!(
        api_version.split_once('/'),
        Some((CSI_GROUP, "v1" | "v1alpha1"))
    );
    if group_ok && kind == PROVIDER_CLASS_KIND {
        Ok(())
    } else {
        Err(ProviderClassError::NotAProviderClass {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
    }
}

/// One object of `parameters.objects`, its values as the strings Go reads.
struct RawObject {
    field: String,
    values: BTreeMap<String, String>,
}

impl RawObject {
    /// A value, with `""` meaning unset as in the CSI provider.
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecretObject {
    secret_name: Option<String>,
    #[serde(rename = "type")]
    secret_type: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    data: Vec<RawSecretData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecretData {
    object_name: Option<String>,
    key: Option<String>,
}

struct Reader {
    class: String,
    warnings: Vec<String>,
}

impl Reader {
    fn read(&mut self, class: &Value) -> Result<ParsedClass, ProviderClassError> {
        let provider = class.pointer("/spec/provider");
        let provider = match provider.and_then(Value::as_str) {
            Some(name) => name,
            None => match provider {
                None | Some(Value::Null) => {
                    return Err(self.missing("spec.provider", ACCEPTED_PROVIDERS));
                }
                Some(other) => {
                    return Err(self.invalid(
                        "spec.provider",
                        &other.to_string(),
                        ACCEPTED_PROVIDERS,
                    ));
                }
            },
        };
        let params = self.parameters(class)?;
        let read = match provider {
            "azure" => azure::read(self, &params)?,
            "aws" => aws::read(self, &params)?,
            "vault" => vault::read(self, &params)?,
            "gcp" => gcp::read(self, &params)?,
            other => return Err(self.invalid("spec.provider", other, ACCEPTED_PROVIDERS)),
        };
        let sync_targets = self.sync_targets(class, &read.files)?;
        Ok(ParsedClass {
            name: self.class.clone(),
            objects: read.objects,
            identities: read.identities,
            sync_targets,
            warnings: Vec::new(),
            host: read.host,
        })
    }

    /// Warns about the parameters a provider does not read.
    fn warn_unknown(&mut self, params: &BTreeMap<String, String>, known: &[&str]) {
        for key in params.keys() {
            if !known.contains(&key.as_str()) {
                self.warn(format!(
                    "parameters.{key} is not known and is ignored; known: {}",
                    known.join(", ")
                ));
            }
        }
    }

    /// A YAML text of the class (`parameters.objects`), bounded in size and
    /// without anchors or aliases: nothing expands.
    fn yaml(
        &self,
        field: &str,
        text: &str,
        accepted: &'static str,
    ) -> Result<Yaml, ProviderClassError> {
        if text.len() > MAX_OBJECTS_BYTES {
            return Err(self.invalid(
                field,
                &format!("more than {MAX_OBJECTS_BYTES} bytes"),
                format!("at most {MAX_OBJECTS_BYTES} bytes (64 KiB) of YAML"),
            ));
        }
        self.refuse_anchors(field, text)?;
        serde_yaml_ng::from_str(text).map_err(|e| ProviderClassError::Yaml {
            class: self.class.clone(),
            field: field.to_owned(),
            message: e.to_string(),
            accepted,
        })
    }

    /// `spec.parameters`: a map of strings.
    fn parameters(&self, class: &Value) -> Result<BTreeMap<String, String>, ProviderClassError> {
        let params = match class.pointer("/spec/parameters") {
            None | Some(Value::Null) => {
                return Err(self.missing(
                    "spec.parameters",
                    "a map of strings with at least keyvaultName and objects",
                ));
            }
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(self.invalid(
                    "spec.parameters",
                    &other.to_string(),
                    "a map of strings",
                ));
            }
        };
        params
            .iter()
            .map(|(key, value)| match value {
                Value::String(s) => Ok((key.clone(), s.clone())),
                // What a `nullable` CRD schema lets through (see manifests/crds).
                Value::Null => Ok((key.clone(), String::new())),
                other => Err(self.invalid(
                    &format!("parameters.{key}"),
                    &other.to_string(),
                    "a string (quote it in YAML, as in \"true\")",
                )),
            })
            .collect()
    }

    /// Refuses YAML anchors (`&name`) and aliases (`*name`) before the
    /// parser sees them, so no alias is ever expanded.
    fn refuse_anchors(&self, field: &str, text: &str) -> Result<(), ProviderClassError> {
        match find_anchor_or_alias(text) {
            None => Ok(()),
            Some(found) => Err(self.invalid(
                field,
                &found.token,
                format!(
                    "YAML without anchors (&name) or aliases (*name), found at line {}, column {}; & and * may only follow a letter, a digit or one of _-./+=",
                    found.line, found.column
                ),
            )),
        }
    }

    fn sync_targets(
        &self,
        class: &Value,
        files: &BTreeMap<FileName, String>,
    ) -> Result<Vec<SyncTarget>, ProviderClassError> {
        const ACCEPTED: &str =
            "a list of {secretName, type, labels, annotations, data: [{objectName, key}]}";
        let items = match class.pointer("/spec/secretObjects") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(self.invalid("spec.secretObjects", &other.to_string(), ACCEPTED));
            }
        };
        let known = files
            .keys()
            .map(FileName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut names = BTreeSet::new();
        let mut targets = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("spec.secretObjects[{i}]");
            let raw = RawSecretObject::deserialize(item).map_err(|e| {
                self.invalid(&field, &item.to_string(), format!("{ACCEPTED} ({e})"))
            })?;
            let secret_name = match raw.secret_name.as_deref() {
                None | Some("") => {
                    return Err(self.missing(
                        &format!("{field}.secretName"),
                        "the name of the Secret to create",
                    ));
                }
                Some(name) if is_dns_subdomain(name) => name.to_owned(),
                Some(name) => {
                    return Err(self.invalid(
                        &format!("{field}.secretName"),
                        name,
                        "a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253 characters",
                    ));
                }
            };
            if !names.insert(secret_name.clone()) {
                return Err(self.invalid(
                    &format!("{field}.secretName"),
                    &secret_name,
                    "a Secret name not used by another entry of spec.secretObjects",
                ));
            }
            let mut data = BTreeMap::new();
            for (j, entry) in raw.data.iter().enumerate() {
                let entry_field = format!("{field}.data[{j}]");
                let key = match entry.key.as_deref() {
                    None | Some("") => {
                        return Err(self.missing(
                            &format!("{entry_field}.key"),
                            "the key of the Secret's data",
                        ));
                    }
                    Some(key) if is_secret_key(key) => key.to_owned(),
                    Some(key) => {
                        return Err(self.invalid(
                            &format!("{entry_field}.key"),
                            key,
                            "letters, digits, '-', '_' and '.', at most 253 characters",
                        ));
                    }
                };
                let object_name = entry.object_name.as_deref().unwrap_or_default();
                let file = files
                    .keys()
                    .find(|f| f.as_str() == object_name)
                    .ok_or_else(|| ProviderClassError::UnknownSyncObject {
                        class: self.class.clone(),
                        field: format!("{entry_field}.objectName"),
                        object_name: object_name.to_owned(),
                        known: known.clone(),
                    })?;
                if data.insert(key.clone(), file.clone()).is_some() {
                    return Err(self.invalid(
                        &format!("{entry_field}.key"),
                        &key,
                        "a key not used by another entry of this Secret's data",
                    ));
                }
            }
            let secret_type = raw
                .secret_type
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| DEFAULT_SECRET_TYPE.to_owned());
            if !crate::ALLOWED_SECRET_TYPES.contains(&secret_type.as_str()) {
                return Err(self.invalid(
                    &format!("{field}.type"),
                    &secret_type,
                    crate::ALLOWED_SECRET_TYPES.join(", "),
                ));
            }
            targets.push(SyncTarget {
                secret_name,
                secret_type,
                labels: raw.labels,
                annotations: raw.annotations,
                data,
            });
        }
        Ok(targets)
    }

    /// Go's `strconv.ParseBool` spellings.
    fn boolean(&self, field: &str, value: &str) -> Result<bool, ProviderClassError> {
        match value {
            "true" | "True" | "TRUE" | "t" | "T" | "1" => Ok(true),
            "false" | "False" | "FALSE" | "f" | "F" | "0" => Ok(false),
            _ => Err(self.invalid(field, value, ACCEPTED_BOOL)),
        }
    }

    /// Records that `field` writes `file`, refusing a file already written.
    fn claim_file(
        &self,
        files: &mut BTreeMap<FileName, String>,
        file: &FileName,
        field: String,
    ) -> Result<(), ProviderClassError> {
        if let Some(first) = files.get(file) {
            return Err(ProviderClassError::DuplicateFile {
                class: self.class.clone(),
                field,
                file: file.to_string(),
                first: first.clone(),
            });
        }
        files.insert(file.clone(), field);
        Ok(())
    }

    fn warn(&mut self, text: String) {
        self.warnings
            .push(format!("SecretProviderClass {}: {text}", self.class));
    }

    fn missing(&self, field: &str, accepted: &str) -> ProviderClassError {
        ProviderClassError::Missing {
            class: self.class.clone(),
            field: field.to_owned(),
            accepted: accepted.to_owned(),
        }
    }

    fn invalid(&self, field: &str, value: &str, accepted: impl Into<String>) -> ProviderClassError {
        ProviderClassError::Invalid {
            class: self.class.clone(),
            field: field.to_owned(),
            value: value.to_owned(),
            accepted: accepted.into(),
        }
    }
}

/// A map's values by key, matching keys in any case as Go's JSON decoding
/// does, and warning about the keys the provider does not read.
fn fields<'a>(
    reader: &mut Reader,
    field: &str,
    map: &'a Mapping,
    known: &[&'static str],
) -> Result<BTreeMap<&'static str, &'a Yaml>, ProviderClassError> {
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let Some(key) = key.as_str() else {
            return Err(reader.invalid(field, &format!("{key:?}"), "string keys"));
        };
        match known.iter().find(|k| k.eq_ignore_ascii_case(key)).copied() {
            Some(k) => {
                if out.insert(k, value).is_some() {
                    return Err(reader.invalid(
                        &format!("{field}.{key}"),
                        key,
                        "each key once (keys are matched in any case)",
                    ));
                }
            }
            None => reader.warn(format!(
                "{field}.{key} is not known and is ignored; known: {}",
                known.join(", ")
            )),
        }
    }
    Ok(out)
}

/// A string value: `""` and null mean unset, as for Go's string fields.
fn text(
    reader: &Reader,
    field: &str,
    values: &BTreeMap<&'static str, &Yaml>,
    key: &str,
) -> Result<Option<String>, ProviderClassError> {
    match values.get(key) {
        None => Ok(None),
        Some(value) => match scalar(value) {
            Some(s) if s.is_empty() => Ok(None),
            Some(s) => Ok(Some(s)),
            None => {
                Err(reader.invalid(&format!("{field}.{key}"), &format!("{value:?}"), "a string"))
            }
        },
    }
}

/// A YAML scalar as the string Go would read into a string field.
/// The largest `parameters.objects` read: a few hundred objects. The reader
/// (and the webhook's cache) holds nothing larger.
pub const MAX_OBJECTS_BYTES: usize = 64 * 1024;

/// Where a YAML text may hold an anchor or alias.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AnchorOrAlias {
    line: usize,
    column: usize,
    /// The `&` or `*` and what follows, up to 32 characters.
    token: String,
}

/// A conservative check, sound for libyaml (which serde_yaml_ng runs): a
/// token can start with `&` or `*` only at the start of the text or after a
/// blank, a line break, a flow or value indicator (`[]{},:?`), a quote or a
/// BOM. After a letter, digit or one of `_-./+=` the character is inside a
/// plain scalar or a tag, or libyaml rejects it, so only those predecessors
/// are let through. Everything else is refused, also inside quotes and
/// comments, which errs on the side of refusing.
fn find_anchor_or_alias(text: &str) -> Option<AnchorOrAlias> {
    let safe_before = |c: char| c.is_ascii_alphanumeric() || "_-./+=".contains(c);
    let mut previous: Option<char> = None;
    let (mut line, mut column) = (1, 0);
    for (i, c) in text.char_indices() {
        column += 1;
        if matches!(c, '&' | '*') && !previous.is_some_and(safe_before) {
            return Some(AnchorOrAlias {
                line,
                column,
                token: text[i..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .take(32)
                    .collect(),
            });
        }
        if c == '\n' {
            line += 1;
            column = 0;
        }
        previous = Some(c);
    }
    None
}

fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::Null => Some(String::new()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The rule of a reference error, without the value it repeats.
fn rule(e: ReferenceError) -> String {
    match e {
        ReferenceError::Part { rule, .. } => rule.to_owned(),
        other => other.to_string(),
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_secret_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != ".."
}

/// A mode as Go's YAML decoding gives the provider's `os.FileMode`: `0644`
/// unquoted is octal (our YAML reader keeps it as the text `"0644"`), a
/// plain number is the mode's value (`420`).
pub(super) fn go_file_mode(value: &serde_yaml_ng::Value) -> Option<crate::FileMode> {
    let mode = match value {
        serde_yaml_ng::Value::String(s) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            (!digits.is_empty() && digits.len() <= 4)
                .then(|| u32::from_str_radix(digits, 8).ok())
                .flatten()?
        }
        serde_yaml_ng::Value::Number(n) => u32::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    (mode <= 0o777)
        .then(|| format!("{mode:04o}").parse().ok())
        .flatten()
}
