//! `provider: gcp`: the GCP CSI provider's `spec.parameters`, read as that
//! provider reads them (`config/config.go`, `server/secretfetcher.go`), so
//! its users' classes work unchanged.
//!
//! | Parameter | Here | Why |
//! |---|---|---|
//! | `secrets` | required; a YAML list | the files |
//! | `auth` | absent or `pod-adc`: the pod's own identity (workload identity federation with its token, or GKE's metadata server, as the operator deploys); `provider-adc` is denied | there is no provider DaemonSet whose identity could be lent, and the node's is never a pod's |
//! | any other key | warn, ignored | |
//!
//! Per secret (keys in any case): `resourceName` (required:
//! `projects/<p>[/locations/<l>]/secrets/<s>/versions/<v>`, a number,
//! `latest` or an alias; without `/versions/...` it is `latest`); `path`,
//! else `fileName`, is the file (unique; a path with `/` is denied: no
//! subdirectories yet); `mode` is the file's mode (octal `0400` or its
//! decimal value `256`, up to `0777`); `extractJSONKey` or `extractYAMLKey`
//! (not both) writes that top-level string field of the payload.

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use super::{Objects, ProviderClassError, Reader, StoreClass, fields, go_file_mode, text};
use crate::{FileName, GcpRef, Identities, SecretObject, SecretRef};

const KNOWN_PARAMETERS: &[&str] = &["secrets", "auth"];

const KNOWN_SECRET_KEYS: &[&str] = &[
    "resourceName",
    "path",
    "fileName",
    "mode",
    "extractJSONKey",
    "extractYAMLKey",
];

const ACCEPTED_SECRETS: &str = "a YAML list of secrets, each a map with resourceName (projects/<project>/secrets/<secret>/versions/<version>) and path or fileName, and optionally mode, extractJSONKey or extractYAMLKey";

/// Reads a class of `provider: gcp`.
pub(super) fn read(
    reader: &mut Reader,
    params: &BTreeMap<String, String>,
) -> Result<StoreClass, ProviderClassError> {
    reader.warn_unknown(params, KNOWN_PARAMETERS);
    match params.get("auth").map(String::as_str) {
        None | Some("") | Some("pod-adc") => {}
        Some("provider-adc") => {
            return Err(reader.invalid(
                "parameters.auth",
                "provider-adc",
                "pod-adc or absent: the sidecar reads as the pod (workload identity), never with a node's or a provider's credentials",
            ));
        }
        Some(other) => {
            return Err(reader.invalid(
                "parameters.auth",
                other,
                "pod-adc or provider-adc (which is denied here)",
            ));
        }
    }
    let text = params
        .get("secrets")
        .map(String::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| reader.missing("parameters.secrets", ACCEPTED_SECRETS))?;
    let items = match reader.yaml("parameters.secrets", text, ACCEPTED_SECRETS)? {
        Yaml::Sequence(items) if !items.is_empty() => items,
        Yaml::Sequence(_) => return Err(reader.missing("parameters.secrets[0]", ACCEPTED_SECRETS)),
        _ => return Err(reader.invalid("parameters.secrets", text, ACCEPTED_SECRETS)),
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut files = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let (object, file_field) = secret(reader, i, item)?;
        reader.claim_file(&mut files, &object.file, file_field)?;
        objects.push(object);
    }
    Ok(StoreClass {
        objects: Objects::Ready(objects),
        identities: Identities::default(),
        files,
        host: None,
    })
}

/// One entry of `secrets`, and the field its file name came from.
fn secret(
    reader: &mut Reader,
    i: usize,
    item: &Yaml,
) -> Result<(SecretObject, String), ProviderClassError> {
    let field = format!("parameters.secrets[{i}]");
    let Yaml::Mapping(map) = item else {
        return Err(reader.invalid(&field, &format!("{item:?}"), ACCEPTED_SECRETS));
    };
    let values = fields(reader, &field, map, KNOWN_SECRET_KEYS)?;
    let text = |key: &str| text(reader, &field, &values, key);
    let name = text("resourceName")?
        .ok_or_else(|| reader.missing(&format!("{field}.resourceName"), ACCEPTED_SECRETS))?;
    let source = GcpRef::from_resource_name(&name)
        .map_err(|e| reader.invalid(&format!("{field}.resourceName"), &name, e.to_string()))?;
    // `path` wins over `fileName`, as the provider's PathString.
    let (file_field, file_name) = match (text("path")?, text("fileName")?) {
        (Some(path), _) => (format!("{field}.path"), path),
        (None, Some(name)) => (format!("{field}.fileName"), name),
        (None, None) => {
            return Err(reader.missing(
                &format!("{field}.path"),
                "the file's name: path (or fileName)",
            ));
        }
    };
    let file = FileName::new(&file_name)
        .map_err(|e| reader.invalid(&file_field, &file_name, e.to_string()))?;
    let file_permission = match values.get("mode") {
        None | Some(Yaml::Null) => None,
        Some(value) => Some(go_file_mode(value).ok_or_else(|| {
            reader.invalid(
                &format!("{field}.mode"),
                &super::scalar(value).unwrap_or_else(|| format!("{value:?}")),
                "a mode from 0000 to 0777: octal as the provider's examples write it (0400), or its decimal value (256)",
            )
        })?),
    };
    let json_key = text("extractJSONKey")?;
    let yaml_key = text("extractYAMLKey")?;
    if json_key.is_some() && yaml_key.is_some() {
        return Err(reader.invalid(
            &format!("{field}.extractYAMLKey"),
            yaml_key.as_deref().unwrap_or_default(),
            "one of extractJSONKey and extractYAMLKey, not both",
        ));
    }
    Ok((
        SecretObject {
            json_key,
            yaml_key,
            file_permission,
            ..SecretObject::new(file, SecretRef::Gcp(source))
        },
        file_field,
    ))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::super::{ProviderClassError, spec_from_provider_class};
    use crate::{Defaults, InjectionSpec, SecretRef};

    fn read(params: &[(&str, &str)]) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let class = json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "gcp-test-secrets", "namespace": "default"},
            "spec": {"provider": "gcp", "parameters": params},
        });
        spec_from_provider_class(&class, &Defaults::default())
    }

    /// The provider's own e2e classes (test-mode, test-extract-key,
    /// app-secrets-with-extract-key), with a project filled in.
    #[test]
    fn the_providers_e2e_classes_read_unchanged() {
        let secrets = r#"- resourceName: "projects/my-project/secrets/test-secret/versions/latest"
  path: "test-secret"
  mode: 0400
- resourceName: "projects/my-project/locations/us-central1/secrets/test-secret/versions/latest"
  path: "test-secret-regional"
  mode: 0400
- resourceName: "projects/my-project/secrets/test-secret-extract/versions/latest"
  path: "extract"
  extractJSONKey: "user"
- resourceName: "projects/123456789/secrets/yaml/versions/prod"
  fileName: "from-yaml"
  extractYAMLKey: "password"
  mode: 256
"#;
        let (spec, warnings) = read(&[("secrets", secrets)]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let by = |f: &str| spec.objects.iter().find(|o| o.file.as_str() == f).unwrap();
        let regional = by("test-secret-regional");
        let SecretRef::Gcp(r) = &regional.source else {
            panic!("{:?}", regional.source)
        };
        assert_eq!(r.location.as_deref(), Some("us-central1"));
        assert_eq!(r.version, "latest");
        assert_eq!(
            regional.file_permission.map(|m| m.to_string()),
            Some("0400".into())
        );
        assert_eq!(by("extract").json_key.as_deref(), Some("user"));
        let yaml = by("from-yaml");
        assert_eq!(yaml.yaml_key.as_deref(), Some("password"));
        assert_eq!(
            yaml.file_permission.map(|m| m.to_string()),
            Some("0400".into())
        );
        assert_eq!(
            yaml.source.to_string(),
            "gcp://projects/123456789/secrets/yaml/versions/prod"
        );
    }

    #[rstest]
    #[case(&[], "parameters.secrets")]
    #[case(&[("secrets", "- path: a\n")], "resourceName")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s/versions/1\n")], "path")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: my/nested/path/s\n")], "parameters.secrets[0].path")]
    #[case(&[("secrets", "- resourceName: projects/x/secrets/s\n  path: a\n")], "project")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: a\n  mode: 0999\n")], "mode")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: a\n  extractJSONKey: a\n  extractYAMLKey: b\n")], "not both")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: a\n- resourceName: projects/my-project/secrets/t\n  fileName: a\n")], "a")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: a\n"), ("auth", "provider-adc")], "never with a node's")]
    #[case(&[("secrets", "- resourceName: projects/my-project/secrets/s\n  path: a\n"), ("auth", "key.json")], "pod-adc")]
    fn refuses_saying_why(#[case] params: &[(&str, &str)], #[case] says: &str) {
        let e = read(params).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn unknown_parameters_warn() {
        let (_, warnings) = read(&[
            (
                "secrets",
                "- resourceName: projects/my-project/secrets/s\n  path: a\n  colour: red\n",
            ),
            ("auth", "pod-adc"),
            ("region", "x"),
        ])
        .unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
