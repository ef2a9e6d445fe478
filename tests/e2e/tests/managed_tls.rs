//! Self-managed TLS against a real kube-apiserver 1.20: two webhook replicas
//! started together with no certificate end with one CA in one Secret, write
//! it into their MutatingWebhookConfiguration, and the apiserver then calls
//! them; a forced renewal under a steady stream of pod creations fails none;
//! a restarted replica keeps the CA. Run through `tests/e2e/run.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    core::v1::{Namespace, Pod, Secret},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::json;

const SECRET: &str = "secret-injector-tls";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    fn start(namespace: &str, configuration: &str, port: u16) -> Self {
        let bin = std::env::var("E2E_WEBHOOK_BIN")
            .unwrap_or_else(|_| "../../target/debug/webhook".into());
        let child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--tls-managed",
            ])
            .args(["--namespace", namespace, "--tls-names", "127.0.0.1"])
            .args([
                "--webhook-configuration",
                configuration,
                "--tls-check-interval",
                "1s",
            ])
            .args(["--native-sidecar", "never"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self { child, port }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The serving certificate a replica presents, verified against `bundle`
/// as the apiserver verifies it; None if it does not verify (or is not up).
async fn served_leaf(port: u16, bundle: &[u8]) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle).flatten() {
        roots.add(cert).ok()?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let tls = connector.connect(name, tcp).await.ok()?;
    tls.get_ref()
        .1
        .peer_certificates()?
        .first()
        .map(|c| c.as_ref().to_vec())
}

async fn secret_data(secrets: &Api<Secret>, key: &str) -> Option<Vec<u8>> {
    let secret = secrets.get_opt(SECRET).await.ok()??;
    secret.data?.get(key).map(|v| v.0.clone())
}

async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let until = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn webhook(name: &str, port: u16) -> serde_json::Value {
    json!({
        "name": name,
        "admissionReviewVersions": ["v1"],
        // No caBundle: the replicas write it.
        "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate")},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
        "namespaceSelector": {"matchLabels": {"secret-injector-tls-e2e": "enabled"}},
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5
    })
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            "secret-injector.io/inject": "true",
            "secret-injector.io/client-id": "00000000-0000-0000-0000-000000000001",
            "secret-injector.io/secret-db-user": "azure://kv-aks-csi-weu-01/secrets/db-user"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.23.1"}], "serviceAccountName": "default"}
    }))
    .unwrap()
}

#[tokio::test]
#[ignore = "needs the apiserver of tests/e2e/run.sh"]
async fn replicas_share_one_ca_renew_without_failures_and_keep_it_across_restarts() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::try_default().await.unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let namespace = format!("tls-{nanos}");
    let configuration = format!("secret-injector-tls-{nanos}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace,
                "labels": {"secret-injector-tls-e2e": "enabled"}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    // One webhook entry per replica, so every pod creation calls both.
    let (port_a, port_b) = (free_port(), free_port());
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configurations
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": configuration},
                "webhooks": [webhook("a.secret-injector.io", port_a), webhook("b.secret-injector.io", port_b)]}))
            .unwrap(),
        )
        .await
        .unwrap();

    // Started together, no certificate given.
    let mut a = Replica::start(&namespace, &configuration, port_a);
    let b = Replica::start(&namespace, &configuration, port_b);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let bundle = wait_for("the Secret", Duration::from_secs(30), || {
        secret_data(&secrets, "ca.crt")
    })
    .await;
    assert_eq!(
        CertificateDer::pem_slice_iter(&bundle).count(),
        1,
        "two replicas started together end with one CA"
    );
    // The bundle reaches every webhook of the configuration.
    wait_for("the caBundle", Duration::from_secs(30), || {
        let configurations = configurations.clone();
        let configuration = configuration.clone();
        let bundle = bundle.clone();
        async move {
            let c = configurations.get(&configuration).await.ok()?;
            let all = c
                .webhooks?
                .iter()
                .all(|w| w.client_config.ca_bundle.as_ref().map(|b| &b.0) == Some(&bundle));
            all.then_some(())
        }
    })
    .await;
    let leaf_a = wait_for("replica a", Duration::from_secs(30), || {
        served_leaf(a.port, &bundle)
    })
    .await;
    let leaf_b = wait_for("replica b", Duration::from_secs(30), || {
        served_leaf(b.port, &bundle)
    })
    .await;
    assert_eq!(
        leaf_a, leaf_b,
        "both replicas serve the Secret's certificate"
    );

    // The apiserver calls them: a pod is injected.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let created = wait_for("an injected pod", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod("first"))
                .await
                .ok()
        }
    })
    .await;
    let containers: Vec<_> = created
        .spec
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert!(
        containers.contains(&"secret-injector".to_owned()),
        "{containers:?}"
    );

    // A steady stream of pod creations through both replicas.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stream = {
        let (pods, stop, ok, failed) = (pods.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                match pods
                    .create(&PostParams::default(), &pod(&format!("stream-{i}")))
                    .await
                {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("pod creation failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Forced renewal: a new serving certificate from the same CA, picked up
    // by both replicas while pods keep coming.
    secrets
        .patch(
            SECRET,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"secret-injector.io/renew": "e2e-1"}}}),
            ),
        )
        .await
        .unwrap();
    let renewed_a = wait_for(
        "replica a to serve the renewed certificate",
        Duration::from_secs(30),
        || {
            let (bundle, old) = (bundle.clone(), leaf_a.clone());
            async move {
                served_leaf(port_a, &bundle)
                    .await
                    .filter(|leaf| *leaf != old)
            }
        },
    )
    .await;
    let renewed_b = wait_for(
        "replica b to serve the renewed certificate",
        Duration::from_secs(30),
        || {
            let (bundle, old) = (bundle.clone(), leaf_b.clone());
            async move {
                served_leaf(port_b, &bundle)
                    .await
                    .filter(|leaf| *leaf != old)
            }
        },
    )
    .await;
    assert_eq!(renewed_a, renewed_b);
    assert_eq!(
        secret_data(&secrets, "ca.crt").await.unwrap(),
        bundle,
        "renewal keeps the CA"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    stream.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("managed TLS: {ok} pods created during the renewal, {failed} failed");
    assert!(ok > 20, "the stream ran: {ok}");
    assert_eq!(failed, 0);

    // A restarted replica reads the Secret: same CA, same certificate.
    drop(std::mem::replace(
        &mut a,
        Replica::start(&namespace, &configuration, port_a),
    ));
    let after_restart = wait_for("the restarted replica", Duration::from_secs(30), || {
        served_leaf(port_a, &bundle)
    })
    .await;
    assert_eq!(after_restart, renewed_a);
    assert_eq!(secret_data(&secrets, "ca.crt").await.unwrap(), bundle);

    drop((a, b));
    let _ = configurations
        .delete(&configuration, &DeleteParams::default())
        .await;
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
}
