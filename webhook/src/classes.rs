//! SecretProviderClasses the mutation may read: a cache fed by a watch when
//! serving (no API call per admission), or the documents of an `inject` stream.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde_json::Value;

pub trait ProviderClasses: Send + Sync {
    /// The class `name` in `namespace`, as JSON.
    fn get(&self, namespace: &str, name: &str) -> Option<Value>;

    /// Whether every class is known: a watch has listed them at least once.
    /// Before that, "not found" means nothing.
    fn synced(&self) -> bool {
        true
    }

    /// Changes whenever a class may have changed, so answers computed from
    /// the classes can be kept until then.
    fn generation(&self) -> u64 {
        0
    }
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
    /// ServiceAccounts' Azure workload identity annotations.
    pub accounts: &'a dyn crate::accounts::ServiceAccounts,
    /// Convert Secrets Store CSI volumes (the namespace opted in, or the operator everywhere).
    pub csi_compat: bool,
}

impl Default for Context<'_> {
    fn default() -> Self {
        Self {
            namespace: "default",
            classes: &NoClasses,
            accounts: &crate::accounts::NoAccounts,
            csi_compat: false,
        }
    }
}

/// Runs a reflector's stream in the background, with backoff, logging what
/// goes wrong (the watch retries by itself).
pub(crate) fn drive<K, S>(stream: S, what: &'static str)
where
    S: futures::Stream<
            Item = Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>,
        > + Send
        + 'static,
    K: Send + 'static,
{
    use futures::StreamExt;
    use kube::runtime::WatchStreamExt;
    let stream = stream.default_backoff();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "{what}");
            }
        }
    });
}

/// SecretProviderClasses kept current by a watch (kube's reflector): the
/// admission path reads memory, never the API. Each object is pruned as it
/// arrives to its name, namespace, uid, resourceVersion and `spec`, with an
/// oversized `parameters.objects` cut just past the limit the reader refuses.
pub struct WatchedClasses {
    store: kube::runtime::reflector::Store<kube::core::DynamicObject>,
    resource: kube::core::ApiResource,
    synced: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
}

/// A list page of whole classes is held in memory before pruning: keep it short.
const LIST_PAGE_SIZE: u32 = 25;

impl WatchedClasses {
    pub fn resource() -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: shared::provider_class::CSI_GROUP.to_owned(),
            version: "v1".to_owned(),
            api_version: shared::provider_class::PROVIDER_CLASS_API_VERSION.to_owned(),
            kind: shared::provider_class::PROVIDER_CLASS_KIND.to_owned(),
            plural: "secretproviderclasses".to_owned(),
        }
    }

    /// Starts the watch in the background; returns the cache at once.
    pub fn start(client: kube::Client) -> Self {
        use kube::runtime::{WatchStreamExt, reflector, watcher};
        let resource = Self::resource();
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::all_with(client, &resource);
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
        // Errors are typically a CRD not installed yet; the watch retries.
        let generation = Arc::new(AtomicU64::new(0));
        drive(
            counted(
                reflector(writer, watcher(api, config).modify(prune)),
                generation.clone(),
            ),
            "watching SecretProviderClasses",
        );
        let synced = flag_when_ready(store.clone());
        Self {
            store,
            resource,
            synced,
            generation,
        }
    }

    /// Waits (bounded) for the first complete list, so readiness means "knows the classes".
    pub async fn wait_until_ready(&self, timeout: std::time::Duration) -> bool {
        tokio::time::timeout(timeout, self.store.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// `stream`, counting its events (each after the store has applied it).
pub(crate) fn counted<S, T>(stream: S, generation: Arc<AtomicU64>) -> impl futures::Stream<Item = T>
where
    S: futures::Stream<Item = T>,
{
    use futures::StreamExt;
    stream.inspect(move |_| {
        generation.fetch_add(1, Ordering::AcqRel);
    })
}

/// A flag that turns true once `store` has had its first complete list.
pub(crate) fn flag_when_ready<K>(store: kube::runtime::reflector::Store<K>) -> Arc<AtomicBool>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            set.store(true, Ordering::Release);
        }
    });
    flag
}

/// What the cache keeps of a class: what the reader and the store's key need.
pub fn prune(object: &mut kube::core::DynamicObject) {
    let meta = std::mem::take(&mut object.metadata);
    object.metadata = kube::core::ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        ..Default::default()
    };
    let mut spec = object
        .data
        .get_mut("spec")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if let Some(Value::String(objects)) = spec.pointer_mut("/parameters/objects") {
        // The reader refuses more than the limit; one byte past it (at a
        // character boundary) keeps that answer without keeping the rest.
        let limit = shared::provider_class::MAX_OBJECTS_BYTES;
        if objects.len() > limit {
            let mut end = limit + 1;
            while !objects.is_char_boundary(end) {
                end += 1;
            }
            objects.truncate(end);
            objects.shrink_to_fit();
        }
    }
    let mut data = serde_json::Map::new();
    if !spec.is_null() {
        data.insert("spec".to_owned(), spec);
    }
    object.data = Value::Object(data);
}

impl ProviderClasses for WatchedClasses {
    fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = kube::runtime::reflector::ObjectRef::new_with(name, self.resource.clone())
            .within(namespace);
        let object = self.store.get(&key)?;
        let mut value = serde_json::to_value(object.as_ref()).ok()?;
        // Watch events may omit the type; the parser checks it.
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "apiVersion".into(),
                Value::String(self.resource.api_version.clone()),
            );
            map.insert("kind".into(), Value::String(self.resource.kind.clone()));
        }
        Some(value)
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}
