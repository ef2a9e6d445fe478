//! `webhook inject`: the same mutation offline, over multi-document YAML.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write, process::Command};

use k8s_openapi::api::{apps::v1::Deployment, batch::v1::CronJob};
use secret_injector_webhook::{InjectorConfig, inject::inject_stream};

const CONFIG_MAP: &str = "# kept as written, comments too\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings   # odd spacing kept\ndata:\n  a: \"1\"\n";

const DEPLOYMENT: &str = include_str!("../../manifests/examples/seed-pod-annotations.yaml");

const CRON_JOB: &str = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            secret-injector.io/inject: "true"
            secret-injector.io/secret-token: aws://eu-west-1/backup/token
            secret-injector.io/aws-role-arn: arn:aws:iam::123456789012:role/backup
        spec:
          restartPolicy: OnFailure
          containers:
            - name: backup
              image: backup:1
"#;

const BAD_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: typo
  annotations:
    secret-injector.io/inject: "true"
    secret-injector.io/secret-a: azure://kv-one/secrets/a
    secret-injector.io/rotation-intervall: 1m
spec:
  containers:
    - name: app
      image: app:1
"#;

fn documents(output: &str) -> Vec<&str> {
    output.split("---\n").collect()
}

#[test]
fn workloads_are_injected_and_other_documents_pass_through_as_written() {
    let input = format!("{CONFIG_MAP}---\n{DEPLOYMENT}---\n{CRON_JOB}");
    let result = inject_stream(&input, &InjectorConfig::default()).unwrap();
    assert_eq!(result.injected, 2);
    let docs = documents(&result.output);
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0], CONFIG_MAP);

    let deployment: Deployment = serde_yaml_ng::from_str(docs[1]).unwrap();
    let template = deployment.spec.unwrap().template;
    let spec = template.spec.unwrap();
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["nginx", "secret-injector"]);
    assert_eq!(
        spec.init_containers.unwrap()[0].name,
        "secret-injector-init"
    );
    assert_eq!(
        template.metadata.unwrap().annotations.unwrap()["secret-injector.io/status"],
        "injected"
    );

    // A CronJob's pods must finish: the init container only, and a warning.
    let cron: CronJob = serde_yaml_ng::from_str(docs[2]).unwrap();
    let job_pod = cron
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let names: Vec<_> = job_pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["backup"]);
    assert_eq!(
        job_pod.init_containers.unwrap()[0].name,
        "secret-injector-init"
    );
    // Besides each annotation-form document's advice to use the label.
    let others: Vec<_> = result
        .warnings
        .iter()
        .filter(|w| !w.contains("Label the pod"))
        .collect();
    assert_eq!(others.len(), 1, "{:?}", result.warnings);
    assert!(
        others[0].starts_with("document 3:"),
        "{:?}",
        result.warnings
    );
}

#[test]
fn errors_name_the_document_and_the_annotation() {
    let input = format!("{CONFIG_MAP}---\n{BAD_POD}");
    let err = inject_stream(&input, &InjectorConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("document 2 (Pod typo):"), "{err}");
    assert!(err.contains("secret-injector.io/rotation-intervall is not known; did you mean secret-injector.io/rotation-interval?"), "{err}");
}

#[test]
fn injecting_twice_changes_nothing_more() {
    let once = inject_stream(DEPLOYMENT, &InjectorConfig::default())
        .unwrap()
        .output;
    let twice = inject_stream(&once, &InjectorConfig::default()).unwrap();
    assert_eq!(twice.injected, 0);
    assert_eq!(twice.output, once);
}

#[test]
fn the_binary_reads_stdin_and_takes_operator_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webhook"))
        .args([
            "inject",
            "-f",
            "-",
            "--sidecar-image",
            "registry.example/sidecar:9",
            "--native-sidecar",
            "always",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(DEPLOYMENT.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deployment: Deployment = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let spec = deployment.spec.unwrap().template.spec.unwrap();
    let native = &spec.init_containers.unwrap()[0];
    assert_eq!(native.name, "secret-injector");
    assert_eq!(native.restart_policy.as_deref(), Some("Always"));
    assert_eq!(native.image.as_deref(), Some("registry.example/sidecar:9"));
}

#[test]
fn the_binary_fails_with_the_message_on_a_bad_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, BAD_POD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_webhook"))
        .args(["inject", "-f", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("document 1 (Pod typo)"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing half-written on stdout");
}

#[test]
fn a_service_account_in_the_same_input_gives_the_client_id() {
    let input = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-sa
  namespace: default
  annotations:
    azure.workload.identity/client-id: 11111111-2222-3333-4444-555555555555
---
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: default
  annotations:
    secret-injector.io/inject: "true"
    secret-injector.io/secret-db-user: azure://kv-aks-csi-weu-01/secrets/db-user
spec:
  serviceAccountName: app-sa
  containers:
    - name: app
      image: app:1
"#;
    let result = secret_injector_webhook::inject::inject_stream(
        input,
        &secret_injector_webhook::InjectorConfig::default(),
    )
    .unwrap();
    assert_eq!(result.injected, 1);
    assert!(
        result
            .output
            .contains("value: 11111111-2222-3333-4444-555555555555"),
        "{}",
        result.output
    );
}

// Found by fuzz/inject_stream: content on a `--- ` line is a document too.
#[test]
fn a_document_that_starts_on_its_marker_line_is_kept() {
    let input = "a: 1\n--- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
    let result = secret_injector_webhook::inject::inject_stream_with(
        input,
        &secret_injector_webhook::InjectorConfig::default(),
        secret_injector_webhook::inject::InjectOptions { csi_compat: false },
    )
    .unwrap();
    assert!(result.output.contains("name: b"), "{}", result.output);
}
