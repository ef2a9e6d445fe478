//! SecretProviderClasses: the seed's CSI manifests converted unchanged, and
//! the `secret-provider-class` annotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::{apps::v1::Deployment, core::v1::PodSpec};
use secret_injector_webhook::{
    InjectorConfig,
    inject::{InjectOptions, inject_stream_with},
};

const CLASS_01: &str = include_str!("../../manifests/examples/seed/01-secretProviderClass.yml");
const DEPLOYMENT_02: &str = include_str!("../../manifests/examples/seed/02-deployment.yml");
const CLASS_10: &str =
    include_str!("../../manifests/examples/seed/10-secretProviderClass_secretObjects.yml");
const DEPLOYMENT_11: &str = include_str!("../../manifests/examples/seed/11-deployment.yml");

const CSI: InjectOptions = InjectOptions { csi_compat: true };

fn pod_spec(output: &str, document: usize) -> PodSpec {
    let doc = output.split("---\n").nth(document).unwrap();
    let deployment: Deployment = serde_yaml_ng::from_str(doc).unwrap();
    deployment.spec.unwrap().template.spec.unwrap()
}

fn spec_env(pod: &PodSpec) -> shared::InjectionSpec {
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let value = init
        .env
        .iter()
        .flatten()
        .find(|e| e.name == shared::SPEC_ENV)
        .unwrap();
    shared::InjectionSpec::from_env_value(value.value.as_deref().unwrap()).unwrap()
}

#[test]
fn the_seed_csi_volume_becomes_a_memory_volume_under_the_same_name() {
    let input = format!("{CLASS_01}---\n{DEPLOYMENT_02}");
    let result = inject_stream_with(&input, &InjectorConfig::default(), CSI).unwrap();
    assert_eq!(result.injected, 1);
    // The class passes through as written.
    assert_eq!(result.output.split("---\n").next().unwrap(), CLASS_01);

    let pod = pod_spec(&result.output, 1);
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secrets-mount")
        .unwrap();
    assert!(volume.csi.is_none(), "the CSI volume is gone");
    assert_eq!(
        volume.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    // The app's own mount is untouched: same name, same path, read-only.
    let nginx = &pod.containers[0];
    let mounts: Vec<_> = nginx
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(mounts, [("secrets-mount", "/mnt/secrets-store")]);
    // Our containers write into it.
    let names: Vec<_> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["nginx", "secret-injector"]);
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert!(
        init.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "secrets-mount")
    );

    let spec = spec_env(&pod);
    let sources: Vec<String> = spec.objects.iter().map(|o| o.source.to_string()).collect();
    assert_eq!(
        sources,
        [
            "azure://kv-aks-csi-weu-01/secrets/db-pass",
            "azure://kv-aks-csi-weu-01/secrets/db-user"
        ]
    );
    assert!(spec.identities.azure.use_managed_identity);
    assert_eq!(
        spec.identities.azure.user_assigned_identity_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        spec.identities.azure.tenant_id.as_deref(),
        Some("00000000-0000-0000-0000-00000000000a")
    );
}

#[test]
fn secret_objects_travel_as_sync_targets() {
    let input = format!("{CLASS_10}---\n{DEPLOYMENT_11}");
    let result = inject_stream_with(&input, &InjectorConfig::default(), CSI).unwrap();
    let spec = spec_env(&pod_spec(&result.output, 1));
    assert_eq!(spec.sync_targets.len(), 1);
    let target = &spec.sync_targets[0];
    assert_eq!(target.secret_name, "k8s-secret");
    let data: Vec<(String, String)> = target
        .data
        .iter()
        .map(|(k, f)| (k.clone(), f.to_string()))
        .collect();
    assert_eq!(
        data,
        [
            ("password".into(), "db-pass".into()),
            ("username".into(), "db-user".into())
        ]
    );
}

#[test]
fn without_csi_compat_the_seed_passes_through() {
    let input = format!("{CLASS_01}---\n{DEPLOYMENT_02}");
    let result =
        inject_stream_with(&input, &InjectorConfig::default(), InjectOptions::default()).unwrap();
    assert_eq!(result.injected, 0);
}

#[test]
fn a_missing_class_is_named() {
    let err = inject_stream_with(DEPLOYMENT_02, &InjectorConfig::default(), CSI)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SecretProviderClass \"kv-aks-csi-weu-01\" not found in namespace default"),
        "{err}"
    );
}

#[test]
fn the_annotation_names_a_class_and_keeps_its_own_options() {
    let pod = r#"apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: default
  annotations:
    secret-injector.io/inject: "true"
    secret-injector.io/secret-provider-class: kv-aks-csi-weu-01
    secret-injector.io/rotation-interval: 30s
    secret-injector.io/mount-path: /etc/app/secrets
spec:
  containers:
    - name: app
      image: app:1
"#;
    let input = format!("{CLASS_01}---\n{pod}");
    let result =
        inject_stream_with(&input, &InjectorConfig::default(), InjectOptions::default()).unwrap();
    let doc = result.output.split("---\n").nth(1).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_yaml_ng::from_str(doc).unwrap();
    let spec = pod.spec.unwrap();
    let app = &spec.containers[0];
    let mount = app
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "secret-injector-secrets")
        .unwrap();
    assert_eq!(mount.mount_path, "/etc/app/secrets");
    let injected = spec_env(&spec);
    assert_eq!(injected.rotation.to_string(), "30s");
    assert_eq!(injected.objects.len(), 2);
}

// M4: a CSI volume is read-only at the volume level; its memory replacement
// must stay read-only for the app even where the app's mount forgot to say so.
#[test]
fn m4_a_converted_volume_stays_read_only_for_the_app() {
    let writable = DEPLOYMENT_02.replace("readOnly: true", "readOnly: false");
    assert_ne!(writable, DEPLOYMENT_02, "the seed mounts read-only");
    let input = format!("{CLASS_01}---\n{writable}");
    let result = inject_stream_with(&input, &InjectorConfig::default(), CSI).unwrap();
    let pod = pod_spec(&result.output, 1);
    let app_mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "secrets-mount")
        .unwrap();
    assert_eq!(app_mount.read_only, Some(true));
    // Our own containers write into it.
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let ours = init
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "secrets-mount")
        .unwrap();
    assert_ne!(ours.read_only, Some(true));
}

// H1: a class's vault is checked against the operator's allowlist.
#[test]
fn h1_a_class_outside_the_allowlist_is_refused_at_injection() {
    let mut config = InjectorConfig::default();
    config.defaults.limits.store_hosts = "*.vault.azure.cn".parse().unwrap();
    let input = format!("{CLASS_01}---\n{DEPLOYMENT_02}");
    let err = inject_stream_with(&input, &config, CSI)
        .unwrap_err()
        .to_string();
    assert!(err.contains("parameters.keyvaultName"), "{err}");
    assert!(err.contains("--allowed-store-hosts"), "{err}");
}

const AWS_POD_IDENTITY: &str = include_str!("../../manifests/examples/aws/nginx-pod-identity.yaml");
const AWS_IRSA: &str = include_str!("../../manifests/examples/aws/nginx-irsa.yaml");

fn env_of(pod: &PodSpec) -> Vec<(String, String)> {
    pod.init_containers.as_ref().unwrap()[0]
        .env
        .iter()
        .flatten()
        .filter(|e| e.name.starts_with("AWS_"))
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

// The AWS provider's Pod Identity example, unchanged: the class's
// usePodIdentity wires the agent's token and endpoint, and the operator's
// region stands in for the one the class does not name.
#[test]
fn the_aws_pod_identity_example_is_wired_with_the_operators_region() {
    let mut config = InjectorConfig::default();
    let err = inject_stream_with(AWS_POD_IDENTITY, &config, CSI)
        .unwrap_err()
        .to_string();
    assert!(err.contains("parameters.region is missing"), "{err}");
    assert!(err.contains("--aws-region"), "{err}");

    config.defaults.aws_region = Some("eu-west-1".into());
    let result = inject_stream_with(AWS_POD_IDENTITY, &config, CSI).unwrap();
    assert_eq!(result.injected, 1);
    let pod = pod_spec(&result.output, 1);
    let spec = spec_env(&pod);
    assert_eq!(
        spec.objects[0].source.to_string(),
        "aws://eu-west-1/MySecret"
    );
    assert_eq!(spec.objects[0].file.as_str(), "MySecret");
    assert!(spec.identities.aws.use_pod_identity);
    let env = env_of(&pod);
    assert!(
        env.contains(&(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            "http://169.254.170.23/v1/credentials".into()
        )),
        "{env:?}"
    );
    assert!(
        env.iter()
            .any(|(k, _)| k == "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        "{env:?}"
    );
    assert!(!env.iter().any(|(k, _)| k == "AWS_ROLE_ARN"), "{env:?}");
}

// The IRSA example needs its ServiceAccount's role, which an offline
// injection cannot read: it is refused saying where a role comes from.
#[test]
fn the_aws_irsa_example_without_a_role_says_where_one_comes_from() {
    let mut config = InjectorConfig::default();
    config.defaults.aws_region = Some("eu-west-1".into());
    let err = inject_stream_with(AWS_IRSA, &config, CSI)
        .unwrap_err()
        .to_string();
    assert!(err.contains("eks.amazonaws.com/role-arn"), "{err}");
    assert!(err.contains("nginx-irsa-deployment-sa"), "{err}");
}

const MULTIPLE_CLASSES: &str =
    include_str!("../../manifests/examples/azure/multiple-classes-spc.yaml");
const MULTIPLE_POD: &str = include_str!("../../manifests/examples/azure/multiple-classes-pod.yaml");

fn pod_of(output: &str, document: usize) -> PodSpec {
    let doc = output.split("---\n").nth(document).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_yaml_ng::from_str(doc).unwrap();
    pod.spec.unwrap()
}

fn mounts(c: &k8s_openapi::api::core::v1::Container) -> Vec<(String, String)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect()
}

// The CSI driver's e2e pod with two volumes naming two classes: both become
// memory volumes under their own names, each its own set (own class,
// synced Secret and path), and the second's nodePublishSecretRef reaches
// our containers only. No CSI volume is left for a driver that is not there.
#[test]
fn every_csi_volume_is_converted_and_the_node_publish_secret_reaches_only_our_containers() {
    let input = format!("{MULTIPLE_CLASSES}---\n{MULTIPLE_POD}");
    let result = inject_stream_with(&input, &InjectorConfig::default(), CSI).unwrap();
    assert_eq!(result.injected, 1);
    let pod = pod_of(&result.output, 2);
    let volumes = pod.volumes.as_ref().unwrap();
    assert!(volumes.iter().all(|v| v.csi.is_none()), "{volumes:?}");
    for name in ["secrets-store-inline-0", "secrets-store-inline-1"] {
        let v = volumes.iter().find(|v| v.name == name).unwrap();
        assert_eq!(
            v.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
    }
    let creds = volumes
        .iter()
        .find(|v| v.secret.is_some())
        .expect("the provider Secret's volume");
    assert_eq!(
        creds.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("secrets-store-creds")
    );

    // The app keeps its two mounts, and nothing else.
    assert_eq!(
        mounts(&pod.containers[0]),
        [
            (
                "secrets-store-inline-0".into(),
                "/mnt/secrets-store-0".into()
            ),
            (
                "secrets-store-inline-1".into(),
                "/mnt/secrets-store-1".into()
            )
        ]
    );
    // Ours write both and read the credentials.
    let init = &pod.init_containers.as_ref().unwrap()[0];
    let ours = mounts(init);
    for expected in [
        (
            "secrets-store-inline-0",
            "/var/run/secret-injector/volumes/secrets-store-inline-0",
        ),
        (
            "secrets-store-inline-1",
            "/var/run/secret-injector/volumes/secrets-store-inline-1",
        ),
        (
            creds.name.as_str(),
            "/var/run/secrets/secret-injector/provider/1",
        ),
    ] {
        assert!(
            ours.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{ours:?}"
        );
    }
    let sidecar = pod
        .containers
        .iter()
        .find(|c| c.name == "secret-injector")
        .unwrap();
    assert_eq!(mounts(sidecar), ours);

    let value = init
        .env
        .iter()
        .flatten()
        .find(|e| e.name == shared::SPEC_ENV)
        .and_then(|e| e.value.clone())
        .unwrap();
    let sets = shared::Injection::from_env_value(&value)
        .unwrap()
        .into_sets();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[0].provider_class.as_deref(), Some("azure-spc-0"));
    assert_eq!(
        sets[0].identities.azure.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(sets[0].provider_secret, None);
    assert_eq!(sets[0].sync_targets[0].secret_name, "foosecret-0");
    assert_eq!(sets[1].provider_class.as_deref(), Some("azure-spc-1"));
    assert_eq!(sets[1].identities.azure.client_id, None);
    let secret = sets[1].provider_secret.as_ref().unwrap();
    assert_eq!(secret.secret_name, "secrets-store-creds");
    assert_eq!(secret.dir, "/var/run/secrets/secret-injector/provider/1");
    assert_eq!(sets[1].sync_targets[0].secret_name, "foosecret-1");
    for set in &sets {
        assert_eq!(set.objects[0].file.as_str(), "secretalias");
    }
}

// Never leave one behind: a second volume whose class is missing refuses
// the pod naming it, and so does a class named by two volumes.
#[test]
fn a_csi_volume_that_cannot_be_converted_refuses_the_pod() {
    let only_first = MULTIPLE_CLASSES.split("---\n").next().unwrap();
    let input = format!("{only_first}---\n{MULTIPLE_POD}");
    let err = inject_stream_with(&input, &InjectorConfig::default(), CSI)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"azure-spc-1\" not found"), "{err}");

    let twice = MULTIPLE_POD.replace("\"azure-spc-1\"", "\"azure-spc-0\"");
    let input = format!("{MULTIPLE_CLASSES}---\n{twice}");
    let err = inject_stream_with(&input, &InjectorConfig::default(), CSI)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"azure-spc-0\" is named by two volumes"),
        "{err}"
    );
}

// Without an identity of its own and without nodePublishSecretRef, the
// second class has no identity at all: refused, naming the ways to give one.
#[test]
fn a_class_without_identity_or_node_publish_secret_is_refused() {
    let pod = MULTIPLE_POD.replace(
        "        nodePublishSecretRef:\n          name: secrets-store-creds\n",
        "",
    );
    assert_ne!(pod, MULTIPLE_POD);
    let input = format!("{MULTIPLE_CLASSES}---\n{pod}");
    let err = inject_stream_with(&input, &InjectorConfig::default(), CSI)
        .unwrap_err()
        .to_string();
    assert!(err.contains("names no identity"), "{err}");
    assert!(err.contains("nodePublishSecretRef"), "{err}");
}
