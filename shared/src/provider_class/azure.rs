//! `provider: azure`: the CSI Azure provider's `spec.parameters`.
//!
//! What each `spec.parameters` key does here. "Deny" fails the conversion with
//! a [`ProviderClassError`]; "warn" returns a warning (for the
//! AdmissionResponse's `warnings`) and goes on.
//!
//! | Parameter | Here | Why |
//! |---|---|---|
//! | `keyvaultName` | required; deny a bad vault name | names the vault of every object |
//! | `tenantId` | GUID or domain, else deny; absent → the operator's default tenant | |
//! | `cloudName` | `""`/`AzurePublicCloud`, `AzureChinaCloud`, `AzureUSGovernmentCloud` (any case), else deny | picks the vault DNS suffix and the Entra ID authority |
//! | `cloudEnvFileName` | warn, ignored | a node file for `AzureStackCloud`, which is denied |
//! | `clientID` | workload identity; deny a non-GUID; warn (ignored) when `useVMManagedIdentity` is `"true"` | the CSI provider gives managed identity precedence |
//! | `useVMManagedIdentity` | `"true"`/`"false"` (Go `ParseBool` spellings), else deny | managed identity from IMDS |
//! | `userAssignedIdentityID` | deny a non-GUID; warn (ignored) without `useVMManagedIdentity: "true"`; `""` → system-assigned | |
//! | `usePodIdentity` | `"true"` → deny; `"false"`/absent accepted | AAD pod identity is deprecated and not supported |
//! | `podIdentityNamespace`, `podIdentityName` | warn, ignored | only meaningful with pod identity |
//! | `objects` | required; deny anything malformed | the files |
//! | any other key | warn, ignored | a typo must be visible, but the CSI provider ignores it too |
//!
//! Per object (`parameters.objects[i]`): `objectName` and `objectType`
//! (`secret`, `key`, `cert`) are required; `objectVersion` `""` means latest;
//! `objectAlias` is the file name (default `objectName`), checked by
//! [`FileName`] and unique; `objectFormat` (`pem`, `pfx`) and `objectEncoding`
//! (`utf-8`, `hex`, `base64`) apply to `secret` objects and are warned about
//! and ignored on others, as the CSI provider ignores them; `filePermission`
//! is an octal mode; `objectVersionHistory` above 1 is denied (it would write a
//! directory of versions); unknown object keys are warned about.
//!
//! The operator's [`crate::Limits`] apply when a pod's spec is made from the
//! class ([`ParsedClass::spec`]): the vault's host (`keyvaultName` with
//! `cloudName`) must be an allowed store host, and `useVMManagedIdentity`
//! needs the operator's leave.
//!

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use super::{Objects, ProviderClassError, RawObject, Reader, StoreClass, rule, scalar};
use crate::{
    AzureIdentity, AzureObjectKind, AzureRef, FileMode, FileName, Identities, ObjectEncoding,
    ObjectFormat, SecretObject, SecretRef, VaultAddress,
    annotations::{is_domain, is_guid},
    reference::{check_azure_object_name, check_azure_version, check_vault_name},
};

const ACCEPTED_CLOUDS: &str =
    "\"\", AzurePublicCloud, AzureChinaCloud or AzureUSGovernmentCloud (any case)";
const ACCEPTED_GUID: &str = "a GUID such as 00000000-0000-0000-0000-000000000001";

/// The parameters the CSI Azure provider reads; anything else is warned about.
const KNOWN_PARAMETERS: &[&str] = &[
    "keyvaultName",
    "tenantId",
    "cloudName",
    "cloudEnvFileName",
    "clientID",
    "useVMManagedIdentity",
    "userAssignedIdentityID",
    "usePodIdentity",
    "podIdentityNamespace",
    "podIdentityName",
    "objects",
];

const KNOWN_OBJECT_KEYS: &[&str] = &[
    "objectName",
    "objectType",
    "objectVersion",
    "objectVersionHistory",
    "objectAlias",
    "objectFormat",
    "objectEncoding",
    "filePermission",
];

/// The Azure clouds a class may name in `cloudName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AzureCloud {
    Public,
    China,
    UsGovernment,
}

impl AzureCloud {
    /// `cloudName` as the CSI provider reads it: empty means public, any case.
    pub fn from_cloud_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "" | "azurepubliccloud" => Some(Self::Public),
            "azurechinacloud" => Some(Self::China),
            "azureusgovernmentcloud" => Some(Self::UsGovernment),
            _ => None,
        }
    }

    /// The Key Vault DNS suffix: `<vault>.<suffix>`.
    pub fn vault_suffix(self) -> &'static str {
        match self {
            Self::Public => crate::reference::AZURE_PUBLIC_VAULT_SUFFIX,
            Self::China => "vault.azure.cn",
            Self::UsGovernment => "vault.usgovcloudapi.net",
        }
    }

    /// The Entra ID authority host.
    pub fn authority_host(self) -> &'static str {
        match self {
            Self::Public => "https://login.microsoftonline.com/",
            Self::China => "https://login.chinacloudapi.cn/",
            Self::UsGovernment => "https://login.microsoftonline.us/",
        }
    }

    /// How a vault of this cloud is addressed in a reference.
    pub fn vault_address(self, vault_name: &str) -> VaultAddress {
        let name = vault_name.to_ascii_lowercase();
        match self {
            Self::Public => VaultAddress::Name(name),
            _ => VaultAddress::Host {
                host: format!("{name}.{}", self.vault_suffix()),
                port: None,
            },
        }
    }
}

/// Reads a class of `provider: azure`.
pub(super) fn read(
    reader: &mut Reader,
    params: &BTreeMap<String, String>,
) -> Result<StoreClass, ProviderClassError> {
    let get = |key: &str| params.get(key).map(String::as_str);
    reader.warn_unknown(params, KNOWN_PARAMETERS);
    let cloud_name = get("cloudName").unwrap_or_default();
    let cloud = AzureCloud::from_cloud_name(cloud_name)
        .ok_or_else(|| reader.invalid("parameters.cloudName", cloud_name, ACCEPTED_CLOUDS))?;
    if get("cloudEnvFileName").is_some_and(|v| !v.is_empty()) {
        reader.warn(
                "parameters.cloudEnvFileName is ignored: it only serves AzureStackCloud, which is not supported"
                    .to_owned(),
            );
    }
    for key in ["podIdentityNamespace", "podIdentityName"] {
        if get(key).is_some_and(|v| !v.is_empty()) {
            reader.warn(format!(
                "parameters.{key} is ignored: AAD pod identity is not supported"
            ));
        }
    }

    let vault_name = match get("keyvaultName") {
        None | Some("") => {
            return Err(reader.missing("parameters.keyvaultName", "a Key Vault name"));
        }
        Some(v) => v,
    };
    check_vault_name(vault_name).map_err(|_| {
            reader.invalid(
                "parameters.keyvaultName",
                vault_name,
                "a Key Vault name: 3-24 letters, digits or single hyphens, starting with a letter and ending with a letter or digit",
            )
        })?;
    let vault = cloud.vault_address(vault_name);

    let azure = reader.azure_identity(params, cloud)?;

    let objects_text = get("objects").unwrap_or_default();
    if objects_text.trim().is_empty() {
        return Err(reader.missing(
            "parameters.objects",
            "a YAML string \"array:\" of objects, each with objectName and objectType",
        ));
    }
    let raw = reader.azure_raw_objects(objects_text)?;
    let mut objects = Vec::with_capacity(raw.len());
    let mut files: BTreeMap<FileName, String> = BTreeMap::new();
    for raw in &raw {
        let object = reader.azure_object(raw, &vault)?;
        let alias_field = match raw.get("objectAlias") {
            Some(_) => raw.field("objectAlias"),
            None => raw.field("objectName"),
        };
        reader.claim_file(&mut files, &object.file, alias_field)?;
        objects.push(object);
    }
    Ok(StoreClass {
        objects: Objects::Ready(objects),
        identities: Identities {
            azure,
            ..Identities::default()
        },
        files,
        host: Some(("parameters.keyvaultName", vault_name.to_owned())),
    })
}

impl Reader {
    fn azure_identity(
        &mut self,
        params: &BTreeMap<String, String>,
        cloud: AzureCloud,
    ) -> Result<AzureIdentity, ProviderClassError> {
        let get = |key: &str| {
            params
                .get(key)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        if let Some(value) = get("usePodIdentity")
            && self.boolean("parameters.usePodIdentity", value)?
        {
            return Err(ProviderClassError::PodIdentity {
                class: self.class.clone(),
                value: value.to_owned(),
            });
        }
        let use_vm = match get("useVMManagedIdentity") {
            Some(value) => self.boolean("parameters.useVMManagedIdentity", value)?,
            None => false,
        };
        let client_id = get("clientID")
            .map(|v| self.guid("parameters.clientID", v))
            .transpose()?;
        let user_assigned = get("userAssignedIdentityID")
            .map(|v| self.guid("parameters.userAssignedIdentityID", v))
            .transpose()?;
        let tenant_id = match get("tenantId") {
            Some(v) if is_guid(v) || is_domain(v) => Some(v.to_ascii_lowercase()),
            Some(v) => {
                return Err(self.invalid(
                    "parameters.tenantId",
                    v,
                    "a GUID or a domain such as contoso.onmicrosoft.com",
                ));
            }
            None => None,
        };

        let mut azure = AzureIdentity {
            tenant_id,
            authority_host: (cloud != AzureCloud::Public)
                .then(|| cloud.authority_host().to_owned()),
            ..AzureIdentity::default()
        };
        if use_vm {
            azure.use_managed_identity = true;
            azure.user_assigned_identity_id = user_assigned;
            if client_id.is_some() {
                self.warn(
                    "parameters.clientID is ignored: useVMManagedIdentity is \"true\", which takes precedence as in the CSI provider"
                        .to_owned(),
                );
            }
        } else {
            if user_assigned.is_some() {
                self.warn(
                    "parameters.userAssignedIdentityID is ignored: it only applies with useVMManagedIdentity: \"true\""
                        .to_owned(),
                );
            }
            if client_id.is_none() {
                self.warn(
                    "parameters name no identity (clientID or useVMManagedIdentity: \"true\"); the operator's default identity is used, not a nodePublishSecretRef service principal"
                        .to_owned(),
                );
            }
            azure.client_id = client_id;
        }
        Ok(azure)
    }

    /// `parameters.objects`: `array:` of YAML strings (or, leniently, maps).
    /// Bounded in size, and without anchors or aliases: nothing expands.
    fn azure_raw_objects(&mut self, text: &str) -> Result<Vec<RawObject>, ProviderClassError> {
        const ACCEPTED: &str = "a YAML map with key array: a list of YAML strings, each a map of objectName, objectType, ...";
        let doc = self.yaml("parameters.objects", text, ACCEPTED)?;
        let Yaml::Mapping(doc) = doc else {
            return Err(self.invalid("parameters.objects", text, ACCEPTED));
        };
        for key in doc.keys() {
            if key.as_str() != Some("array") {
                self.warn(format!(
                    "parameters.objects key {} is not known and is ignored; known: array",
                    scalar(key).unwrap_or_else(|| format!("{key:?}"))
                ));
            }
        }
        let items = match doc.get("array") {
            None | Some(Yaml::Null) => {
                return Err(self.missing("parameters.objects.array", ACCEPTED));
            }
            Some(Yaml::Sequence(items)) if !items.is_empty() => items,
            Some(Yaml::Sequence(_)) => {
                return Err(self.missing(
                    "parameters.objects.array[0]",
                    "at least one object with objectName and objectType",
                ));
            }
            Some(other) => {
                return Err(self.invalid(
                    "parameters.objects.array",
                    &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                    ACCEPTED,
                ));
            }
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| self.azure_raw_object(i, item))
            .collect()
    }

    fn azure_raw_object(
        &mut self,
        index: usize,
        item: &Yaml,
    ) -> Result<RawObject, ProviderClassError> {
        const ACCEPTED: &str = "a map of objectName, objectType, objectVersion, objectAlias, objectFormat, objectEncoding, filePermission";
        let field = format!("parameters.objects[{index}]");
        let parsed;
        let map = match item {
            Yaml::String(text) => {
                // An escape in the outer document can spell an anchor here.
                self.refuse_anchors(&field, text)?;
                parsed = serde_yaml_ng::from_str::<Yaml>(text).map_err(|e| {
                    ProviderClassError::Yaml {
                        class: self.class.clone(),
                        field: field.clone(),
                        message: e.to_string(),
                        accepted: ACCEPTED,
                    }
                })?;
                match &parsed {
                    Yaml::Mapping(map) => map,
                    _ => return Err(self.invalid(&field, text, ACCEPTED)),
                }
            }
            Yaml::Mapping(map) => map,
            other => {
                return Err(self.invalid(
                    &field,
                    &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                    ACCEPTED,
                ));
            }
        };
        let mut values = BTreeMap::new();
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                return Err(self.invalid(&field, &format!("{key:?}"), ACCEPTED));
            };
            let Some(value) = scalar(value) else {
                return Err(self.invalid(
                    &format!("{field}.{key}"),
                    &format!("{value:?}"),
                    "a string",
                ));
            };
            if !KNOWN_OBJECT_KEYS.contains(&key) {
                self.warn(format!(
                    "{field}.{key} is not known and is ignored; known: {}",
                    KNOWN_OBJECT_KEYS.join(", ")
                ));
            }
            values.insert(key.to_owned(), value);
        }
        Ok(RawObject { field, values })
    }

    fn azure_object(
        &mut self,
        raw: &RawObject,
        vault: &VaultAddress,
    ) -> Result<SecretObject, ProviderClassError> {
        let name = raw.get("objectName").ok_or_else(|| {
            self.missing(&raw.field("objectName"), "the name of a Key Vault object")
        })?;
        check_azure_object_name(name)
            .map_err(|e| self.invalid(&raw.field("objectName"), name, rule(e)))?;

        const TYPES: &str = "secret, key or cert";
        let kind = match raw
            .get("objectType")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("secret") => AzureObjectKind::Secret,
            Some("key") => AzureObjectKind::Key,
            Some("cert") => AzureObjectKind::Certificate,
            Some(_) => {
                let value = raw.get("objectType").unwrap_or_default();
                return Err(self.invalid(&raw.field("objectType"), value, TYPES));
            }
            None => return Err(self.missing(&raw.field("objectType"), TYPES)),
        };

        let version = raw.get("objectVersion");
        if let Some(v) = version {
            check_azure_version(v)
                .map_err(|e| self.invalid(&raw.field("objectVersion"), v, rule(e)))?;
        }
        if let Some(v) = raw.get("objectVersionHistory")
            && !matches!(v, "0" | "1")
        {
            return Err(self.invalid(
                &raw.field("objectVersionHistory"),
                v,
                "\"0\", \"1\" or absent: a directory of past versions is not supported",
            ));
        }

        let file_text = raw.get("objectAlias").unwrap_or(name);
        let file = FileName::new(file_text).map_err(|e| {
            let field = match raw.get("objectAlias") {
                Some(_) => raw.field("objectAlias"),
                None => raw.field("objectName"),
            };
            self.invalid(&field, file_text, e.to_string())
        })?;

        let format = match raw
            .get("objectFormat")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("pem") => Some(ObjectFormat::Pem),
            Some("pfx") => Some(ObjectFormat::Pfx),
            Some(_) => {
                let value = raw.get("objectFormat").unwrap_or_default();
                return Err(self.invalid(&raw.field("objectFormat"), value, "pem or pfx"));
            }
        };
        let encoding = match raw
            .get("objectEncoding")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("utf-8") => Some(ObjectEncoding::Utf8),
            Some("hex") => Some(ObjectEncoding::Hex),
            Some("base64") => Some(ObjectEncoding::Base64),
            Some(_) => {
                let value = raw.get("objectEncoding").unwrap_or_default();
                return Err(self.invalid(
                    &raw.field("objectEncoding"),
                    value,
                    "utf-8, hex or base64",
                ));
            }
        };
        let (format, encoding) = if kind == AzureObjectKind::Secret {
            (format, encoding)
        } else {
            for (key, set) in [
                ("objectFormat", format.is_some()),
                ("objectEncoding", encoding.is_some()),
            ] {
                if set {
                    self.warn(format!(
                        "{} is ignored: it only applies to objectType secret",
                        raw.field(key)
                    ));
                }
            }
            (None, None)
        };

        let file_permission = raw
            .get("filePermission")
            .map(|v| {
                v.parse::<FileMode>().map_err(|_| {
                    self.invalid(
                        &raw.field("filePermission"),
                        v,
                        "3 or 4 octal digits from 0000 to 0777, such as 0644 or 0440",
                    )
                })
            })
            .transpose()?;

        let source = SecretRef::Azure(AzureRef {
            vault: vault.clone(),
            kind,
            name: name.to_owned(),
            version: version.map(str::to_owned),
        });
        Ok(SecretObject {
            format,
            encoding,
            file_permission,
            ..SecretObject::new(file, source)
        })
    }

    fn guid(&self, field: &str, value: &str) -> Result<String, ProviderClassError> {
        if is_guid(value) {
            Ok(value.to_ascii_lowercase())
        } else {
            Err(self.invalid(field, value, ACCEPTED_GUID))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;
    use serde_json::json;

    use super::super::*;
    use super::*;
    use crate::Rotation;

    const SEED_01: &str =
        include_str!("../../../manifests/examples/seed/01-secretProviderClass.yml");
    const SEED_10: &str =
        include_str!("../../../manifests/examples/seed/10-secretProviderClass_secretObjects.yml");
    const CLASS: &str = "kv-aks-csi-weu-01";
    const REMOVE: &str = "<remove>";

    /// A `parameters.objects` one byte over the limit, valid YAML otherwise.
    fn big_objects() -> &'static str {
        let mut text = String::from("array: []");
        text.push_str(&" ".repeat(MAX_OBJECTS_BYTES + 1 - text.len()));
        Box::leak(text.into_boxed_str())
    }

    #[rstest]
    #[case::start("*a", Some((1, 1, "*a")))]
    #[case::after_space("key: &x value", Some((1, 6, "&x")))]
    #[case::flow("[a,*b]", Some((1, 4, "*b]")))]
    #[case::flow_value("{a:*b}", Some((1, 4, "*b}")))]
    #[case::tab("-\t*a", Some((1, 3, "*a")))]
    #[case::next_line("a: b\n*c: d", Some((2, 1, "*c:")))]
    #[case::line_separator("a:\u{2028}*b", Some((1, 4, "*b")))]
    #[case::bom("\u{feff}*a", Some((1, 2, "*a")))]
    // Refused although libyaml reads them as text: quoted, commented, mid-scalar.
    #[case::quoted("a: \"*b\"", Some((1, 5, "*b\"")))]
    #[case::comment("a: b # see *c", Some((1, 12, "*c")))]
    #[case::mid_scalar("a: b &c", Some((1, 6, "&c")))]
    // Inside a word: part of a plain scalar, never a token.
    #[case::in_words("objectName: a*b\nobjectAlias: x&y.txt\nv: 1+*2", None)]
    #[case::none("array:\n  - |\n    objectName: a\n", None)]
    fn anchors_and_aliases_are_found_where_a_token_may_start(
        #[case] text: &str,
        #[case] found: Option<(usize, usize, &str)>,
    ) {
        assert_eq!(
            find_anchor_or_alias(text),
            found.map(|(line, column, token)| AnchorOrAlias {
                line,
                column,
                token: token.to_owned()
            })
        );
    }

    #[test]
    fn objects_at_the_limit_are_read() {
        let mut text = objects(&["objectName: db-user\nobjectType: secret"]);
        text.push_str(&" ".repeat(MAX_OBJECTS_BYTES - text.len()));
        let class = class(&[("objects", &text)]);
        assert!(read(&class).is_ok(), "{:?}", read(&class).err());
    }

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).unwrap()
    }

    /// Each item is one object's YAML, written as the seed writes them.
    fn objects(items: &[&str]) -> String {
        let mut text = String::from("array:\n");
        for item in items {
            text.push_str("  - |\n");
            for line in item.lines() {
                text.push_str("    ");
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// [`objects`], for case tables that want a `&str`.
    fn obj(items: &[&str]) -> &'static str {
        Box::leak(objects(items).into_boxed_str())
    }

    /// Seed 01 with some parameters replaced (or removed with [`REMOVE`]).
    fn class(params: &[(&str, &str)]) -> Value {
        let mut class = yaml(SEED_01);
        let map = class["spec"]["parameters"].as_object_mut().unwrap();
        for (key, value) in params {
            if *value == REMOVE {
                map.remove(*key);
            } else {
                map.insert(key.to_string(), json!(value));
            }
        }
        class
    }

    fn with_objects(items: &[&str]) -> Value {
        class(&[("objects", &objects(items))])
    }

    fn read(class: &Value) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
        spec_from_provider_class(class, &Defaults::default())
    }

    fn azure(object: &SecretObject) -> &AzureRef {
        match &object.source {
            SecretRef::Azure(r) => r,
            other => panic!("not azure: {other}"),
        }
    }

    fn files(spec: &InjectionSpec) -> Vec<&str> {
        spec.objects.iter().map(|o| o.file.as_str()).collect()
    }

    #[test]
    fn seed_01_two_secrets_with_a_user_assigned_managed_identity() {
        let (spec, warnings) = read(&yaml(SEED_01)).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(files(&spec), ["db-pass", "db-user"]);
        for object in &spec.objects {
            let r = azure(object);
            assert_eq!(r.vault, VaultAddress::Name(CLASS.into()));
            assert_eq!(r.vault.url(), "https://kv-aks-csi-weu-01.vault.azure.net");
            assert_eq!(r.kind, AzureObjectKind::Secret);
            assert_eq!(r.name, object.file.as_str());
            assert_eq!(r.version, None);
            assert_eq!(object.encoding, None);
            assert_eq!(object.format, None);
            assert_eq!(object.file_permission, None);
        }
        assert_eq!(
            spec.objects[1].source.to_string(),
            "azure://kv-aks-csi-weu-01/secrets/db-user"
        );
        assert_eq!(
            spec.identities.azure,
            AzureIdentity {
                client_id: None,
                tenant_id: Some("00000000-0000-0000-0000-00000000000a".into()),
                use_managed_identity: true,
                user_assigned_identity_id: Some("00000000-0000-0000-0000-000000000001".into()),
                authority_host: None,
            }
        );
        assert_eq!(spec.provider_class.as_deref(), Some(CLASS));
        assert_eq!(spec.sync_targets, []);
        assert_eq!(spec.mount_path, "/mnt/secrets-store");
        assert_eq!(spec.rotation, Rotation::Every(Duration::from_secs(120)));
        assert_eq!(spec.file_permission, FileMode::DEFAULT);
        assert_eq!(spec.containers, None);

        let value = spec.to_env_value();
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
        assert!(value.contains(r#""useManagedIdentity":true"#), "{value}");
        assert!(
            value.contains(r#""userAssignedIdentityId":"00000000-0000-0000-0000-000000000001""#),
            "{value}"
        );
        assert!(
            value.contains(r#""providerClass":"kv-aks-csi-weu-01""#),
            "{value}"
        );
        assert!(!value.contains("syncTargets"), "{value}");
    }

    #[test]
    fn read_once_then_a_spec_per_pod() {
        let parsed = super::super::read(&yaml(SEED_01)).unwrap();
        assert_eq!(parsed.name(), CLASS);
        let one = Defaults::default();
        let other = Defaults {
            mount_path: "/secrets".into(),
            ..Defaults::default()
        };
        let (a, _) = parsed.spec(&one).unwrap();
        let (b, _) = parsed.spec(&other).unwrap();
        assert_eq!(a.objects, b.objects);
        assert_eq!(b.mount_path, "/secrets");
        assert_eq!(a, read(&yaml(SEED_01)).unwrap().0);
    }

    // H1: a class reaches only the clouds' vaults the operator allows.
    #[test]
    fn h1_a_class_names_only_allowed_hosts() {
        let china = class(&[("cloudName", "AzureChinaCloud")]);
        let only_public = Defaults {
            limits: crate::Limits {
                store_hosts: "*.vault.azure.net".parse().unwrap(),
                ..crate::Limits::default()
            },
            ..Defaults::default()
        };
        let err = spec_from_provider_class(&china, &only_public)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("parameters.keyvaultName \"kv-aks-csi-weu-01\" is refused"),
            "{err}"
        );
        assert!(
            err.contains("kv-aks-csi-weu-01.vault.azure.cn:443"),
            "{err}"
        );
        assert!(spec_from_provider_class(&china, &Defaults::default()).is_ok());
    }

    // M1: the operator may forbid the node's managed identity.
    #[test]
    fn m1_use_vm_managed_identity_needs_the_operators_leave() {
        let denied = Defaults {
            limits: crate::Limits {
                allow_managed_identity: false,
                ..crate::Limits::default()
            },
            ..Defaults::default()
        };
        let err = spec_from_provider_class(&yaml(SEED_01), &denied)
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameters.useVMManagedIdentity"), "{err}");
        assert!(err.contains("--allow-managed-identity"), "{err}");
    }

    // H2: secretObjects never make a ServiceAccount token Secret.
    #[test]
    fn h2_secret_objects_of_a_token_type_are_refused() {
        let mut class = yaml(SEED_10);
        class["spec"]["secretObjects"][0]["type"] = json!("kubernetes.io/service-account-token");
        class["spec"]["secretObjects"][0]["annotations"] =
            json!({"kubernetes.io/service-account.name": "admin"});
        let err = read(&class).unwrap_err().to_string();
        assert!(err.contains("spec.secretObjects[0].type"), "{err}");
        assert!(err.contains("Opaque"), "{err}");
        let mut class = yaml(SEED_10);
        class["spec"]["secretObjects"][0]["annotations"] =
            json!({"kubernetes.io/service-account.name": "admin"});
        let err = read(&class).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
    }

    #[test]
    fn seed_10_adds_the_synced_secret() {
        let (spec, warnings) = read(&yaml(SEED_10)).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        let (spec_01, _) = read(&yaml(SEED_01)).unwrap();
        assert_eq!(spec.objects, spec_01.objects);
        assert_eq!(spec.identities.azure, spec_01.identities.azure);
        assert_eq!(
            spec.sync_targets,
            [SyncTarget {
                secret_name: "k8s-secret".into(),
                secret_type: "Opaque".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                data: BTreeMap::from([
                    ("username".into(), FileName::new("db-user").unwrap()),
                    ("password".into(), FileName::new("db-pass").unwrap()),
                ]),
            }]
        );
        let value = spec.to_env_value();
        assert!(
            value.contains(
                r#""syncTargets":[{"secretName":"k8s-secret","type":"Opaque","data":{"password":"db-pass","username":"db-user"}}]"#
            ),
            "{value}"
        );
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
    }

    #[test]
    fn defaults_give_mount_path_rotation_and_mode() {
        let defaults = Defaults {
            mount_path: "/secrets".into(),
            rotation: Rotation::Every(Duration::from_secs(60)),
            file_permission: "0440".parse().unwrap(),
            ..Defaults::default()
        };
        let (spec, _) = spec_from_provider_class(&yaml(SEED_01), &defaults).unwrap();
        assert_eq!(spec.mount_path, "/secrets");
        assert_eq!(spec.rotation, Rotation::Every(Duration::from_secs(60)));
        assert_eq!(spec.file_permission.to_string(), "0440");
    }

    #[rstest]
    #[case("", None, None)]
    #[case("AzurePublicCloud", None, None)]
    #[case("azurepubliccloud", None, None)]
    #[case(
        "AzureChinaCloud",
        Some("kv-aks-csi-weu-01.vault.azure.cn"),
        Some("https://login.chinacloudapi.cn/")
    )]
    #[case(
        "AZURECHINACLOUD",
        Some("kv-aks-csi-weu-01.vault.azure.cn"),
        Some("https://login.chinacloudapi.cn/")
    )]
    #[case(
        "AzureUSGovernmentCloud",
        Some("kv-aks-csi-weu-01.vault.usgovcloudapi.net"),
        Some("https://login.microsoftonline.us/")
    )]
    #[case(
        "azureusgovernmentcloud",
        Some("kv-aks-csi-weu-01.vault.usgovcloudapi.net"),
        Some("https://login.microsoftonline.us/")
    )]
    fn clouds(#[case] cloud: &str, #[case] host: Option<&str>, #[case] authority: Option<&str>) {
        let (spec, warnings) = read(&class(&[("cloudName", cloud)])).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        let expected = match host {
            None => VaultAddress::Name(CLASS.into()),
            Some(host) => VaultAddress::Host {
                host: host.into(),
                port: None,
            },
        };
        for object in &spec.objects {
            assert_eq!(azure(object).vault, expected);
        }
        assert_eq!(spec.identities.azure.authority_host.as_deref(), authority);
        // The sovereign vault survives the trip through the env value.
        let value = spec.to_env_value();
        assert_eq!(InjectionSpec::from_env_value(&value).unwrap(), spec);
    }

    #[test]
    fn absent_cloud_name_is_public() {
        let (spec, _) = read(&class(&[("cloudName", REMOVE)])).unwrap();
        assert_eq!(
            azure(&spec.objects[0]).vault.url(),
            "https://kv-aks-csi-weu-01.vault.azure.net"
        );
        assert_eq!(
            AzureCloud::Public.authority_host(),
            "https://login.microsoftonline.com/"
        );
    }

    #[test]
    fn workload_identity_from_client_id() {
        let (spec, warnings) = read(&class(&[
            ("useVMManagedIdentity", REMOVE),
            ("userAssignedIdentityID", REMOVE),
            ("usePodIdentity", REMOVE),
            ("clientID", "00000000-0000-0000-0000-0000000000AB"),
        ]))
        .unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(
            spec.identities.azure,
            AzureIdentity {
                client_id: Some("00000000-0000-0000-0000-0000000000ab".into()),
                tenant_id: Some("00000000-0000-0000-0000-00000000000a".into()),
                ..AzureIdentity::default()
            }
        );
    }

    #[test]
    fn system_assigned_managed_identity() {
        let (spec, _) = read(&class(&[("userAssignedIdentityID", "")])).unwrap();
        assert!(spec.identities.azure.use_managed_identity);
        assert_eq!(spec.identities.azure.user_assigned_identity_id, None);
    }

    #[test]
    fn aliases_types_formats_encodings_and_permissions() {
        let (spec, warnings) = read(&with_objects(&[
            "objectName: db-user\nobjectType: secret\nobjectAlias: username\nfilePermission: \"0400\"",
            "objectName: tls\nobjectType: secret\nobjectFormat: pfx\nobjectEncoding: base64\nobjectAlias: tls.pfx",
            "objectName: tls\nobjectType: secret\nobjectFormat: PEM\nobjectAlias: tls.pem",
            "objectName: tls\nobjectType: cert\nobjectAlias: tls.crt\nobjectVersion: 0123456789abcdef0123456789abcdef",
            "objectName: signing\nobjectType: key\nobjectEncoding: hex",
            "objectName: blob\nobjectType: Secret\nobjectEncoding: utf-8\nfilePermission: 0640",
        ]))
        .unwrap();
        assert_eq!(
            files(&spec),
            [
                "blob", "signing", "tls.crt", "tls.pem", "tls.pfx", "username"
            ]
        );
        let by_file = |f: &str| spec.objects.iter().find(|o| o.file.as_str() == f).unwrap();

        let blob = by_file("blob");
        assert_eq!(azure(blob).kind, AzureObjectKind::Secret);
        assert_eq!(blob.encoding, Some(ObjectEncoding::Utf8));
        assert_eq!(blob.file_permission.map(|m| m.bits()), Some(0o640));

        let signing = by_file("signing");
        assert_eq!(
            signing.source.to_string(),
            "azure://kv-aks-csi-weu-01/keys/signing"
        );
        assert_eq!(signing.encoding, None, "encoding applies to secrets only");

        let crt = by_file("tls.crt");
        assert_eq!(
            crt.source.to_string(),
            "azure://kv-aks-csi-weu-01/certificates/tls/0123456789abcdef0123456789abcdef"
        );

        let pem = by_file("tls.pem");
        assert_eq!(pem.format, Some(ObjectFormat::Pem));
        assert_eq!(
            pem.source.to_string(),
            "azure://kv-aks-csi-weu-01/secrets/tls"
        );

        let pfx = by_file("tls.pfx");
        assert_eq!(pfx.format, Some(ObjectFormat::Pfx));
        assert_eq!(pfx.encoding, Some(ObjectEncoding::Base64));

        let user = by_file("username");
        assert_eq!(
            user.source.to_string(),
            "azure://kv-aks-csi-weu-01/secrets/db-user"
        );
        assert_eq!(
            user.file_permission.map(|m| m.to_string()).as_deref(),
            Some("0400")
        );

        assert_eq!(
            warnings,
            [format!(
                "SecretProviderClass {CLASS}: parameters.objects[4].objectEncoding is ignored: it only applies to objectType secret"
            )]
        );
    }

    #[rstest]
    #[case(&[("resourceGroup", "rg")], "parameters.resourceGroup is not known and is ignored; known: keyvaultName, tenantId")]
    #[case(&[("clientID", "00000000-0000-0000-0000-000000000002")], "parameters.clientID is ignored: useVMManagedIdentity is \"true\"")]
    #[case(&[("useVMManagedIdentity", "false")], "parameters.userAssignedIdentityID is ignored")]
    #[case(&[("useVMManagedIdentity", "false"), ("userAssignedIdentityID", REMOVE)], "parameters name no identity")]
    #[case(&[("podIdentityName", "id"), ("podIdentityNamespace", "ns")], "parameters.podIdentityName is ignored")]
    #[case(&[("cloudEnvFileName", "/etc/kubernetes/azurestack.json")], "parameters.cloudEnvFileName is ignored")]
    #[case(&[("objects", "array:\n  - |\n    objectName: a\n    objectType: secret\n    objectAliass: b\n")], "parameters.objects[0].objectAliass is not known and is ignored")]
    #[case(&[("objects", "array:\n  - |\n    objectName: a\n    objectType: cert\n    objectFormat: pfx\n")], "parameters.objects[0].objectFormat is ignored: it only applies to objectType secret")]
    #[case(&[("objects", "arrays: []\narray:\n  - |\n    objectName: a\n    objectType: secret\n")], "parameters.objects key arrays is not known")]
    fn warnings(#[case] params: &[(&str, &str)], #[case] says: &str) {
        let (_, warnings) = read(&class(params)).unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&format!("SecretProviderClass {CLASS}: "))
                    && w.contains(says)),
            "{warnings:?}"
        );
    }

    const TYPES: &str = "secret, key or cert";

    #[rstest]
    #[case::provider(&[], Some(("/spec/provider", json!("conjur"))), "invalid", "spec.provider", "\"conjur\"", "azure")]
    #[case::no_provider(&[], Some(("/spec/provider", Value::Null)), "missing", "spec.provider", "", "azure")]
    #[case::cloud(&[("cloudName", "AzureStackCloud")], None, "invalid", "parameters.cloudName", "\"AzureStackCloud\"", "AzureChinaCloud or AzureUSGovernmentCloud")]
    #[case::no_vault(&[("keyvaultName", REMOVE)], None, "missing", "parameters.keyvaultName", "", "a Key Vault name")]
    #[case::vault(&[("keyvaultName", "kv_bad")], None, "invalid", "parameters.keyvaultName", "\"kv_bad\"", "3-24 letters")]
    #[case::vault_host(&[("keyvaultName", "kv.vault.azure.net")], None, "invalid", "parameters.keyvaultName", "\"kv.vault.azure.net\"", "3-24 letters")]
    #[case::pod_identity(&[("usePodIdentity", "true")], None, "pod_identity", "parameters.usePodIdentity", "\"true\"", "AAD pod identity is deprecated and not supported")]
    #[case::pod_identity_bool(&[("usePodIdentity", "no")], None, "invalid", "parameters.usePodIdentity", "\"no\"", "\"true\" or \"false\"")]
    #[case::vm_bool(&[("useVMManagedIdentity", "yes")], None, "invalid", "parameters.useVMManagedIdentity", "\"yes\"", "\"true\" or \"false\"")]
    #[case::client_id(&[("clientID", "my-app")], None, "invalid", "parameters.clientID", "\"my-app\"", "a GUID")]
    #[case::user_assigned(&[("userAssignedIdentityID", "abc")], None, "invalid", "parameters.userAssignedIdentityID", "\"abc\"", "a GUID")]
    #[case::tenant(&[("tenantId", "not a tenant")], None, "invalid", "parameters.tenantId", "\"not a tenant\"", "a GUID or a domain")]
    #[case::not_string(&[], Some(("/spec/parameters/useVMManagedIdentity", json!(true))), "invalid", "parameters.useVMManagedIdentity", "\"true\"", "a string")]
    #[case::no_params(&[], Some(("/spec/parameters", Value::Null)), "missing", "spec.parameters", "", "keyvaultName and objects")]
    #[case::no_objects(&[("objects", REMOVE)], None, "missing", "parameters.objects", "", "array:")]
    #[case::objects_yaml(&[("objects", "array: [")], None, "yaml", "parameters.objects", "", "array:")]
    #[case::objects_list(&[("objects", "- objectName: a")], None, "invalid", "parameters.objects", "objectName: a", "array:")]
    #[case::no_array(&[("objects", "items: []")], None, "missing", "parameters.objects.array", "", "array:")]
    #[case::empty_array(&[("objects", "array: []")], None, "missing", "parameters.objects.array[0]", "", "at least one object")]
    #[case::object_yaml(&[("objects", "array:\n  - \"objectName: [\"\n")], None, "yaml", "parameters.objects[0]", "", "objectName, objectType")]
    #[case::no_name(&[("objects", obj(&["objectType: secret"]))], None, "missing", "parameters.objects[0].objectName", "", "Key Vault object")]
    #[case::name(&[("objects", obj(&["objectName: db-user\nobjectType: secret", "objectName: db_pass\nobjectType: secret"]))], None, "invalid", "parameters.objects[1].objectName", "\"db_pass\"", "letters, digits and hyphens")]
    #[case::no_type(&[("objects", obj(&["objectName: a"]))], None, "missing", "parameters.objects[0].objectType", "", TYPES)]
    #[case::type_(&[("objects", obj(&["objectName: a\nobjectType: secret", "objectName: b\nobjectType: blob"]))], None, "invalid", "parameters.objects[1].objectType", "\"blob\"", TYPES)]
    #[case::version(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectVersion: not-hex!"]))], None, "invalid", "parameters.objects[0].objectVersion", "\"not-hex!\"", "letters and digits")]
    #[case::history(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectVersionHistory: 5"]))], None, "invalid", "parameters.objects[0].objectVersionHistory", "\"5\"", "not supported")]
    #[case::format(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectFormat: der"]))], None, "invalid", "parameters.objects[0].objectFormat", "\"der\"", "pem or pfx")]
    #[case::encoding(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectEncoding: utf-16"]))], None, "invalid", "parameters.objects[0].objectEncoding", "\"utf-16\"", "utf-8, hex or base64")]
    #[case::permission(&[("objects", obj(&["objectName: a\nobjectType: secret\nfilePermission: \"0888\""]))], None, "invalid", "parameters.objects[0].filePermission", "\"0888\"", "octal digits")]
    #[case::alias(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectAlias: ../a"]))], None, "invalid", "parameters.objects[0].objectAlias", "\"../a\"", "one path component")]
    #[case::alias_dots(&[("objects", obj(&["objectName: a\nobjectType: secret\nobjectAlias: ..data"]))], None, "invalid", "parameters.objects[0].objectAlias", "\"..data\"", "reserved")]
    #[case::duplicate(&[("objects", obj(&["objectName: a\nobjectType: secret", "objectName: b\nobjectType: secret\nobjectAlias: a"]))], None, "duplicate_file", "parameters.objects[1].objectAlias", "\"a\"", "parameters.objects[0].objectName already writes")]
    #[case::sync_object(&[], Some(("/spec/secretObjects", json!([{"secretName": "s", "data": [{"objectName": "db-password", "key": "password"}]}]))), "unknown_sync_object", "spec.secretObjects[0].data[0].objectName", "\"db-password\"", "db-pass, db-user")]
    #[case::sync_name(&[], Some(("/spec/secretObjects", json!([{"secretName": "K8s_Secret", "data": []}]))), "invalid", "spec.secretObjects[0].secretName", "\"K8s_Secret\"", "DNS subdomain")]
    #[case::sync_no_name(&[], Some(("/spec/secretObjects", json!([{"type": "Opaque"}]))), "missing", "spec.secretObjects[0].secretName", "", "Secret to create")]
    #[case::sync_twice(&[], Some(("/spec/secretObjects", json!([{"secretName": "s"}, {"secretName": "s"}]))), "invalid", "spec.secretObjects[1].secretName", "\"s\"", "not used by another entry")]
    #[case::sync_key(&[], Some(("/spec/secretObjects", json!([{"secretName": "s", "data": [{"objectName": "db-user", "key": "user name"}]}]))), "invalid", "spec.secretObjects[0].data[0].key", "\"user name\"", "letters, digits")]
    #[case::sync_key_twice(&[], Some(("/spec/secretObjects", json!([{"secretName": "s", "data": [{"objectName": "db-user", "key": "u"}, {"objectName": "db-pass", "key": "u"}]}]))), "invalid", "spec.secretObjects[0].data[1].key", "\"u\"", "not used by another entry")]
    #[case::sync_no_key(&[], Some(("/spec/secretObjects", json!([{"secretName": "s", "data": [{"objectName": "db-user"}]}]))), "missing", "spec.secretObjects[0].data[0].key", "", "key of the Secret")]
    #[case::sync_shape(&[], Some(("/spec/secretObjects", json!([{"secretName": "s", "labels": ["a"]}]))), "invalid", "spec.secretObjects[0]", "labels", "secretName, type")]
    #[case::objects_too_large(&[("objects", big_objects())], None, "invalid", "parameters.objects", "more than 65536 bytes", "at most 65536 bytes (64 KiB)")]
    #[case::anchor(&[("objects", "array:\n  - &one |\n    objectName: a\n    objectType: secret\n  - *one\n")], None, "invalid", "parameters.objects", "\"&one\"", "found at line 2, column 5")]
    #[case::alias_in_object(&[("objects", "array:\n  - \"objectName: \\x2aname\\nobjectType: secret\"\n")], None, "invalid", "parameters.objects[0]", "\"*name\"", "found at line 1, column 13")]
    #[case::merge_key(&[("objects", obj(&["base: &b {objectType: secret}", "<<: *b\nobjectName: a"]))], None, "invalid", "parameters.objects", "\"&b\"", "without anchors (&name) or aliases (*name)")]
    fn errors_name_class_field_value_and_rule(
        #[case] params: &[(&str, &str)],
        #[case] replace: Option<(&str, Value)>,
        #[case] reason: &str,
        #[case] field: &str,
        #[case] value: &str,
        #[case] accepted: &str,
    ) {
        let mut class = class(params);
        if let Some((pointer, new)) = replace {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            class.pointer_mut(parent).unwrap()[key] = new;
        }
        let err = read(&class).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.reason(), reason, "{text}");
        assert!(
            text.starts_with(&format!("SecretProviderClass {CLASS}: ")),
            "{text}"
        );
        assert!(text.contains(&format!("{field} ")), "{text}");
        assert!(text.contains(value), "{text}");
        assert!(text.contains(accepted), "{text}");
    }

    #[test]
    fn errors_are_exact_variants() {
        assert_eq!(
            read(&class(&[("usePodIdentity", "true")])),
            Err(ProviderClassError::PodIdentity {
                class: CLASS.into(),
                value: "true".into()
            })
        );
        assert_eq!(
            read(&with_objects(&[
                "objectName: a\nobjectType: secret\nobjectAlias: x",
                "objectName: b\nobjectType: secret\nobjectAlias: x"
            ])),
            Err(ProviderClassError::DuplicateFile {
                class: CLASS.into(),
                field: "parameters.objects[1].objectAlias".into(),
                file: "x".into(),
                first: "parameters.objects[0].objectAlias".into(),
            })
        );
        assert_eq!(
            read(&class(&[("cloudName", "AzureGermanCloud")])),
            Err(ProviderClassError::Invalid {
                class: CLASS.into(),
                field: "parameters.cloudName".into(),
                value: "AzureGermanCloud".into(),
                accepted: ACCEPTED_CLOUDS.into(),
            })
        );
    }

    #[rstest]
    #[case("secrets-store.csi.x-k8s.io/v1", "SecretProviderClassPodStatus")]
    #[case("secrets-store.csi.k8s.io/v1", "SecretProviderClass")]
    #[case("v1", "Secret")]
    fn other_kinds_are_refused(#[case] api_version: &str, #[case] kind: &str) {
        let mut class = yaml(SEED_01);
        class["apiVersion"] = json!(api_version);
        class["kind"] = json!(kind);
        assert_eq!(
            read(&class),
            Err(ProviderClassError::NotAProviderClass {
                api_version: api_version.into(),
                kind: kind.into()
            })
        );
    }

    #[test]
    fn v1alpha1_is_read_like_v1() {
        let mut class = yaml(SEED_01);
        class["apiVersion"] = json!("secrets-store.csi.x-k8s.io/v1alpha1");
        assert_eq!(read(&class).unwrap(), read(&yaml(SEED_01)).unwrap());
    }

    #[test]
    fn sync_target_type_labels_annotations_and_aliases() {
        let mut class = with_objects(&[
            "objectName: tls\nobjectType: secret\nobjectFormat: pem\nobjectAlias: tls.pem",
            "objectName: db-user\nobjectType: secret",
        ]);
        class["spec"]["secretObjects"] = json!([
            {
                "secretName": "ingress-tls",
                "type": "kubernetes.io/tls",
                "labels": {"app": "web"},
                "annotations": {"owner": "team-a"},
                "data": [
                    {"objectName": "tls.pem", "key": "tls.key"},
                    {"objectName": "tls.pem", "key": "tls.crt"}
                ]
            },
            {"secretName": "db", "type": "", "data": [{"objectName": "db-user", "key": "user"}]}
        ]);
        let (spec, _) = read(&class).unwrap();
        let tls = &spec.sync_targets[0];
        assert_eq!(tls.secret_type, "kubernetes.io/tls");
        assert_eq!(tls.labels["app"], "web");
        assert_eq!(tls.annotations["owner"], "team-a");
        assert_eq!(tls.data["tls.crt"].as_str(), "tls.pem");
        assert_eq!(tls.data["tls.key"].as_str(), "tls.pem");
        assert_eq!(spec.sync_targets[1].secret_type, DEFAULT_SECRET_TYPE);

        // The object name of an aliased object is not a file of the spec.
        class["spec"]["secretObjects"][0]["data"][0]["objectName"] = json!("tls");
        assert!(matches!(
            read(&class),
            Err(ProviderClassError::UnknownSyncObject { object_name, .. }) if object_name == "tls"
        ));
    }

    #[test]
    fn objects_may_be_maps_and_unquoted_scalars() {
        let (spec, warnings) = read(&class(&[(
            "objects",
            "array:\n  - objectName: a\n    objectType: secret\n    objectVersion:\n    filePermission: 0600\n",
        )]))
        .unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(azure(&spec.objects[0]).version, None);
        assert_eq!(
            spec.objects[0].file_permission.map(|m| m.bits()),
            Some(0o600)
        );
    }

    #[test]
    fn null_parameter_is_empty() {
        let mut class = yaml(SEED_01);
        class["spec"]["parameters"]["cloudName"] = Value::Null;
        assert_eq!(read(&class).unwrap(), read(&yaml(SEED_01)).unwrap());
    }

    #[test]
    fn unnamed_class_is_still_named_in_errors() {
        let mut class = class(&[("keyvaultName", REMOVE)]);
        class["metadata"] = json!({});
        let err = read(&class).unwrap_err().to_string();
        assert!(err.starts_with("SecretProviderClass <unnamed>: "), "{err}");
    }
}
