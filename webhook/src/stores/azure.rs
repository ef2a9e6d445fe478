//! Azure Key Vault: workload identity (a projected token Entra ID exchanges),
//! at the paths and env names of Azure's own webhook.

use shared::{AzureIdentity, InjectionSpec, annotations, contract};

use super::{Wiring, plain, read_only_mount, token_volume};
use crate::{accounts::AccountIdentity, config::InjectorConfig, mutate::MutationError};

pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

pub const TOKEN_VOLUME_NAME: &str = "secret-injector-azure-token";
/// Where the injected containers find the projected ServiceAccount token that
/// Entra ID exchanges for an access token (same paths as Azure's own webhook).
pub const TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
pub const TOKEN_FILE: &str = "azure-identity-token";
pub const TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
const TOKEN_EXPIRATION_SECONDS: i64 = 3600;

/// `service_principal`: the CSI volume's `nodePublishSecretRef` carries a
/// `clientid` and `clientsecret`, which the CSI Azure provider uses when the
/// class names neither a workload identity client nor the node's identity.
pub(super) fn wants_account(azure: &AzureIdentity, service_principal: bool) -> bool {
    !azure.use_managed_identity
        && (azure.client_id.is_none() || azure.tenant_id.is_none())
        && !(service_principal && azure.client_id.is_none())
}

/// What the pod (or its class) did not name comes from its ServiceAccount's
/// `azure.workload.identity/client-id` and `/tenant-id`, as Azure's own
/// workload identity webhook reads them.
pub(super) fn from_account(
    azure: &mut AzureIdentity,
    service_principal: bool,
    found: &AccountIdentity,
) {
    if !wants_account(azure, service_principal) {
        return;
    }
    if azure.client_id.is_none() {
        azure.client_id = found.get(CLIENT_ID_ANNOTATION);
    }
    if azure.tenant_id.is_none() {
        azure.tenant_id = found.get(TENANT_ID_ANNOTATION);
    }
}

/// M1: Azure objects need an identity the pod, its class or its
/// ServiceAccount named; the node's managed identity only when asked for.
pub(super) fn check(
    azure: &AzureIdentity,
    service_principal: bool,
    account: &str,
) -> Result<(), MutationError> {
    if azure.client_id.is_none() && !azure.use_managed_identity && !service_principal {
        return Err(MutationError::NoIdentity {
            store: "Azure Key Vault",
            how: format!(
                "set {} (workload identity), annotate its ServiceAccount {account:?} with {CLIENT_ID_ANNOTATION}, give its CSI volume a nodePublishSecretRef with a service principal's clientid and clientsecret, or ask for the node's managed identity with {}: \"true\" (or useVMManagedIdentity in the SecretProviderClass)",
                annotations::CLIENT_ID,
                annotations::USE_MANAGED_IDENTITY
            ),
        });
    }
    Ok(())
}

pub(super) fn wiring(spec: &InjectionSpec, config: &InjectorConfig) -> Wiring {
    let azure = &spec.identities.azure;
    let mut env = vec![
        plain(
            contract::azure::FEDERATED_TOKEN_FILE,
            format!("{TOKEN_DIR}/{TOKEN_FILE}"),
        ),
        plain(
            contract::azure::AUTHORITY_HOST,
            config.azure_authority_host.clone(),
        ),
    ];
    if let Some(client_id) = &azure.client_id {
        env.push(plain(contract::azure::CLIENT_ID, client_id.clone()));
    }
    if let Some(tenant) = azure.tenant_id.as_ref().or(config.azure_tenant_id.as_ref()) {
        env.push(plain(contract::azure::TENANT_ID, tenant.clone()));
    }
    Wiring {
        volumes: vec![token_volume(
            TOKEN_VOLUME_NAME,
            TOKEN_AUDIENCE,
            TOKEN_FILE,
            TOKEN_EXPIRATION_SECONDS,
        )],
        mounts: vec![read_only_mount(TOKEN_VOLUME_NAME, TOKEN_DIR)],
        env,
    }
}
