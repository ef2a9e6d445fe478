//! SecretProviderClasses the mutation may read: a cache fed by a watch when
//! serving (no API call per admission), or the documents of an `inject` stream.
//! Either way a class reaches the mutation read ([`ParsedClass`]); the watch
//! reads each class once, when its event arrives.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde_json::Value;
use shared::{
    ProviderClassError,
    provider_class::{self, ParsedClass},
};

/// A class as read: what it fetches, or why it cannot be used.
pub type Parsed = Result<ParsedClass, ProviderClassError>;

pub trait ProviderClasses: Send + Sync {
    /// The class `name` in `namespace`, read.
    fn parsed(&self, namespace: &str, name: &str) -> Option<Arc<Parsed>>;

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
    fn parsed(&self, _: &str, _: &str) -> Option<Arc<Parsed>> {
        None
    }
}

/// Classes as JSON keyed by (namespace, name), read on each lookup (the
/// documents of one `inject` run, tests).
impl ProviderClasses for BTreeMap<(String, String), Value> {
    fn parsed(&self, namespace: &str, name: &str) -> Option<Arc<Parsed>> {
        BTreeMap::get(self, &(namespace.to_owned(), name.to_owned()))
            .map(|class| Arc::new(provider_class::read(class)))
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

/// SecretProviderClasses kept current by a watch: each class is read when
/// its event arrives (again only when its uid or resourceVersion changed)
/// and only the result is kept, never the object. The admission path reads
/// memory, never the API.
pub struct WatchedClasses {
    state: Arc<WatchState>,
}

/// A list page of whole classes is held in memory before they are read: keep it short.
const LIST_PAGE_SIZE: u32 = 25;

#[derive(Default)]
struct WatchState {
    live: RwLock<HashMap<(String, String), Entry>>,
    /// The classes of a list in progress (a watch restart lists again).
    listing: Mutex<Option<HashMap<(String, String), Entry>>>,
    synced: AtomicBool,
    generation: AtomicU64,
}

#[derive(Clone)]
struct Entry {
    uid: Option<String>,
    resource_version: Option<String>,
    parsed: Arc<Parsed>,
}

impl WatchState {
    fn apply(&self, event: &kube::runtime::watcher::Event<kube::core::DynamicObject>) {
        use kube::runtime::watcher::Event;
        match event {
            Event::Init => {
                if let Ok(mut listing) = self.listing.lock() {
                    *listing = Some(HashMap::new());
                }
            }
            Event::InitApply(object) => {
                let entry = self.entry(object);
                if let (Ok(mut listing), Some((key, entry))) = (self.listing.lock(), entry) {
                    listing.get_or_insert_with(HashMap::new).insert(key, entry);
                }
            }
            Event::InitDone => {
                let listed = self.listing.lock().ok().and_then(|mut l| l.take());
                if let (Some(listed), Ok(mut live)) = (listed, self.live.write()) {
                    *live = listed;
                }
                self.synced.store(true, Ordering::Release);
            }
            Event::Apply(object) => {
                if let (Some((key, entry)), Ok(mut live)) = (self.entry(object), self.live.write())
                {
                    live.insert(key, entry);
                }
            }
            Event::Delete(object) => {
                if let (Some(key), Ok(mut live)) = (key_of(object), self.live.write()) {
                    live.remove(&key);
                }
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The class read, or the entry already read for this uid and resourceVersion.
    fn entry(&self, object: &kube::core::DynamicObject) -> Option<((String, String), Entry)> {
        let key = key_of(object)?;
        let (uid, resource_version) = (
            object.metadata.uid.clone(),
            object.metadata.resource_version.clone(),
        );
        let known = self.live.read().ok().and_then(|live| {
            live.get(&key)
                .filter(|e| {
                    resource_version.is_some()
                        && e.uid == uid
                        && e.resource_version == resource_version
                })
                .cloned()
        });
        let entry = known.unwrap_or_else(|| Entry {
            uid,
            resource_version,
            parsed: Arc::new(provider_class::read(&class_json(object))),
        });
        Some((key, entry))
    }
}

fn key_of(object: &kube::core::DynamicObject) -> Option<(String, String)> {
    Some((
        object.metadata.namespace.clone()?,
        object.metadata.name.clone()?,
    ))
}

/// What the reader needs of a watched class: its type (watch events may
/// omit it), its name and its spec; nothing else is copied.
fn class_json(object: &kube::core::DynamicObject) -> Value {
    let mut class = serde_json::Map::new();
    class.insert(
        "apiVersion".into(),
        provider_class::PROVIDER_CLASS_API_VERSION.into(),
    );
    class.insert("kind".into(), provider_class::PROVIDER_CLASS_KIND.into());
    class.insert(
        "metadata".into(),
        serde_json::json!({ "name": object.metadata.name }),
    );
    if let Some(spec) = object.data.get("spec") {
        class.insert("spec".into(), spec.clone());
    }
    Value::Object(class)
}

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
        use futures::StreamExt;
        use kube::runtime::watcher;
        let resource = Self::resource();
        let api: kube::Api<kube::core::DynamicObject> = kube::Api::all_with(client, &resource);
        let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
        let state = Arc::new(WatchState::default());
        let applied = state.clone();
        // Errors are typically a CRD not installed yet; the watch retries.
        drive(
            watcher(api, config).inspect(move |event| {
                if let Ok(event) = event {
                    applied.apply(event);
                }
            }),
            "watching SecretProviderClasses",
        );
        Self { state }
    }

    /// A cache fed by hand, as the watch feeds it (tests).
    pub fn fed(events: &[kube::runtime::watcher::Event<kube::core::DynamicObject>]) -> Self {
        let state = Arc::new(WatchState::default());
        for event in events {
            state.apply(event);
        }
        Self { state }
    }

    /// Waits (bounded) for the first complete list, so readiness means "knows the classes".
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

    /// Classes held (read or refused).
    pub fn len(&self) -> usize {
        self.state.live.read().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// Sets `listed` once the watch has delivered its first complete list.
/// Read from the events themselves rather than `Store::wait_until_ready`,
/// which wakes only its first waiter: a second one (the readiness flag)
/// never saw the list and the webhook stayed unready.
pub(crate) fn flag_listed<S, K, E>(
    stream: S,
    listed: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<kube::runtime::watcher::Event<K>, E>>
where
    S: futures::Stream<Item = Result<kube::runtime::watcher::Event<K>, E>>,
{
    use futures::StreamExt;
    stream.inspect(move |event| {
        if matches!(event, Ok(kube::runtime::watcher::Event::InitDone)) {
            listed.store(true, Ordering::Release);
        }
    })
}

impl ProviderClasses for WatchedClasses {
    fn parsed(&self, namespace: &str, name: &str) -> Option<Arc<Parsed>> {
        let live = self.state.live.read().ok()?;
        live.get(&(namespace.to_owned(), name.to_owned()))
            .map(|e| e.parsed.clone())
    }

    fn synced(&self) -> bool {
        self.state.synced.load(Ordering::Acquire)
    }

    fn generation(&self) -> u64 {
        self.state.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use kube::{core::DynamicObject, runtime::watcher::Event};

    use super::*;

    const SEED: &str = include_str!("../../manifests/examples/seed/01-secretProviderClass.yml");

    fn class(name: &str, resource_version: &str, objects: Option<&str>) -> DynamicObject {
        let mut value: Value = serde_yaml_ng::from_str(SEED).unwrap();
        value["metadata"] = serde_json::json!({
            "name": name,
            "namespace": "team",
            "uid": format!("uid-{name}"),
            "resourceVersion": resource_version,
            "managedFields": [{"manager": "kubectl"}],
        });
        if let Some(objects) = objects {
            value["spec"]["parameters"]["objects"] = objects.into();
        }
        // As a watch delivers it: no type.
        value.as_object_mut().unwrap().remove("kind");
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn each_class_is_read_once_per_resource_version() {
        let watched = WatchedClasses::fed(&[
            Event::Init,
            Event::InitApply(class("kv", "1", None)),
            Event::InitDone,
        ]);
        assert!(watched.synced());
        let first = watched.parsed("team", "kv").unwrap();
        assert_eq!(first.as_ref().as_ref().unwrap().name(), "kv");
        assert!(watched.parsed("other", "kv").is_none());

        // The same version again (a watch restart lists it again): not read again.
        let generation = watched.generation();
        watched.state.apply(&Event::Init);
        watched
            .state
            .apply(&Event::InitApply(class("kv", "1", None)));
        watched.state.apply(&Event::InitDone);
        assert!(Arc::ptr_eq(&first, &watched.parsed("team", "kv").unwrap()));
        assert!(watched.generation() > generation);

        // A new version is read; a deleted class is gone.
        watched
            .state
            .apply(&Event::Apply(class("kv", "2", Some("array: ["))));
        let second = watched.parsed("team", "kv").unwrap();
        assert_eq!(second.as_ref().as_ref().unwrap_err().reason(), "yaml");
        watched.state.apply(&Event::Delete(class("kv", "2", None)));
        assert!(watched.parsed("team", "kv").is_none());
        assert!(watched.is_empty());
    }

    #[test]
    fn a_relist_drops_what_it_no_longer_lists_and_not_synced_until_listed() {
        let watched = WatchedClasses::fed(&[Event::Init, Event::InitApply(class("a", "1", None))]);
        assert!(!watched.synced());
        assert!(
            watched.parsed("team", "a").is_none(),
            "not live before InitDone"
        );
        watched.state.apply(&Event::InitDone);
        watched.state.apply(&Event::Init);
        watched
            .state
            .apply(&Event::InitApply(class("b", "1", None)));
        watched.state.apply(&Event::InitDone);
        assert!(watched.parsed("team", "a").is_none());
        assert!(watched.parsed("team", "b").is_some());
    }

    #[tokio::test]
    async fn the_listed_flag_turns_only_when_the_first_list_is_complete() {
        use futures::StreamExt;
        let listed = Arc::new(AtomicBool::new(false));
        let events: Vec<Result<Event<DynamicObject>, ()>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(class("a", "1", None))),
            Err(()),
            Ok(Event::InitDone),
        ];
        let mut stream = std::pin::pin!(flag_listed(futures::stream::iter(events), listed.clone()));
        for _ in 0..3 {
            stream.next().await;
            assert!(!listed.load(Ordering::Acquire));
        }
        stream.next().await;
        assert!(listed.load(Ordering::Acquire));
    }

    #[test]
    fn an_oversized_class_is_kept_as_its_refusal_only() {
        let objects = format!("array: []{}", " ".repeat(provider_class::MAX_OBJECTS_BYTES));
        let watched = WatchedClasses::fed(&[
            Event::Init,
            Event::InitApply(class("big", "1", Some(&objects))),
            Event::InitDone,
        ]);
        let parsed = watched.parsed("team", "big").unwrap();
        let message = parsed.as_ref().as_ref().unwrap_err().to_string();
        assert!(
            message.starts_with("SecretProviderClass big: parameters.objects"),
            "{message}"
        );
        assert!(message.contains("at most 65536 bytes"), "{message}");
    }
}
