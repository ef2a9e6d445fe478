//! The engine with a scripted store (no network): what a user sees in the
//! files when the store changes, fails, or throttles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use secret_injector_sidecar::{
    engine::{Engine, EngineError},
    metrics::Metrics,
    plan::Backoff,
    providers::{FetchError, Fetched, Provider, Providers},
    secret::SecretBytes,
    status::Status,
    writer::AtomicWriter,
};
use shared::{InjectionSpec, ObjectFormat, SecretRef};

/// Per reference: (value, version) or the error to answer with.
type Answers = HashMap<String, Result<(String, String), FetchError>>;

/// A store whose answers the test sets, counting requests per reference.
#[derive(Clone, Default)]
struct ScriptedStore {
    answers: Arc<Mutex<Answers>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl ScriptedStore {
    fn set(&self, uri: &str, value: &str, version: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(uri.into(), Ok((value.into(), version.into())));
    }
    fn fail(&self, uri: &str, error: FetchError) {
        self.answers.lock().unwrap().insert(uri.into(), Err(error));
    }
    fn calls(&self, uri: &str) -> usize {
        self.calls.lock().unwrap().get(uri).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Provider for ScriptedStore {
    async fn fetch(
        &self,
        source: &SecretRef,
        _: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        let uri = source.to_string();
        *self.calls.lock().unwrap().entry(uri.clone()).or_default() += 1;
        match self.answers.lock().unwrap().get(&uri) {
            Some(Ok((value, version))) => Ok(Fetched::new(
                SecretBytes::from(value.clone()),
                version.clone(),
            )),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FetchError::NotFound(format!("{uri} does not exist").into())),
        }
    }
}

const USER: &str = "azure://kv-aks-csi-weu-01/secrets/db-user";
const PASS: &str = "azure://kv-aks-csi-weu-01/secrets/db-pass";

fn spec(extra: &str) -> InjectionSpec {
    InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{{"file":"db-user","source":"{USER}"}},{{"file":"db-pass","source":"{PASS}"}}{extra}],
            "mountPath":"/mnt/secrets-store","rotation":"1m","filePermission":"0640"}}"#
    ))
    .unwrap()
}

fn engine(store: &ScriptedStore, dir: &std::path::Path, spec: InjectionSpec) -> Engine {
    let providers = Providers::new().with(shared::Store::Azure, Box::new(store.clone()));
    Engine::new(spec, providers, AtomicWriter::new(dir)).with_backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[tokio::test]
async fn first_round_writes_every_file_with_its_mode_and_status() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "mysupersecretpassword", "p1");
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    let report = engine.init(Duration::from_secs(5)).await.unwrap();
    assert!(report.wrote);
    assert_eq!(read(dir.path(), "db-user"), "administrator");
    assert_eq!(read(dir.path(), "db-pass"), "mysupersecretpassword");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("db-pass"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    let status = Status::read(dir.path()).unwrap();
    assert_eq!(status.objects["db-pass"].version.as_deref(), Some("p1"));
    assert!(status.objects["db-pass"].last_success.is_some());
    assert!(status.objects["db-pass"].error.is_none());
}

#[tokio::test]
async fn identical_objects_are_fetched_once_per_round() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");
    let dir = tempfile::tempdir().unwrap();
    let same_again = format!(r#",{{"file":"also-user","source":"{USER}"}}"#);
    let mut engine = engine(&store, dir.path(), spec(&same_again));
    let report = engine.round().await.unwrap();
    assert_eq!(report.fetches, 2);
    assert_eq!(store.calls(USER), 1);
    assert_eq!(read(dir.path(), "also-user"), "administrator");
}

#[tokio::test]
async fn unchanged_store_means_no_rewrite_and_a_rotation_means_a_new_set() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "old", "p1");
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    engine.round().await.unwrap();
    let data_before = std::fs::read_link(dir.path().join("..data")).unwrap();
    let again = engine.round().await.unwrap();
    assert!(!again.wrote);
    assert_eq!(
        std::fs::read_link(dir.path().join("..data")).unwrap(),
        data_before
    );

    store.set(PASS, "new", "p2");
    let rotated = engine.round().await.unwrap();
    assert!(rotated.wrote);
    assert_eq!(
        rotated
            .changed
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>(),
        ["db-pass"]
    );
    assert_eq!(read(dir.path(), "db-pass"), "new");
    assert_eq!(
        Status::read(dir.path()).unwrap().objects["db-pass"]
            .version
            .as_deref(),
        Some("p2")
    );
}

#[tokio::test]
async fn store_down_keeps_the_last_good_files_byte_identical() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    engine.round().await.unwrap();
    for uri in [USER, PASS] {
        store.fail(
            uri,
            FetchError::Unavailable("503 Service Unavailable".into()),
        );
    }
    let report = engine.round().await.unwrap();
    assert!(!report.wrote);
    assert_eq!(report.failures.len(), 2);
    assert_eq!(read(dir.path(), "db-pass"), "pw");
    assert_eq!(read(dir.path(), "db-user"), "administrator");
    let status = Status::read(dir.path()).unwrap();
    assert_eq!(
        status.objects["db-pass"].error_kind.as_deref(),
        Some("unavailable")
    );
    // Recovery on the next success clears the error.
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw2", "p2");
    engine.round().await.unwrap();
    assert_eq!(read(dir.path(), "db-pass"), "pw2");
    assert!(
        Status::read(dir.path()).unwrap().objects["db-pass"]
            .error
            .is_none()
    );
}

#[tokio::test]
async fn one_failing_object_does_not_stop_the_others() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let mut engine = engine(&store, dir.path(), spec("")).with_metrics(metrics.clone());
    engine.round().await.unwrap();
    store.fail(
        USER,
        FetchError::Forbidden("access denied to db-user".into()),
    );
    store.set(PASS, "pw2", "p2");
    let report = engine.round().await.unwrap();
    assert!(report.wrote);
    assert_eq!(read(dir.path(), "db-pass"), "pw2");
    assert_eq!(read(dir.path(), "db-user"), "administrator");
    let status = Status::read(dir.path()).unwrap();
    assert_eq!(
        status.objects["db-user"].error_kind.as_deref(),
        Some("forbidden")
    );
    assert!(status.objects["db-user"].last_failure.is_some());
    assert!(status.objects["db-pass"].error.is_none());
    let metrics = metrics.encode();
    for line in [
        "secret_injector_sidecar_object_failing{file=\"db-user\"} 1",
        "secret_injector_sidecar_object_failing{file=\"db-pass\"} 0",
        "secret_injector_sidecar_fetches_total{outcome=\"forbidden\"} 1",
        "secret_injector_sidecar_writes_total 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test]
async fn init_fails_at_once_on_a_denial_with_one_line_and_no_partial_set() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.fail(
        PASS,
        FetchError::Forbidden("caller is not authorized to get secret db-pass".into()),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    // A policy denial cannot mend by retrying: refused before the deadline.
    let started = std::time::Instant::now();
    let err = engine.init(Duration::from_secs(60)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let EngineError::Refused(line) = err else {
        panic!("{err}")
    };
    assert!(!line.contains('\n'));
    assert!(line.contains("cannot fetch db-pass from azure://kv-aks-csi-weu-01/secrets/db-pass (vault https://kv-aks-csi-weu-01.vault.azure.net): 403 Forbidden"), "{line}");
    assert_eq!(store.calls(PASS), 1, "asked once, not retried");
    assert!(!dir.path().join("..data").exists());
    assert!(
        !dir.path().join("db-user").exists(),
        "a partial set was written"
    );
}

#[tokio::test]
async fn init_succeeds_once_the_store_recovers() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.fail(PASS, FetchError::Unavailable("down".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    let recover = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        recover.set(PASS, "pw", "p1");
    });
    engine.init(Duration::from_secs(5)).await.unwrap();
    assert_eq!(read(dir.path(), "db-pass"), "pw");
}

#[tokio::test]
async fn a_restarted_sidecar_resumes_without_rewriting() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");
    let dir = tempfile::tempdir().unwrap();
    engine(&store, dir.path(), spec(""))
        .init(Duration::from_secs(1))
        .await
        .unwrap();
    let mut restarted = engine(&store, dir.path(), spec(""));
    assert!(restarted.resume().unwrap());
    assert!(!restarted.round().await.unwrap().wrote);
}

#[tokio::test]
async fn run_stops_promptly_on_shutdown() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path(), spec(""));
    // The interval is an hour: returning at all means shutdown cut the wait.
    let run = engine.run(
        Duration::from_secs(3600),
        tokio::time::sleep(Duration::from_millis(50)),
    );
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("run ignored shutdown")
        .unwrap();
}

#[tokio::test]
async fn metrics_are_served_over_http() {
    let metrics = Metrics::new();
    metrics.writes.inc();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    tokio::spawn(secret_injector_sidecar::metrics::serve(addr, metrics));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        match reqwest::get(format!("http://{addr}/metrics")).await {
            Ok(r) => break r.text().await.unwrap(),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        body.contains("secret_injector_sidecar_writes_total 1"),
        "{body}"
    );
}

/// (complete, first set, changed files, failing files)
type PublishedRound = (bool, bool, Vec<String>, Vec<String>);

/// Records what the engine hands to the Kubernetes side; refuses the first
/// `refusals` publishes, as an apiserver would without the Role.
#[derive(Clone, Default)]
struct RecordingPublisher {
    rounds: Arc<Mutex<Vec<PublishedRound>>>,
    notes: Arc<Mutex<Vec<&'static str>>>,
    /// Each Event's note as it would be published.
    messages: Arc<Mutex<Vec<String>>>,
    refusals: Arc<Mutex<usize>>,
    /// Answer every publish with this permanent error (a Secret not ours).
    refused: Arc<Mutex<Option<String>>>,
}

#[async_trait]
impl secret_injector_sidecar::engine::Publish for RecordingPublisher {
    async fn publish(
        &mut self,
        _: &InjectionSpec,
        round: &secret_injector_sidecar::cluster::RoundFacts<'_>,
    ) -> Result<(), secret_injector_sidecar::engine::PublishError> {
        let names = |files: &[shared::FileName]| files.iter().map(|f| f.to_string()).collect();
        self.rounds.lock().unwrap().push((
            round.complete,
            round.first_set,
            names(round.changed),
            round.failures.iter().map(|(f, _)| f.to_string()).collect(),
        ));
        let notes = secret_injector_sidecar::cluster::notes_for(round);
        self.notes
            .lock()
            .unwrap()
            .extend(notes.iter().map(|n| n.reason));
        self.messages
            .lock()
            .unwrap()
            .extend(notes.iter().map(|n| n.bounded_message()));
        if let Some(message) = self.refused.lock().unwrap().clone() {
            return Err(secret_injector_sidecar::engine::PublishError::permanent(
                message,
            ));
        }
        let mut refusals = self.refusals.lock().unwrap();
        if *refusals > 0 {
            *refusals -= 1;
            return Err("cannot sync Secret default/k8s-secret: forbidden".into());
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_init_run_waits_for_the_synced_secret_and_retries_it() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "mysupersecretpassword", "p1");
    let dir = tempfile::tempdir().unwrap();
    let publisher = RecordingPublisher::default();
    *publisher.refusals.lock().unwrap() = 2;
    let mut engine =
        engine(&store, dir.path(), spec("")).with_publisher(Box::new(publisher.clone()));
    let report = engine.init(Duration::from_secs(5)).await.unwrap();
    assert!(report.publish_error.is_none());
    let rounds = publisher.rounds.lock().unwrap().clone();
    assert_eq!(rounds.len(), 3, "two refusals, then success: {rounds:?}");
    // The first set is announced once, by the round that wrote it.
    assert!(rounds[0].1 && !rounds[1].1 && !rounds[2].1);
    assert_eq!(*publisher.notes.lock().unwrap(), ["SecretsMounted"]);
}

#[tokio::test]
async fn a_secret_that_never_syncs_fails_the_init_run_with_the_reason() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "mysupersecretpassword", "p1");
    let dir = tempfile::tempdir().unwrap();
    let publisher = RecordingPublisher::default();
    *publisher.refusals.lock().unwrap() = usize::MAX;
    let mut engine = engine(&store, dir.path(), spec("")).with_publisher(Box::new(publisher));
    let err = engine
        .init(Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot sync Secret default/k8s-secret: forbidden"),
        "{err}"
    );
    // The files are there anyway: only the Secret is missing.
    assert_eq!(read(dir.path(), "db-user"), "administrator");
}

/// H2: a Secret that is not ours fails the init run at once, not at its
/// deadline, with the refusal's words.
#[tokio::test]
async fn h2_a_refused_secret_fails_the_init_run_at_once() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "mysupersecretpassword", "p1");
    let dir = tempfile::tempdir().unwrap();
    let publisher = RecordingPublisher::default();
    let refusal = "Secret default/k8s-secret exists and was not created by secret-injector for SecretProviderClass kv (it has no label secrets-store.csi.k8s.io/managed: \"true\"); secret-injector never takes over a Secret; delete it or rename secretObjects[].secretName";
    *publisher.refused.lock().unwrap() = Some(refusal.to_owned());
    let mut engine =
        engine(&store, dir.path(), spec("")).with_publisher(Box::new(publisher.clone()));
    let started = std::time::Instant::now();
    let err = engine.init(Duration::from_secs(60)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, EngineError::Refused(_)), "{err}");
    assert_eq!(err.to_string(), format!("secret-injector: {refusal}"));
    assert_eq!(publisher.rounds.lock().unwrap().len(), 1, "retried");
}

#[tokio::test]
async fn rotation_and_failure_events_follow_the_store() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "mysupersecretpassword", "p1");
    let dir = tempfile::tempdir().unwrap();
    let publisher = RecordingPublisher::default();
    let mut engine =
        engine(&store, dir.path(), spec("")).with_publisher(Box::new(publisher.clone()));
    engine.init(Duration::from_secs(5)).await.unwrap();
    store.set(PASS, "rotated", "p2");
    engine.round().await.unwrap();
    store.fail(PASS, FetchError::Unavailable("503".into()));
    engine.round().await.unwrap();
    engine.round().await.unwrap();
    store.set(PASS, "rotated", "p2");
    engine.round().await.unwrap();
    assert_eq!(
        *publisher.notes.lock().unwrap(),
        [
            "SecretsMounted",
            "SecretRotationComplete",
            "SecretRotationFailed",
            "SecretRotationRecovered"
        ]
    );
    let rounds = publisher.rounds.lock().unwrap().clone();
    assert_eq!(rounds[1].2, ["db-pass"]);
}

#[tokio::test]
async fn l2_a_ten_kilobyte_store_error_is_bounded_in_the_status_file_events_and_termination_message()
 {
    use secret_injector_sidecar::text::{DETAIL_LIMIT, EVENT_NOTE_LIMIT, TERMINATION_LIMIT};
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    // A store (or a proxy in front of it) answering with a 10 KB page.
    let huge = format!(
        "<html>\n{}\n{}</html>",
        "e".repeat(5 * 1024),
        "é".repeat(2600)
    );
    let mut extra = String::new();
    for i in 0..20 {
        let uri = format!("azure://kv-aks-csi-weu-01/secrets/extra-{i}");
        extra.push_str(&format!(r#",{{"file":"extra-{i}","source":"{uri}"}}"#));
        store.fail(&uri, FetchError::Unavailable(huge.as_str().into()));
    }
    store.fail(PASS, FetchError::Unavailable(huge.as_str().into()));
    let dir = tempfile::tempdir().unwrap();
    let publisher = RecordingPublisher::default();
    let mut engine =
        engine(&store, dir.path(), spec(&extra)).with_publisher(Box::new(publisher.clone()));
    let err = engine
        .init(Duration::from_millis(200))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.len() <= TERMINATION_LIMIT, "{}", err.len());
    assert!(!err.contains('\n'));
    assert!(err.starts_with("secret-injector: cannot fetch"), "{err}");

    let status = Status::read(dir.path()).unwrap();
    let error = status.objects["db-pass"].error.clone().unwrap();
    assert!(error.len() <= DETAIL_LIMIT + 32, "{}", error.len());
    assert!(!error.contains('\n'));

    let messages = publisher.messages.lock().unwrap().clone();
    assert!(!messages.is_empty());
    for message in messages {
        assert!(message.len() <= EVENT_NOTE_LIMIT, "{}", message.len());
    }
}

/// M4: what is on disk seeds the last-good values only when the status file
/// agrees with it; otherwise the sidecar fetches first.
#[tokio::test]
async fn m4_resume_seeds_last_good_values_only_when_consistent_with_the_status_file() {
    let store = ScriptedStore::default();
    store.set(USER, "administrator", "v1");
    store.set(PASS, "pw", "p1");

    // A set with no status file beside it (planted, or a status lost).
    let dir = tempfile::tempdir().unwrap();
    let planted: secret_injector_sidecar::writer::FileSet = ["db-user", "db-pass"]
        .into_iter()
        .map(|f| {
            (
                shared::FileName::new(f).unwrap(),
                secret_injector_sidecar::writer::FileEntry {
                    data: SecretBytes::from("planted".to_owned()),
                    mode: 0o640,
                },
            )
        })
        .collect();
    AtomicWriter::new(dir.path()).write(&planted).unwrap();
    let mut fresh = engine(&store, dir.path(), spec(""));
    assert!(!fresh.resume().unwrap(), "seeded from a set without status");
    // The store is down: the planted value is not kept as "last good".
    store.fail(PASS, FetchError::Unavailable("down".into()));
    let report = fresh.round().await.unwrap();
    assert!(!report.complete && !report.wrote);
    store.set(PASS, "pw", "p1");
    assert!(fresh.round().await.unwrap().wrote);
    assert_eq!(read(dir.path(), "db-pass"), "pw");

    // Consistent: resumes without a rewrite.
    let mut restarted = engine(&store, dir.path(), spec(""));
    assert!(restarted.resume().unwrap());
    assert!(!restarted.round().await.unwrap().wrote);

    // A status entry without a version, or for another source: fresh.
    let mut status = Status::read(dir.path()).unwrap();
    status.objects.get_mut("db-pass").unwrap().version = None;
    status.write(dir.path()).unwrap();
    assert!(!engine(&store, dir.path(), spec("")).resume().unwrap());
    let mut status = Status::read(dir.path()).unwrap();
    let pass = status.objects.get_mut("db-pass").unwrap();
    pass.version = Some("p1".into());
    pass.source = "azure://elsewhere/secrets/db-pass".into();
    status.write(dir.path()).unwrap();
    assert!(!engine(&store, dir.path(), spec("")).resume().unwrap());

    // A file the spec does not name: fresh.
    let mut status = Status::read(dir.path()).unwrap();
    status.objects.get_mut("db-pass").unwrap().source = PASS.into();
    status.write(dir.path()).unwrap();
    assert!(engine(&store, dir.path(), spec("")).resume().unwrap());
    let mut with_extra = AtomicWriter::new(dir.path())
        .read_current()
        .unwrap()
        .unwrap();
    with_extra.insert(
        shared::FileName::new("extra").unwrap(),
        secret_injector_sidecar::writer::FileEntry {
            data: SecretBytes::from("x".to_owned()),
            mode: 0o640,
        },
    );
    AtomicWriter::new(dir.path()).write(&with_extra).unwrap();
    assert!(!engine(&store, dir.path(), spec("")).resume().unwrap());
}

fn aws_engine(store: &ScriptedStore, dir: &std::path::Path, objects: &str) -> Engine {
    let spec = InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{objects}],"mountPath":"/mnt/secrets-store","rotation":"1m","filePermission":"0644"}}"#
    ))
    .unwrap();
    let providers = Providers::new().with(shared::Store::Aws, Box::new(store.clone()));
    Engine::new(spec, providers, AtomicWriter::new(dir)).with_backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

// The AWS provider's jmesPath files and a `#key` of the same secret come
// from one fetch, each file with its own part of the value.
#[tokio::test]
async fn json_paths_and_keys_of_one_secret_share_one_fetch() {
    let store = ScriptedStore::default();
    store.set(
        "aws://us-east-1/db",
        r#"{"username":"admin","password":"pw"}"#,
        "v1",
    );
    let dir = tempfile::tempdir().unwrap();
    let mut engine = aws_engine(
        &store,
        dir.path(),
        r#"{"file":"db","source":"aws://us-east-1/db"},
           {"file":"user","source":"aws://us-east-1/db","jsonPath":"username"},
           {"file":"pass","source":"aws://us-east-1/db#password"}"#,
    );
    engine.init(Duration::from_secs(5)).await.unwrap();
    assert_eq!(read(dir.path(), "user"), "admin");
    assert_eq!(read(dir.path(), "pass"), "pw");
    assert_eq!(
        read(dir.path(), "db"),
        r#"{"username":"admin","password":"pw"}"#
    );
    assert_eq!(store.calls("aws://us-east-1/db"), 1);
}

// A region that cannot be reached is replaced by the failover region's
// object; one that answers "denied" or "not found" is not.
#[tokio::test]
async fn the_failover_is_asked_only_when_the_primary_is_unreachable() {
    const PRIMARY: &str = "aws://us-west-2/app";
    const FAILOVER: &str = "aws://us-east-2/app";
    let objects = format!(r#"{{"file":"app","source":"{PRIMARY}","failover":"{FAILOVER}"}}"#);
    let store = ScriptedStore::default();
    store.set(FAILOVER, "from-us-east-2", "f1");
    store.fail(
        PRIMARY,
        FetchError::Unavailable("500 InternalServiceError".into()),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut engine = aws_engine(&store, dir.path(), &objects);
    engine.init(Duration::from_secs(5)).await.unwrap();
    assert_eq!(read(dir.path(), "app"), "from-us-east-2");
    let status = Status::read(dir.path()).unwrap();
    assert_eq!(status.objects["app"].version.as_deref(), Some("f1"));

    store.set(PRIMARY, "from-us-west-2", "p1");
    engine.round().await.unwrap();
    assert_eq!(read(dir.path(), "app"), "from-us-west-2");
    assert_eq!(store.calls(FAILOVER), 1);

    store.fail(
        PRIMARY,
        FetchError::Forbidden("AccessDeniedException".into()),
    );
    engine.round().await.unwrap();
    assert_eq!(
        store.calls(FAILOVER),
        1,
        "a denial is an answer, not an outage"
    );
    assert_eq!(read(dir.path(), "app"), "from-us-west-2");
}
