//! Secret references: `scheme://...` URIs whose scheme picks the store.
//!
//! A reference names where a value lives, never the value, so it may appear in
//! error messages and logs. It serialises as its canonical URI, so the sidecar
//! re-validates what the webhook wrote.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

pub const ACCEPTED_FORMS: &str = "azure://<vault>/secrets|certificates|keys/<name>[/<version>], \
aws://<region>/<secret-id>[#<json-key>], vault://<mount>/<path>#<key>, \
gcp://projects/<project>/secrets/<secret>[/versions/<version>]";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("it has no scheme; accepted: {ACCEPTED_FORMS}")]
    NoScheme,
    #[error("scheme {0:?} is not supported; accepted: azure, aws, vault, gcp ({ACCEPTED_FORMS})")]
    UnknownScheme(String),
    #[error("it does not have the form {form}")]
    Shape { form: &'static str },
    #[error("{what} {value:?} is not valid: {rule}")]
    Part {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
}

fn part(what: &'static str, value: &str, rule: &'static str) -> ReferenceError {
    ReferenceError::Part {
        what,
        value: value.to_owned(),
        rule,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SecretRef {
    Azure(AzureRef),
    Aws(AwsRef),
    Vault(VaultRef),
    Gcp(GcpRef),
}

impl SecretRef {
    /// The provider's short name, as in the URI scheme.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Azure(_) => "azure",
            Self::Aws(_) => "aws",
            Self::Vault(_) => "vault",
            Self::Gcp(_) => "gcp",
        }
    }

    /// The host (and port) a reference itself names, which the sidecar will
    /// send the pod's credentials to; `None` where the store's endpoint is
    /// fixed by its SDK and the operator (AWS regions, Google, Vault's
    /// operator address).
    pub fn named_host(&self) -> Option<(String, Option<u16>)> {
        match self {
            Self::Azure(r) => Some(r.vault.host_and_port()),
            Self::Aws(_) | Self::Vault(_) | Self::Gcp(_) => None,
        }
    }
}

impl FromStr for SecretRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once("://").ok_or(ReferenceError::NoScheme)?;
        match scheme {
            "azure" => AzureRef::parse(rest).map(Self::Azure),
            "aws" => AwsRef::parse(rest).map(Self::Aws),
            "vault" => VaultRef::parse(rest).map(Self::Vault),
            "gcp" => GcpRef::parse(rest).map(Self::Gcp),
            other => Err(ReferenceError::UnknownScheme(other.to_owned())),
        }
    }
}

impl TryFrom<String> for SecretRef {
    type Error = ReferenceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SecretRef> for String {
    fn from(value: SecretRef) -> Self {
        value.to_string()
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Azure(r) => r.fmt(f),
            Self::Aws(r) => r.fmt(f),
            Self::Vault(r) => r.fmt(f),
            Self::Gcp(r) => r.fmt(f),
        }
    }
}

// ---------------------------------------------------------------- Azure

const AZURE_FORM: &str = "azure://<vault>/secrets|certificates|keys/<name>[/<version>]";

/// The public cloud's Key Vault DNS suffix, used when a reference names a vault.
pub const AZURE_PUBLIC_VAULT_SUFFIX: &str = "vault.azure.net";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VaultAddress {
    /// A vault name: `https://<name>.vault.azure.net`.
    Name(String),
    /// A host and optional port, for sovereign clouds and private endpoints.
    Host { host: String, port: Option<u16> },
}

impl VaultAddress {
    pub fn host_and_port(&self) -> (String, Option<u16>) {
        match self {
            Self::Name(name) => (format!("{name}.{AZURE_PUBLIC_VAULT_SUFFIX}"), None),
            Self::Host { host, port } => (host.clone(), *port),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Name(name) => format!("https://{name}.{AZURE_PUBLIC_VAULT_SUFFIX}"),
            Self::Host { host, port: None } => format!("https://{host}"),
            Self::Host {
                host,
                port: Some(port),
            } => format!("https://{host}:{port}"),
        }
    }
}

impl fmt::Display for VaultAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Host { host, port: None } => f.write_str(host),
            Self::Host {
                host,
                port: Some(port),
            } => write!(f, "{host}:{port}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AzureObjectKind {
    Secret,
    Certificate,
    Key,
}

impl AzureObjectKind {
    fn path_segment(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Certificate => "certificates",
            Self::Key => "keys",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureRef {
    pub vault: VaultAddress,
    pub kind: AzureObjectKind,
    pub name: String,
    pub version: Option<String>,
}

impl AzureRef {
    fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let shape = || ReferenceError::Shape { form: AZURE_FORM };
        let mut segments = rest.split('/');
        let vault = parse_vault_address(segments.next().ok_or_else(shape)?)?;
        let kind = match segments.next().ok_or_else(shape)? {
            "secrets" => AzureObjectKind::Secret,
            "certificates" => AzureObjectKind::Certificate,
            "keys" => AzureObjectKind::Key,
            other => {
                return Err(part(
                    "object type",
                    other,
                    "use secrets, certificates or keys",
                ));
            }
        };
        let name = segments.next().ok_or_else(shape)?;
        check_azure_object_name(name)?;
        let version = match segments.next() {
            None => None,
            Some(v) => {
                check_azure_version(v)?;
                Some(v.to_owned())
            }
        };
        if segments.next().is_some() {
            return Err(shape());
        }
        Ok(Self {
            vault,
            kind,
            name: name.to_owned(),
            version,
        })
    }
}

impl fmt::Display for AzureRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "azure://{}/{}/{}",
            self.vault,
            self.kind.path_segment(),
            self.name
        )?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

fn parse_vault_address(s: &str) -> Result<VaultAddress, ReferenceError> {
    if s.contains('.') || s.contains(':') {
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| part("vault port", port, "use a number from 1 to 65535"))?;
                (host, Some(port))
            }
            None => (s, None),
        };
        check_dns_name(host)?;
        return Ok(VaultAddress::Host {
            host: host.to_ascii_lowercase(),
            port,
        });
    }
    check_vault_name(s)?;
    Ok(VaultAddress::Name(s.to_ascii_lowercase()))
}

/// Key Vault names: 3-24 characters, letters, digits and hyphens, starting
/// with a letter, ending with a letter or digit, no consecutive hyphens.
pub(crate) fn check_vault_name(s: &str) -> Result<(), ReferenceError> {
    const RULE: &str = "a vault name has 3-24 letters, digits or single hyphens, starts with a letter and ends with a letter or digit (or give host[:port])";
    let ok = (3..=24).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(part("vault", s, RULE))
    }
}

/// Host names (RFC 1123 labels) and IPv4 addresses; IPv6 literals are not
/// accepted because `host:port` would be ambiguous.
fn check_dns_name(s: &str) -> Result<(), ReferenceError> {
    const RULE: &str = "a host is dot-separated labels of letters, digits and hyphens (at most 253 characters), or an IPv4 address";
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(part("vault host", s, RULE))
    }
}

pub(crate) fn check_azure_object_name(s: &str) -> Result<(), ReferenceError> {
    if (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(part(
            "object name",
            s,
            "Key Vault names have 1-127 letters, digits and hyphens",
        ))
    }
}

pub(crate) fn check_azure_version(s: &str) -> Result<(), ReferenceError> {
    if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(part(
            "version",
            s,
            "a Key Vault version is letters and digits (32 hex characters in Azure)",
        ))
    }
}

// ---------------------------------------------------------------- AWS

const AWS_FORM: &str = "aws://<region>/<secret-id>[#<json-key>]";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AwsRef {
    pub region: String,
    /// A secret name or a full ARN.
    pub secret_id: String,
    pub json_key: Option<String>,
}

impl AwsRef {
    fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let (path, json_key) = split_fragment(rest, "JSON key")?;
        let (region, secret_id) = path
            .split_once('/')
            .ok_or(ReferenceError::Shape { form: AWS_FORM })?;
        check_aws_region(region)?;
        check_aws_secret_id(secret_id)?;
        Ok(Self {
            region: region.to_owned(),
            secret_id: secret_id.to_owned(),
            json_key,
        })
    }
}

impl fmt::Display for AwsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws://{}/{}", self.region, self.secret_id)?;
        if let Some(key) = &self.json_key {
            write!(f, "#{key}")?;
        }
        Ok(())
    }
}

/// `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`: letters, then letter
/// groups, then a number.
fn check_aws_region(s: &str) -> Result<(), ReferenceError> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(part(
            "AWS region",
            s,
            "a region looks like us-east-1 or eu-central-2",
        ))
    }
}

fn check_aws_secret_id(s: &str) -> Result<(), ReferenceError> {
    let chars_ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-:".contains(&b));
    let arn_ok = !s.starts_with("arn:") || s.contains(":secretsmanager:");
    if (1..=2048).contains(&s.len()) && chars_ok && arn_ok {
        Ok(())
    } else {
        Err(part(
            "secret id",
            s,
            "a Secrets Manager name (letters, digits and /_+=.@-) or a secretsmanager ARN",
        ))
    }
}

// ---------------------------------------------------------------- Vault

const VAULT_FORM: &str = "vault://<mount>/<path>#<key>";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultRef {
    pub mount: String,
    pub path: String,
    pub key: String,
}

impl VaultRef {
    fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let (location, key) = split_fragment(rest, "key")?;
        let key = key.ok_or_else(|| {
            part(
                "key",
                "",
                "a Vault reference names the field to write after '#', as in vault://secret/app/db#password",
            )
        })?;
        let (mount, path) = location
            .split_once('/')
            .ok_or(ReferenceError::Shape { form: VAULT_FORM })?;
        for segment in std::iter::once(mount).chain(path.split('/')) {
            let ok = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"#?%\\".contains(&b));
            if !ok {
                return Err(part(
                    "Vault path",
                    location,
                    "a mount and a path of non-empty segments, without '.', '..', '?', '%' or spaces",
                ));
            }
        }
        Ok(Self {
            mount: mount.to_owned(),
            path: path.to_owned(),
            key,
        })
    }
}

impl fmt::Display for VaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault://{}/{}#{}", self.mount, self.path, self.key)
    }
}

// ---------------------------------------------------------------- Google

const GCP_FORM: &str = "gcp://projects/<project>/secrets/<secret>[/versions/<version>]";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcpRef {
    pub project: String,
    pub secret: String,
    /// A version number or `latest`.
    pub version: String,
}

impl GcpRef {
    fn parse(rest: &str) -> Result<Self, ReferenceError> {
        let segments: Vec<&str> = rest.split('/').collect();
        let (project, secret, version) = match segments.as_slice() {
            ["projects", p, "secrets", s] => (*p, *s, "latest"),
            ["projects", p, "secrets", s, "versions", v] => (*p, *s, *v),
            _ => return Err(ReferenceError::Shape { form: GCP_FORM }),
        };
        let project_id_ok = (6..=30).contains(&project.len())
            && project.starts_with(|c: char| c.is_ascii_lowercase())
            && !project.ends_with('-')
            && project
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let project_number_ok = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
        if !(project_id_ok || project_number_ok) {
            return Err(part(
                "project",
                project,
                "a project id (6-30 lowercase letters, digits and hyphens, starting with a letter) or a project number",
            ));
        }
        if !((1..=255).contains(&secret.len())
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
        {
            return Err(part(
                "secret",
                secret,
                "a secret id has 1-255 letters, digits, '_' and '-'",
            ));
        }
        let version_ok = version == "latest"
            || (!version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
                && !version.starts_with('0'));
        if !version_ok {
            return Err(part(
                "version",
                version,
                "a version is a positive number or latest",
            ));
        }
        Ok(Self {
            project: project.to_owned(),
            secret: secret.to_owned(),
            version: version.to_owned(),
        })
    }
}

impl fmt::Display for GcpRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gcp://projects/{}/secrets/{}/versions/{}",
            self.project, self.secret, self.version
        )
    }
}

/// Splits `a#b` into `a` and `Some(b)`; an empty fragment is an error.
fn split_fragment<'a>(
    s: &'a str,
    what: &'static str,
) -> Result<(&'a str, Option<String>), ReferenceError> {
    match s.split_once('#') {
        None => Ok((s, None)),
        Some((_, "")) => Err(part(what, "", "the part after '#' must not be empty")),
        Some((head, fragment)) => Ok((head, Some(fragment.to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("azure://kv-aks-csi-weu-01/secrets/db-pass")]
    #[case("azure://kv-aks-csi-weu-01/secrets/db-pass/0123456789abcdef0123456789abcdef")]
    #[case("azure://kv-aks-csi-weu-01/certificates/tls")]
    #[case("azure://kv-aks-csi-weu-01/keys/signing")]
    #[case("azure://myvault.vault.azure.cn/secrets/a")]
    #[case("azure://127.0.0.1:8443/secrets/a")]
    #[case("aws://us-east-1/prod/db")]
    #[case("aws://us-gov-west-1/prod/db#password")]
    #[case("aws://eu-central-1/arn:aws:secretsmanager:eu-central-1:123456789012:secret:db-AbCdEf")]
    #[case("vault://secret/app/db#password")]
    #[case("gcp://projects/my-project/secrets/db/versions/3")]
    #[case("gcp://projects/123456789/secrets/db/versions/latest")]
    fn round_trips(#[case] uri: &str) {
        let parsed: SecretRef = uri.parse().unwrap();
        assert_eq!(parsed.to_string(), uri);
    }

    #[test]
    fn azure_vault_name_means_the_public_cloud() {
        let SecretRef::Azure(r) = "azure://KV-One/secrets/x".parse().unwrap() else {
            panic!("not azure")
        };
        assert_eq!(r.vault.url(), "https://kv-one.vault.azure.net");
        assert_eq!(r.kind, AzureObjectKind::Secret);
        assert_eq!(r.version, None);
    }

    #[test]
    fn azure_host_and_port_is_used_as_is() {
        let SecretRef::Azure(r) = "azure://127.0.0.1:8443/secrets/x/v1".parse().unwrap() else {
            panic!("not azure")
        };
        assert_eq!(r.vault.url(), "https://127.0.0.1:8443");
        assert_eq!(r.version.as_deref(), Some("v1"));
    }

    #[test]
    fn gcp_version_defaults_to_latest() {
        let SecretRef::Gcp(r) = "gcp://projects/my-project/secrets/db".parse().unwrap() else {
            panic!("not gcp")
        };
        assert_eq!(r.version, "latest");
    }

    #[test]
    fn aws_fragment_is_the_json_key() {
        let SecretRef::Aws(r) = "aws://us-east-1/prod/db#user".parse().unwrap() else {
            panic!("not aws")
        };
        assert_eq!(r.secret_id, "prod/db");
        assert_eq!(r.json_key.as_deref(), Some("user"));
    }

    #[rstest]
    #[case("kv/secrets/x", "no scheme")]
    #[case("s3://bucket/x", "scheme \"s3\" is not supported")]
    #[case("azure://kv-one/blobs/x", "object type \"blobs\"")]
    #[case("azure://kv-one/secrets", "does not have the form azure://")]
    #[case("azure://kv-one/secrets/a/b/c", "does not have the form azure://")]
    #[case("azure://k/secrets/x", "vault \"k\" is not valid")]
    #[case("azure://kv--one/secrets/x", "vault \"kv--one\"")]
    #[case("azure://kv-one/secrets/db_pass", "object name \"db_pass\"")]
    #[case("azure://host.example:0/secrets/x", "vault port \"0\"")]
    #[case("azure://kv-one/secrets/x/not-hex!", "version \"not-hex!\"")]
    #[case("aws://useast1/db", "AWS region \"useast1\"")]
    #[case("aws://us-east-1", "does not have the form aws://")]
    #[case("aws://us-east-1/db#", "JSON key")]
    #[case("aws://us-east-1/arn:aws:s3:::bucket", "secret id")]
    #[case("vault://secret/app/db", "names the field to write after '#'")]
    #[case("vault://secret#k", "does not have the form vault://")]
    #[case("vault://secret/../db#k", "Vault path")]
    #[case("gcp://my-project/db", "does not have the form gcp://")]
    #[case("gcp://projects/Bad/secrets/db", "project \"Bad\"")]
    #[case("gcp://projects/my-project/secrets/db/versions/0", "version \"0\"")]
    fn rejects_with_a_reason(#[case] uri: &str, #[case] says: &str) {
        let err = uri.parse::<SecretRef>().unwrap_err().to_string();
        assert!(err.contains(says), "{uri}: {err}");
    }
}
