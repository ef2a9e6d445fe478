//! HashiCorp Vault / OpenBao: a projected ServiceAccount token for the
//! auth method's audience (kubernetes and jwt auth both log in with it),
//! the operator's address and auth mount as the env the sidecar reads, and
//! the refusals: no role, no address.

use shared::{InjectionSpec, VaultIdentity, annotations, contract};

use super::{Wiring, plain, read_only_mount, token_volume};
use crate::{config::InjectorConfig, mutate::MutationError};

pub const TOKEN_VOLUME_NAME: &str = "secret-injector-vault-token";
/// The sidecar's default (`providers/vault/config.rs`), set explicitly too.
pub const TOKEN_DIR: &str = "/var/run/secrets/secret-injector/vault";
pub const TOKEN_FILE: &str = "token";
pub const DEFAULT_AUDIENCE: &str = "vault";
pub const DEFAULT_AUTH_PATH: &str = "kubernetes";

/// An hour; kubelet refreshes the file at 80 % and the sidecar reads it at
/// each login.
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// A role to log in as, from the pod or its class: Vault Agent Injector and
/// the Vault CSI provider both require one.
pub(super) fn check(vault: &VaultIdentity) -> Result<(), MutationError> {
    if vault.role.is_none() {
        return Err(MutationError::NoIdentity {
            store: "Vault",
            how: format!(
                "set {} to the role of Vault's kubernetes or jwt auth method (or roleName in the SecretProviderClass)",
                annotations::VAULT_ROLE
            ),
        });
    }
    Ok(())
}

fn audience<'a>(vault: &'a VaultIdentity, config: &'a InjectorConfig) -> &'a str {
    vault.audience.as_deref().unwrap_or(&config.vault_audience)
}

/// One token volume per pod: two sets may name two roles (the spec carries
/// each), not two audiences.
pub(super) fn same_identity(
    a: &InjectionSpec,
    b: &InjectionSpec,
    config: &InjectorConfig,
) -> Result<(), MutationError> {
    let (first, second) = (
        audience(&a.identities.vault, config),
        audience(&b.identities.vault, config),
    );
    if first == second {
        return Ok(());
    }
    Err(MutationError::IdentitiesDiffer {
        store: "Vault",
        first: format!("token audience {first}"),
        second: format!("token audience {second}"),
    })
}

pub(super) fn wiring(
    spec: &InjectionSpec,
    config: &InjectorConfig,
) -> Result<Wiring, MutationError> {
    let vault = &spec.identities.vault;
    let mut env = vec![
        plain(
            contract::vault::JWT_FILE,
            format!("{TOKEN_DIR}/{TOKEN_FILE}"),
        ),
        plain(contract::vault::AUTH_PATH, config.vault_auth_path.clone()),
    ];
    // The pod's or class's own address travels in the spec, where the
    // sidecar checks it against the allowlist again; the operator's is the
    // default for every set that names none.
    if vault.address.is_none() && config.vault_address.is_none() {
        return Err(MutationError::NoIdentity {
            store: "Vault",
            how: format!(
                "the operator sets no Vault address (--vault-address): set {} (or vaultAddress in the SecretProviderClass) to a server the operator allows",
                annotations::VAULT_ADDRESS
            ),
        });
    }
    if let Some(address) = &config.vault_address {
        env.push(plain(contract::vault::DEFAULT_ADDR, address.clone()));
    }
    Ok(Wiring {
        volumes: vec![token_volume(
            TOKEN_VOLUME_NAME,
            audience(vault, config),
            TOKEN_FILE,
            TOKEN_EXPIRATION_SECONDS,
        )],
        mounts: vec![read_only_mount(TOKEN_VOLUME_NAME, TOKEN_DIR)],
        env,
    })
}
