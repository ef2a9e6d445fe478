//! Per-store wiring: what a store adds to the injected containers (projected
//! token volumes, mounts, env), which ServiceAccount annotations fill in its
//! identity, and when a pod names too little identity to be admitted. One
//! module per store; `mutate` only asks each store the spec uses.

use k8s_openapi::api::core::v1::{
    EnvVar, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use shared::{InjectionSpec, Store};

use crate::{accounts::AccountIdentity, config::InjectorConfig, mutate::MutationError};

pub mod aws;
pub mod azure;
pub mod vault;

/// The ServiceAccount annotations some store reads; the account cache keeps
/// only these.
pub const ACCOUNT_ANNOTATIONS: &[&str] = &[
    azure::CLIENT_ID_ANNOTATION,
    azure::TENANT_ID_ANNOTATION,
    aws::ROLE_ARN_ANNOTATION,
];

/// Volumes, mounts and env one store adds to the injected containers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Wiring {
    /// Pod volumes (projected tokens).
    pub volumes: Vec<Volume>,
    /// Their read-only mounts in the injected containers.
    pub mounts: Vec<VolumeMount>,
    pub env: Vec<EnvVar>,
}

impl Wiring {
    fn extend(&mut self, other: Wiring) {
        self.volumes.extend(other.volumes);
        self.mounts.extend(other.mounts);
        self.env.extend(other.env);
    }

    /// Whether a projected ServiceAccount token is among the volumes (which
    /// needs `serviceAccountName` set).
    pub fn projects_tokens(&self) -> bool {
        !self.volumes.is_empty()
    }
}

/// Fills in what the pod and its class did not name from its ServiceAccount's
/// annotations, then refuses a pod whose stores lack an identity.
pub fn complete_identities(
    spec: &mut InjectionSpec,
    account: &str,
    found: impl Fn() -> AccountIdentity,
) -> Result<(), MutationError> {
    let stores = spec.stores();
    let service_principal = spec.provider_secret.is_some();
    let needs_account = stores.keys().any(|store| match store {
        Store::Azure => azure::wants_account(&spec.identities.azure, service_principal),
        Store::Aws => aws::wants_account(&spec.identities.aws),
        Store::Vault | Store::Gcp => false,
    });
    if needs_account {
        let found = found();
        for store in stores.keys() {
            match store {
                Store::Azure => {
                    azure::from_account(&mut spec.identities.azure, service_principal, &found)
                }
                Store::Aws => aws::from_account(&mut spec.identities.aws, &found),
                Store::Vault | Store::Gcp => {}
            }
        }
    }
    for store in stores.keys() {
        match store {
            Store::Azure => azure::check(&spec.identities.azure, service_principal, account)?,
            Store::Aws => aws::check(&spec.identities.aws, account)?,
            Store::Vault => vault::check(&spec.identities.vault)?,
            Store::Gcp => {}
        }
    }
    Ok(())
}

/// Everything the sets' stores add, in store order. A store's env carries
/// one identity, the first set's that uses it; sets that name another are
/// refused where the store cannot tell them apart (`same_identity`).
pub fn wiring(sets: &[InjectionSpec], config: &InjectorConfig) -> Result<Wiring, MutationError> {
    let mut first: std::collections::BTreeMap<Store, &InjectionSpec> = Default::default();
    for spec in sets {
        for store in spec.stores().into_keys() {
            match first.get(&store) {
                None => {
                    first.insert(store, spec);
                }
                Some(earlier) => same_identity(store, earlier, spec, config)?,
            }
        }
    }
    let mut all = Wiring::default();
    for (store, spec) in first {
        all.extend(match store {
            Store::Azure => azure::wiring(spec, config),
            Store::Aws => aws::wiring(spec, config),
            Store::Vault => vault::wiring(spec, config)?,
            Store::Gcp => Wiring::default(),
        });
    }
    Ok(all)
}

/// Azure's identity travels in each set's spec, which the sidecar reads
/// first, so sets may differ; AWS's SDK reads one role from the env.
fn same_identity(
    store: Store,
    a: &InjectionSpec,
    b: &InjectionSpec,
    config: &InjectorConfig,
) -> Result<(), MutationError> {
    match store {
        Store::Aws => aws::same_identity(&a.identities.aws, &b.identities.aws),
        Store::Vault => vault::same_identity(a, b, config),
        Store::Azure | Store::Gcp => Ok(()),
    }
}

/// Whether a store the spec uses reads the CSI volume's
/// `nodePublishSecretRef` (as its CSI provider does).
pub fn reads_provider_secret(spec: &InjectionSpec) -> bool {
    spec.stores().keys().any(|store| match store {
        Store::Azure => true,
        Store::Aws | Store::Vault | Store::Gcp => false,
    })
}

/// The volume names any store may add, which a pod may not use itself.
pub const VOLUME_NAMES: &[&str] = &[
    azure::TOKEN_VOLUME_NAME,
    aws::IRSA_TOKEN_VOLUME_NAME,
    aws::POD_IDENTITY_TOKEN_VOLUME_NAME,
    vault::TOKEN_VOLUME_NAME,
];

/// A projected ServiceAccount token for `audience`, as kubelet refreshes it.
pub(crate) fn token_volume(name: &str, audience: &str, path: &str, expiration: i64) -> Volume {
    Volume {
        name: name.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(audience.to_owned()),
                    expiration_seconds: Some(expiration),
                    path: path.to_owned(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn read_only_mount(volume: &str, dir: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: dir.to_owned(),
        read_only: Some(true),
        ..Default::default()
    }
}

pub(crate) fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}
