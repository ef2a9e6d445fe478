//! The admission path without HTTP or TLS: decode + decide + encode of an
//! AdmissionReview, and the mutation alone, for an opted-in pod and for one
//! that is not. Run with `cargo bench -p secret-injector-webhook --bench mutate`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use secret_injector_webhook::{
    InjectorConfig,
    admission::{self, Outcome},
    mutate::{self, Decision},
};

const SEED_POD: &str = include_str!("../tests/data/review-seed-pod.json");
const NOT_OPTED_IN: &str = include_str!("../tests/data/review-not-opted-in.json");

/// The Pod inside a review, as `mutate::decide` receives it.
fn pod_of(review: &str) -> Pod {
    let value: serde_json::Value = serde_json::from_str(review).unwrap();
    serde_json::from_value(value["request"]["object"].clone()).unwrap()
}

fn review_and_encode(body: &[u8], config: &InjectorConfig) -> Vec<u8> {
    let reviewed = admission::review(body, config).unwrap();
    admission::encode(reviewed.review).unwrap()
}

fn admission_path(c: &mut Criterion) {
    let config = InjectorConfig::default();

    // Benchmark what we think we benchmark.
    let seed = admission::review(SEED_POD.as_bytes(), &config).unwrap();
    assert_eq!(seed.outcome, Outcome::Injected);
    assert_eq!(
        admission::review(NOT_OPTED_IN.as_bytes(), &config)
            .unwrap()
            .outcome,
        Outcome::Skipped
    );
    let seed_pod = pod_of(SEED_POD);
    let not_opted_in_pod = pod_of(NOT_OPTED_IN);
    assert!(matches!(
        mutate::decide(&seed_pod, &config).unwrap(),
        Decision::Inject(_)
    ));
    assert!(matches!(
        mutate::decide(&not_opted_in_pod, &config).unwrap(),
        Decision::Skip { .. }
    ));

    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    for (name, body) in [("seed-pod", SEED_POD), ("not-opted-in", NOT_OPTED_IN)] {
        group.bench_function(format!("review+encode/{name}"), |b| {
            b.iter(|| review_and_encode(black_box(body.as_bytes()), &config));
        });
    }
    // The seed pod's path in its parts.
    group.bench_function("review/seed-pod", |b| {
        b.iter(|| admission::review(black_box(SEED_POD.as_bytes()), &config).unwrap());
    });
    group.bench_function("encode/seed-pod", |b| {
        b.iter_batched(
            || seed.review.clone(),
            |review| admission::encode(black_box(review)).unwrap(),
            criterion::BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    for (name, pod) in [("seed-pod", &seed_pod), ("not-opted-in", &not_opted_in_pod)] {
        group.bench_function(name, |b| {
            b.iter(|| mutate::decide(black_box(pod), &config).unwrap());
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = admission_path
}
criterion_main!(benches);
