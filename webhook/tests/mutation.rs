//! The mutation, driven with pods as users write them: each test applies the
//! patch to the pod's JSON, as the apiserver does, and checks the result.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Container, Pod};
use rstest::rstest;
use secret_injector_webhook::{
    InjectorConfig,
    mutate::{self, Decision, MutationError, SkipReason},
};
use serde_json::{Value, json};

const SEED_USER: &str = "azure://kv-aks-csi-weu-01/secrets/db-user";
const SEED_PASS: &str = "azure://kv-aks-csi-weu-01/secrets/db-pass";

/// The seed Deployment's pod, in annotation form.
fn seed_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "nginx-deployment-5d59d67564-",
            "namespace": "default",
            "labels": {"app": "nginx", "secret-injector.io/inject": "true"},
            "annotations": {
                "secret-injector.io/inject": "true",
                "secret-injector.io/secret-db-user": SEED_USER,
                "secret-injector.io/secret-db-pass": SEED_PASS,
                "secret-injector.io/rotation-interval": "1m",
                "secret-injector.io/client-id": "00000000-0000-0000-0000-000000000001",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "nginx-deployment-5d59d67564", "uid": "6f2d2b43-7c1f-4d2c-a8f5-0a0b7a3d9d11",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.23.1",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"memory": "64Mi", "cpu": "250m"},
                              "limits": {"memory": "128Mi", "cpu": "500m"}},
                "volumeMounts": [{"name": "default-token-abcde", "readOnly": true,
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
            }],
            "volumes": [{"name": "default-token-abcde", "secret": {"secretName": "default-token-abcde"}}],
            "restartPolicy": "Always",
            "serviceAccountName": "default"
        }
    })
}

fn config() -> InjectorConfig {
    InjectorConfig::default()
}

fn native() -> InjectorConfig {
    InjectorConfig {
        native_sidecars: true,
        ..config()
    }
}

fn decide(pod: &Value, config: &InjectorConfig) -> Result<Decision, MutationError> {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    mutate::decide(&typed, config)
}

/// Applies the patch as the apiserver would; returns the stored pod.
fn inject(pod: &Value, config: &InjectorConfig) -> (Pod, mutate::Mutation) {
    let Decision::Inject(mutation) = decide(pod, config).unwrap() else {
        panic!("expected an injection")
    };
    let mut value = pod.clone();
    json_patch::patch(&mut value, &mutation.patch).unwrap();
    (serde_json::from_value(value).unwrap(), mutation)
}

fn containers(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

fn init_containers(pod: &Pod) -> Vec<&str> {
    pod.spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect()
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn mounts_of(c: &Container) -> Vec<(String, String, bool)> {
    c.volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only.unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn seed_pod_gets_volume_init_container_sidecar_and_mount() {
    let (pod, mutation) = inject(&seed_pod(), &config());
    let spec = pod.spec.as_ref().unwrap();

    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secret-injector-secrets")
        .unwrap();
    let empty_dir = volume.empty_dir.as_ref().unwrap();
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(empty_dir.size_limit.as_ref().unwrap().0, "16Mi");
    // The user's own volume is kept.
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "default-token-abcde")
    );

    assert_eq!(init_containers(&pod), ["secret-injector-init"]);
    assert_eq!(containers(&pod), ["nginx", "secret-injector"]);
    let init = container(&pod, "secret-injector-init");
    assert_eq!(init.args.as_deref().unwrap(), ["fetch", "--once"]);
    assert_eq!(
        container(&pod, "secret-injector").args.as_deref().unwrap(),
        ["run"]
    );

    let nginx = container(&pod, "nginx");
    assert!(mounts_of(nginx).contains(&(
        "secret-injector-secrets".into(),
        "/mnt/secrets-store".into(),
        true
    )));
    assert!(mounts_of(nginx).contains(&(
        "default-token-abcde".into(),
        "/var/run/secrets/kubernetes.io/serviceaccount".into(),
        true
    )));
    // Our containers write: their mount is not read-only.
    assert!(mounts_of(init).contains(&(
        "secret-injector-secrets".into(),
        "/mnt/secrets-store".into(),
        false
    )));

    assert_eq!(
        annotation(&pod, "secret-injector.io/status"),
        Some("injected")
    );
    assert_eq!(
        annotation(&pod, "kubectl.kubernetes.io/default-container"),
        Some("nginx")
    );
    assert_eq!(
        annotation(&pod, "secret-injector.io/no-sidecar-reason"),
        None
    );
    assert!(mutation.warnings.is_empty());
}

#[test]
fn the_spec_travels_in_one_env_var_and_reads_back() {
    let (pod, _) = inject(&seed_pod(), &config());
    for name in ["secret-injector-init", "secret-injector"] {
        let value = env(container(&pod, name), shared::SPEC_ENV).unwrap();
        let spec = shared::InjectionSpec::from_env_value(value).unwrap();
        let sources: Vec<String> = spec.objects.iter().map(|o| o.source.to_string()).collect();
        assert_eq!(sources, [SEED_PASS, SEED_USER]);
        assert_eq!(spec.rotation.to_string(), "1m");
    }
}

#[test]
fn azure_objects_get_workload_identity_wiring() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]["secret-injector.io/client-id"] =
        json!("00000000-0000-0000-0000-000000000001");
    pod["metadata"]["annotations"]["secret-injector.io/tenant-id"] =
        json!("00000000-0000-0000-0000-00000000000A");
    let (pod, _) = inject(&pod, &config());
    let token = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secret-injector-azure-token")
        .unwrap();
    let projection = token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0]
        .service_account_token
        .as_ref()
        .unwrap();
    assert_eq!(
        projection.audience.as_deref(),
        Some("api://AzureADTokenExchange")
    );
    assert_eq!(projection.path, "azure-identity-token");

    let sidecar = container(&pod, "secret-injector");
    assert_eq!(
        env(sidecar, "AZURE_CLIENT_ID"),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        env(sidecar, "AZURE_TENANT_ID"),
        Some("00000000-0000-0000-0000-00000000000a")
    );
    assert_eq!(
        env(sidecar, "AZURE_FEDERATED_TOKEN_FILE"),
        Some("/var/run/secrets/azure/tokens/azure-identity-token")
    );
    assert_eq!(
        env(sidecar, "AZURE_AUTHORITY_HOST"),
        Some("https://login.microsoftonline.com/")
    );
    // The app itself does not get the token.
    assert!(
        !mounts_of(container(&pod, "nginx"))
            .iter()
            .any(|m| m.0 == "secret-injector-azure-token")
    );
}

#[test]
fn other_stores_get_no_azure_token() {
    let mut pod = seed_pod();
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.remove("secret-injector.io/secret-db-user");
    annotations.insert(
        "secret-injector.io/secret-db-pass".into(),
        json!("vault://secret/db#password"),
    );
    annotations.insert("secret-injector.io/vault-role".into(), json!("db"));
    let (pod, _) = inject(&pod, &vault_config());
    assert!(
        !pod.spec
            .unwrap()
            .volumes
            .unwrap()
            .iter()
            .any(|v| v.name == "secret-injector-azure-token")
    );
}

fn projected_audience(pod: &Pod, volume: &str) -> Option<(String, String)> {
    let v = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)?;
    let p = v.projected.as_ref()?.sources.as_ref()?[0]
        .service_account_token
        .as_ref()?;
    Some((p.audience.clone()?, p.path.clone()))
}

fn aws_pod(extra: &[(&str, &str)]) -> Value {
    let mut pod = seed_pod();
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.insert(
        "secret-injector.io/secret-api".into(),
        json!("aws-ssm://us-east-1/prod/api/key"),
    );
    for (k, v) in extra {
        annotations.insert((*k).into(), json!(v));
    }
    pod
}

// IRSA as EKS's webhook wires it: a token for sts.amazonaws.com at its path,
// AWS_ROLE_ARN; the node's instance role is switched off.
#[test]
fn aws_objects_get_irsa_wiring_and_a_pod_using_two_stores_gets_both() {
    let pod = aws_pod(&[(
        "secret-injector.io/aws-role-arn",
        "arn:aws:iam::123456789012:role/app",
    )]);
    let (pod, _) = inject(&pod, &config());
    assert_eq!(
        projected_audience(&pod, "secret-injector-aws-token"),
        Some(("sts.amazonaws.com".into(), "token".into()))
    );
    assert!(projected_audience(&pod, "secret-injector-azure-token").is_some());
    for name in ["secret-injector-init", "secret-injector"] {
        let c = container(&pod, name);
        assert_eq!(
            env(c, "AWS_ROLE_ARN"),
            Some("arn:aws:iam::123456789012:role/app")
        );
        assert_eq!(
            env(c, "AWS_WEB_IDENTITY_TOKEN_FILE"),
            Some("/var/run/secrets/eks.amazonaws.com/serviceaccount/token")
        );
        assert_eq!(env(c, "AWS_EC2_METADATA_DISABLED"), Some("true"));
        assert!(env(c, "AZURE_FEDERATED_TOKEN_FILE").is_some());
        assert!(mounts_of(c).contains(&(
            "secret-injector-aws-token".into(),
            "/var/run/secrets/eks.amazonaws.com/serviceaccount".into(),
            true
        )));
    }
    assert!(
        !mounts_of(container(&pod, "nginx"))
            .iter()
            .any(|m| m.0 == "secret-injector-aws-token")
    );
}

#[test]
fn aws_pod_identity_gets_its_audience_and_the_agent_endpoint() {
    let pod = aws_pod(&[("secret-injector.io/aws-use-pod-identity", "true")]);
    let (pod, _) = inject(&pod, &config());
    assert_eq!(
        projected_audience(&pod, "secret-injector-aws-pod-identity-token"),
        Some((
            "pods.eks.amazonaws.com".into(),
            "eks-pod-identity-token".into()
        ))
    );
    assert!(projected_audience(&pod, "secret-injector-aws-token").is_none());
    let c = container(&pod, "secret-injector");
    assert_eq!(
        env(c, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some("http://169.254.170.23/v1/credentials")
    );
    assert_eq!(
        env(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        Some("/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")
    );
    assert_eq!(env(c, "AWS_ROLE_ARN"), None);
}

// The role comes from the ServiceAccount's eks.amazonaws.com/role-arn unless
// the pod names one; with neither, the pod is refused (no instance role).
#[test]
fn aws_role_comes_from_the_service_account_and_none_is_refused() {
    use secret_injector_webhook::{
        accounts::AccountIdentity,
        classes::{Context, NoClasses},
    };
    use std::collections::BTreeMap;
    let accounts: BTreeMap<(String, String), AccountIdentity> = BTreeMap::from([(
        ("default".to_owned(), "app-sa".to_owned()),
        AccountIdentity::from_annotations(Some(&BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_owned(),
            "arn:aws:iam::123456789012:role/from-sa".to_owned(),
        )]))),
    )]);
    let ctx = Context {
        namespace: "default",
        classes: &NoClasses,
        accounts: &accounts,
        csi_compat: false,
    };
    let decide = |pod: &Value| {
        let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
        mutate::decide_with(&typed, &config(), &ctx)
    };
    let role_of = |pod: &Value| {
        let Ok(Decision::Inject(mutation)) = decide(pod) else {
            panic!("expected an injection")
        };
        let mut value = pod.clone();
        json_patch::patch(&mut value, &mutation.patch).unwrap();
        let pod: Pod = serde_json::from_value(value).unwrap();
        env(container(&pod, "secret-injector"), "AWS_ROLE_ARN").map(str::to_owned)
    };
    let mut pod = aws_pod(&[]);
    pod["spec"]["serviceAccountName"] = json!("app-sa");
    assert_eq!(
        role_of(&pod).as_deref(),
        Some("arn:aws:iam::123456789012:role/from-sa")
    );
    pod["metadata"]["annotations"]["secret-injector.io/aws-role-arn"] =
        json!("arn:aws:iam::123456789012:role/from-pod");
    assert_eq!(
        role_of(&pod).as_deref(),
        Some("arn:aws:iam::123456789012:role/from-pod")
    );

    let err = decide(&aws_pod(&[])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("reads AWS but names no identity"), "{text}");
    assert!(text.contains("eks.amazonaws.com/role-arn"), "{text}");
    assert!(text.contains("secret-injector.io/aws-role-arn"), "{text}");

    let bad = aws_pod(&[("secret-injector.io/aws-role-arn", "arn:aws:iam::1:user/x")]);
    let text = decide(&bad).unwrap_err().to_string();
    assert!(text.contains("an IAM role ARN such as"), "{text}");
}

#[test]
fn injected_containers_pass_the_restricted_profile() {
    let (pod, _) = inject(&seed_pod(), &config());
    for name in ["secret-injector-init", "secret-injector"] {
        let c = container(&pod, name);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert!(sc.run_as_user.unwrap() > 0);
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(),
            ["ALL"]
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let resources = c.resources.as_ref().unwrap();
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "16Mi");
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "64Mi");
        assert!(!resources.limits.as_ref().unwrap().contains_key("cpu"));
        assert_eq!(c.image.as_deref(), Some(config().image.as_str()));
    }
}

#[test]
fn operator_flags_shape_the_containers() {
    let config = InjectorConfig {
        image: "registry.example/secret-injector-sidecar:1.2.3".into(),
        image_pull_policy: "Always".into(),
        volume_size_limit: "1Mi".into(),
        cpu_limit: Some("100m".into()),
        ..config()
    };
    let (pod, _) = inject(&seed_pod(), &config);
    let sidecar = container(&pod, "secret-injector");
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/secret-injector-sidecar:1.2.3")
    );
    assert_eq!(sidecar.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap()["cpu"].0,
        "100m"
    );
    let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[1];
    assert_eq!(
        volume
            .empty_dir
            .as_ref()
            .unwrap()
            .size_limit
            .as_ref()
            .unwrap()
            .0,
        "1Mi"
    );
}

#[test]
fn pod_without_opt_in_is_left_alone() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    pod["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    assert_eq!(
        decide(&pod, &config()).unwrap(),
        Decision::Skip {
            reason: SkipReason::NotOptedIn,
            warnings: vec![]
        }
    );
    let mut bare = seed_pod();
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    bare["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    assert!(matches!(
        decide(&bare, &config()).unwrap(),
        Decision::Skip {
            reason: SkipReason::NotOptedIn,
            ..
        }
    ));
}

#[test]
fn second_call_changes_nothing() {
    let pod = seed_pod();
    let Decision::Inject(mutation) = decide(&pod, &config()).unwrap() else {
        panic!()
    };
    let mut once = pod.clone();
    json_patch::patch(&mut once, &mutation.patch).unwrap();
    assert_eq!(
        decide(&once, &config()).unwrap(),
        Decision::Skip {
            reason: SkipReason::AlreadyInjected,
            warnings: vec![]
        }
    );
}

#[rstest]
#[case::sidecar_by_name("containers")]
#[case::native_sidecar_by_name("initContainers")]
fn a_pod_with_our_sidecar_is_not_injected_again(#[case] list: &str) {
    let mut pod = seed_pod();
    pod["spec"][list] = json!([{"name": "secret-injector", "image": "x"}]);
    if list == "containers" {
        pod["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "app", "image": "x"}));
    }
    assert!(matches!(
        decide(&pod, &config()).unwrap(),
        Decision::Skip {
            reason: SkipReason::AlreadyInjected,
            ..
        }
    ));
}

#[test]
fn pods_without_volumes_init_containers_or_annotation_map_get_them_created() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bare", "annotations": {
            "secret-injector.io/inject": "true",
            "secret-injector.io/secret-token": "vault://secret/prod/api#token",
            "secret-injector.io/vault-role": "api"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    });
    let (pod, mutation) = inject(&pod, &vault_config());
    assert_eq!(init_containers(&pod), ["secret-injector-init"]);
    // The secrets volume and Vault's projected token.
    assert_eq!(
        pod.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(),
        2
    );
    assert_eq!(
        mounts_of(container(&pod, "app")),
        [(
            "secret-injector-secrets".into(),
            "/mnt/secrets-store".into(),
            true
        )]
    );
    // Parents are created whole, not appended to.
    let paths: Vec<String> = mutation
        .patch
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect();
    assert!(paths.contains(&"/spec/volumes".to_owned()), "{paths:?}");
    assert!(
        paths.contains(&"/spec/initContainers".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/spec/containers/0/volumeMounts".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn annotation_keys_are_escaped_in_json_pointers() {
    let (_, mutation) = inject(&seed_pod(), &config());
    let paths: Vec<String> = mutation
        .patch
        .0
        .iter()
        .map(|op| op.path().to_string())
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/secret-injector.io~1status".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths
            .contains(&"/metadata/annotations/kubectl.kubernetes.io~1default-container".to_owned())
    );
}

#[test]
fn our_init_container_runs_first() {
    let mut pod = seed_pod();
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "migrate:1"}]);
    let (pod, _) = inject(&pod, &config());
    assert_eq!(init_containers(&pod), ["secret-injector-init", "migrate"]);
    // Not a target unless named.
    assert!(mounts_of(container(&pod, "migrate")).is_empty());
}

#[test]
fn named_targets_include_init_containers_despite_the_index_shift() {
    let mut pod = seed_pod();
    pod["spec"]["initContainers"] =
        json!([{"name": "setup", "image": "a"}, {"name": "migrate", "image": "b"}]);
    pod["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "metrics", "image": "m"}));
    pod["metadata"]["annotations"]["secret-injector.io/containers"] = json!("migrate,metrics");
    let (pod, _) = inject(&pod, &config());
    assert_eq!(
        init_containers(&pod),
        ["secret-injector-init", "setup", "migrate"]
    );
    assert_eq!(mounts_of(container(&pod, "migrate")).len(), 1);
    assert_eq!(mounts_of(container(&pod, "metrics")).len(), 1);
    assert!(mounts_of(container(&pod, "setup")).is_empty());
    // nginx was not named: only its own mount.
    assert_eq!(mounts_of(container(&pod, "nginx")).len(), 1);
}

#[test]
fn a_target_that_does_not_exist_is_denied_with_the_choices() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]["secret-injector.io/containers"] = json!("ngnix");
    let err = decide(&pod, &config()).unwrap_err().to_string();
    assert!(
        err.contains("secret-injector.io/containers names container \"ngnix\""),
        "{err}"
    );
    assert!(err.contains("its containers are: nginx"), "{err}");
}

#[rstest]
#[case::job_owner(json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "backup", "uid": "u", "controller": true}]), "Always", "belongs to Job \"backup\"")]
#[case::restart_never(json!([]), "Never", "restartPolicy Never")]
#[case::restart_on_failure(json!([]), "OnFailure", "restartPolicy OnFailure")]
fn pods_that_must_finish_get_the_init_container_only(
    #[case] owners: Value,
    #[case] restart_policy: &str,
    #[case] reason: &str,
) {
    let mut pod = seed_pod();
    pod["metadata"]["ownerReferences"] = owners;
    pod["spec"]["restartPolicy"] = json!(restart_policy);
    let (pod, mutation) = inject(&pod, &config());
    assert_eq!(containers(&pod), ["nginx"]);
    assert_eq!(init_containers(&pod), ["secret-injector-init"]);
    let why = annotation(&pod, "secret-injector.io/no-sidecar-reason").unwrap();
    assert!(why.contains(reason), "{why}");
    assert!(why.contains("not rotated"), "{why}");
    assert_eq!(mutation.warnings.len(), 1);
}

#[test]
fn rotation_zero_fetches_once_without_a_sidecar() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]["secret-injector.io/rotation-interval"] = json!("0");
    for config in [config(), native()] {
        let (pod, mutation) = inject(&pod, &config);
        assert_eq!(containers(&pod), ["nginx"]);
        assert_eq!(init_containers(&pod), ["secret-injector-init"]);
        assert!(
            container(&pod, "secret-injector-init")
                .restart_policy
                .is_none()
        );
        assert!(
            annotation(&pod, "secret-injector.io/no-sidecar-reason")
                .unwrap()
                .contains("is 0")
        );
        assert!(mutation.warnings.is_empty(), "asked for, so no warning");
    }
}

#[rstest]
#[case::long_running(json!([]), "Always")]
#[case::job(json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "backup", "uid": "u"}]), "Never")]
fn native_sidecars_replace_the_pair(#[case] owners: Value, #[case] restart_policy: &str) {
    let mut pod = seed_pod();
    pod["metadata"]["ownerReferences"] = owners;
    pod["spec"]["restartPolicy"] = json!(restart_policy);
    pod["spec"]["initContainers"] = json!([{"name": "migrate", "image": "b"}]);
    let (pod, mutation) = inject(&pod, &native());
    assert_eq!(containers(&pod), ["nginx"]);
    assert_eq!(init_containers(&pod), ["secret-injector", "migrate"]);
    let sidecar = container(&pod, "secret-injector");
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(sidecar.args.as_deref().unwrap(), ["run"]);
    let probe = sidecar.startup_probe.as_ref().unwrap();
    assert_eq!(
        probe.exec.as_ref().unwrap().command.as_deref().unwrap(),
        ["/usr/local/bin/secret-injector-sidecar", "probe"]
    );
    // Period × threshold covers the startup timeout (2m by default).
    assert_eq!(
        probe.period_seconds.unwrap() * probe.failure_threshold.unwrap(),
        120
    );
    assert_eq!(
        annotation(&pod, "secret-injector.io/no-sidecar-reason"),
        None
    );
    assert!(mutation.warnings.is_empty());
}

#[rstest]
#[case::our_volume(json!({"name": "secret-injector-secrets", "emptyDir": {}}), "volume named \"secret-injector-secrets\"")]
#[case::our_token_volume(json!({"name": "secret-injector-azure-token", "emptyDir": {}}), "volume named \"secret-injector-azure-token\"")]
fn colliding_volume_names_are_denied(#[case] volume: Value, #[case] says: &str) {
    let mut pod = seed_pod();
    pod["spec"]["volumes"].as_array_mut().unwrap().push(volume);
    let err = decide(&pod, &config()).unwrap_err().to_string();
    assert!(err.contains(says), "{err}");
    assert!(err.contains("rename yours"), "{err}");
}

#[test]
fn colliding_container_name_is_denied() {
    let mut pod = seed_pod();
    pod["spec"]["initContainers"] = json!([{"name": "secret-injector-init", "image": "x"}]);
    let err = decide(&pod, &config()).unwrap_err().to_string();
    assert!(
        err.contains("container named \"secret-injector-init\""),
        "{err}"
    );
}

#[test]
fn colliding_mount_path_is_denied() {
    let mut pod = seed_pod();
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "default-token-abcde", "mountPath": "/mnt/secrets-store/"}));
    let err = decide(&pod, &config()).unwrap_err().to_string();
    assert!(
        err.contains("container \"nginx\" already mounts something at /mnt/secrets-store"),
        "{err}"
    );
    assert!(err.contains("secret-injector.io/mount-path"), "{err}");
}

#[test]
fn bad_annotations_are_denied_naming_annotation_value_and_rule() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]["secret-injector.io/rotation-interval"] = json!("every minute");
    pod["metadata"]["annotations"]["secret-injector.io/secret-db-pass"] =
        json!("azure://kv-aks-csi-weu-01/secret/db-pass");
    let err = decide(&pod, &config()).unwrap_err().to_string();
    assert!(
        err.contains(
            "annotation secret-injector.io/rotation-interval: \"every minute\" is not valid"
        ),
        "{err}"
    );
    assert!(err.contains("annotation secret-injector.io/secret-db-pass: reference \"azure://kv-aks-csi-weu-01/secret/db-pass\""), "{err}");
    assert!(err.contains("use secrets, certificates or keys"), "{err}");
}

#[test]
fn the_spec_env_carries_names_never_values() {
    // A pod cannot carry a value through us: only references are serialised.
    let (pod, _) = inject(&seed_pod(), &config());
    let value = env(container(&pod, "secret-injector"), shared::SPEC_ENV).unwrap();
    let parsed: Value = serde_json::from_str(value).unwrap();
    let keys: Vec<&String> = parsed["objects"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["file", "source"]);
}

#[test]
fn the_token_projection_gets_the_service_account_it_needs() {
    // Normally the ServiceAccount admission plugin has set it; where it has not,
    // a projected token without serviceAccountName is refused by validation.
    let mut pod = seed_pod();
    pod["spec"]
        .as_object_mut()
        .unwrap()
        .remove("serviceAccountName");
    let (stored, _) = inject(&pod, &config());
    assert_eq!(
        stored.spec.unwrap().service_account_name.as_deref(),
        Some("default")
    );

    pod["spec"]["serviceAccount"] = json!("legacy");
    let (stored, _) = inject(&pod, &config());
    assert_eq!(
        stored.spec.unwrap().service_account_name.as_deref(),
        Some("legacy")
    );

    // Set already: left alone.
    let (_, mutation) = inject(&seed_pod(), &config());
    assert!(
        !mutation
            .patch
            .0
            .iter()
            .any(|op| op.path().as_str() == "/spec/serviceAccountName")
    );
}

#[test]
fn our_containers_reach_the_api_with_the_pods_own_service_account_token() {
    // The ServiceAccount admission plugin mounted the token in the app's
    // containers before the webhook ran; ours need it for Secret sync,
    // SecretProviderClassPodStatus and Events.
    let (stored, _) = inject(&seed_pod(), &config());
    for name in ["secret-injector-init", "secret-injector"] {
        assert!(
            mounts_of(container(&stored, name)).contains(&(
                "default-token-abcde".into(),
                "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                true
            )),
            "{name}"
        );
    }

    // automountServiceAccountToken: false leaves no token to share.
    let mut pod = seed_pod();
    pod["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("volumeMounts");
    let (stored, _) = inject(&pod, &config());
    assert!(
        !mounts_of(container(&stored, "secret-injector"))
            .iter()
            .any(|(_, path, _)| path.starts_with("/var/run/secrets/kubernetes.io"))
    );
}

#[test]
fn secret_objects_without_a_service_account_token_are_warned_about() {
    let spec = shared::InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{{"file":"db-user","source":"{SEED_USER}"}}],"mountPath":"/mnt/secrets-store",
            "rotation":"1m","filePermission":"0644","providerClass":"kv-aks-csi-weu-01",
            "syncTargets":[{{"secretName":"k8s-secret","type":"Opaque","data":{{"username":"db-user"}}}}]}}"#
    ))
    .unwrap();
    let mut pod = seed_pod();
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let mutation = mutate::mutate(&typed, &spec, &config()).unwrap();
    assert!(mutation.warnings.is_empty(), "{:?}", mutation.warnings);

    pod["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("volumeMounts");
    let typed: Pod = serde_json::from_value(pod).unwrap();
    let mutation = mutate::mutate(&typed, &spec, &config()).unwrap();
    assert_eq!(mutation.warnings.len(), 1);
    assert!(
        mutation.warnings[0].contains("automountServiceAccountToken: false")
            && mutation.warnings[0].contains("k8s-secret"),
        "{}",
        mutation.warnings[0]
    );
}

#[test]
fn workload_identity_comes_from_the_service_account_unless_the_pod_names_one() {
    use secret_injector_webhook::{
        accounts::AccountIdentity,
        classes::{Context, NoClasses},
    };
    use std::collections::BTreeMap;
    let accounts: BTreeMap<(String, String), AccountIdentity> = BTreeMap::from([(
        ("default".to_owned(), "app-sa".to_owned()),
        AccountIdentity::from_annotations(Some(&BTreeMap::from([
            (
                "azure.workload.identity/client-id".to_owned(),
                "11111111-2222-3333-4444-555555555555".to_owned(),
            ),
            (
                "azure.workload.identity/tenant-id".to_owned(),
                "tenant-from-sa".to_owned(),
            ),
        ]))),
    )]);
    let ctx = Context {
        namespace: "default",
        classes: &NoClasses,
        accounts: &accounts,
        csi_compat: false,
    };
    let inject_with = |pod: &Value| {
        let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
        let Decision::Inject(mutation) = mutate::decide_with(&typed, &config(), &ctx).unwrap()
        else {
            panic!("expected an injection")
        };
        let mut value = pod.clone();
        json_patch::patch(&mut value, &mutation.patch).unwrap();
        serde_json::from_value::<Pod>(value).unwrap()
    };

    let mut pod = seed_pod();
    pod["spec"]["serviceAccountName"] = json!("app-sa");
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/client-id");
    let stored = inject_with(&pod);
    let sidecar = container(&stored, "secret-injector");
    assert_eq!(
        env(sidecar, "AZURE_CLIENT_ID"),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(env(sidecar, "AZURE_TENANT_ID"), Some("tenant-from-sa"));

    // The pod's own annotation wins.
    pod["metadata"]["annotations"]["secret-injector.io/client-id"] =
        json!("99999999-8888-7777-6666-555555555555");
    let stored = inject_with(&pod);
    assert_eq!(
        env(container(&stored, "secret-injector"), "AZURE_CLIENT_ID"),
        Some("99999999-8888-7777-6666-555555555555")
    );

    // M1: another account without the annotation: nothing invented, and no
    // silent fall back to the node's managed identity either.
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/client-id");
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let err = mutate::decide_with(&typed, &config(), &ctx).unwrap_err();
    assert!(
        matches!(&err, MutationError::NoIdentity { store, how } if *store == "Azure Key Vault" && how.contains("\"default\"")),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("secret-injector.io/client-id"), "{text}");
    assert!(text.contains("azure.workload.identity/client-id"), "{text}");

    // Asking for the node's managed identity is explicit.
    pod["metadata"]["annotations"]["secret-injector.io/use-managed-identity"] = json!("true");
    let stored = inject_with(&pod);
    let spec = shared::InjectionSpec::from_env_value(
        env(container(&stored, "secret-injector"), shared::SPEC_ENV).unwrap(),
    )
    .unwrap();
    assert!(spec.identities.azure.use_managed_identity);
}

// M4, L4: a pod may not pre-declare mounts of the volumes we add.
#[rstest]
#[case("secret-injector-secrets")]
#[case("secret-injector-azure-token")]
fn m4_mounts_of_our_volumes_declared_by_the_pod_are_denied(#[case] volume: &str) {
    let mut pod = seed_pod();
    pod["spec"]["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": volume, "mountPath": "/x"}));
    let err = decide(&pod, &config()).unwrap_err();
    assert!(
        matches!(&err, MutationError::VolumeMountTaken { container, volume: v } if container == "nginx" && v == &volume),
        "{err}"
    );
}

// H1: the admission refuses what the operator does not allow, and tells the
// sidecar the same list so it checks again.
#[test]
fn h1_store_hosts_are_the_operators() {
    let mut pod = seed_pod();
    pod["metadata"]["annotations"]["secret-injector.io/secret-x"] =
        json!("azure://169.254.169.254/secrets/x");
    let text = decide(&pod, &config()).unwrap_err().to_string();
    assert!(text.contains("secret-injector.io/secret-x"), "{text}");
    assert!(text.contains("169.254.169.254:443"), "{text}");

    let (stored, _) = inject(&seed_pod(), &config());
    for name in ["secret-injector-init", "secret-injector"] {
        assert_eq!(
            env(
                container(&stored, name),
                "SECRET_INJECTOR_ALLOWED_STORE_HOSTS"
            ),
            Some(shared::store_hosts::DEFAULT_ALLOWED_STORE_HOSTS)
        );
    }
}

// M6: the label opts in (objectSelector, failurePolicy Fail); the annotation
// still does, with a warning that recommends the label.
#[test]
fn m6_the_label_opts_in_and_the_annotation_is_warned_about() {
    let mut labelled = seed_pod();
    labelled["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    labelled["metadata"]["labels"]["secret-injector.io/inject"] = json!("true");
    let (pod, mutation) = inject(&labelled, &config());
    assert!(containers(&pod).contains(&"secret-injector"));
    assert!(
        !mutation
            .warnings
            .iter()
            .any(|w| w.contains("Label the pod")),
        "{:?}",
        mutation.warnings
    );

    let mut annotated = seed_pod();
    annotated["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    let (_, mutation) = inject(&annotated, &config());
    assert!(
        mutation
            .warnings
            .iter()
            .any(|w| w.contains("Label the pod secret-injector.io/inject: \"true\"")),
        "{:?}",
        mutation.warnings
    );

    let mut wrong = labelled.clone();
    wrong["metadata"]["labels"]["secret-injector.io/inject"] = json!("yes");
    assert!(matches!(
        decide(&wrong, &config()).unwrap(),
        Decision::Skip {
            reason: SkipReason::NotOptedIn,
            ..
        }
    ));
}

fn vault_pod(extra: &[(&str, &str)]) -> Value {
    let mut pod = seed_pod();
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.retain(|k, _| !k.starts_with("secret-injector.io/secret-"));
    annotations.insert(
        "secret-injector.io/secret-db".into(),
        json!("vault://secret/app/db#password"),
    );
    for (k, v) in extra {
        annotations.insert((*k).into(), json!(v));
    }
    pod
}

fn vault_config() -> InjectorConfig {
    InjectorConfig {
        vault_address: Some("https://vault.vault.svc:8200".into()),
        ..config()
    }
}

// Vault: a token for the auth method's audience, mounted in the injected
// containers only, and the operator's address and auth mount as env.
#[test]
fn vault_objects_get_a_projected_token_and_the_operators_address() {
    let pod = vault_pod(&[("secret-injector.io/vault-role", "web")]);
    let (pod, _) = inject(&pod, &vault_config());
    assert_eq!(
        projected_audience(&pod, "secret-injector-vault-token"),
        Some(("vault".into(), "token".into()))
    );
    for name in ["secret-injector-init", "secret-injector"] {
        let c = container(&pod, name);
        assert_eq!(
            env(c, "SECRET_INJECTOR_VAULT_DEFAULT_ADDRESS"),
            Some("https://vault.vault.svc:8200")
        );
        // M2: never Vault's own variable, which would win over a set's own
        // address in the one container that serves every set.
        assert_eq!(env(c, "VAULT_ADDR"), None);
        assert_eq!(
            env(c, "SECRET_INJECTOR_VAULT_JWT_FILE"),
            Some("/var/run/secrets/secret-injector/vault/token")
        );
        assert_eq!(
            env(c, "SECRET_INJECTOR_VAULT_AUTH_PATH"),
            Some("kubernetes")
        );
        assert!(mounts_of(c).contains(&(
            "secret-injector-vault-token".into(),
            "/var/run/secrets/secret-injector/vault".into(),
            true
        )));
        let spec = env(c, "SECRET_INJECTOR_SPEC").unwrap();
        assert!(spec.contains(r#""vault":{"role":"web"}"#), "{spec}");
    }
    assert!(
        !mounts_of(container(&pod, "nginx"))
            .iter()
            .any(|m| m.0 == "secret-injector-vault-token")
    );
}

#[test]
fn vault_without_a_role_or_an_address_is_refused_saying_where_they_come_from() {
    let err = decide(&vault_pod(&[]), &vault_config())
        .unwrap_err()
        .to_string();
    assert!(err.contains("secret-injector.io/vault-role"), "{err}");
    let err = decide(
        &vault_pod(&[("secret-injector.io/vault-role", "web")]),
        &config(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--vault-address"), "{err}");
}

// A pod may name another server only within the operator's allowlist; the
// address then travels in the spec (the sidecar checks it again), not as env.
#[test]
fn a_pods_own_vault_address_must_be_allowed() {
    let pod = vault_pod(&[
        ("secret-injector.io/vault-role", "web"),
        (
            "secret-injector.io/vault-address",
            "https://169.254.169.254:8200",
        ),
    ]);
    let err = decide(&pod, &vault_config()).unwrap_err().to_string();
    assert!(
        err.contains("169.254.169.254") && err.contains("--allowed-store-hosts"),
        "{err}"
    );
    let mut allowed = vault_config();
    allowed.defaults.limits.store_hosts = "vault.example.com:8200".parse().unwrap();
    let pod = vault_pod(&[
        ("secret-injector.io/vault-role", "web"),
        (
            "secret-injector.io/vault-address",
            "https://vault.example.com:8200",
        ),
        ("secret-injector.io/vault-namespace", "team1"),
    ]);
    let (pod, _) = inject(&pod, &allowed);
    let c = container(&pod, "secret-injector");
    assert_eq!(env(c, "VAULT_ADDR"), None);
    let spec = env(c, "SECRET_INJECTOR_SPEC").unwrap();
    assert!(
        spec.contains(r#""address":"https://vault.example.com:8200""#),
        "{spec}"
    );
    assert!(spec.contains(r#""namespace":"team1""#), "{spec}");
}
