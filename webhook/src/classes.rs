//! SecretProviderClasses the mutation may read: a cache fed by a watch when
//! serving (no API call per admission), or the documents of an `inject` stream.

use std::collections::BTreeMap;

use serde_json::Value;

pub trait ProviderClasses: Send + Sync {
    /// The class `name` in `namespace`, as JSON.
    fn get(&self, namespace: &str, name: &str) -> Option<Value>;
}

/// No classes known (annotation-form pods only).
pub struct NoClasses;

impl ProviderClasses for NoClasses {
    fn get(&self, _: &str, _: &str) -> Option<Value> {
        None
    }
}

/// Classes keyed by (namespace, name).
impl ProviderClasses for BTreeMap<(String, String), Value> {
    fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        BTreeMap::get(self, &(namespace.to_owned(), name.to_owned())).cloned()
    }
}

/// What the mutation knows besides the pod and the operator's configuration.
pub struct Context<'a> {
    /// The request's namespace (a pod being created may not carry it yet).
    pub namespace: &'a str,
    pub classes: &'a dyn ProviderClasses,
    /// Convert Secrets Store CSI volumes (the namespace opted in, or the operator everywhere).
    pub csi_compat: bool,
}

impl Default for Context<'_> {
    fn default() -> Self {
        Self {
            namespace: "default",
            classes: &NoClasses,
            csi_compat: false,
        }
    }
}
