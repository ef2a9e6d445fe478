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
    server::{self, AppState, MAX_BODY_BYTES},
};
use serde_json::Value;
use std::sync::atomic::Ordering;
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
