//! Key Vault references: `azure://<vault>/secrets|certificates|keys/<name>[/<version>]`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ReferenceError, part};

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
    pub(crate) fn parse(rest: &str) -> Result<Self, ReferenceError> {
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
