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
        "no Vault address: the webhook sets {} from its --vault-address, or name one (secret-injector.io/vault-address, the class's vaultAddress)",
        names::ADDR
    )]
    NoAddress,
    #[error("Vault address {0:?} is not an http(s)://host[:port] URL")]
    BadAddress(String),
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
    let address = match (set(names::ADDR), &id.address) {
        (Some(addr), _) => addr,
        (None, Some(addr)) => {
            let (host, port) =
                parse_vault_address(addr).map_err(|_| VaultSetupError::BadAddress(addr.clone()))?;
            hosts
                .check(&host, port)
                .map_err(|refused| VaultSetupError::Refused {
                    address: addr.clone(),
                    refused,
                })?;
            addr.clone()
        }
        (None, None) => return Err(VaultSetupError::NoAddress),
    };
    let address = address.trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&address)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| VaultSetupError::BadAddress(address.clone()))?;
    drop(parsed);
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
        tls_server_name: set(names::TLS_SERVER_NAME).or_else(|| id.tls_server_name.clone()),
        ca_bundle,
        resolve: transport.resolve.clone(),
        timeout: transport.timeout,
        revoke_on_shutdown: id.revoke_on_shutdown,
    })
}
