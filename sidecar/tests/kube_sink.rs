//! The Kubernetes side against an in-process fake apiserver (plain HTTP, no
//! cluster): synced Secrets are created, updated only when they are this
//! class's and with a resourceVersion precondition, and any other Secret is
//! refused at once with a Warning Event and never written (H2). Events survive
//! a failed publish (L2). All of it at trace level without a value in the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, VecDeque},
    convert::Infallible,
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use secret_injector_sidecar::{
    cluster::{MANAGED_LABEL, PROVIDER_CLASS_ANNOTATION, PodIdentity},
    engine::{Engine, EngineError},
    kube_sink::KubeSink,
    plan::Backoff,
    providers::{FetchError, Fetched, Provider, Providers},
    secret::SecretBytes,
    writer::AtomicWriter,
};
use serde_json::{Value, json};
use shared::{InjectionSpec, ObjectFormat, SecretRef};

const NS: &str = "default";
const SECRET: &str = "k8s-secret";
const USER: &str = "azure://kv-aks-csi-weu-01/secrets/db-user";
const PASS: &str = "azure://kv-aks-csi-weu-01/secrets/db-pass";
const CANARY: &str = "CANARY-synced-value-never-logged-3e9d";
const THEIRS: &str = "CANARY-someone-elses-value-never-logged-8b21";

/// One request as the fake apiserver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Value,
}

#[derive(Default)]
struct ApiState {
    secrets: BTreeMap<String, Value>,
    requests: Vec<Seen>,
    next_rv: u64,
    /// Status codes to answer the next Event creations with (then 201).
    event_failures: VecDeque<u16>,
    /// A status code and message to answer the next GET of a Secret with.
    get_failure: Option<(u16, String)>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<ApiState>>);

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

impl FakeApi {
    fn handle(&self, seen: Seen) -> (u16, Value) {
        let mut state = self.0.lock().unwrap();
        state.requests.push(seen.clone());
        let secrets = format!("/api/v1/namespaces/{NS}/secrets/");
        if let Some(name) = seen.path.strip_prefix(&secrets) {
            let name = name.to_owned();
            return match seen.method {
                Method::GET => {
                    if let Some((code, message)) = state.get_failure.take() {
                        return status(code, "InternalError", &message);
                    }
                    match state.secrets.get(&name) {
                        Some(secret) => (200, secret.clone()),
                        None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
                    }
                }
                Method::PATCH => {
                    let stored_rv = state
                        .secrets
                        .get(&name)
                        .and_then(|s| s["metadata"]["resourceVersion"].as_str())
                        .map(str::to_owned);
                    // A resourceVersion in an apply is a precondition.
                    if let Some(wanted) = seen.body["metadata"]["resourceVersion"].as_str() {
                        match stored_rv {
                            None => {
                                return status(
                                    409,
                                    "Conflict",
                                    "resourceVersion should not be set on objects to be created",
                                );
                            }
                            Some(rv) if rv != wanted => {
                                return status(
                                    409,
                                    "Conflict",
                                    "the object has been modified; please apply your changes to the latest version and try again",
                                );
                            }
                            Some(_) => {}
                        }
                    }
                    state.next_rv += 1;
                    let mut object = seen.body.clone();
                    object["metadata"]["resourceVersion"] = json!(format!("rv-{}", state.next_rv));
                    state.secrets.insert(name, object.clone());
                    (200, object)
                }
                _ => status(405, "MethodNotAllowed", "no"),
            };
        }
        // A new Event (POST) or the next of a series (PATCH).
        if seen
            .path
            .starts_with(&format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"))
        {
            return match state.event_failures.pop_front() {
                Some(403) => status(403, "Forbidden", "events.events.k8s.io is forbidden"),
                Some(code) => status(code, "InternalError", "etcdserver: request timed out"),
                None => (201, seen.body),
            };
        }
        if seen.path.contains("/secretproviderclasspodstatuses/") {
            return (200, seen.body);
        }
        status(404, "NotFound", "no such path in the fake apiserver")
    }

    fn requests(&self) -> Vec<Seen> {
        self.0.lock().unwrap().requests.clone()
    }

    fn secret_requests(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/secrets/"))
            .collect()
    }

    /// The Events sent (created, or the next of a series), as (type, reason,
    /// note).
    fn events(&self) -> Vec<(String, String, String)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/events"))
            .map(|r| {
                let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_owned();
                (s("type"), s("reason"), s("note"))
            })
            .collect()
    }

    fn put_secret(&self, name: &str, secret: Value) {
        self.0
            .lock()
            .unwrap()
            .secrets
            .insert(name.to_owned(), secret);
    }

    fn secret(&self, name: &str) -> Option<Value> {
        self.0.lock().unwrap().secrets.get(name).cloned()
    }

    async fn serve(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = self.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let api = api.clone();
                        async move {
                            let method = req.method().clone();
                            let path = req.uri().path().to_owned();
                            let query = req.uri().query().unwrap_or_default().to_owned();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            let (code, answer) = api.handle(Seen {
                                method,
                                path,
                                query,
                                body,
                            });
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(StatusCode::from_u16(code).unwrap())
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer.to_string())))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }
}

/// A store answering with fixed values; `set` changes one.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<BTreeMap<String, (String, String)>>>);

impl Store {
    fn set(&self, uri: &str, value: &str, version: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(uri.into(), (value.into(), version.into()));
    }
}

#[async_trait]
impl Provider for Store {
    async fn fetch(
        &self,
        source: &SecretRef,
        _: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        match self.0.lock().unwrap().get(&source.to_string()) {
            Some((value, version)) => Ok(Fetched::new(
                SecretBytes::from(value.clone()),
                version.clone(),
            )),
            None => Err(FetchError::NotFound("no such secret".into())),
        }
    }
}

fn spec() -> InjectionSpec {
    InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{{"file":"db-user","source":"{USER}"}},{{"file":"db-pass","source":"{PASS}"}}],
            "mountPath":"/mnt/secrets-store","rotation":"1m","filePermission":"0640",
            "providerClass":"kv",
            "syncTargets":[{{"secretName":"{SECRET}","type":"Opaque","data":{{"username":"db-user","password":"db-pass"}}}}]}}"#
    ))
    .unwrap()
}

fn pod() -> PodIdentity {
    PodIdentity {
        name: "app-5d59d67564-x2x7q".into(),
        namespace: NS.into(),
        uid: "0b1e7c9a-0000-4000-8000-000000000001".into(),
        service_account: "app".into(),
    }
}

/// Log lines captured in-process, at trace level, for the whole test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// No value (ours or someone else's, plain or as the base64 a request
    /// body carries) reached the log.
    fn assert_no_value(&self) {
        let text = self.text();
        assert!(text.len() > 200, "trace logging produced almost nothing");
        for value in ["CANARY-", THEIRS, "administrator"] {
            assert!(!text.contains(value), "{value} reached the log");
        }
        for value in [CANARY, THEIRS, "administrator", "kept"] {
            let encoded = base64_of(value);
            assert!(
                !text.contains(&encoded),
                "{value} reached the log as base64"
            );
        }
    }
}

struct Fixture {
    api: FakeApi,
    store: Store,
    dir: tempfile::TempDir,
    logs: Logs,
    _guard: tracing::subscriber::DefaultGuard,
}

impl Fixture {
    async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let logs = Logs::default();
        let guard = logs.install();
        let store = Store::default();
        store.set(USER, "administrator", "u1");
        store.set(PASS, CANARY, "p1");
        Self {
            api: FakeApi::default(),
            store,
            dir: tempfile::tempdir().unwrap(),
            logs,
            _guard: guard,
        }
    }

    async fn engine(&self) -> Engine {
        let addr = self.api.clone().serve().await;
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let sink = KubeSink::with_client(&spec(), pod(), client).unwrap();
        let providers = Providers::new().with(shared::Store::Azure, Box::new(self.store.clone()));
        Engine::new(spec(), providers, AtomicWriter::new(self.dir.path()))
            .with_backoff(Backoff {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(100),
            })
            .with_publisher(Box::new(sink))
    }
}

fn foreign_secret(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS, "resourceVersion": "41",
                     "labels": labels, "annotations": annotations},
        "type": "Opaque",
        "data": {"password": base64_of(THEIRS), "other-key": base64_of("kept")},
    })
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn h2_an_existing_secret_not_made_by_secret_injector_is_refused_at_once_and_never_written() {
    for (labels, annotations, why) in [
        (
            json!({}),
            json!({}),
            "it has no label secrets-store.csi.k8s.io/managed",
        ),
        (
            json!({MANAGED_LABEL: "true"}),
            json!({PROVIDER_CLASS_ANNOTATION: "other-class"}),
            "names \"other-class\"",
        ),
    ] {
        let f = Fixture::start().await;
        let before = foreign_secret(labels, annotations);
        f.api.put_secret(SECRET, before.clone());
        let mut engine = f.engine().await;
        let started = Instant::now();
        let err = engine.init(Duration::from_secs(60)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "not at once");
        assert!(matches!(err, EngineError::Refused(_)), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(
                "secret-injector: Secret default/k8s-secret exists and was not created by secret-injector for SecretProviderClass kv ("
            ),
            "{message}"
        );
        assert!(message.contains(why), "{message}");
        assert!(
            message.ends_with("secret-injector never takes over a Secret; delete it or rename secretObjects[].secretName"),
            "{message}"
        );

        // Read, never written: no apply, no owner reference, nothing changed.
        let seen = f.api.secret_requests();
        assert!(
            seen.iter().all(|r| r.method == Method::GET),
            "{:?}",
            seen.iter().map(|r| &r.method).collect::<Vec<_>>()
        );
        assert_eq!(f.api.secret(SECRET).unwrap(), before);

        // The Warning Event says the same.
        let events = f.api.events();
        let refused: Vec<_> = events
            .iter()
            .filter(|(_, reason, _)| reason == "SecretSyncRefused")
            .collect();
        assert_eq!(refused.len(), 1, "{events:?}");
        assert_eq!(refused[0].0, "Warning");
        assert_eq!(
            format!("secret-injector: {}", refused[0].2),
            message,
            "the Event and the error differ"
        );
        // The files are there: only the Secret is refused.
        assert_eq!(
            std::fs::read_to_string(f.dir.path().join("db-pass")).unwrap(),
            CANARY
        );
        f.logs.assert_no_value();
        assert!(f.logs.text().contains("never takes over a Secret"));
    }
}

#[tokio::test]
async fn h2_an_absent_secret_is_created_then_updated_only_with_its_resource_version() {
    let f = Fixture::start().await;
    let mut engine = f.engine().await;
    engine.init(Duration::from_secs(10)).await.unwrap();

    let seen = f.api.secret_requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].method, Method::GET);
    let create = &seen[1];
    assert_eq!(create.method, Method::PATCH);
    assert!(!create.query.contains("force=true"), "{}", create.query);
    assert!(create.body["metadata"].get("resourceVersion").is_none());
    assert_eq!(
        create.body["metadata"]["annotations"][PROVIDER_CLASS_ANNOTATION],
        "kv"
    );
    assert_eq!(create.body["metadata"]["labels"][MANAGED_LABEL], "true");
    assert_eq!(
        create.body["metadata"]["ownerReferences"][0]["uid"],
        pod().uid
    );
    assert_eq!(create.body["data"]["password"], base64_of(CANARY));

    // A rotation: an update with the resourceVersion the create returned, no
    // second read.
    f.store.set(PASS, "CANARY-rotated", "p2");
    let report = engine.round().await.unwrap();
    assert!(report.publish_error.is_none(), "{:?}", report.publish_error);
    let seen = f.api.secret_requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].method, Method::PATCH);
    assert!(seen[2].query.contains("force=true"), "{}", seen[2].query);
    assert_eq!(seen[2].body["metadata"]["resourceVersion"], "rv-1");

    // Someone changes it in between: 409, then read again and checked.
    let mut changed = f.api.secret(SECRET).unwrap();
    changed["metadata"]["resourceVersion"] = json!("rv-99");
    f.api.put_secret(SECRET, changed);
    f.store.set(PASS, "CANARY-rotated-again", "p3");
    let report = engine.round().await.unwrap();
    let error = report.publish_error.unwrap();
    assert!(!error.permanent);
    assert!(error.message.contains("409 Conflict"), "{}", error.message);
    let report = engine.round().await.unwrap();
    assert!(report.publish_error.is_none(), "{:?}", report.publish_error);
    let seen = f.api.secret_requests();
    let last_two: Vec<_> = seen[seen.len() - 2..]
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(last_two, [Method::GET, Method::PATCH]);
    assert_eq!(
        seen.last().unwrap().body["metadata"]["resourceVersion"],
        "rv-99"
    );
    f.logs.assert_no_value();
}

#[tokio::test]
async fn h2_a_secret_this_class_made_for_another_pod_is_updated_with_its_resource_version() {
    let f = Fixture::start().await;
    f.api.put_secret(
        SECRET,
        foreign_secret(
            json!({MANAGED_LABEL: "true"}),
            json!({PROVIDER_CLASS_ANNOTATION: "kv"}),
        ),
    );
    let mut engine = f.engine().await;
    engine.init(Duration::from_secs(10)).await.unwrap();
    let seen = f.api.secret_requests();
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[1].method, Method::PATCH);
    assert!(seen[1].query.contains("force=true"));
    assert_eq!(seen[1].body["metadata"]["resourceVersion"], "41");
    // Only the target's keys are applied.
    let keys: Vec<&String> = seen[1].body["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["password", "username"]);
    f.logs.assert_no_value();
}

#[tokio::test]
async fn l2_a_huge_apiserver_error_is_bounded_and_a_failed_event_does_not_turn_events_off() {
    let f = Fixture::start().await;
    {
        let mut state = f.api.0.lock().unwrap();
        state.get_failure = Some((500, format!("{}\n{}", "x".repeat(6000), "é".repeat(2000))));
        // The first Event fails (not a permission): the next ones are sent.
        state.event_failures.push_back(500);
    }
    let mut engine = f.engine().await;
    let report = engine.round().await.unwrap();
    let error = report.publish_error.unwrap();
    assert!(!error.permanent);
    assert!(error.message.len() < 400, "{}", error.message.len());
    assert!(!error.message.contains('\n'));
    assert!(
        error
            .message
            .starts_with("cannot read Secret default/k8s-secret: 500"),
        "{}",
        error.message
    );

    // The next round syncs it; a rotation is then announced.
    engine.round().await.unwrap();
    f.store.set(PASS, "CANARY-rotated", "p2");
    engine.round().await.unwrap();
    let reasons: Vec<String> = f.api.events().into_iter().map(|(_, r, _)| r).collect();
    // The failed first one (SecretsMounted) was attempted, the rotation sent.
    assert_eq!(reasons, ["SecretsMounted", "SecretRotationComplete"]);
    assert!(f.logs.text().contains("the next one will be tried"));

    // A 403 turns them off: said once, no more attempts.
    f.api.0.lock().unwrap().event_failures.push_back(403);
    f.store.set(PASS, "CANARY-rotated-2", "p3");
    engine.round().await.unwrap();
    f.store.set(PASS, "CANARY-rotated-3", "p4");
    engine.round().await.unwrap();
    assert_eq!(f.api.events().len(), 3);
    assert!(f.logs.text().contains("no more will be tried"));
    f.logs.assert_no_value();
}
