//! `provider: vault`: the Vault CSI provider's `spec.parameters`, read as
//! that provider reads them (`internal/config/config.go`), so its users'
//! classes work unchanged.
//!
//! | Parameter | Here | Why |
//! |---|---|---|
//! | `roleName` | required (or the pod's `vault-role`) | the auth method's role |
//! | `vaultAddress` | `https://host[:port]` within the operator's allowlist; absent → the operator's `--vault-address` | the provider's default `https://127.0.0.1:8200` would be the pod's own loopback |
//! | `vaultNamespace` | a namespace path | `X-Vault-Namespace` |
//! | `vaultKubernetesMountPath`, `vaultAuthMountPath` | one of them, a mount path; absent → the operator's `--vault-auth-path` | both log in with `{role, jwt}` (kubernetes or jwt auth) |
//! | `audience` | the projected token's audience; absent → the operator's `--vault-audience` | |
//! | `vaultTLSServerName` | a host name | the name the server's certificate carries |
//! | `vaultCAPem`, `vaultCACertPath`, `vaultCADirectory` | warn, ignored | trust is the operator's (`--ca-bundle`): a path names the CSI provider's node, not the pod |
//! | `vaultSkipTLSVerify` | `false` or absent; `true` is denied | never without TLS verification |
//! | `vaultTLSClientCertPath`, `vaultTLSClientKeyPath` | denied | no client certificates from node paths |
//! | `objects` | required; a YAML list | the files |
//! | any other key | warn, ignored | |
//!
//! Per object (keys in any case, as Go's YAML decoding does not do, but
//! its users' typos are warned about): `objectName` (the file, unique) and
//! `secretPath` (Vault's API path, `secret/data/db` for kv-v2, optionally
//! `?version=<n>`) are required; `secretKey` picks a field (kv-v2's
//! `data.data` first, then `data`), without it the file is Vault's whole
//! response as JSON; `encoding` (`utf-8`, `base64`, `hex`) decodes the
//! value; `filePermission` is four octal digits up to `0777`. `method`
//! `PUT` or `POST` with `secretArgs` (a map of scalars, sent as the JSON
//! body) is a write that issues, such as `pki/issue/<role>`; `secretArgs`
//! without such a method, a nested value, or a value with spaces or `&#?%`
//! is denied naming the object.

use std::collections::BTreeMap;

use serde_yaml_ng::Value as Yaml;

use super::{Objects, ProviderClassError, Reader, StoreClass, fields, go_file_mode, scalar, text};
use crate::{
    FileName, Identities, ObjectEncoding, SecretObject, SecretRef, VaultIdentity, WriteMethod,
    is_arg_name, is_arg_value, is_vault_name, parse_vault_address,
};

const KNOWN_PARAMETERS: &[&str] = &[
    "roleName",
    "vaultAddress",
    "vaultNamespace",
    "vaultKubernetesMountPath",
    "vaultAuthMountPath",
    "audience",
    "vaultTLSServerName",
    "vaultCAPem",
    "vaultCACertPath",
    "vaultCADirectory",
    "vaultSkipTLSVerify",
    "vaultTLSClientCertPath",
    "vaultTLSClientKeyPath",
    "objects",
];

const KNOWN_OBJECT_KEYS: &[&str] = &[
    "objectName",
    "secretPath",
    "secretKey",
    "method",
    "secretArgs",
    "encoding",
    "filePermission",
];

const ACCEPTED_OBJECTS: &str = "a YAML list of objects, each a map with objectName and secretPath, and optionally secretKey, encoding, filePermission";
const ACCEPTED_PATH: &str = "a mount path such as kubernetes or team/jwt: segments of letters, digits and -_.@, at most 128 bytes";

/// Reads a class of `provider: vault`.
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

    let mut vault = VaultIdentity::default();
    if let Some(role) = get("roleName") {
        if !is_vault_name(role, false) {
            return Err(reader.invalid(
                "parameters.roleName",
                role,
                "a Vault role name: letters, digits and -_.@, at most 128 bytes",
            ));
        }
        vault.role = Some(role.to_owned());
    }
    if let Some(address) = get("vaultAddress") {
        parse_vault_address(address)
            .map_err(|rule| reader.invalid("parameters.vaultAddress", address, rule))?;
        vault.address = Some(address.trim_end_matches('/').to_owned());
    }
    let path = |field: &str| -> Result<Option<String>, ProviderClassError> {
        match get(field) {
            None => Ok(None),
            Some(v) if is_vault_name(v.trim_matches('/'), true) => {
                Ok(Some(v.trim_matches('/').to_owned()))
            }
            Some(v) => Err(reader.invalid(&format!("parameters.{field}"), v, ACCEPTED_PATH)),
        }
    };
    vault.namespace = path("vaultNamespace")?;
    let kubernetes = path("vaultKubernetesMountPath")?;
    let auth = path("vaultAuthMountPath")?;
    if kubernetes.is_some() && auth.is_some() {
        return Err(reader.invalid(
            "parameters.vaultAuthMountPath",
            auth.as_deref().unwrap_or_default(),
            "one of vaultKubernetesMountPath and vaultAuthMountPath, not both",
        ));
    }
    vault.auth_path = kubernetes.or(auth);
    if let Some(audience) = get("audience") {
        let ok = audience.len() <= 256 && audience.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(reader.invalid(
                "parameters.audience",
                audience,
                "a token audience: printable ASCII without spaces, at most 256 bytes",
            ));
        }
        if crate::identity::is_reserved_audience(audience) {
            return Err(reader.invalid(
                "parameters.audience",
                audience,
                "an audience of your Vault's auth role (such as vault), never one of a cloud's token exchange or the Kubernetes apiserver, which the Vault server could replay",
            ));
        }
        vault.audience = Some(audience.to_owned());
    }
    if let Some(name) = get("vaultTLSServerName") {
        // H1: only a DNS name. A port, path or user would make the name the
        // sidecar connects to another host than the allowed address.
        let name = name.to_ascii_lowercase();
        if !crate::is_dns_name(&name) {
            return Err(reader.invalid(
                "parameters.vaultTLSServerName",
                &name,
                "a DNS name such as vault.example.com (no scheme, port, path or IP address)",
            ));
        }
        vault.tls_server_name = Some(name);
    }
    if let Some(skip) = get("vaultSkipTLSVerify")
        && reader.boolean("parameters.vaultSkipTLSVerify", skip)?
    {
        return Err(reader.invalid(
            "parameters.vaultSkipTLSVerify",
            skip,
            "\"false\" or absent: the sidecar always verifies Vault's certificate (the operator adds a private CA with --ca-bundle)",
        ));
    }
    for field in ["vaultTLSClientCertPath", "vaultTLSClientKeyPath"] {
        if let Some(v) = get(field) {
            return Err(reader.invalid(
                &format!("parameters.{field}"),
                v,
                "absent: client certificates on the CSI provider's node are not supported; log in with roleName",
            ));
        }
    }
    for field in ["vaultCAPem", "vaultCACertPath", "vaultCADirectory"] {
        if get(field).is_some() {
            reader.warn(format!(
                "parameters.{field} is ignored: the sidecar trusts the system's CAs and the operator's --ca-bundle"
            ));
        }
    }

    let text = get("objects").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(reader.missing("parameters.objects", ACCEPTED_OBJECTS));
    }
    let items = match reader.yaml("parameters.objects", text, ACCEPTED_OBJECTS)? {
        Yaml::Sequence(items) if !items.is_empty() => items,
        Yaml::Sequence(_) => return Err(reader.missing("parameters.objects[0]", ACCEPTED_OBJECTS)),
        _ => return Err(reader.invalid("parameters.objects", text, ACCEPTED_OBJECTS)),
    };
    let mut objects = Vec::with_capacity(items.len());
    let mut files = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let object = object(reader, i, item)?;
        reader.claim_file(
            &mut files,
            &object.file,
            format!("parameters.objects[{i}].objectName"),
        )?;
        objects.push(object);
    }
    let host = vault
        .address
        .clone()
        .map(|a| ("parameters.vaultAddress", a));
    Ok(StoreClass {
        objects: Objects::Ready(objects),
        identities: Identities {
            vault,
            ..Identities::default()
        },
        files,
        host,
    })
}

/// `secretArgs`: a map of scalars, each an argument of the write.
fn secret_args(
    reader: &Reader,
    field: &str,
    value: &Yaml,
) -> Result<Vec<(String, String)>, ProviderClassError> {
    const ACCEPTED: &str = "a map of argument names to strings, numbers or booleans, such as {common_name: app.example.com, ttl: 24h}";
    let Yaml::Mapping(map) = value else {
        return Err(reader.invalid(field, &format!("{value:?}"), ACCEPTED));
    };
    let mut args = Vec::new();
    for (name, value) in map {
        let name = name
            .as_str()
            .filter(|n| is_arg_name(n))
            .ok_or_else(|| reader.invalid(field, &format!("{name:?}"), ARG_NAME))?;
        let text = scalar(value).ok_or_else(|| {
            reader.invalid(&format!("{field}.{name}"), &format!("{value:?}"), ACCEPTED)
        })?;
        if !is_arg_value(&text) {
            return Err(reader.invalid(&format!("{field}.{name}"), &text, ARG_VALUE));
        }
        args.push((name.to_owned(), text));
    }
    Ok(args)
}

const ARG_NAME: &str = "an argument name of letters, digits and _, at most 64 bytes";
const ARG_VALUE: &str = "printable ASCII without spaces or &#?%, at most 1024 bytes";

fn object(reader: &mut Reader, i: usize, item: &Yaml) -> Result<SecretObject, ProviderClassError> {
    let field = format!("parameters.objects[{i}]");
    let Yaml::Mapping(map) = item else {
        return Err(reader.invalid(&field, &format!("{item:?}"), ACCEPTED_OBJECTS));
    };
    let values = fields(reader, &field, map, KNOWN_OBJECT_KEYS)?;
    let text = |key: &str| text(reader, &field, &values, key);
    let name = text("objectName")?
        .ok_or_else(|| reader.missing(&format!("{field}.objectName"), ACCEPTED_OBJECTS))?;
    let file = FileName::new(&name)
        .map_err(|e| reader.invalid(&format!("{field}.objectName"), &name, e.to_string()))?;
    let path = text("secretPath")?
        .ok_or_else(|| reader.missing(&format!("{field}.secretPath"), ACCEPTED_OBJECTS))?;
    let key = text("secretKey")?;
    let method = text("method")?;
    let write = match method.as_deref() {
        None => None,
        Some(m) if m.eq_ignore_ascii_case("GET") => None,
        Some(m) => Some(WriteMethod::parse(m).ok_or_else(|| {
            reader.invalid(
                &format!("{field}.method"),
                m,
                "GET (a read), or PUT or POST (a write that issues, with secretArgs)",
            )
        })?),
    };
    let args = match values.get("secretArgs") {
        None => Vec::new(),
        Some(_) if write.is_none() => {
            return Err(reader.invalid(
                &format!("{field}.secretArgs"),
                "(set)",
                "secretArgs with method PUT or POST: a read takes no arguments",
            ));
        }
        Some(value) => secret_args(reader, &format!("{field}.secretArgs"), value)?,
    };
    // The API path as the CSI provider takes it (`ensureV1Prefix`: with or
    // without a leading `/v1/`, as its own e2e classes write it): no
    // leading '/' or `v1/`, and the version as a query Vault reads.
    let trimmed = path.trim_start_matches('/');
    let trimmed = trimmed.strip_prefix("v1/").unwrap_or(trimmed);
    let mut uri = format!("vault://{trimmed}");
    let mut sep = if trimmed.contains('?') { '&' } else { '?' };
    if let Some(method) = write {
        uri.push_str(&format!("{sep}method={}", method.as_str()));
        sep = '&';
        for (name, value) in &args {
            uri.push_str(&format!("&{name}={value}"));
        }
    }
    uri.push(sep);
    uri.push_str("api=true");
    if let Some(key) = &key {
        uri.push('#');
        uri.push_str(key);
    }
    let source: SecretRef = uri.parse().map_err(|e: crate::ReferenceError| {
        reader.invalid(&format!("{field}.secretPath"), &path, e.to_string())
    })?;
    let encoding = match text("encoding")?
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("utf-8") => None,
        Some("base64") => Some(ObjectEncoding::Base64),
        Some("hex") => Some(ObjectEncoding::Hex),
        Some(other) => {
            return Err(reader.invalid(
                &format!("{field}.encoding"),
                other,
                "utf-8, base64 or hex",
            ));
        }
    };
    let file_permission = match values.get("filePermission") {
        None | Some(Yaml::Null) => None,
        Some(value) => Some(go_file_mode(value).ok_or_else(|| {
            reader.invalid(
                &format!("{field}.filePermission"),
                &scalar(value).unwrap_or_else(|| format!("{value:?}")),
                "a mode from 0000 to 0777: octal as the provider's examples write it (0644), or its decimal value (420)",
            )
        })?),
    };
    Ok(SecretObject {
        encoding,
        file_permission,
        ..SecretObject::new(file, source)
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::super::{ProviderClassError, spec_from_provider_class};
    use crate::{Defaults, InjectionSpec, SecretRef, StoreHosts, VaultRef};

    const KV: &str = include_str!("../../../manifests/examples/vault/kv-spc.yaml");

    fn read(class: &Value) -> Result<(InjectionSpec, Vec<String>), ProviderClassError> {
        spec_from_provider_class(class, &Defaults::default())
    }

    fn class(params: &[(&str, &str)]) -> Value {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "c"},
            "spec": {"provider": "vault", "parameters": params},
        })
    }

    const ONE: &str = "- objectName: a\n  secretPath: secret/data/a\n  secretKey: k\n";

    fn vault(spec: &InjectionSpec, file: &str) -> VaultRef {
        let object = spec
            .objects
            .iter()
            .find(|o| o.file.as_str() == file)
            .unwrap_or_else(|| panic!("no file {file}"));
        match &object.source {
            SecretRef::Vault(r) => r.clone(),
            other => panic!("not vault: {other}"),
        }
    }

    #[test]
    fn the_providers_kv_case_reads_unchanged() {
        let class: Value = serde_yaml_ng::from_str(KV).unwrap();
        let (spec, warnings) = read(&class).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let one = vault(&spec, "secret-1");
        assert_eq!(one.to_string(), "vault://secret/data/kv1?api=true#bar1");
        assert!(one.api_path);
        let two = vault(&spec, "secret-2");
        assert_eq!(two.key.as_deref(), Some("bar2"));
        let modes: Vec<_> = spec.objects.iter().map(|o| o.file_permission).collect();
        assert_eq!(modes[0].map(|m| m.to_string()), Some("0624".into()));
        assert_eq!(modes[1], None);
        let v = &spec.identities.vault;
        assert_eq!(v.role.as_deref(), Some("kv-role"));
        assert_eq!(v.audience.as_deref(), Some("vault"));
        assert_eq!(v.address, None);
    }

    /// Its kv-sync case writes the paths with the API's `/v1/` prefix
    /// (`/v1/secret/data/kv-sync1`, `v1/secret/data/kv-sync2`), which the
    /// provider drops before it asks: the same request as without.
    #[test]
    fn the_providers_v1_prefix_is_the_same_path() {
        for path in [
            "/v1/secret/data/kv-sync1",
            "v1/secret/data/kv-sync1",
            "/secret/data/kv-sync1",
        ] {
            let objects = format!("- objectName: a\n  secretPath: {path}\n  secretKey: bar1\n");
            let (spec, _) = read(&class(&[("roleName", "r"), ("objects", &objects)])).unwrap();
            assert_eq!(
                vault(&spec, "a").to_string(),
                "vault://secret/data/kv-sync1?api=true#bar1",
                "{path}"
            );
        }
    }

    /// The CSI provider's PKI case: `method: PUT` with `secretArgs`.
    #[test]
    fn a_write_that_issues_with_its_arguments() {
        let objects = "- objectName: cert\n  secretPath: pki/issue/example-dot-com\n  secretKey: certificate\n  method: PUT\n  secretArgs:\n    common_name: test.example.com\n    ttl: 1h\n    exclude_cn_from_sans: true\n";
        let (spec, _) = read(&class(&[("roleName", "web"), ("objects", objects)])).unwrap();
        let cert = vault(&spec, "cert");
        assert_eq!(
            cert.to_string(),
            "vault://pki/issue/example-dot-com?method=PUT&common_name=test.example.com&ttl=1h&exclude_cn_from_sans=true&api=true#certificate"
        );
    }

    #[test]
    fn identity_fields_and_versions() {
        let objects = "- objectName: a\n  secretPath: /secret/data/a?version=2\n- objectName: b\n  secretPath: database/creds/app\n  encoding: BASE64\n  filePermission: 420\n";
        let (spec, _) = read(&class(&[
            ("roleName", "web"),
            ("vaultAuthMountPath", "/jwt/"),
            ("vaultNamespace", "team1"),
            ("vaultTLSServerName", "Vault.Example.com"),
            ("vaultSkipTLSVerify", "false"),
            ("objects", objects),
        ]))
        .unwrap();
        let a = vault(&spec, "a");
        assert_eq!(
            (a.path.as_str(), a.version, a.key.clone()),
            ("secret/data/a", Some(2), None)
        );
        let b = spec
            .objects
            .iter()
            .find(|o| o.file.as_str() == "b")
            .unwrap();
        assert_eq!(b.encoding, Some(crate::ObjectEncoding::Base64));
        assert_eq!(
            b.file_permission.map(|m| m.to_string()),
            Some("0644".into())
        );
        let v = &spec.identities.vault;
        assert_eq!(v.auth_path.as_deref(), Some("jwt"));
        assert_eq!(v.namespace.as_deref(), Some("team1"));
        assert_eq!(v.tls_server_name.as_deref(), Some("vault.example.com"));
    }

    #[rstest]
    #[case(&[("objects", ONE), ("vaultSkipTLSVerify", "true")], "always verifies")]
    #[case(&[("objects", ONE), ("vaultTLSClientCertPath", "/x")], "client certificates")]
    #[case(&[("objects", ONE), ("vaultKubernetesMountPath", "k"), ("vaultAuthMountPath", "j")], "not both")]
    #[case(&[("objects", ONE), ("vaultAddress", "http://vault:8200")], "parameters.vaultAddress")]
    #[case(&[("objects", ONE), ("vaultAddress", "https://vault.vault.svc:8200")], "parameters.vaultAddress")]
    #[case(&[("objects", ONE), ("roleName", "a b")], "parameters.roleName")]
    // M4: a token for another relying party never goes to Vault.
    #[case(&[("objects", ONE), ("audience", "sts.amazonaws.com")], "parameters.audience")]
    #[case(&[("objects", ONE), ("audience", "api://AzureADTokenExchange")], "parameters.audience")]
    #[case(&[("objects", ONE), ("audience", "https://kubernetes.default.svc.cluster.local")], "parameters.audience")]
    #[case(&[("objects", ONE), ("audience", "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k")], "parameters.audience")]
    // H1: a TLS server name is a DNS name, never a host with a port, a
    // path, a user or an IP address the sidecar would connect to instead.
    #[case(&[("objects", ONE), ("vaultTLSServerName", "evil.example/")], "parameters.vaultTLSServerName")]
    #[case(&[("objects", ONE), ("vaultTLSServerName", "evil.example:443")], "parameters.vaultTLSServerName")]
    #[case(&[("objects", ONE), ("vaultTLSServerName", "me@evil.example")], "parameters.vaultTLSServerName")]
    #[case(&[("objects", ONE), ("vaultTLSServerName", "169.254.169.254")], "parameters.vaultTLSServerName")]
    #[case(&[("objects", ONE), ("vaultTLSServerName", "vault.0x7f")], "parameters.vaultTLSServerName")]
    #[case(&[("objects", ONE), ("vaultTLSServerName", "https://vault.example.com")], "parameters.vaultTLSServerName")]
    #[case(&[], "parameters.objects is missing")]
    #[case(&[("objects", "- objectName: a\n")], "secretPath is missing")]
    #[case(&[("objects", "- secretPath: s/a\n")], "objectName is missing")]
    #[case(&[("objects", "- objectName: a\n  secretPath: pki/issue/web\n  method: DELETE\n")], "PUT or POST")]
    #[case(&[("objects", "- objectName: a\n  secretPath: pki/issue/web\n  secretArgs: {common_name: x}\n")], "a read takes no arguments")]
    #[case(&[("objects", "- objectName: a\n  secretPath: pki/issue/web\n  method: PUT\n  secretArgs: {alt: [a, b]}\n")], "a map of argument names")]
    #[case(&[("objects", "- objectName: a\n  secretPath: pki/issue/web\n  method: PUT\n  secretArgs: {common_name: a b}\n")], "without spaces")]
    #[case(&[("objects", "- objectName: a\n  secretPath: s/a\n  encoding: rot13\n")], "utf-8, base64 or hex")]
    #[case(&[("objects", "- objectName: a\n  secretPath: s/a\n  filePermission: 0999\n")], "filePermission")]
    #[case(&[("objects", "- objectName: a\n  secretPath: s/a\n  filePermission: 4095\n")], "filePermission")]
    #[case(&[("objects", "- objectName: ../a\n  secretPath: s/a\n")], "objectName")]
    #[case(&[("objects", "- objectName: a\n  secretPath: s/../a\n")], "secretPath")]
    #[case(&[("objects", "- objectName: a\n  secretPath: s/a\n- objectName: a\n  secretPath: s/b\n")], "objects[1].objectName")]
    fn refuses_saying_why(#[case] params: &[(&str, &str)], #[case] says: &str) {
        let err = read(&class(params)).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }

    #[test]
    fn an_address_within_the_allowlist_is_kept() {
        let mut defaults = Defaults::default();
        defaults.limits.store_hosts = "vault.example.com:8200".parse::<StoreHosts>().unwrap();
        let class = class(&[
            ("vaultAddress", "https://vault.example.com:8200"),
            ("objects", ONE),
        ]);
        let (spec, _) = spec_from_provider_class(&class, &defaults).unwrap();
        assert_eq!(
            spec.identities.vault.address.as_deref(),
            Some("https://vault.example.com:8200")
        );
        let other = spec_from_provider_class(&class, &Defaults::default())
            .unwrap_err()
            .to_string();
        assert!(
            other.contains("not a store host the operator allows"),
            "{other}"
        );
    }

    #[test]
    fn ca_paths_warn_that_trust_is_the_operators() {
        let (_, warnings) =
            read(&class(&[("objects", ONE), ("vaultCACertPath", "/ca.pem")])).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("--ca-bundle")),
            "{warnings:?}"
        );
    }
}
