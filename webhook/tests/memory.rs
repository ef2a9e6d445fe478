//! What one review may allocate, measured with a counting allocator: a 4 MiB
//! body costs a small multiple of its size whatever its shape, because the
//! object stays raw JSON until the answer depends on it, and a typed decode
//! is bounded by a count of the object's JSON objects and items first.
//!
//! One `#[test]`: the counts are process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use secret_injector_webhook::{
    InjectorConfig,
    accounts::NoAccounts,
    admission::{self, MAX_POD_ITEMS, MAX_POD_OBJECTS, MAX_POD_VOLUMES_AND_CONTAINERS, Outcome},
    classes::NoClasses,
};

#[global_allocator]
static ALLOCATOR: alloc_peak::Counting = alloc_peak::Counting;

const BODY: usize = 4 * 1024 * 1024;

/// A pod CREATE review around `object`, allocated once at its final size.
fn review_of(object: &str) -> Vec<u8> {
    let head = br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"default","operation":"CREATE","userInfo":{"username":"u"},"object":"#;
    let mut body = Vec::with_capacity(head.len() + object.len() + 2);
    body.extend_from_slice(head);
    body.extend_from_slice(object.as_bytes());
    body.extend_from_slice(b"}}");
    body
}

/// `{prefix}{item}{sep}{item}...{suffix}`, about `size` bytes, allocated once.
fn repeated(
    prefix: &str,
    item: impl Fn(usize) -> String,
    sep: &str,
    suffix: &str,
    size: usize,
) -> String {
    let mut text = String::with_capacity(size + 256);
    text.push_str(prefix);
    let mut i = 0;
    while text.len() + suffix.len() + 64 < size {
        if i > 0 {
            text.push_str(sep);
        }
        text.push_str(&item(i));
        i += 1;
    }
    text.push_str(suffix);
    text
}

const OPTED_IN: &str = r#""metadata":{"name":"p","annotations":{"secret-injector.io/inject":"true","secret-injector.io/secret-a":"azure://kv-test-01/secrets/a","secret-injector.io/client-id":"00000000-0000-0000-0000-000000000001"}}"#;
const CONTAINER: &str = r#"{"name":"app","image":"nginx"}"#;

struct Case {
    name: &'static str,
    body: Vec<u8>,
    csi: bool,
    outcome: Outcome,
    /// Peak allocation allowed, as a multiple of the body.
    times_body: usize,
}

fn cases() -> Vec<Case> {
    let x_array = repeated(r#"{"x":["#, |_| "0".to_owned(), ",", "]}", BODY);
    let huge_annotation = |value: &str| {
        repeated(
            &format!(r#"{{{OPTED_IN},"spec":{{"containers":[{CONTAINER}]}},"status":{{"x":""#),
            |_| value.to_owned(),
            "",
            r#""}}"#,
            BODY,
        )
        .replacen(r#""status":{"x":"#, r#""z":{"x":"#, 1)
    };
    let opted_in_with = |field: &str, item: &'static str| {
        repeated(
            &format!(r#"{{{OPTED_IN},"spec":{{"containers":[{CONTAINER}],"{field}":["#),
            move |_| item.to_owned(),
            ",",
            "]}}",
            BODY,
        )
    };
    // The annotation big, on the pod itself (not in its own status).
    let big_annotation = repeated(
        r#"{"metadata":{"name":"p","annotations":{"secret-injector.io/inject":"true","secret-injector.io/secret-a":"azure://kv-test-01/secrets/a","secret-injector.io/client-id":"00000000-0000-0000-0000-000000000001","big":""#,
        |_| "abcdefgh".to_owned(),
        "",
        &format!(r#""}}}},"spec":{{"containers":[{CONTAINER}]}}}}"#),
        BODY,
    );
    let escaped_annotation = big_annotation.replace("abcdefgh", r"ab\ncd\tx");
    vec![
        Case {
            name: "{\"x\":[0,0,...]} on /mutate",
            body: review_of(&x_array),
            csi: false,
            outcome: Outcome::Skipped,
            times_body: 1,
        },
        Case {
            name: "{\"x\":[0,0,...]} on /mutate-csi",
            body: review_of(&x_array),
            csi: true,
            outcome: Outcome::Undecodable,
            times_body: 1,
        },
        Case {
            name: "opted in, a 4 MiB annotation",
            body: review_of(&big_annotation),
            csi: false,
            outcome: Outcome::Injected,
            times_body: 3,
        },
        Case {
            name: "opted in, a 4 MiB annotation with escapes",
            body: review_of(&escaped_annotation),
            csi: false,
            outcome: Outcome::Injected,
            times_body: 3,
        },
        Case {
            name: "opted in, a 4 MiB unknown field",
            body: review_of(&huge_annotation("abcdefgh")),
            csi: false,
            outcome: Outcome::Injected,
            times_body: 3,
        },
        Case {
            name: "opted in, 130,000 volumes",
            body: review_of(&opted_in_with("volumes", r#"{"name":"v"}"#)),
            csi: false,
            outcome: Outcome::Denied,
            times_body: 1,
        },
        Case {
            name: "opted in, 1,000,000 image pull secrets",
            body: review_of(&opted_in_with("imagePullSecrets", "{}")),
            csi: false,
            outcome: Outcome::Denied,
            times_body: 1,
        },
        Case {
            name: "opted in, a 4 MiB list of strings",
            body: review_of(&repeated(
                &format!(r#"{{{OPTED_IN},"spec":{{"containers":[{{"name":"app","args":["#),
                |_| r#""""#.to_owned(),
                ",",
                "]}]}}",
                BODY,
            )),
            csi: false,
            outcome: Outcome::Denied,
            times_body: 1,
        },
    ]
}

/// Pods at the bounds, in the shapes that allocate most per JSON object: as
/// many empty volumes as may be, then env vars with a source, then
/// nodeSelector members for the items left.
fn at_the_bounds() -> Vec<(&'static str, Vec<u8>)> {
    let volumes = MAX_POD_VOLUMES_AND_CONTAINERS - 1;
    let build = |objects_per_env: usize, env_item: &dyn Fn(usize) -> String| {
        let env = (MAX_POD_OBJECTS - volumes - 20) / objects_per_env;
        let mut object = format!(
            r#"{{{OPTED_IN},"spec":{{"containers":[{{"name":"app","image":"nginx","env":["#
        );
        for i in 0..env {
            if i > 0 {
                object.push(',');
            }
            object.push_str(&env_item(i));
        }
        object.push_str("]}],\"volumes\":[");
        for i in 0..volumes {
            if i > 0 {
                object.push(',');
            }
            object.push_str(&format!(r#"{{"name":"v{i}"}}"#));
        }
        object.push_str("],\"nodeSelector\":{");
        for i in 0..(MAX_POD_ITEMS - volumes - 2 * env - 40) {
            if i > 0 {
                object.push(',');
            }
            object.push_str(&format!(r#""k{i}":"""#));
        }
        object.push_str("}}}");
        review_of(&object)
    };
    vec![
        (
            "at the bounds, env from fields",
            build(3, &|i| {
                format!(r#"{{"name":"E{i}","valueFrom":{{"fieldRef":{{"fieldPath":"x"}}}}}}"#)
            }),
        ),
        (
            "at the bounds, plain env",
            build(1, &|i| format!(r#"{{"name":"E{i}","value":""}}"#)),
        ),
    ]
}

#[test]
fn a_review_costs_a_small_multiple_of_its_body() {
    let config = InjectorConfig::default();
    let review = |body: &[u8], csi: bool| {
        let reviewed = admission::review_with(body, &config, &NoClasses, &NoAccounts, csi).unwrap();
        let outcome = reviewed.outcome;
        if let Some(denial) = reviewed.denial() {
            println!("  denied: {}", &denial[..denial.len().min(200)]);
        }
        let answer = admission::encode(reviewed.review).unwrap();
        (outcome, answer.len())
    };
    for case in cases() {
        let ((outcome, answer), peak) = alloc_peak::peak_during(|| review(&case.body, case.csi));
        let body = case.body.len();
        println!(
            "{:<45} body {:>5.2} MiB  peak {:>6.2} MiB ({:.2} x body)  answer {answer} B  {}",
            case.name,
            body as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            peak as f64 / body as f64,
            outcome.label()
        );
        assert!(body >= BODY - 1024, "{}: {body}", case.name);
        assert_eq!(outcome, case.outcome, "{}", case.name);
        assert!(
            peak < case.times_body * body,
            "{}: peak {peak} B for a body of {body} B",
            case.name
        );
    }

    // The worst a typed decode may cost, whatever the body: bounded by the counts.
    for (name, body) in at_the_bounds() {
        let ((outcome, _), peak) = alloc_peak::peak_during(|| review(&body, false));
        println!(
            "{name:<45} body {:>5.2} MiB  peak {:>6.2} MiB  {}",
            body.len() as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            outcome.label()
        );
        assert_eq!(outcome, Outcome::Injected, "{name}");
        assert!(peak < 32 * 1024 * 1024, "{name}: peak {peak} B");
    }
}
