//! Secret references: `scheme://...` URIs whose scheme picks the store.
//!
//! A reference names where a value lives, never the value, so it may appear in
//! error messages and logs. It serialises as its canonical URI, so the sidecar
//! re-validates what the webhook wrote.

use std::{fmt, str::FromStr};

mod aws;
mod azure;
mod gcp;
mod vault;

pub use aws::{AwsRef, AwsService, check_region};
pub use azure::{AZURE_PUBLIC_VAULT_SUFFIX, AzureObjectKind, AzureRef, VaultAddress};
pub(crate) use azure::{check_azure_object_name, check_azure_version, check_vault_name};
pub use gcp::GcpRef;
pub use vault::{VaultRef, VaultWrite, WriteMethod, is_arg_name, is_arg_value};

use serde::{Deserialize, Serialize};

pub const ACCEPTED_FORMS: &str = "azure://<vault>/secrets|certificates|keys/<name>[/<version>], \
aws://<region>/<secret-id or ARN>[?version=<id>][&stage=<stage>][#<json-key>], \
aws-ssm://<region>/<parameter name or ARN>[?version=<n> | ?label=<label>][#<json-key>], \
vault://<mount>/<path>[?version=<n>][#<key>], \
gcp://projects/<project>/secrets/<secret>[/versions/<version>]";

/// The stores a reference can name. Each has its grammar here, its identity
/// in the spec, its SecretProviderClass reader, its webhook wiring and its
/// sidecar provider (README "Adding a store").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Store {
    Azure,
    Aws,
    Vault,
    Gcp,
}

impl Store {
    pub const ALL: [Store; 4] = [Store::Azure, Store::Aws, Store::Vault, Store::Gcp];

    /// The short name used in schemes, metrics and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Azure => "azure",
            Self::Aws => "aws",
            Self::Vault => "vault",
            Self::Gcp => "gcp",
        }
    }

    /// The name a person reads.
    pub fn title(self) -> &'static str {
        match self {
            Self::Azure => "Azure Key Vault",
            Self::Aws => "AWS Secrets Manager and Parameter Store",
            Self::Vault => "HashiCorp Vault / OpenBao",
            Self::Gcp => "Google Secret Manager",
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("it has no scheme; accepted: {ACCEPTED_FORMS}")]
    NoScheme,
    #[error(
        "scheme {0:?} is not supported; accepted: azure, aws, aws-ssm, vault, gcp ({ACCEPTED_FORMS})"
    )]
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

pub(crate) fn part(what: &'static str, value: &str, rule: &'static str) -> ReferenceError {
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
    /// The store that holds it.
    pub fn store(&self) -> Store {
        match self {
            Self::Azure(_) => Store::Azure,
            Self::Aws(_) => Store::Aws,
            Self::Vault(_) => Store::Vault,
            Self::Gcp(_) => Store::Gcp,
        }
    }

    /// The store's short name, as in the URI scheme.
    pub fn provider(&self) -> &'static str {
        self.store().name()
    }

    /// The host (and port) a reference itself names, which the sidecar will
    /// send the pod's credentials to; `None` where the store's endpoint is
    /// fixed by its SDK and the operator (AWS regions, Google, Vault's
    /// operator address).
    /// What the store is asked for: the reference without what selects
    /// inside the value (an AWS `#key`), so objects that differ only there
    /// share one fetch.
    pub fn fetched(&self) -> SecretRef {
        match self {
            Self::Aws(r) if r.json_key.is_some() => Self::Aws(AwsRef {
                json_key: None,
                ..r.clone()
            }),
            Self::Gcp(r) if r.json_key.is_some() => Self::Gcp(GcpRef {
                json_key: None,
                ..r.clone()
            }),
            other => other.clone(),
        }
    }

    /// The JSON key the reference itself names (`#<json-key>`), which the
    /// sidecar extracts after fetching [`SecretRef::fetched`]. Vault's
    /// `#<key>` is not one: it names a field of Vault's own reply.
    pub fn json_key(&self) -> Option<&str> {
        match self {
            Self::Aws(r) => r.json_key.as_deref(),
            Self::Gcp(r) => r.json_key.as_deref(),
            Self::Azure(_) | Self::Vault(_) => None,
        }
    }

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
            "aws" => AwsRef::parse(rest, AwsService::SecretsManager).map(Self::Aws),
            "aws-ssm" => AwsRef::parse(rest, AwsService::ParameterStore).map(Self::Aws),
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

/// Splits `a#b` into `a` and `Some(b)`; an empty fragment is an error.
pub(crate) fn split_fragment<'a>(
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
