//! The admission server through its router, in-process, with AdmissionReview
//! JSON as the apiserver sends it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use base64::Engine;
use http_body_util::BodyExt;
use rstest::rstest;
use secret_injector_webhook::{
    InjectorConfig,
    accounts::ServiceAccounts,
    classes::{Parsed, ProviderClasses},
    server::{self, AppState, Limits, MAX_BODY_BYTES},
};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};
use tower::ServiceExt;

const SEED_POD: &str = include_str!("data/review-seed-pod.json");
const SEED_POD_DRY_RUN: &str = include_str!("data/review-seed-pod-dry-run.json");
const NOT_OPTED_IN: &str = include_str!("data/review-not-opted-in.json");
const BAD_ANNOTATION: &str = include_str!("data/review-bad-annotation.json");
const DEPLOYMENT: &str = include_str!("data/review-deployment.json");
const NO_REQUEST: &str = include_str!("data/review-no-request.json");

fn state() -> AppState {
    AppState::new(InjectorConfig::default())
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = server::router(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

fn post(body: impl Into<Body>, content_type: &str) -> Request<Body> {
    Request::post("/mutate")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

async fn review(state: &AppState, body: &str) -> Value {
    let (status, bytes) = call(state, post(body.to_owned(), "application/json")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

fn uid_of(fixture: &str) -> String {
    serde_json::from_str::<Value>(fixture).unwrap()["request"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn decoded_patch(response: &Value) -> Vec<Value> {
    let encoded = response["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn seed_pod_is_answered_with_a_json_patch() {
    let state = state();
    let answer = review(&state, SEED_POD).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], uid_of(SEED_POD));
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    let patch = decoded_patch(&answer);
    let paths: Vec<&str> = patch
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"/spec/volumes/-"), "{paths:?}");
    assert!(paths.contains(&"/spec/initContainers"), "{paths:?}");
    assert!(paths.contains(&"/spec/containers/-"), "{paths:?}");
    assert!(
        paths.contains(&"/spec/containers/0/volumeMounts/-"),
        "{paths:?}"
    );

    // The patch applies to the object that was sent.
    let mut pod = serde_json::from_str::<Value>(SEED_POD).unwrap()["request"]["object"].clone();
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(patch)).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(
        pod["metadata"]["annotations"]["secret-injector.io/status"],
        "injected"
    );
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let state = state();
    let real = review(&state, SEED_POD).await;
    let dry = review(&state, SEED_POD_DRY_RUN).await;
    assert_eq!(decoded_patch(&real), decoded_patch(&dry));
}

#[rstest]
#[case::not_opted_in(NOT_OPTED_IN)]
#[case::not_a_pod(DEPLOYMENT)]
#[tokio::test]
async fn allowed_without_a_patch(#[case] fixture: &str) {
    let answer = review(&state(), fixture).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], uid_of(fixture));
    assert!(answer["response"].get("patch").is_none());
}

#[tokio::test]
async fn bad_annotation_is_denied_with_its_name_value_and_rule() {
    let answer = review(&state(), BAD_ANNOTATION).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("secret-injector: annotation secret-injector.io/rotation-interval: \"every minute\" is not valid"), "{message}");
    assert!(message.contains("1h30m"), "{message}");
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let (status, body) = call(&state(), post(SEED_POD.to_owned(), "text/plain")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&body).contains("application/json"));
}

#[tokio::test]
async fn json_with_charset_is_accepted() {
    let (status, _) = call(
        &state(),
        post(SEED_POD.to_owned(), "application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn body_over_the_cap_is_413() {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let (status, _) = call(&state(), post(big, "application/json")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[rstest]
#[case::not_json("{not json", "not an AdmissionReview")]
#[case::empty("", "not an AdmissionReview")]
#[case::no_request(NO_REQUEST, "has no request")]
#[case::wrong_shape("[1,2,3]", "not an AdmissionReview")]
#[tokio::test]
async fn unusable_reviews_are_400_with_a_message(#[case] body: &str, #[case] says: &str) {
    let state = state();
    let (status, body) = call(&state, post(body.to_owned(), "application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(says), "{text}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let state = state();
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(
        call(&state, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    state.ready.store(true, Ordering::Release);
    assert_eq!(call(&state, get("/readyz")).await.0, StatusCode::OK);

    review(&state, SEED_POD).await;
    review(&state, NOT_OPTED_IN).await;
    review(&state, BAD_ANNOTATION).await;
    call(&state, post("{", "application/json")).await;
    let (status, body) = call(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "secret_injector_admission_requests_total{outcome=\"injected\"} 1",
        "secret_injector_admission_requests_total{outcome=\"skipped\"} 1",
        "secret_injector_admission_requests_total{outcome=\"denied\"} 1",
        "secret_injector_admission_requests_total{outcome=\"bad_request\"} 1",
        "secret_injector_admission_injections_total 1",
        "secret_injector_admission_duration_seconds_count 4",
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
}

#[tokio::test]
async fn a_pod_that_is_not_a_pod_is_denied_with_the_reason() {
    let mut body: Value = serde_json::from_str(SEED_POD).unwrap();
    body["request"]["object"]["spec"]["containers"] = serde_json::json!("not a list");
    let answer = review(&state(), &body.to_string()).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("secret-injector: the object is not a valid Pod:"),
        "{message}"
    );
}

#[tokio::test]
async fn while_draining_answers_close_their_connection() {
    // After SIGTERM the replica still answers, but tells the apiserver not to
    // reuse the connection, so new requests go to replicas that stay.
    let state = state();
    let connection = |response: &axum::response::Response| {
        response
            .headers()
            .get(header::CONNECTION)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let response = server::router(state.clone())
        .oneshot(post(SEED_POD, "application/json"))
        .await
        .unwrap();
    assert_eq!(connection(&response), None);
    state.draining.store(true, Ordering::Release);
    let response = server::router(state.clone())
        .oneshot(post(SEED_POD, "application/json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(connection(&response).as_deref(), Some("close"));
}

/// A fixture with its review edited.
fn edited(fixture: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut review: Value = serde_json::from_str(fixture).unwrap();
    edit(&mut review);
    review.to_string()
}

fn post_to(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

async fn review_at(state: &AppState, path: &str, body: &str) -> Value {
    let (status, bytes) = call(state, post_to(path, body.to_owned())).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap()
}

async fn metrics_text(state: &AppState) -> String {
    let (_, body) = call(state, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    String::from_utf8(body).unwrap()
}

#[rstest]
#[case::mutate("/mutate", false)]
#[case::mutate_csi("/mutate-csi", true)]
#[tokio::test]
async fn a_pod_that_did_not_opt_in_is_allowed_whatever_it_contains(
    #[case] path: &str,
    #[case] decoded: bool,
) {
    let state = state();
    let body = edited(NOT_OPTED_IN, |r| {
        r["request"]["object"]["spec"]["containers"] = json!("hunter2-not-a-list");
    });
    let answer = review_at(&state, path, &body).await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    let warnings = answer["response"]["warnings"].to_string();
    // Only the CSI path decodes every pod (it may carry a volume to convert).
    if decoded {
        assert!(warnings.contains("does not decode as a Pod"), "{warnings}");
        assert!(warnings.contains("spec.containers"), "{warnings}");
        assert!(!warnings.contains("hunter2"), "{warnings}");
        let text = metrics_text(&state).await;
        assert!(
            text.contains("secret_injector_admission_requests_total{outcome=\"undecodable\"} 1"),
            "{text}"
        );
    } else {
        assert_eq!(answer["response"].get("warnings"), None, "{warnings}");
    }
}

#[tokio::test]
async fn an_opted_in_pod_that_is_not_a_pod_is_denied_without_quoting_values() {
    let body = edited(SEED_POD, |r| {
        r["request"]["object"]["spec"]["containers"] = json!("hunter2-not-a-list");
    });
    let answer = review(&state(), &body).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("at spec.containers (line 1, column"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn the_label_opts_in_as_the_annotation_does() {
    let body = edited(SEED_POD, |r| {
        let meta = &mut r["request"]["object"]["metadata"];
        let annotations = meta["annotations"].as_object_mut().unwrap();
        annotations.remove("secret-injector.io/inject");
        meta["labels"]["secret-injector.io/inject"] = json!("true");
    });
    let answer = review(&state(), &body).await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let patch = decoded_patch(&answer);
    assert!(
        patch
            .iter()
            .any(|op| op["path"] == "/metadata/annotations/secret-injector.io~1status"),
        "{patch:?}"
    );
}

/// A class `kv` in namespace `victim` only.
fn victim_class() -> BTreeMap<(String, String), Value> {
    let class: Value = serde_yaml_ng::from_str(include_str!(
        "../../manifests/examples/seed/01-secretProviderClass.yml"
    ))
    .unwrap();
    BTreeMap::from([(("victim".to_owned(), "kv".to_owned()), class)])
}

#[tokio::test]
async fn classes_are_read_from_the_request_namespace_never_the_objects() {
    let mut state = state();
    state.classes = Arc::new(victim_class());
    let body = edited(SEED_POD, |r| {
        r["request"]["namespace"] = json!("tenant");
        let meta = &mut r["request"]["object"]["metadata"];
        meta["namespace"] = json!("victim");
        meta["annotations"] = json!({
            "secret-injector.io/inject": "true",
            "secret-injector.io/secret-provider-class": "kv",
        });
    });
    let answer = review(&state, &body).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("SecretProviderClass \"kv\" not found in namespace tenant"),
        "{message}"
    );
}

#[rstest]
#[case::absent(None)]
#[case::empty(Some(""))]
#[tokio::test]
async fn a_pod_create_without_a_request_namespace_is_denied(#[case] namespace: Option<&str>) {
    let body = edited(NOT_OPTED_IN, |r| {
        let request = r["request"].as_object_mut().unwrap();
        match namespace {
            None => request.remove("namespace"),
            Some(n) => request.insert("namespace".to_owned(), json!(n)),
        };
    });
    let answer = review(&state(), &body).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("has no namespace"), "{message}");
}

/// Caches whose watches have not listed yet.
struct Unlisted;

impl ProviderClasses for Unlisted {
    fn parsed(&self, _: &str, _: &str) -> Option<Arc<Parsed>> {
        None
    }
    fn synced(&self) -> bool {
        false
    }
}

impl ServiceAccounts for Unlisted {
    fn identity(&self, _: &str, _: &str) -> secret_injector_webhook::accounts::AccountIdentity {
        Default::default()
    }
    fn synced(&self) -> bool {
        false
    }
}

#[rstest]
#[case::classes(true, false, "SecretProviderClasses not synced yet")]
#[case::accounts(false, true, "ServiceAccounts not synced yet")]
#[tokio::test]
async fn until_the_caches_are_listed_not_ready_and_opted_in_pods_are_denied(
    #[case] classes_unlisted: bool,
    #[case] accounts_unlisted: bool,
    #[case] says: &str,
) {
    let mut state = state();
    if classes_unlisted {
        state.classes = Arc::new(Unlisted);
    }
    if accounts_unlisted {
        state.accounts = Arc::new(Unlisted);
    }
    state.ready.store(true, Ordering::Release);
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    assert_eq!(
        call(&state, get("/readyz")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);

    let answer = review(&state, SEED_POD).await;
    assert_eq!(answer["response"]["allowed"], false);
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    // A pod that did not opt in needs no cache.
    let answer = review(&state, NOT_OPTED_IN).await;
    assert_eq!(answer["response"]["allowed"], true);
    let text = metrics_text(&state).await;
    assert!(
        text.contains("secret_injector_admission_requests_total{outcome=\"not_ready\"} 1"),
        "{text}"
    );
}

/// A review whose body never arrives.
fn stalled(path: &str) -> Request<Body> {
    post_to(
        path,
        Body::from_stream(futures::stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()),
    )
}

#[tokio::test]
async fn a_saturated_server_answers_503_and_still_answers_health() {
    let mut state = state();
    state.limits = Limits {
        max_concurrent_reviews: 2,
        request_timeout: Duration::from_secs(60),
    };
    let app = server::router(state.clone());
    // Both slots, across both review routes.
    let held = [
        tokio::spawn(app.clone().oneshot(stalled("/mutate"))),
        tokio::spawn(app.clone().oneshot(stalled("/mutate-csi"))),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = app
        .clone()
        .oneshot(post(SEED_POD, "application/json"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    for path in ["/healthz", "/metrics"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    for task in held {
        task.abort();
    }
    // The slots come back.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(review(&state, SEED_POD).await["response"]["allowed"], true);
    let text = metrics_text(&state).await;
    assert!(
        text.contains("secret_injector_admission_requests_total{outcome=\"overloaded\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_slow_review_gets_the_timeout_answer() {
    let mut state = state();
    state.limits = Limits {
        request_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (status, body) = call(&state, stalled("/mutate")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("longer than 200 ms"), "{text}");
    let text = metrics_text(&state).await;
    assert!(
        text.contains("secret_injector_admission_requests_total{outcome=\"timeout\"} 1"),
        "{text}"
    );
}

/// Classes that change, as a watch would see them.
#[derive(Default)]
struct Changing {
    classes: std::sync::Mutex<BTreeMap<(String, String), Value>>,
    generation: std::sync::atomic::AtomicU64,
}

impl ProviderClasses for Changing {
    fn parsed(&self, namespace: &str, name: &str) -> Option<Arc<Parsed>> {
        self.classes.lock().unwrap().parsed(namespace, name)
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[tokio::test]
async fn identical_pods_are_answered_once_per_namespace_and_class_generation() {
    let classes = Arc::new(Changing::default());
    let mut state = state();
    state.classes = classes.clone();
    let pod = |uid: &str, namespace: &str| {
        edited(SEED_POD, |r| {
            r["request"]["uid"] = json!(uid);
            r["request"]["namespace"] = json!(namespace);
            r["request"]["object"]["metadata"]["annotations"] = json!({
                "secret-injector.io/inject": "true",
                "secret-injector.io/secret-provider-class": "kv",
            });
        })
    };
    let message = |answer: &Value| answer["response"]["status"]["message"].to_string();

    // No class yet: denied, and that answer is kept.
    let first = review(&state, &pod("uid-1", "victim")).await;
    assert_eq!(first["response"]["allowed"], false);
    let again = review(&state, &pod("uid-2", "victim")).await;
    assert_eq!(again["response"]["uid"], "uid-2");
    assert_eq!(message(&again), message(&first));
    assert_eq!(state.answers.len(), 1);

    // Another namespace is another answer.
    review(&state, &pod("uid-3", "tenant")).await;
    assert_eq!(state.answers.len(), 2);

    // The class arrives: the watch's generation moves, the pod is injected.
    *classes.classes.lock().unwrap() = victim_class();
    classes.generation.fetch_add(1, Ordering::AcqRel);
    let injected = review(&state, &pod("uid-4", "victim")).await;
    assert_eq!(injected["response"]["allowed"], true, "{injected}");
    assert_eq!(injected["response"]["uid"], "uid-4");
    let cached = review(&state, &pod("uid-5", "victim")).await;
    assert_eq!(decoded_patch(&cached), decoded_patch(&injected));
    assert_eq!(cached["response"]["uid"], "uid-5");

    // Kept off: nothing kept.
    let mut state = state;
    state.answers = Arc::new(secret_injector_webhook::admission::Answers::new(0));
    review(&state, &pod("uid-6", "victim")).await;
    assert!(state.answers.is_empty());
}
