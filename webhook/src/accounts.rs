//! The identity annotations a pod's ServiceAccount carries for the stores
//! (`azure.workload.identity/client-id`, `eks.amazonaws.com/role-arn`, ...:
//! `stores::ACCOUNT_ANNOTATIONS`), so pods need not repeat them: a
//! metadata-only watch when serving, or the documents of an `inject` stream.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;

use crate::stores::ACCOUNT_ANNOTATIONS;

/// A ServiceAccount's identity annotations, those some store reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountIdentity(BTreeMap<String, String>);

impl AccountIdentity {
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        Self(
            annotations
                .into_iter()
                .flatten()
                .filter(|(k, _)| ACCOUNT_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        )
    }

    /// One annotation's value, trimmed; `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

pub trait ServiceAccounts: Send + Sync {
    fn identity(&self, namespace: &str, name: &str) -> AccountIdentity;

    /// Whether every ServiceAccount is known: before a watch has listed them,
    /// "no annotation" may just be "not seen yet".
    fn synced(&self) -> bool {
        true
    }

    /// Changes whenever a ServiceAccount may have changed.
    fn generation(&self) -> u64 {
        0
    }
}

/// Nothing known (local runs without an apiserver).
pub struct NoAccounts;

impl ServiceAccounts for NoAccounts {
    fn identity(&self, _: &str, _: &str) -> AccountIdentity {
        AccountIdentity::default()
    }
}

/// Accounts keyed by (namespace, name).
impl ServiceAccounts for BTreeMap<(String, String), AccountIdentity> {
    fn identity(&self, namespace: &str, name: &str) -> AccountIdentity {
        self.get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// ServiceAccounts' metadata kept current by a watch (kube's metadata
/// watcher: no token Secrets or other fields travel).
pub struct WatchedAccounts {
    store: kube::runtime::reflector::Store<PartialObjectMeta<ServiceAccount>>,
    synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl WatchedAccounts {
    pub fn start(client: kube::Client) -> Self {
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        // PartialObjectMeta: the API sends metadata only.
        let api: kube::Api<PartialObjectMeta<ServiceAccount>> = kube::Api::all(client);
        let (store, writer) = reflector::store();
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let synced = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        crate::classes::drive(
            crate::classes::flag_listed(
                crate::classes::counted(
                    reflector(
                        writer,
                        watcher(api, watcher::Config::default()).modify(prune),
                    ),
                    generation.clone(),
                ),
                synced.clone(),
            ),
            "watching ServiceAccounts",
        );
        Self {
            store,
            synced,
            generation,
        }
    }

    pub async fn wait_until_ready(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.synced() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        true
    }
}

/// What the cache keeps of a ServiceAccount: its key and the identity
/// annotations it is read for (no managedFields, labels or other annotations).
pub fn prune(account: &mut PartialObjectMeta<ServiceAccount>) {
    let meta = std::mem::take(&mut account.metadata);
    let annotations: BTreeMap<String, String> = meta
        .annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| ACCOUNT_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    account.metadata = kube::core::ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    };
}

impl ServiceAccounts for WatchedAccounts {
    fn identity(&self, namespace: &str, name: &str) -> AccountIdentity {
        let key = kube::runtime::reflector::ObjectRef::new(name).within(namespace);
        self.store
            .get(&key)
            .map(|account| AccountIdentity::from_annotations(account.metadata.annotations.as_ref()))
            .unwrap_or_default()
    }

    fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}
