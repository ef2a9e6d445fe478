//! Where a pod's credentials may go: the operator's allowlist of store hosts.
//!
//! A reference (or a SecretProviderClass) that names a host sends that host
//! an access token of the pod's identity, so the operator, never the pod,
//! decides which hosts are stores. The webhook checks every reference at
//! admission and the sidecar checks again before it sends anything; every
//! store that lets a pod name an endpoint goes through [`StoreHosts::check`].
//!
//! Patterns are `host[:port]` or `*.suffix[:port]` (`*` matches one or more
//! labels), comma-separated. Without a port only 443 matches; `:*` matches
//! any port. IP literals, loopback, link-local and cluster-internal names
//! (`*.svc`, `*.cluster.local`, `kubernetes.default`, names without a dot)
//! match only an entry that names them: an exact host, or a wildcard whose
//! suffix is itself internal (`*.svc.cluster.local`). A bare `*` matches
//! public names only.

use std::{fmt, str::FromStr};

/// Key Vault's public and sovereign clouds: what a pod may reach when the
/// operator says nothing.
pub const DEFAULT_ALLOWED_STORE_HOSTS: &str =
    "*.vault.azure.net,*.vault.azure.cn,*.vault.usgovcloudapi.net,*.vault.microsoftazure.de";

/// The operator flag (and env var) that sets the list, for error messages.
pub const ALLOWED_STORE_HOSTS_FLAG: &str = "--allowed-store-hosts";
pub const ALLOWED_STORE_HOSTS_ENV: &str = "SECRET_INJECTOR_ALLOWED_STORE_HOSTS";

const HTTPS_PORT: u16 = 443;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum PortRule {
    Only(u16),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum HostRule {
    /// `kv.example.com`, `10.0.0.5`
    Exact(String),
    /// `*.vault.azure.net`: the suffix without its leading `*.`; empty for `*`.
    Wildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HostPattern {
    host: HostRule,
    port: PortRule,
}

/// The hosts a pod or a class may name as its store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreHosts {
    patterns: Vec<HostPattern>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a store host pattern: use host[:port] or *.suffix[:port] (port a number or *), comma-separated, such as *.vault.azure.net,vault.internal.example:8200"
)]
pub struct StoreHostsError(pub String);

/// Why a host is refused: the host, and the list it is not on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct HostRefused {
    pub host: String,
    pub port: u16,
    pub internal: bool,
    pub allowed: String,
}

impl HostRefused {
    fn describe(&self) -> String {
        let what = if self.internal {
            "an IP address, loopback, link-local or cluster-internal name, which must be listed by name"
        } else {
            "not a store host the operator allows"
        };
        format!(
            "host {}:{} is {what}; allowed ({ALLOWED_STORE_HOSTS_FLAG}): {}",
            self.host, self.port, self.allowed
        )
    }
}

impl StoreHosts {
    /// Whether a pod may send its credentials to `host:port`.
    pub fn check(&self, host: &str, port: Option<u16>) -> Result<(), HostRefused> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let port = port.unwrap_or(HTTPS_PORT);
        let internal = is_internal(&host);
        let allowed = self
            .patterns
            .iter()
            .any(|p| p.matches(&host, port, internal));
        if allowed {
            Ok(())
        } else {
            Err(HostRefused {
                host,
                port,
                internal,
                allowed: self.text.clone(),
            })
        }
    }

    /// The list as the operator wrote it (normalised), for messages and env.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl HostPattern {
    fn matches(&self, host: &str, port: u16, internal: bool) -> bool {
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Only(p) => p == port,
        };
        let host_ok = match &self.host {
            HostRule::Exact(h) => h == host,
            // A bare `*` is for public names only.
            HostRule::Wildcard(suffix) if suffix.is_empty() => !internal,
            HostRule::Wildcard(suffix) => {
                let under = host
                    .strip_suffix(suffix.as_str())
                    .and_then(|rest| rest.strip_suffix('.'))
                    .is_some_and(|labels| !labels.is_empty());
                // An internal host needs an internal suffix: `*.net` does not
                // cover `10.0.0.5.net`-style tricks or `foo.svc`.
                under && (!internal || is_internal(suffix))
            }
        };
        port_ok && host_ok
    }
}

impl Default for StoreHosts {
    fn default() -> Self {
        // The constant is a valid list; an empty list refuses everything.
        DEFAULT_ALLOWED_STORE_HOSTS
            .parse()
            .unwrap_or_else(|_| Self {
                patterns: Vec::new(),
                text: String::new(),
            })
    }
}

impl FromStr for StoreHosts {
    type Err = StoreHostsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let patterns = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| parse_pattern(p).ok_or_else(|| StoreHostsError(p.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        let text = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self { patterns, text })
    }
}

impl fmt::Display for StoreHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_pattern(text: &str) -> Option<HostPattern> {
    let text = text.to_ascii_lowercase();
    let (host, port) = match text.rsplit_once(':') {
        Some((host, "*")) => (host, PortRule::Any),
        Some((host, port)) => (
            host,
            PortRule::Only(port.parse::<u16>().ok().filter(|p| *p != 0)?),
        ),
        None => (text.as_str(), PortRule::Only(HTTPS_PORT)),
    };
    let rule = if host == "*" {
        HostRule::Wildcard(String::new())
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if !is_host_name(suffix) {
            return None;
        }
        HostRule::Wildcard(suffix.to_owned())
    } else {
        if !is_host_name(host) {
            return None;
        }
        HostRule::Exact(host.to_owned())
    };
    Some(HostPattern { host: rule, port })
}

/// A label URL parsers read as a number, which makes the whole host an
/// IPv4 address (WHATWG's host parser): decimal, octal (`017`) or hex
/// (`0x7f`, even `0x`).
fn is_number_label(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A DNS name and nothing else: letters, digits and hyphens in labels of
/// at most 63 bytes, no port, path, user or IP address (a last label that
/// reads as a number makes one). What a TLS server name must be.
pub fn is_dns_name(s: &str) -> bool {
    is_host_name(s) && !s.rsplit('.').next().is_some_and(is_number_label)
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Addresses a pod could use to reach the node, the cluster or itself:
/// IP literals (any, IMDS among them), loopback, link-local and
/// cluster-internal names, and single-label names (resolved through the
/// pod's search domains to Services).
fn is_internal(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let is_ipv4 = labels.len() == 4 && labels.iter().all(|l| l.parse::<u8>().is_ok());
    let numeric_last = labels.last().is_some_and(|l| is_number_label(l));
    let ends = |suffix: &str| host == suffix || host.ends_with(&format!(".{suffix}"));
    is_ipv4
        // `0x7f.1`, `2130706433`: forms resolvers read as addresses.
        || numeric_last
        || labels.len() == 1
        || ends("localhost")
        || ends("local")
        || ends("svc")
        || ends("cluster.local")
        || ends("internal")
        || host.starts_with("kubernetes.default")
        || host.starts_with("metadata.google")
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn h1_dns_names_only() {
        for good in ["vault.example.com", "a-b.c", "vault", "x.0xyz"] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "", "a/", "a:1", "u@a", "10.0.0.1", "a.0x1f", "a.12", "-a.b", "a..b", "A B",
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }

    fn hosts(list: &str) -> StoreHosts {
        list.parse().unwrap()
    }

    #[rstest]
    #[case("kv-one.vault.azure.net", None)]
    #[case("kv-one.vault.azure.net", Some(443))]
    #[case("KV-One.Vault.Azure.Net.", None)]
    #[case("kv.vault.azure.cn", None)]
    #[case("kv.vault.usgovcloudapi.net", None)]
    fn the_default_allows_key_vault(#[case] host: &str, #[case] port: Option<u16>) {
        assert_eq!(StoreHosts::default().check(host, port), Ok(()));
    }

    // H1: the review's examples, and near misses of the suffix.
    #[rstest]
    #[case("169.254.169.254", None)]
    #[case("169.254.169.254", Some(80))]
    #[case("127.0.0.1", Some(8443))]
    #[case("kubernetes.default.svc", Some(443))]
    #[case("kubernetes.default", None)]
    #[case("localhost", None)]
    #[case("kv.attacker.example", None)]
    #[case("kv.vault.azure.example.com", None)]
    #[case("vault.azure.net", None)]
    #[case("kv.vault.azure.net", Some(8443))]
    #[case("evilvault.azure.net", None)]
    #[case("2130706433", None)]
    fn h1_the_default_refuses(#[case] host: &str, #[case] port: Option<u16>) {
        let err = StoreHosts::default().check(host, port).unwrap_err();
        assert!(err.to_string().contains("--allowed-store-hosts"), "{err}");
        assert!(err.to_string().contains("*.vault.azure.net"), "{err}");
    }

    #[test]
    fn internal_hosts_need_an_entry_that_names_them() {
        let any = hosts("*:*");
        assert!(any.check("vault.example.com", Some(8200)).is_ok());
        for internal in [
            "10.0.0.5",
            "vault.vault.svc",
            "vault",
            "vault.ns.svc.cluster.local",
            // M1: a hex or octal last label makes the host an IPv4
            // address to URL parsers (`http://a.0x7f` is 0.0.0.127).
            "vault.0x7f",
            "a.0X7F000001",
            "a.0x",
            "a.017",
        ] {
            let err = any.check(internal, None).unwrap_err();
            assert!(err.internal, "{internal}");
            assert!(err.to_string().contains("listed by name"), "{err}");
        }
        let listed = hosts("10.0.0.5:8200,*.svc.cluster.local:8200,vault:*");
        assert!(listed.check("10.0.0.5", Some(8200)).is_ok());
        assert!(listed.check("10.0.0.5", Some(443)).is_err());
        assert!(
            listed
                .check("vault.ns.svc.cluster.local", Some(8200))
                .is_ok()
        );
        assert!(listed.check("vault", Some(8200)).is_ok());
        // `*.local` is internal too, so it may cover internal names.
        assert!(hosts("*.local").check("vault.local", None).is_ok());
        // A public suffix never covers an internal name.
        assert!(hosts("*.net").check("a.svc", None).is_err());
    }

    #[test]
    fn ports() {
        let list = hosts("vault.example.com:8200,kv.example.com");
        assert!(list.check("vault.example.com", Some(8200)).is_ok());
        assert!(list.check("vault.example.com", None).is_err());
        assert!(list.check("kv.example.com", None).is_ok());
        assert!(list.check("kv.example.com", Some(444)).is_err());
    }

    #[rstest]
    #[case("*")]
    #[case("*.")]
    #[case("a..b")]
    #[case("*.vault.azure.net:0")]
    #[case("host:port")]
    #[case("http://kv.example.com")]
    #[case("*kv.example.com")]
    #[case("kv.*.example.com")]
    fn bad_patterns(#[case] text: &str) {
        if text == "*" {
            // A bare `*` is a pattern (public names only).
            assert!(text.parse::<StoreHosts>().is_ok());
            return;
        }
        assert_eq!(
            text.parse::<StoreHosts>(),
            Err(StoreHostsError(text.to_owned()))
        );
    }

    #[test]
    fn an_empty_list_refuses_everything() {
        assert!(hosts("").check("kv.vault.azure.net", None).is_err());
    }
}
