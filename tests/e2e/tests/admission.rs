//! The webhook registered with a real kube-apiserver 1.20: what the apiserver
//! stores is what users get. Run through `tests/e2e/run.sh`, which starts
//! etcd, the apiserver and the webhook, and sets the variables read here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
        core::v1::{Namespace, Pod},
    },
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

const WEBHOOK_CONFIG: &str = "secret-injector-e2e";
const NAMESPACE_LABEL: &str = "secret-injector-e2e";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through tests/e2e/run.sh, which starts the apiserver and the webhook")
    })
}

struct Cluster {
    client: Client,
    namespace: String,
    kubeconfig: String,
}

impl Cluster {
    /// A fresh namespace the webhook applies to, with the webhook registered.
    async fn new(test: &str) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let kubeconfig = env("KUBECONFIG");
        let client = Client::try_default().await.unwrap();
        register_webhook(&client).await;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let namespace = format!("{test}-{nanos}");
        create_namespace(&client, &namespace, true).await;
        let cluster = Self {
            client,
            namespace,
            kubeconfig,
        };
        cluster.wait_until_webhook_is_called().await;
        cluster
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn accepts(&self, pod: Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap()
    }

    async fn rejects(&self, pod: Value) -> String {
        let pod: Pod = serde_json::from_value(pod).unwrap();
        match self.pods().create(&PostParams::default(), &pod).await {
            Ok(_) => panic!("the apiserver accepted a pod it should have refused"),
            Err(kube::Error::Api(status)) => status.message,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// The apiserver learns about webhook configurations asynchronously:
    /// wait until a dry-run create comes back injected.
    async fn wait_until_webhook_is_called(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe: Pod = serde_json::from_value(seed_pod("probe")).unwrap();
        let params = PostParams {
            dry_run: true,
            ..Default::default()
        };
        loop {
            let last = match self.pods().create(&params, &probe).await {
                Ok(pod) if annotation(&pod, "secret-injector.io/status") == Some("injected") => {
                    return;
                }
                Ok(_) => "created without injection".to_owned(),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "the apiserver never injected a pod: {last}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `kubectl apply -f -` with this manifest; returns (success, stderr).
    fn kubectl_apply(&self, manifest: &Value) -> (bool, String) {
        let mut child = Command::new("kubectl")
            .args([
                "--kubeconfig",
                &self.kubeconfig,
                "-n",
                &self.namespace,
                "apply",
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl is installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(manifest.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn cleanup(self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await;
    }
}

async fn create_namespace(client: &Client, name: &str, selected: bool) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut labels = serde_json::Map::new();
    if selected {
        labels.insert(NAMESPACE_LABEL.into(), json!("enabled"));
    }
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Registers the running webhook by URL, as an operator would by Service.
async fn register_webhook(client: &Client) {
    let ca = std::fs::read(env("E2E_WEBHOOK_CA")).unwrap();
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": WEBHOOK_CONFIG},
        "webhooks": [{
            "name": "inject.secret-injector.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": env("E2E_WEBHOOK_URL"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "enabled"}},
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5
        }, {
            // Namespaces that opted in to running CSI-driver manifests unchanged.
            "name": "csi.secret-injector.io",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {
                "url": env("E2E_WEBHOOK_URL").replace("/mutate", "/mutate-csi"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"secret-injector.io/csi-compat": "enabled"}},
            "sideEffects": "None",
            "reinvocationPolicy": "IfNeeded",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5
        }]
    }))
    .unwrap();
    let _: &ByteString = config.webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .as_ref()
        .unwrap();
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    match api.create(&PostParams::default(), &config).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("registering the webhook: {e}"),
    }
}

/// The seed Deployment's pod in annotation form.
fn seed_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "nginx"},
            "annotations": {
                "secret-injector.io/inject": "true",
                "secret-injector.io/secret-db-user": "azure://kv-aks-csi-weu-01/secrets/db-user",
                "secret-injector.io/secret-db-pass": "azure://kv-aks-csi-weu-01/secrets/db-pass",
                "secret-injector.io/rotation-interval": "1m",
                "secret-injector.io/tenant-id": "00000000-0000-0000-0000-00000000000a",
                "secret-injector.io/client-id": "00000000-0000-0000-0000-000000000001"
            }
        },
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.23.1",
                "ports": [{"containerPort": 80}],
                "resources": {"requests": {"memory": "64Mi", "cpu": "250m"},
                              "limits": {"memory": "128Mi", "cpu": "500m"}}
            }]
        }
    })
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn names(containers: Option<&Vec<k8s_openapi::api::core::v1::Container>>) -> Vec<String> {
    containers
        .into_iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn opted_in_pod_is_stored_with_volume_containers_and_mounts() {
    let cluster = Cluster::new("e2e-inject").await;
    let stored = cluster.accepts(seed_pod("nginx")).await;
    let spec = stored.spec.as_ref().unwrap();

    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secret-injector-secrets")
        .unwrap();
    assert_eq!(
        volume.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    let token = spec
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

    // Kubernetes 1.20 has no native sidecars: the webhook asked and chose the pair.
    assert_eq!(
        names(spec.init_containers.as_ref()),
        ["secret-injector-init"]
    );
    assert_eq!(names(Some(&spec.containers)), ["nginx", "secret-injector"]);
    let nginx = &spec.containers[0];
    let mount = nginx
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "secret-injector-secrets")
        .unwrap();
    assert_eq!(mount.mount_path, "/mnt/secrets-store");
    assert_eq!(mount.read_only, Some(true));
    assert_eq!(
        annotation(&stored, "secret-injector.io/status"),
        Some("injected")
    );
    cluster.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn pod_without_opt_in_is_stored_exactly_as_sent() {
    let cluster = Cluster::new("e2e-untouched").await;
    let mut pod = seed_pod("plain");
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/inject");
    let through_webhook = cluster.accepts(pod.clone()).await;

    // The same pod where the webhook is never called: the apiserver's own
    // defaulting only.
    let reference_ns = format!("{}-ref", cluster.namespace);
    create_namespace(&cluster.client, &reference_ns, false).await;
    let reference: Pod = Api::namespaced(cluster.client.clone(), &reference_ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(through_webhook.spec, reference.spec);
    assert_eq!(
        through_webhook.metadata.annotations,
        reference.metadata.annotations
    );
    assert_eq!(through_webhook.metadata.labels, reference.metadata.labels);
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let _ = namespaces
        .delete(&reference_ns, &DeleteParams::default())
        .await;
    cluster.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn bad_annotation_is_refused_and_kubectl_names_it() {
    let cluster = Cluster::new("e2e-refuse").await;
    let mut pod = seed_pod("typo");
    pod["metadata"]["annotations"]["secret-injector.io/rotation-interval"] = json!("every minute");
    let message = cluster.rejects(pod.clone()).await;
    assert!(message.contains("denied the request"), "{message}");
    assert!(
        message.contains(
            "annotation secret-injector.io/rotation-interval: \"every minute\" is not valid"
        ),
        "{message}"
    );

    // What a user sees.
    let mut typo = seed_pod("typo2");
    typo["metadata"]["annotations"]["secret-injector.io/rotation-intreval"] = json!("1m");
    let (ok, stderr) = cluster.kubectl_apply(&typo);
    assert!(!ok, "kubectl apply succeeded");
    assert!(
        stderr.contains("admission webhook \"inject.secret-injector.io\" denied the request"),
        "{stderr}"
    );
    assert!(stderr.contains("secret-injector.io/rotation-intreval is not known; did you mean secret-injector.io/rotation-interval?"), "{stderr}");
    assert!(cluster.pods().get_opt("typo2").await.unwrap().is_none());
    cluster.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn pod_that_must_finish_gets_the_init_container_only() {
    let cluster = Cluster::new("e2e-job").await;
    let mut pod = seed_pod("once");
    pod["spec"]["restartPolicy"] = json!("Never");
    let stored = cluster.accepts(pod).await;
    let spec = stored.spec.as_ref().unwrap();
    assert_eq!(names(Some(&spec.containers)), ["nginx"]);
    assert_eq!(
        names(spec.init_containers.as_ref()),
        ["secret-injector-init"]
    );
    let reason = annotation(&stored, "secret-injector.io/no-sidecar-reason").unwrap();
    assert!(reason.contains("restartPolicy Never"), "{reason}");
    cluster.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn server_side_dry_run_shows_the_injection_and_stores_nothing() {
    let cluster = Cluster::new("e2e-dry-run").await;
    let pod: Pod = serde_json::from_value(seed_pod("preview")).unwrap();
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let previewed = cluster.pods().create(&params, &pod).await.unwrap();
    assert_eq!(
        names(Some(&previewed.spec.as_ref().unwrap().containers)),
        ["nginx", "secret-injector"]
    );
    assert!(cluster.pods().get_opt("preview").await.unwrap().is_none());
    cluster.cleanup().await;
}

const SEED_CLASS: &str =
    include_str!("../../../manifests/examples/seed/01-secretProviderClass.yml");
const SEED_DEPLOYMENT: &str = include_str!("../../../manifests/examples/seed/02-deployment.yml");

/// Creates until the webhook's watch has seen the class (it answers "not
/// found" until then).
async fn create_when_class_known(pods: &Api<Pod>, pod: &Pod) -> Pod {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match pods.create(&PostParams::default(), pod).await {
            Ok(stored) => return stored,
            Err(kube::Error::Api(status))
                if status.message.contains("not found in namespace")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn the_seed_class_and_csi_deployment_run_unchanged_in_an_opted_in_namespace() {
    let cluster = Cluster::new("e2e-csi").await;
    let client = cluster.client.clone();
    // The seed's class, byte for byte (it names namespace default).
    let mut apply = Command::new("kubectl")
        .args(["--kubeconfig", &cluster.kubeconfig, "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(SEED_CLASS.as_bytes())
        .unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The namespace opts in.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"metadata": {"labels": {"secret-injector.io/csi-compat": "enabled"}}});
    namespaces
        .patch(
            "default",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();

    // The seed Deployment's pod template, as the ReplicaSet controller creates it.
    let deployment = yaml_to_json(SEED_DEPLOYMENT);
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["generateName"] = json!("nginx-deployment-");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"], "spec": template["spec"]}))
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let stored = create_when_class_known(&pods, &pod).await;
    let spec = stored.spec.as_ref().unwrap();
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "secrets-mount")
        .unwrap();
    assert!(volume.csi.is_none());
    assert_eq!(
        volume.empty_dir.as_ref().unwrap().medium.as_deref(),
        Some("Memory")
    );
    assert_eq!(
        names(spec.init_containers.as_ref()),
        ["secret-injector-init"]
    );
    assert_eq!(names(Some(&spec.containers)), ["nginx", "secret-injector"]);
    let _ = pods
        .delete(
            stored.metadata.name.as_deref().unwrap(),
            &DeleteParams::default(),
        )
        .await;
    cluster.cleanup().await;
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn a_pod_naming_a_missing_class_is_refused_with_its_name() {
    let cluster = Cluster::new("e2e-noclass").await;
    let mut pod = seed_pod("classless");
    let annotations = pod["metadata"]["annotations"].as_object_mut().unwrap();
    annotations.remove("secret-injector.io/secret-db-user");
    annotations.remove("secret-injector.io/secret-db-pass");
    annotations.insert(
        "secret-injector.io/secret-provider-class".into(),
        json!("no-such-class"),
    );
    let message = cluster.rejects(pod).await;
    assert!(
        message.contains("SecretProviderClass \"no-such-class\" not found in namespace"),
        "{message}"
    );
    cluster.cleanup().await;
}

fn yaml_to_json(text: &str) -> serde_json::Value {
    // kubectl does this; the test has no YAML crate, so ask kubectl.
    let mut child = Command::new("kubectl")
        .args(["create", "--dry-run=client", "-o", "json", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs the apiserver harness: tests/e2e/run.sh"]
async fn the_service_accounts_client_id_reaches_the_sidecar() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let cluster = Cluster::new("e2e-account").await;
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "app-sa",
        "annotations": {"azure.workload.identity/client-id": "11111111-2222-3333-4444-555555555555"}}}))
    .unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();

    let mut pod = seed_pod("with-account");
    pod["spec"]["serviceAccountName"] = json!("app-sa");
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("secret-injector.io/client-id");
    // The webhook's watch sees the new account within moments: dry runs until then.
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let typed: Pod = serde_json::from_value(pod).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Until the account is seen, the pod names no identity and is refused
        // (never given the node's managed identity instead).
        let stored = match cluster.pods().create(&params, &typed).await {
            Ok(stored) => stored,
            Err(e) => {
                assert!(
                    e.to_string().contains("names no identity"),
                    "unexpected refusal: {e}"
                );
                assert!(Instant::now() < deadline, "still refused: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let sidecar = stored
            .spec
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.name == "secret-injector")
            .unwrap();
        let client_id = sidecar
            .env
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.name == "AZURE_CLIENT_ID")
            .and_then(|e| e.value);
        if client_id.as_deref() == Some("11111111-2222-3333-4444-555555555555") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "AZURE_CLIENT_ID is {client_id:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.cleanup().await;
}
