//! Who the sidecar is to Vault and where Vault is: Vault's own variables
//! first (as its CLI reads them), then the spec the webhook wrote. A server
//! the spec names (the pod's or its class's choice) is checked against the
//! operator's allowlist before anything is sent; `VAULT_ADDR` is the
//! webhook's (the operator's address) or a local run's.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use shared::{StoreHosts, contract::vault as names, parse_vault_address};
use zeroize::Zeroizing;

use crate::{config::EnvSource, providers::TransportOptions};

/// The auth method mount a spec without one logs in at.
pub const DEFAULT_AUTH_PATH: &str = "kubernetes";

#[derive(Debug, thiserror::Error)]
pub enum VaultSetupError {
    #[error(
        "no Vault address: the webhook sets {} from its --vault-address, or name one (secret-injector.io/vault-address, the class's vaultAddress); a local run sets {}",
        names::DEFAULT_ADDR,
        names::ADDR
    )]
    NoAddress,
    #[error("Vault address {0:?} is not an http(s)://host[:port] URL (no user, path or query)")]
    BadAddress(String),
    #[error(
        "Vault TLS server name {0:?} is not a DNS name such as vault.example.com (no port, path or IP address)"
    )]
    BadServerName(String),
    #[error("Vault address {address}: {refused}")]
    Refused {
        address: String,
        refused: shared::HostRefused,
    },
    #[error(
        "no way to log in to Vault: no role (secret-injector.io/vault-role or the class's roleName) and no {}",
        names::TOKEN
    )]
    NoAuth,
    #[error("{} {path}: {reason}", names::CACERT)]
    CaCert { path: String, reason: String },
    #[error("the CA bundle is not PEM certificates")]
    CaBundle,
    #[error("building the HTTP client: {0}")]
    Http(String),
}

/// How the sidecar gets its Vault token.
pub enum VaultAuth {
    /// `VAULT_TOKEN`: a local run's (never renewed or replaced).
    Token(Zeroizing<String>),
    /// `POST auth/<mount>/login {role, jwt}`: kubernetes and jwt auth alike.
    Login {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
}

impl std::fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("token from VAULT_TOKEN"),
            Self::Login { mount, role, .. } => write!(f, "login at auth/{mount} as role {role}"),
        }
    }
}

#[derive(Debug)]
pub struct VaultConfig {
    /// `https://host:port`, without a trailing slash.
    pub address: String,
    pub namespace: Option<String>,
    pub auth: VaultAuth,
    pub tls_server_name: Option<String>,
    /// Extra trusted CAs: `--ca-bundle` and `VAULT_CACERT`.
    pub ca_bundle: Option<Vec<u8>>,
    pub resolve: Vec<(String, SocketAddr)>,
    pub timeout: Duration,
    /// Revoke the leases and the token when the sidecar stops.
    pub revoke_on_shutdown: bool,
}

/// The address for a message: a user and password replaced by `***`.
fn without_userinfo(address: &str) -> String {
    let (scheme, rest) = address.split_once("://").unwrap_or(("", address));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{tail}"),
        None => address.to_owned(),
    }
}

/// The projected token's path when the env names none (the webhook's mount).
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/secret-injector/vault/token";

pub fn from_env(
    env: &impl EnvSource,
    spec: &shared::InjectionSpec,
    transport: &TransportOptions,
    hosts: &StoreHosts,
) -> Result<VaultConfig, VaultSetupError> {
    let id = &spec.identities.vault;
    let set = |name: &str| env.get(name).filter(|v| !v.is_empty());
    // VAULT_ADDR (a local run's), then the set's own (checked against the
    // allowlist), then the operator's default (M2: per set).
    let address = match (set(names::ADDR), &id.address) {
        (Some(addr), _) => addr,
        (None, None) => set(names::DEFAULT_ADDR).ok_or(VaultSetupError::NoAddress)?,
        (None, Some(addr)) => {
            let (host, port) = parse_vault_address(addr)
                .map_err(|_| VaultSetupError::BadAddress(without_userinfo(addr)))?;
            hosts
                .check(&host, port)
                .map_err(|refused| VaultSetupError::Refused {
                    address: addr.clone(),
                    refused,
                })?;
            addr.clone()
        }
    };
    let address = address.trim_end_matches('/').to_owned();
    // L6: a user or password in the address would travel to the server
    // and into messages; a path would move every call elsewhere.
    let parsed = reqwest::Url::parse(&address)
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.username().is_empty()
                && u.password().is_none()
                && u.path() == "/"
                && u.query().is_none()
                && u.fragment().is_none()
        })
        .ok_or_else(|| VaultSetupError::BadAddress(without_userinfo(&address)))?;
    if parsed.scheme() == "http" {
        tracing::warn!(address = %address, "Vault over plain HTTP: the token and the secrets cross the network unencrypted; use https outside local tests");
    }
    // H1 again (the spec or VAULT_TLS_SERVER_NAME): a DNS name only.
    let tls_server_name = set(names::TLS_SERVER_NAME)
        .or_else(|| id.tls_server_name.clone())
        .map(|name| name.to_ascii_lowercase());
    if let Some(name) = &tls_server_name
        && !shared::is_dns_name(name)
    {
        return Err(VaultSetupError::BadServerName(name.clone()));
    }
    let auth = match (set(names::TOKEN), &id.role) {
        (Some(token), _) => VaultAuth::Token(Zeroizing::new(token)),
        (None, Some(role)) => VaultAuth::Login {
            mount: id
                .auth_path
                .clone()
                .or_else(|| set(names::AUTH_PATH))
                .unwrap_or_else(|| DEFAULT_AUTH_PATH.to_owned()),
            role: role.clone(),
            jwt_file: set(names::JWT_FILE)
                .unwrap_or_else(|| DEFAULT_JWT_FILE.to_owned())
                .into(),
        },
        (None, None) => return Err(VaultSetupError::NoAuth),
    };
    let mut ca_bundle = transport.ca_bundle.clone();
    if let Some(path) = set(names::CACERT) {
        let pem = std::fs::read(&path).map_err(|e| VaultSetupError::CaCert {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        ca_bundle
            .get_or_insert_with(Vec::new)
            .extend_from_slice(&pem);
    }
    Ok(VaultConfig {
        address,
        namespace: set(names::NAMESPACE).or_else(|| id.namespace.clone()),
        auth,
        tls_server_name,
        ca_bundle,
        resolve: transport.resolve.clone(),
        timeout: transport.timeout,
        revoke_on_shutdown: id.revoke_on_shutdown,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn spec(vault: serde_json::Value) -> shared::InjectionSpec {
        shared::InjectionSpec::from_env_value(
            &serde_json::json!({
                "objects": [{"file": "k", "source": "vault://secret/app#k"}],
                "mountPath": "/mnt/secrets-store",
                "rotation": "1m",
                "filePermission": "0644",
                "identities": {"vault": vault},
            })
            .to_string(),
        )
        .unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config(
        pairs: &[(&str, &str)],
        vault: serde_json::Value,
    ) -> Result<VaultConfig, VaultSetupError> {
        let hosts: StoreHosts = "vault.example.com:8200".parse().unwrap();
        from_env(
            &env(pairs),
            &spec(vault),
            &TransportOptions::default(),
            &hosts,
        )
    }

    const DEFAULT: (&str, &str) = (names::DEFAULT_ADDR, "https://vault.vault.svc:8200");

    // M2: per set, a set's own address wins over the operator's default,
    // and VAULT_ADDR (a local run's) over both.
    #[test]
    fn m2_the_sets_own_address_wins_over_the_operators_default() {
        let own = serde_json::json!({"role": "web", "address": "https://vault.example.com:8200"});
        assert_eq!(
            config(&[DEFAULT], own.clone()).unwrap().address,
            "https://vault.example.com:8200"
        );
        let none = serde_json::json!({"role": "web"});
        assert_eq!(
            config(&[DEFAULT], none.clone()).unwrap().address,
            "https://vault.vault.svc:8200"
        );
        let local = [DEFAULT, (names::ADDR, "http://127.0.0.1:8200")];
        assert_eq!(
            config(&local, own).unwrap().address,
            "http://127.0.0.1:8200"
        );
        assert!(matches!(config(&[], none), Err(VaultSetupError::NoAddress)));
    }

    #[test]
    fn a_sets_address_outside_the_allowlist_is_refused() {
        let other = serde_json::json!({"role": "web", "address": "https://vault.attacker.example"});
        let err = config(&[DEFAULT], other).unwrap_err();
        assert!(err.to_string().contains("vault.attacker.example"), "{err}");
    }

    // L6: no user, password or path in an address.
    #[test]
    fn l6_addresses_carry_no_user_or_path() {
        for bad in [
            "https://user:pw@vault.vault.svc:8200",
            "https://vault.vault.svc:8200/elsewhere",
            "https://vault.vault.svc:8200/?x=1",
        ] {
            let err = config(
                &[(names::DEFAULT_ADDR, bad)],
                serde_json::json!({"role": "web"}),
            )
            .unwrap_err();
            assert!(
                matches!(err, VaultSetupError::BadAddress(_)),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("pw"), "{err}");
        }
        assert!(
            config(
                &[(names::DEFAULT_ADDR, "https://vault.vault.svc:8200/")],
                serde_json::json!({"role": "web"})
            )
            .is_ok()
        );
    }

    // H1: the TLS server name, from the spec or VAULT_TLS_SERVER_NAME, is a
    // DNS name only, so it cannot send the requests to another host.
    #[test]
    fn h1_the_tls_server_name_is_a_dns_name() {
        for bad in [
            "evil.example/",
            "evil.example:443",
            "10.0.0.1",
            "a@evil.example",
        ] {
            let spec_name = serde_json::json!({"role": "web", "tlsServerName": bad});
            assert!(
                matches!(
                    config(&[DEFAULT], spec_name),
                    Err(VaultSetupError::BadServerName(_))
                ),
                "{bad}"
            );
            let env_name = [DEFAULT, (names::TLS_SERVER_NAME, bad)];
            assert!(
                matches!(
                    config(&env_name, serde_json::json!({"role": "web"})),
                    Err(VaultSetupError::BadServerName(_))
                ),
                "{bad}"
            );
        }
        let ok = config(
            &[DEFAULT],
            serde_json::json!({"role": "web", "tlsServerName": "Vault.Example.com"}),
        )
        .unwrap();
        assert_eq!(ok.tls_server_name.as_deref(), Some("vault.example.com"));
    }
}
