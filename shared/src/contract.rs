//! The webhook↔sidecar contract: what the webhook writes into the injected
//! containers (arguments, env, the spec) and the sidecar reads back, in one
//! place so the two binaries cannot drift. The spec carries a version: a
//! sidecar that meets a newer one refuses it, naming both, rather than drop
//! fields it does not know (an operator who upgrades the webhook but pins an
//! older `--sidecar-image`).

/// The env var of the injected containers that carries the serialised spec.
pub const SPEC_ENV: &str = "SECRET_INJECTOR_SPEC";

/// The version of the spec this build writes and the newest it reads. Bump
/// it with every field an older sidecar must not ignore.
/// 5: `identities.vault`.
pub const SPEC_VERSION: u32 = 6;

/// The sidecar's subcommands, as the webhook runs them.
pub mod args {
    /// The init container: fetch everything once, write the set, exit.
    pub const FETCH_ONCE: &[&str] = &["fetch", "--once"];
    /// The sidecar: re-poll and rotate until SIGTERM.
    pub const RUN: &[&str] = &["run"];
    /// The native sidecar's startup probe: exit 0 once a set is written.
    pub const PROBE: &[&str] = &["probe"];
}

/// The downward-API env the webhook sets and the sidecar reads (Secret sync,
/// SecretProviderClassPodStatus, Events).
pub mod env {
    pub const POD_NAME: &str = "POD_NAME";
    pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
    pub const POD_UID: &str = "POD_UID";
    pub const POD_SERVICE_ACCOUNT: &str = "POD_SERVICE_ACCOUNT";
    /// The operator's allowlist of store hosts, checked again by the sidecar.
    pub const ALLOWED_STORE_HOSTS: &str = crate::store_hosts::ALLOWED_STORE_HOSTS_ENV;
}

/// Azure's own variable names (its SDKs and workload identity webhook use
/// them), which the webhook sets for Key Vault objects.
pub mod azure {
    pub const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
    pub const CLIENT_ID: &str = "AZURE_CLIENT_ID";
    pub const TENANT_ID: &str = "AZURE_TENANT_ID";
    pub const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
}

/// Vault's own variable names (its CLI and agent read them): the webhook
/// sets the operator's address; the sidecar lets them win over the spec, as
/// the CLI does, which makes local runs plain.
pub mod vault {
    /// Vault's own variable: a local run's server, which wins as for its CLI.
    pub const ADDR: &str = "VAULT_ADDR";
    /// The operator's server (the webhook's --vault-address), for a set
    /// whose spec names none. Not `VAULT_ADDR` (M2): one container serves
    /// every set of a pod, and a set's own address must win over it.
    pub const DEFAULT_ADDR: &str = "SECRET_INJECTOR_VAULT_DEFAULT_ADDRESS";
    pub const TOKEN: &str = "VAULT_TOKEN";
    pub const CACERT: &str = "VAULT_CACERT";
    pub const NAMESPACE: &str = "VAULT_NAMESPACE";
    pub const TLS_SERVER_NAME: &str = "VAULT_TLS_SERVER_NAME";
    /// The projected ServiceAccount token the sidecar logs in with.
    pub const JWT_FILE: &str = "SECRET_INJECTOR_VAULT_JWT_FILE";
    /// The operator's auth method mount, for a spec that names none.
    pub const AUTH_PATH: &str = "SECRET_INJECTOR_VAULT_AUTH_PATH";
}

/// The status file beside the files: per object, version, last success and
/// failure. Names starting with `..` belong to the writer, never to a secret.
pub const STATUS_FILE: &str = "..secret-injector-status.json";

/// The AWS SDKs' own variable names (EKS's webhooks set the same), which the
/// webhook sets for AWS objects; the sidecar's SDK reads them.
pub mod aws {
    pub const ROLE_ARN: &str = "AWS_ROLE_ARN";
    pub const WEB_IDENTITY_TOKEN_FILE: &str = "AWS_WEB_IDENTITY_TOKEN_FILE";
    pub const CONTAINER_CREDENTIALS_FULL_URI: &str = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
    pub const CONTAINER_AUTHORIZATION_TOKEN_FILE: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
    /// The node's instance role is never a pod's identity (M1 for AWS).
    pub const EC2_METADATA_DISABLED: &str = "AWS_EC2_METADATA_DISABLED";
    /// The operator's endpoint for every AWS service (VPC endpoints, a test server).
    pub const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
    pub const STS_REGIONAL_ENDPOINTS: &str = "AWS_STS_REGIONAL_ENDPOINTS";
}
