use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Tenant used when none is configured (an arbitrary, fixed GUID).
pub const DEFAULT_TENANT: &str = "6d9f0c0e-5a47-4c1e-9e55-0a1b2c3d4e5f";
/// Vault used for requests whose Host is an IP address or `localhost`.
pub const DEFAULT_VAULT: &str = "kv-emulator";
/// The audience Entra requires in a federated (workload identity) assertion.
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Identity recorded for managed-identity tokens requested without `client_id`.
pub const SYSTEM_ASSIGNED: &str = "system-assigned";

/// How to start an emulator. `Default` gives 127.0.0.1:0, vault
/// [`DEFAULT_VAULT`], tenant [`DEFAULT_TENANT`], 1 h tokens and no identities.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Address to bind (use port 0 for a free one).
    pub listen: SocketAddr,
    /// Vault answering for IP / `localhost` Host headers.
    pub default_vault: String,
    /// The only tenant the token endpoints accept; also named in challenges.
    pub tenant_id: String,
    /// Authority host put in the 401 challenge (`https://login.microsoftonline.com`);
    /// `None` = the emulator's own URL.
    pub authority_host: Option<String>,
    /// Extra SANs for the serving certificate: DNS names (wildcards allowed) or IPs.
    pub extra_names: Vec<String>,
    /// Client id → client secret (ClientSecretCredential).
    pub client_secrets: BTreeMap<String, String>,
    /// PEM public keys (SPKI or PKCS#1 RSA, or SPKI EC P-256) trusted to sign
    /// federated assertions (e.g. the cluster's service-account `sa.pub`).
    pub federated_keys: Vec<String>,
    /// Client id → allowed assertion subjects (`system:serviceaccount:<ns>:<sa>`).
    /// A client id absent here accepts any subject.
    pub federated_subjects: BTreeMap<String, Vec<String>>,
    /// Expected `X-IDENTITY-HEADER` of `/msi/token`; `None` disables managed identity.
    pub identity_header: Option<String>,
    /// Serve the Azure Instance Metadata Service token endpoint
    /// (`/metadata/identity/oauth2/token`, plain HTTP, as on a VM) on this
    /// address too; `None`: no IMDS.
    pub imds_listen: Option<SocketAddr>,
    /// Lifetime of issued access tokens (changeable later through [`crate::State`]).
    pub token_lifetime: Duration,
    /// Secrets created at start: (vault, name, value).
    pub seeds: Vec<(String, String, String)>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            default_vault: DEFAULT_VAULT.to_owned(),
            tenant_id: DEFAULT_TENANT.to_owned(),
            authority_host: None,
            extra_names: Vec::new(),
            client_secrets: BTreeMap::new(),
            federated_keys: Vec::new(),
            federated_subjects: BTreeMap::new(),
            identity_header: None,
            imds_listen: None,
            token_lifetime: Duration::from_secs(3600),
            seeds: Vec::new(),
        }
    }
}
