//! `provider: aws`: the AWS CSI provider's (ASCP's) `spec.parameters`, read
//! as that provider reads them (`provider/secret_descriptor.go`,
//! `server/server.go`), so its users' classes work unchanged.
//!
//! | Parameter | Here | Why |
//! |---|---|---|
//! | `region` | an AWS region, else deny; absent → the operator's `--aws-region`, else deny | ASCP falls back to its own `AWS_REGION` or the node's label, which admission cannot see |
//! | `failoverRegion` | a region other than `region`, else deny | objects are asked there when `region` cannot be reached |
//! | `pathTranslation` | absent/`""` → `_`; `False` (any case) → off; one character; else deny | replaces `/` in file names |
//! | `usePodIdentity` | Go `ParseBool` spellings, else deny; `true` → EKS Pod Identity, else IRSA | |
//! | `preferredAddressType` | warn, ignored | the Pod Identity endpoint is the operator's (`--aws-pod-identity-endpoint`) |
//! | `objects` | required; a YAML list; deny anything malformed | the files |
//! | any other key | warn, ignored | |
//!
//! Per object (keys matched in any case, as Go's JSON decoding does):
//! `objectName` is required, a name or an ARN (whose region must be
//! `region`); `objectType` (`secretsmanager`, `ssmparameter`) is required
//! unless the name is an ARN, and must agree with it; `objectVersion`
//! (a VersionId, or an SSM version number) and `objectVersionLabel` (a
//! staging label, or an SSM label), not both for SSM; `objectAlias` is the
//! file name, else `objectName` with `/` translated (with translation off a
//! leading `/` is dropped and any other `/` is denied: no subdirectories);
//! `filePermission` is four octal digits up to `0777`; `jmesPath` entries
//! (`path` and `objectAlias` required, `filePermission`) each write one more
//! file holding the JSON string the path selects ([`crate::JsonPath`]: fields
//! and indexes); `failoverObject` (`objectName`, `objectVersion`,
//! `objectVersionLabel`) needs `objectAlias` and `failoverRegion`, and its
//! version must equal the object's. Without `failoverObject`, a named
//! object is asked for by the same name in `failoverRegion`. Every file
//! name is unique (ASCP lets a later object overwrite an earlier one's file
//! in a few cases; here that is refused, naming both fields).

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use super::{Objects, ProviderClassError, Reader, StoreClass, fields, rule, scalar, text};
use crate::{
    AwsIdentity, AwsRef, AwsService, Defaults, FileMode, FileName, Identities, JsonPath,
    SecretObject, SecretRef, reference::check_region,
};

const KNOWN_PARAMETERS: &[&str] = &[
    "region",
    "failoverRegion",
    "pathTranslation",
    "usePodIdentity",
    "preferredAddressType",
    "objects",
];

const KNOWN_OBJECT_KEYS: &[&str] = &[
    "objectName",
    "objectType",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "filePermission",
    "jmesPath",
    "failoverObject",
];
const KNOWN_JMES_KEYS: &[&str] = &["path", "objectAlias", "filePermission"];
const KNOWN_FAILOVER_KEYS: &[&str] = &["objectName", "objectVersion", "objectVersionLabel"];

const ACCEPTED_OBJECTS: &str = "a YAML list of objects, each a map with objectName and objectType (secretsmanager or ssmparameter), and optionally objectAlias, objectVersion, objectVersionLabel, filePermission, jmesPath, failoverObject";
const ACCEPTED_TYPES: &str =
    "secretsmanager or ssmparameter (or omit it when objectName is a full ARN)";
const ACCEPTED_PERMISSION: &str = "4 octal digits from 0000 to 0777, such as 0644 or 0400";

/// One entry of `parameters.objects`, checked, before its region is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Descriptor {
    field: String,
    name: String,
    service: Option<AwsService>,
    version: Option<String>,
    label: Option<String>,
    file: FileName,
    /// The field the file name comes from (`objectAlias` or `objectName`).
    file_field: String,
    file_permission: Option<FileMode>,
    jmes: Vec<JmesEntry>,
    failover: Option<FailoverObject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct JmesEntry {
    path: JsonPath,
    file: FileName,
    file_permission: Option<FileMode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FailoverObject {
    field: String,
    name: String,
    version: Option<String>,
    label: Option<String>,
}

/// A class without `parameters.region`: its objects, built per pod with the
/// operator's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    descriptors: Vec<Descriptor>,
    failover_region: Option<String>,
}

impl Pending {
    pub(super) fn resolve(
        &self,
        class: &str,
        defaults: &Defaults,
    ) -> Result<Vec<SecretObject>, ProviderClassError> {
        let reader = Reader {
            class: class.to_owned(),
            warnings: Vec::new(),
        };
        let region = defaults.aws_region.as_deref().ok_or_else(|| {
            reader.missing(
                "parameters.region",
                "an AWS region such as us-east-1; the operator sets no default region (--aws-region)",
            )
        })?;
        if self.failover_region.as_deref() == Some(region) {
            return Err(reader.invalid(
                "parameters.failoverRegion",
                region,
                "a region other than parameters.region (here the operator's --aws-region)",
            ));
        }
        objects(
            &reader,
            &self.descriptors,
            region,
            self.failover_region.as_deref(),
        )
    }
}

/// Reads a class of `provider: aws`.
pub(super) fn read(
    reader: &mut Reader,
    params: &BTreeMap<String, String>,
) -> Result<StoreClass, ProviderClassError> {
    let get = |key: &str| {
        params
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    reader.warn_unknown(params, KNOWN_PARAMETERS);

    let region = get("region");
    if let Some(r) = region {
        check_region(r).map_err(|e| reader.invalid("parameters.region", r, rule(e)))?;
    }
    let failover_region = get("failoverRegion");
    if let Some(r) = failover_region {
        check_region(r).map_err(|e| reader.invalid("parameters.failoverRegion", r, rule(e)))?;
        if region == Some(r) {
            return Err(reader.invalid(
                "parameters.failoverRegion",
                r,
                "a region other than parameters.region",
            ));
        }
    }
    let translate = match get("pathTranslation") {
        None => Some('_'),
        Some(v) if v.eq_ignore_ascii_case("false") => None,
        Some(v) => {
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c != '/' && c != '\0' => Some(c),
                _ => {
                    return Err(reader.invalid(
                        "parameters.pathTranslation",
                        v,
                        "\"False\" or a single character other than '/'",
                    ));
                }
            }
        }
    };
    let use_pod_identity = match get("usePodIdentity") {
        Some(v) => reader.boolean("parameters.usePodIdentity", v)?,
        None => false,
    };
    if let Some(v) = get("preferredAddressType") {
        reader.warn(format!(
            "parameters.preferredAddressType {v:?} is ignored: the EKS Pod Identity endpoint is the operator's (--aws-pod-identity-endpoint)"
        ));
    }

    let text = get("objects").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(reader.missing("parameters.objects", ACCEPTED_OBJECTS));
    }
    let items = match reader.yaml("parameters.objects", text, ACCEPTED_OBJECTS)? {
        Yaml::Sequence(items) if !items.is_empty() => items,
        Yaml::Sequence(_) => {
            return Err(reader.missing("parameters.objects[0]", ACCEPTED_OBJECTS));
        }
        _ => return Err(reader.invalid("parameters.objects", text, ACCEPTED_OBJECTS)),
    };
    let mut descriptors = Vec::with_capacity(items.len());
    let mut files = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let d = descriptor(reader, i, item, translate, failover_region.is_some())?;
        reader.claim_file(&mut files, &d.file, d.file_field.clone())?;
        for (j, entry) in d.jmes.iter().enumerate() {
            let field = format!("{}.jmesPath[{j}].objectAlias", d.field);
            reader.claim_file(&mut files, &entry.file, field)?;
        }
        descriptors.push(d);
    }

    let objects = match region {
        Some(region) => Objects::Ready(objects(reader, &descriptors, region, failover_region)?),
        None => Objects::AwsRegion(Pending {
            descriptors,
            failover_region: failover_region.map(str::to_owned),
        }),
    };
    Ok(StoreClass {
        objects,
        identities: Identities {
            aws: AwsIdentity {
                role_arn: None,
                use_pod_identity,
            },
            ..Identities::default()
        },
        files,
        // Regions, not hosts: the endpoint is the operator's.
        host: None,
    })
}

fn permission(
    reader: &Reader,
    field: &str,
    value: Option<String>,
) -> Result<Option<FileMode>, ProviderClassError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let four_octal = v.len() == 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match v.parse::<FileMode>() {
        Ok(mode) if four_octal => Ok(Some(mode)),
        _ => Err(reader.invalid(field, &v, ACCEPTED_PERMISSION)),
    }
}

/// The file a name or alias is written to, as ASCP names it.
fn file_name(
    reader: &Reader,
    field: &str,
    name: &str,
    translate: Option<char>,
) -> Result<FileName, ProviderClassError> {
    let translated = match translate {
        Some(c) => name.replace('/', &c.to_string()),
        None => name.trim_start_matches('/').to_owned(),
    };
    if translate.is_none() && translated.contains('/') {
        return Err(reader.invalid(
            field,
            name,
            "with parameters.pathTranslation \"False\", a name without '/' after its first character (files in subdirectories are not supported); or an objectAlias",
        ));
    }
    FileName::new(translated).map_err(|e| reader.invalid(field, name, e.to_string()))
}

fn descriptor(
    reader: &mut Reader,
    index: usize,
    item: &Yaml,
    translate: Option<char>,
    has_failover_region: bool,
) -> Result<Descriptor, ProviderClassError> {
    let field = format!("parameters.objects[{index}]");
    let map = match item {
        Yaml::Mapping(map) => map,
        Yaml::Null => return Err(reader.missing(&field, "an object (the entry is empty)")),
        other => {
            return Err(reader.invalid(
                &field,
                &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                ACCEPTED_OBJECTS,
            ));
        }
    };
    let values = fields(reader, &field, map, KNOWN_OBJECT_KEYS)?;
    let get = |key: &str| text(reader, &field, &values, key);
    let name = get("objectName")?.ok_or_else(|| {
        reader.missing(
            &format!("{field}.objectName"),
            "the name or ARN of a secret or parameter",
        )
    })?;
    let is_arn = name.starts_with("arn:");
    let service = match get("objectType")?.as_deref() {
        None if is_arn => None,
        None => return Err(reader.missing(&format!("{field}.objectType"), ACCEPTED_TYPES)),
        Some("secretsmanager") => Some(AwsService::SecretsManager),
        Some("ssmparameter") => Some(AwsService::ParameterStore),
        Some(other) => {
            return Err(reader.invalid(&format!("{field}.objectType"), other, ACCEPTED_TYPES));
        }
    };
    let version = get("objectVersion")?;
    let label = get("objectVersionLabel")?;
    let alias = get("objectAlias")?;
    let (file_field, file_text) = match &alias {
        Some(a) => (format!("{field}.objectAlias"), a),
        None => (format!("{field}.objectName"), &name),
    };
    let file = file_name(reader, &file_field, file_text, translate)?;
    let file_permission = permission(
        reader,
        &format!("{field}.filePermission"),
        get("filePermission")?,
    )?;

    let mut jmes = Vec::new();
    match values.get("jmesPath") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Sequence(entries)) => {
            for (j, entry) in entries.iter().enumerate() {
                let entry_field = format!("{field}.jmesPath[{j}]");
                let Yaml::Mapping(map) = entry else {
                    return Err(reader.invalid(
                        &entry_field,
                        &scalar(entry).unwrap_or_else(|| format!("{entry:?}")),
                        "a map of path, objectAlias and filePermission",
                    ));
                };
                let entry_values = fields(reader, &entry_field, map, KNOWN_JMES_KEYS)?;
                let get = |key: &str| text(reader, &entry_field, &entry_values, key);
                let path_text = get("path")?.ok_or_else(|| {
                    reader.missing(
                        &format!("{entry_field}.path"),
                        "a JMESPath such as username",
                    )
                })?;
                let path = JsonPath::parse(&path_text).map_err(|e| {
                    reader.invalid(&format!("{entry_field}.path"), &path_text, e.to_string())
                })?;
                let alias = get("objectAlias")?.ok_or_else(|| {
                    reader.missing(
                        &format!("{entry_field}.objectAlias"),
                        "the name of the file the path's value is written to",
                    )
                })?;
                jmes.push(JmesEntry {
                    path,
                    file: file_name(
                        reader,
                        &format!("{entry_field}.objectAlias"),
                        &alias,
                        translate,
                    )?,
                    file_permission: permission(
                        reader,
                        &format!("{entry_field}.filePermission"),
                        get("filePermission")?,
                    )?,
                });
            }
        }
        Some(other) => {
            return Err(reader.invalid(
                &format!("{field}.jmesPath"),
                &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                "a list of {path, objectAlias, filePermission}",
            ));
        }
    }

    let failover = match values.get("failoverObject") {
        None | Some(Yaml::Null) => None,
        Some(Yaml::Mapping(map)) => {
            let failover_field = format!("{field}.failoverObject");
            let failover_values = fields(reader, &failover_field, map, KNOWN_FAILOVER_KEYS)?;
            let get = |key: &str| text(reader, &failover_field, &failover_values, key);
            let failover_name = get("objectName")?;
            let failover_version = get("objectVersion")?;
            let failover_label = get("objectVersionLabel")?;
            match failover_name {
                // ASCP ignores a failoverObject without a name.
                None => None,
                Some(failover_name) => {
                    if alias.is_none() {
                        return Err(reader.missing(
                            &format!("{field}.objectAlias"),
                            "an objectAlias: an object with a failoverObject names its file",
                        ));
                    }
                    if !has_failover_region {
                        return Err(reader.missing(
                            "parameters.failoverRegion",
                            "a failover region: objects name a failoverObject",
                        ));
                    }
                    if failover_version != version {
                        return Err(reader.invalid(
                            &format!("{failover_field}.objectVersion"),
                            failover_version.as_deref().unwrap_or_default(),
                            format!(
                                "the object's own objectVersion ({:?}): versions must match between the regions",
                                version.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    Some(FailoverObject {
                        field: failover_field,
                        name: failover_name,
                        version: failover_version,
                        label: failover_label,
                    })
                }
            }
        }
        Some(other) => {
            return Err(reader.invalid(
                &format!("{field}.failoverObject"),
                &scalar(other).unwrap_or_else(|| format!("{other:?}")),
                "a map of objectName, objectVersion and objectVersionLabel",
            ));
        }
    };

    Ok(Descriptor {
        field,
        name,
        service,
        version,
        label,
        file,
        file_field,
        file_permission,
        jmes,
        failover,
    })
}

/// The spec's objects: one per file (the object's, then one per jmesPath
/// entry, all of one fetch), each with its failover source.
fn objects(
    reader: &Reader,
    descriptors: &[Descriptor],
    region: &str,
    failover_region: Option<&str>,
) -> Result<Vec<SecretObject>, ProviderClassError> {
    let mut out = Vec::new();
    for d in descriptors {
        let source = AwsRef::from_class(
            region,
            d.service,
            &d.name,
            d.version.as_deref(),
            d.label.as_deref(),
        )
        .map_err(|e| reader.invalid(&format!("{}.objectName", d.field), &d.name, rule(e)))?;
        let failover = match (failover_region, &d.failover) {
            (None, _) => None,
            (Some(r), Some(f)) => Some(
                AwsRef::from_class(
                    r,
                    d.service.or(Some(source.service)),
                    &f.name,
                    f.version.as_deref().or(d.version.as_deref()),
                    f.label.as_deref().or(d.label.as_deref()),
                )
                .map_err(|e| {
                    reader.invalid(
                        &format!("{}.objectName", f.field),
                        &f.name,
                        format!("{} (in parameters.failoverRegion {r})", rule(e)),
                    )
                })?,
            ),
            // An ARN names one region: the same ARN cannot be asked elsewhere.
            (Some(_), None) if d.name.starts_with("arn:") => None,
            (Some(r), None) => Some(AwsRef {
                region: r.to_owned(),
                ..source.clone()
            }),
        };
        let failover = failover.map(SecretRef::Aws);
        out.push(SecretObject {
            file_permission: d.file_permission,
            failover: failover.clone(),
            ..SecretObject::new(d.file.clone(), SecretRef::Aws(source.clone()))
        });
        for entry in &d.jmes {
            out.push(SecretObject {
                json_path: Some(entry.path.clone()),
                file_permission: entry.file_permission.or(d.file_permission),
                failover: failover.clone(),
                ..SecretObject::new(entry.file.clone(), SecretRef::Aws(source.clone()))
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::super::{ProviderClassError, spec_from_provider_class};
    use super::*;
    use crate::InjectionSpec;

    const BASIC: &str = include_str!("../../../manifests/examples/aws/basic-test-mount-spc.yaml");
    const IRSA: &str = include_str!("../../../manifests/examples/aws/nginx-irsa.yaml");

    fn yaml(text: &str) -> Value {
        let doc = text.split("\n---\n").next().unwrap_or_default();
        serde_yaml_ng::from_str(doc).unwrap()
    }

    fn read(class: &Value) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
        spec_from_provider_class(class, &Defaults::default())
    }

    /// A class of `provider: aws` with these parameters.
    fn class(params: &[(&str, &str)]) -> Value {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "c"},
            "spec": {"provider": "aws", "parameters": params},
        })
    }

    fn objects(yaml: &str) -> Value {
        class(&[("region", "us-east-1"), ("objects", yaml)])
    }

    fn aws(object: &SecretObject) -> &AwsRef {
        match &object.source {
            SecretRef::Aws(r) => r,
            other => panic!("not aws: {other}"),
        }
    }

    fn by_file<'a>(spec: &'a InjectionSpec, file: &str) -> &'a SecretObject {
        spec.objects
            .iter()
            .find(|o| o.file.as_str() == file)
            .unwrap_or_else(|| panic!("no file {file}"))
    }

    fn error(class: &Value) -> String {
        read(class).map(|_| ()).unwrap_err().to_string()
    }

    // The AWS provider's own integration class, unchanged: every file it
    // mounts, each from the object and region it names, the failover ARN,
    // the jmesPath files of one fetch, and its three synced Secrets.
    #[test]
    fn the_providers_integration_class_reads_unchanged() {
        let (spec, warnings) = read(&yaml(BASIC)).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        let files: Vec<&str> = spec.objects.iter().map(|o| o.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "ParameterStoreRotationTest",
                "ParameterStoreTest1",
                "ParameterStoreTest2",
                "SecretsManagerRotationTest",
                "SecretsManagerSync",
                "SecretsManagerTest1",
                "SecretsManagerTest2",
                "jsonSsm",
                "secretsManagerJson",
                "secretsManagerPassword",
                "secretsManagerUsername",
                "ssmPassword",
                "ssmUsername",
            ]
        );
        let long = aws(by_file(&spec, "ParameterStoreTest2"));
        assert_eq!(
            (long.service, long.name.as_str(), long.region.as_str()),
            (
                AwsService::ParameterStore,
                "ParameterStoreTestWithLongName",
                "us-west-2"
            )
        );
        // A named object is asked for by the same name in the failover region.
        let rotation = by_file(&spec, "SecretsManagerRotationTest");
        assert_eq!(
            rotation
                .failover
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("aws://us-east-2/SecretsManagerRotationTest")
        );
        let arn = by_file(&spec, "SecretsManagerTest2");
        assert_eq!(aws(arn).service, AwsService::SecretsManager);
        assert_eq!(
            arn.failover.as_ref().map(ToString::to_string).as_deref(),
            Some(
                "aws://us-east-2/arn:aws:secretsmanager:us-east-2:123456789012:secret:SecretsManagerTest2"
            )
        );
        let user = by_file(&spec, "ssmUsername");
        assert_eq!(user.source, by_file(&spec, "jsonSsm").source);
        assert_eq!(
            user.json_path.as_ref().map(JsonPath::as_str),
            Some("username")
        );
        assert_eq!(by_file(&spec, "jsonSsm").json_path, None);
        let synced: Vec<(&str, Vec<(&str, &str)>)> = spec
            .sync_targets
            .iter()
            .map(|t| {
                (
                    t.secret_name.as_str(),
                    t.data
                        .iter()
                        .map(|(k, f)| (k.as_str(), f.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            synced,
            [
                ("secret", vec![("username", "SecretsManagerSync")]),
                (
                    "json-ssm",
                    vec![("password", "ssmPassword"), ("username", "ssmUsername")]
                ),
                (
                    "secrets-manager-json",
                    vec![
                        ("password", "secretsManagerPassword"),
                        ("username", "secretsManagerUsername")
                    ]
                ),
            ]
        );
        assert!(!spec.identities.aws.use_pod_identity);
        // What the webhook hands the sidecar round-trips.
        assert_eq!(
            InjectionSpec::from_env_value(&spec.to_env_value()).unwrap(),
            spec
        );
    }

    // The provider's example names no region: the operator's is used, and
    // without one the class is refused naming the field and the flag.
    #[test]
    fn a_class_without_region_takes_the_operators() {
        let class = yaml(IRSA);
        let e = error(&class);
        assert!(e.contains("parameters.region is missing"), "{e}");
        assert!(e.contains("--aws-region"), "{e}");
        let defaults = Defaults {
            aws_region: Some("eu-west-1".into()),
            ..Defaults::default()
        };
        let (spec, _) = spec_from_provider_class(&class, &defaults).unwrap();
        assert_eq!(spec.objects.len(), 1);
        assert_eq!(
            spec.objects[0].source.to_string(),
            "aws://eu-west-1/MySecret"
        );
        assert_eq!(spec.objects[0].file.as_str(), "MySecret");
    }

    #[test]
    fn path_translation_versions_labels_and_permissions() {
        let text = r#"
- objectName: /prod/db/password
  objectType: ssmparameter
  objectVersion: "3"
  filePermission: "0400"
- objectName: app/config
  objectType: secretsmanager
  objectVersionLabel: AWSPREVIOUS
- objectName: arn:aws:ssm:us-east-1:123456789012:parameter/team/key
  objectAlias: key
"#;
        let (spec, _) = read(&objects(text)).unwrap();
        let password = by_file(&spec, "_prod_db_password");
        assert_eq!(aws(password).ssm_selector_name(), "/prod/db/password:3");
        assert_eq!(password.file_permission.map(FileMode::bits), Some(0o400));
        let config = aws(by_file(&spec, "app_config"));
        assert_eq!(config.label.as_deref(), Some("AWSPREVIOUS"));
        assert_eq!(
            aws(by_file(&spec, "key")).service,
            AwsService::ParameterStore
        );

        let mut dashes = objects(text);
        dashes["spec"]["parameters"]["pathTranslation"] = json!("-");
        let (spec, _) = read(&dashes).unwrap();
        assert!(
            spec.objects
                .iter()
                .any(|o| o.file.as_str() == "-prod-db-password")
        );

        let mut off = objects("- objectName: /top\n  objectType: ssmparameter\n");
        off["spec"]["parameters"]["pathTranslation"] = json!("False");
        let (spec, _) = read(&off).unwrap();
        assert_eq!(spec.objects[0].file.as_str(), "top");
        let mut nested = objects(text);
        nested["spec"]["parameters"]["pathTranslation"] = json!("false");
        let e = error(&nested);
        assert!(e.contains("subdirectories are not supported"), "{e}");
    }

    // ASCP's validation rules, each refused naming the class, the field
    // and what is accepted.
    #[rstest]
    #[case::no_name("- objectType: secretsmanager", "objects[0].objectName is missing")]
    #[case::no_type("- objectName: a", "objects[0].objectType is missing")]
    #[case::ssm_type(
        "- objectName: a\n  objectType: ssm",
        "objectType \"ssm\" is not valid"
    )]
    #[case::bad_type(
        "- objectName: a\n  objectType: s3",
        "accepted: secretsmanager or ssmparameter"
    )]
    #[case::arn_region(
        "- objectName: arn:aws:secretsmanager:eu-west-1:123456789012:secret:a",
        "region must be the reference's region"
    )]
    #[case::arn_type(
        "- objectName: arn:aws:secretsmanager:us-east-1:123456789012:secret:a\n  objectType: ssmparameter",
        "objectType must name the ARN's service"
    )]
    #[case::ssm_both(
        "- objectName: a\n  objectType: ssmparameter\n  objectVersion: \"1\"\n  objectVersionLabel: l",
        "not both"
    )]
    #[case::permission(
        "- objectName: a\n  objectType: secretsmanager\n  filePermission: \"644\"",
        "4 octal digits"
    )]
    #[case::setuid(
        "- objectName: a\n  objectType: secretsmanager\n  filePermission: \"4755\"",
        "4 octal digits"
    )]
    #[case::jmes_no_alias(
        "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - path: u",
        "jmesPath[0].objectAlias is missing"
    )]
    #[case::jmes_no_path(
        "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - objectAlias: u",
        "jmesPath[0].path is missing"
    )]
    #[case::jmes_filter(
        "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - path: \"a[?x=='y']\"\n      objectAlias: u",
        "not a list index"
    )]
    #[case::failover_no_alias(
        "- objectName: a\n  objectType: secretsmanager\n  failoverObject:\n    objectName: b",
        "objects[0].objectAlias is missing"
    )]
    #[case::failover_no_region(
        "- objectName: a\n  objectAlias: x\n  objectType: secretsmanager\n  failoverObject:\n    objectName: b",
        "parameters.failoverRegion is missing"
    )]
    #[case::duplicate_file(
        "- objectName: a\n  objectType: secretsmanager\n- objectName: a\n  objectType: ssmparameter",
        "writes file \"a\", which parameters.objects[0].objectName already writes"
    )]
    #[case::duplicate_jmes_alias(
        "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - path: u\n      objectAlias: a",
        "parameters.objects[0].jmesPath[0].objectAlias writes file \"a\""
    )]
    #[case::empty_entry(
        "- objectName: a\n  objectType: secretsmanager\n-",
        "objects[1] is missing"
    )]
    #[case::not_a_list("objectName: a", "accepted: a YAML list")]
    #[case::anchor(
        "- &x\n  objectName: a\n  objectType: secretsmanager\n- *x",
        "without anchors"
    )]
    #[case::dotdot(
        "- objectName: ../etc\n  objectType: secretsmanager\n  objectAlias: ../x",
        "objectAlias"
    )]
    fn ascp_rules(#[case] text: &str, #[case] says: &str) {
        let e = error(&objects(text));
        assert!(e.contains(says), "{e}");
        assert!(e.starts_with("SecretProviderClass c: "), "{e}");
    }

    #[rstest]
    #[case(&[("region", "mars-1")], "parameters.region \"mars-1\" is not valid")]
    #[case(&[("region", "us-east-1"), ("failoverRegion", "us-east-1")], "a region other than parameters.region")]
    #[case(&[("region", "us-east-1"), ("pathTranslation", "ab")], "\"False\" or a single character")]
    #[case(&[("region", "us-east-1"), ("usePodIdentity", "yes")], "\"true\" or \"false\"")]
    #[case(&[("region", "us-east-1")], "parameters.objects is missing")]
    fn parameter_rules(#[case] params: &[(&str, &str)], #[case] says: &str) {
        let e = error(&class(params));
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn keys_in_any_case_pod_identity_and_warnings() {
        let mut c = objects(
            "- ObjectName: a\n  OBJECTTYPE: secretsmanager\n  objectalias: b\n  colour: red\n",
        );
        let params = &mut c["spec"]["parameters"];
        params["usePodIdentity"] = json!("True");
        params["preferredAddressType"] = json!("ipv6");
        params["roleArn"] = json!("x");
        let (spec, warnings) = read(&c).unwrap();
        assert_eq!(spec.objects[0].file.as_str(), "b");
        assert!(spec.identities.aws.use_pod_identity);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("objects[0].colour is not known"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("preferredAddressType \"ipv6\" is ignored"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("parameters.roleArn is not known"))
        );
    }

    #[test]
    fn failover_versions_must_match_and_arns_keep_their_region() {
        let mut c = objects(
            "- objectName: a\n  objectAlias: x\n  objectType: secretsmanager\n  objectVersionLabel: AWSCURRENT\n  failoverObject:\n    objectName: b\n    objectVersion: 00000000-0000-0000-0000-000000000001\n",
        );
        c["spec"]["parameters"]["failoverRegion"] = json!("us-west-2");
        let e = error(&c);
        assert!(e.contains("versions must match"), "{e}");

        let mut arn = objects(
            "- objectName: arn:aws:secretsmanager:us-east-1:123456789012:secret:a\n  objectAlias: x\n",
        );
        arn["spec"]["parameters"]["failoverRegion"] = json!("us-west-2");
        let (spec, _) = read(&arn).unwrap();
        assert_eq!(spec.objects[0].failover, None);

        let mut label = objects(
            "- objectName: a\n  objectAlias: x\n  objectType: secretsmanager\n  objectVersionLabel: AWSPREVIOUS\n  failoverObject:\n    objectName: b\n",
        );
        label["spec"]["parameters"]["failoverRegion"] = json!("us-west-2");
        let (spec, _) = read(&label).unwrap();
        assert_eq!(
            spec.objects[0]
                .failover
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("aws://us-west-2/b?stage=AWSPREVIOUS")
        );
    }
}
