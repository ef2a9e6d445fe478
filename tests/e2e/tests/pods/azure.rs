//! Azure Key Vault against the emulator at the real host names: the seed's
//! manifests byte for byte (they name `namespace: default`, so this store's
//! test runs there), the annotation form, two classes in one pod, and what a
//! pod is refused.

use std::time::Duration;

use e2e::{
    cluster::{self, Ns, repo_file},
    store::{Store, azure::Azure},
    suite::{self, App, Checks, Rotation},
};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::{has, holds, interval, same};

const POD_USER: &str = "system:serviceaccount:default:default";
const SEED_CLASS: &str = "kv-aks-csi-weu-01";
const WITHIN: Duration = Duration::from_secs(180);

#[tokio::test]
#[ignore = "needs the real-pod cluster: tests/e2e/pods.sh"]
async fn azure_seed_manifests_unchanged() {
    let client = cluster::client().await.unwrap();
    let ns = Ns::existing(&client, "default");
    let mut store = Azure::from_env().unwrap();
    let mut checks = Checks::default();

    annotation_form(&mut checks, &ns, &mut store).await;

    // The seed's manifests, in the namespace opted in to CSI conversion.
    ns.delete_object("apps/v1", "Deployment", "nginx-deployment")
        .await
        .unwrap();
    let _ = ns.no_pods("app=nginx", Duration::from_secs(60)).await;
    ns.opt_in_csi().await.unwrap();
    // The seed's Deployment names no ServiceAccount: the Role goes to
    // `default` of this throw-away cluster (the example binds an app's own).
    ns.apply(&binding(
        "secret-injector-pod-default",
        "secret-injector-pod",
    ))
    .await
    .unwrap();
    checks.check(
        "azure: the example Role grants the seed exactly what it needs (can-i)",
        can_i_table(&ns).await,
    );
    seed(&mut checks, &ns, &store).await;
    two_classes(&mut checks, &ns, &store).await;
    missing_secret(&mut checks, &ns, &store).await;
    takeover_refused(&mut checks, &ns).await;

    checks.finish();
}

/// The seed's first Deployment in annotation form: files, the pod's shape,
/// workload identity with kubelet's token, rotation, an outage.
async fn annotation_form(checks: &mut Checks, ns: &Ns, store: &mut Azure) {
    let every = format!("rotation-interval: {}s", interval().as_secs());
    let deployment = repo_file("manifests/examples/seed-pod-annotations.yaml")
        .unwrap()
        .replace("rotation-interval: 1m", &every);
    ns.apply(&deployment).await.unwrap();
    let pod = ns.rolled_out("nginx-deployment", WITHIN).await;
    let pod = match pod {
        Ok(pods) => {
            checks.check(
                "azure: the annotated pod starts (init container fetched, sidecar running)",
                Ok(()),
            );
            pods[0].clone()
        }
        Err(e) => return checks.check("azure: the annotated pod starts", Err(e)),
    };
    let spec = ns.pod(&pod).await.unwrap().spec.unwrap_or_default();
    let names = |c: &[k8s_openapi::api::core::v1::Container]| {
        c.iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    checks.check(
        "azure: the pod has the init container and the sidecar",
        same(
            format!(
                "{} {}",
                names(spec.init_containers.as_deref().unwrap_or_default()),
                names(&spec.containers)
            ),
            "secret-injector-init nginx secret-injector",
        ),
    );
    checks.check(
        "azure: the volume is a real tmpfs",
        has(
            &ns.exec(&pod, "nginx", &["cat", "/proc/mounts"]).await,
            " /mnt/secrets-store tmpfs ",
        ),
    );
    let app_log = ns.logs(&pod, "nginx").await;
    checks.check(
        "azure: the app's output shows both files",
        has(&app_log, "file db-user: administrator")
            .and(has(&app_log, "file db-pass: mysupersecretpassword")),
    );
    checks.check(
        "azure: the init container used workload identity with kubelet's token",
        has(
            &ns.logs(&pod, "secret-injector-init").await,
            "workload identity",
        ),
    );
    let app = App {
        ns,
        pod,
        container: "nginx".into(),
        mount: "/mnt/secrets-store".into(),
        status: String::new(),
        interval: interval(),
    };
    let rotation = Rotation {
        object: "db-pass",
        file: "db-pass",
        status_id: None,
        secret: None,
        value: "rotated-in-the-vault",
    };
    suite::rotation(checks, store, &app, &rotation).await;
    suite::outage(
        checks,
        store,
        &app,
        &[
            ("db-pass", "rotated-in-the-vault"),
            ("db-user", "administrator"),
        ],
    )
    .await;
}

/// What the example Role lets the seed's pods do, and what not.
async fn can_i_table(ns: &Ns) -> anyhow::Result<()> {
    let spc = "secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io";
    let table = [
        (true, "get", "secrets/k8s-secret"),
        (true, "create", "secrets/k8s-secret"),
        (true, "patch", "secrets/k8s-secret"),
        (false, "get", "secrets/other-secret"),
        (false, "patch", "secrets/other-secret"),
        (false, "create", "secrets/other-secret"),
        (false, "list", "secrets"),
        (false, "watch", "secrets"),
        (false, "delete", "secrets/k8s-secret"),
        (true, "create", spc),
        (true, "patch", spc),
        (false, "get", spc),
        (false, "delete", spc),
        (true, "create", "events"),
        (false, "list", "pods"),
        (false, "get", "configmaps"),
    ];
    let mut wrong = Vec::new();
    for (want, verb, what) in table {
        let got = ns.can_i(POD_USER, verb, what).await?;
        println!("pods:   can-i {verb:<6} {what:<60} {got}");
        if got != want {
            wrong.push(format!("{verb} {what}: {got}"));
        }
    }
    anyhow::ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

/// Seed 01+02 (the VM's managed identity), then 10+11 (secretObjects
/// feeding env), the rotation of both, and their collection.
async fn seed(checks: &mut Checks, ns: &Ns, store: &Azure) {
    // Known values under new versions (the annotation form rotated db-pass).
    let user_version = store.rotate("db-user", "administrator").await.unwrap();
    let pass_version = store
        .rotate("db-pass", "mysupersecretpassword")
        .await
        .unwrap();
    let seed_files = [
        ("db-user", "administrator"),
        ("db-pass", "mysupersecretpassword"),
    ];
    for f in ["01-secretProviderClass.yml", "02-deployment.yml"] {
        ns.apply(&seed_file(f)).await.unwrap();
    }
    let Some(pod) = rolled_out(
        checks,
        ns,
        "azure: seed 01+02: the CSI Deployment rolls out",
    )
    .await
    else {
        return;
    };
    let volumes = ns
        .pod(&pod)
        .await
        .map(|p| pod_json(&p)["spec"]["volumes"].clone());
    checks.check(
        "azure: seed 01+02: the CSI volume became a memory volume",
        volumes.and_then(|v| {
            let medium = v
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == "secrets-mount"))
                .map(|v| v["emptyDir"]["medium"].clone());
            same(
                medium.unwrap_or_default().as_str().unwrap_or_default(),
                "Memory",
            )
        }),
    );
    let app = seed_app(ns, &pod);
    checks.check(
        "azure: seed 01+02: the app reads both files",
        suite::files(&app, &seed_files).await,
    );
    checks.check(
        "azure: seed 01+02: the token came from IMDS for the class's user-assigned identity",
        has(
            &ns.logs(&pod, "secret-injector-init").await,
            &format!("managed identity (client {})", store.client),
        ),
    );

    for f in [
        "10-secretProviderClass_secretObjects.yml",
        "11-deployment.yml",
    ] {
        ns.apply(&seed_file(f)).await.unwrap();
    }
    let Some(pod) = rolled_out(
        checks,
        ns,
        "azure: seed 10+11: the Deployment with secretKeyRef env rolls out",
    )
    .await
    else {
        return;
    };
    let uid = ns.pod(&pod).await.unwrap().metadata.uid.unwrap_or_default();
    let app = seed_app(ns, &pod);
    checks.check(
        "azure: seed 10+11: files db-user and db-pass",
        suite::files(&app, &seed_files).await,
    );
    checks.check(
        "azure: seed 10+11: the synced Secret k8s-secret",
        suite::synced(
            ns,
            &[
                ("k8s-secret", "username", "administrator"),
                ("k8s-secret", "password", "mysupersecretpassword"),
            ],
        )
        .await,
    );
    let secret = ns.secret_object("k8s-secret").await.ok().flatten();
    checks.check(
        "azure: seed 10+11: k8s-secret is Opaque",
        same(
            secret
                .as_ref()
                .and_then(|s| s.type_.clone())
                .unwrap_or_default(),
            "Opaque",
        ),
    );
    let app_log = ns.logs(&pod, "nginx").await;
    checks.check(
        "azure: seed 10+11: kubelet resolved DB_USER and DB_PASS from the synced Secret",
        has(&app_log, "env DB_USER=administrator")
            .and(has(&app_log, "env DB_PASS=mysupersecretpassword")),
    );
    let status = ns.pod_status(&app.status).await;
    checks.check(
        "azure: seed 10+11: the PodStatus names the pod and the class, mounted",
        status
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|s| {
                let s = &s["status"];
                same(
                    format!(
                        "{} {} {}",
                        s["podName"], s["secretProviderClassName"], s["mounted"]
                    ),
                    format!("\"{pod}\" \"{SEED_CLASS}\" true"),
                )
            }),
    );
    checks.check(
        "azure: seed 10+11: the PodStatus has both versions",
        suite::versions(
            &app,
            &[
                ("secret/db-user", &user_version),
                ("secret/db-pass", &pass_version),
            ],
        )
        .await,
    );
    let secret_owners = secret
        .map(|s| s.metadata.owner_references.unwrap_or_default())
        .unwrap_or_default();
    checks.check(
        "azure: seed 10+11: the Secret is owned by the pod",
        holds(secret_owners.iter().any(|o| o.uid == uid), || {
            let owners: Vec<&String> = secret_owners.iter().map(|o| &o.uid).collect();
            format!("owners {owners:?}, not the pod {uid}")
        }),
    );
    checks.check(
        "azure: seed 10+11: the PodStatus is owned by the pod",
        status.map_err(|e| anyhow::anyhow!("{e:#}")).and_then(|s| {
            let uids: Vec<&str> = s["metadata"]["ownerReferences"]
                .as_array()
                .map(|o| o.iter().filter_map(|o| o["uid"].as_str()).collect())
                .unwrap_or_default();
            same(uids.join(" "), &uid)
        }),
    );

    let rotation = Rotation {
        object: "db-pass",
        file: "db-pass",
        status_id: Some("secret/db-pass"),
        secret: Some(("k8s-secret", "password")),
        value: "rotated-for-the-seed",
    };
    suite::rotation(checks, store, &app, &rotation).await;
    let fields = format!("involvedObject.name={pod},reason=SecretRotationComplete");
    let event = e2e::eventually(
        "the rotation Event",
        Duration::from_secs(10),
        "yes",
        || async {
            let events = ns.events(&fields).await?;
            let named = events
                .iter()
                .any(|e| e.message.as_deref().unwrap_or_default().contains("db-pass"));
            Ok(if named { "yes" } else { "no" }.to_string())
        },
    )
    .await;
    checks.check(
        "azure: seed rotation: an Event on the pod names db-pass",
        event.map(drop),
    );
    checks.check(
        "azure: seed rotation: no Event carries the value",
        ns.events_text().await.and_then(|t| {
            anyhow::ensure!(
                !t.contains("rotated-for-the-seed"),
                "an Event has the value"
            );
            Ok(())
        }),
    );

    // The garbage collector removes the Secret and the PodStatus with the last pod.
    ns.delete_object("apps/v1", "Deployment", "nginx-deployment")
        .await
        .unwrap();
    let gone = e2e::eventually("collection", Duration::from_secs(90), "gone", || async {
        let secret = ns.secret_object("k8s-secret").await?.is_some();
        let status = ns.pod_status_opt(&app.status).await?.is_some();
        Ok(format!("Secret there: {secret}, PodStatus there: {status}"))
            .map(|s| if !secret && !status { "gone".into() } else { s })
    })
    .await;
    checks.check(
        "azure: seed: the Secret and the PodStatus go with their last pod",
        suite_report(gone),
    );
}

/// The CSI driver's own case: a pod with two volumes naming two classes,
/// each syncing a Secret the app reads as env; the second authenticates
/// with a service principal through `nodePublishSecretRef`.
async fn two_classes(checks: &mut Checks, ns: &Ns, store: &Azure) {
    store
        .rotate("db-pass", "mysupersecretpassword")
        .await
        .unwrap();
    let (sp_client, sp_secret) = (&store.sp_client, &store.sp_secret);
    ns.apply(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: secret-injector-multiple}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [get, create, patch], resourceNames: [foosecret-0, foosecret-1]}}
---
{}
---
apiVersion: v1
kind: Secret
metadata: {{name: secrets-store-creds}}
stringData: {{clientid: "{sp_client}", clientsecret: "{sp_secret}"}}
"#,
        binding("secret-injector-multiple", "secret-injector-multiple")
    ))
    .await
    .unwrap();
    for f in ["multiple-classes-spc.yaml", "multiple-classes-pod.yaml"] {
        ns.apply(&repo_file(&format!("manifests/examples/azure/{f}")).unwrap())
            .await
            .unwrap();
    }
    let pod = "secrets-store-inline-multiple-crd";
    let ready = ns.ready_pod(pod, WITHIN).await;
    let started = ready.is_ok();
    checks.check(
        "azure: two classes: the pod with two CSI volumes starts",
        ready,
    );
    if !started {
        return;
    }
    let read = |path: &'static str| ns.read(pod, "nginx", path);
    checks.check(
        "azure: two classes: /mnt/secrets-store-0 has spc-0's object (workload identity)",
        read("/mnt/secrets-store-0/secretalias")
            .await
            .and_then(|v| same(v, "administrator")),
    );
    checks.check(
        "azure: two classes: /mnt/secrets-store-1 has spc-1's object (service principal)",
        read("/mnt/secrets-store-1/secretalias")
            .await
            .and_then(|v| same(v, "mysupersecretpassword")),
    );
    let spec = pod_json(&ns.pod(pod).await.unwrap())["spec"].clone();
    let csi: Vec<&Value> = spec["volumes"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|v| !v["csi"].is_null())
                .map(|v| &v["name"])
                .collect()
        })
        .unwrap_or_default();
    checks.check(
        "azure: two classes: neither volume is left a CSI volume",
        same(format!("{csi:?}"), "[]"),
    );
    checks.check(
        "azure: two classes: foosecret-0 and foosecret-1 synced from their classes",
        suite::synced(
            ns,
            &[
                ("foosecret-0", "username", "administrator"),
                ("foosecret-1", "username", "mysupersecretpassword"),
            ],
        )
        .await,
    );
    checks.check(
        "azure: two classes: kubelet resolved SECRET_USERNAME_0 and _1 from the synced Secrets",
        ns.exec(
            pod,
            "nginx",
            &["sh", "-c", "echo \"$SECRET_USERNAME_0 $SECRET_USERNAME_1\""],
        )
        .await
        .and_then(|v| same(v, "administrator mysupersecretpassword\n")),
    );
    let mut statuses = Vec::new();
    for class in ["azure-spc-0", "azure-spc-1"] {
        let status = ns
            .pod_status(&format!("{pod}-{}-{class}", ns.name))
            .await
            .map(|s| {
                let s = &s["status"];
                format!(
                    "{} {} {}",
                    s["secretProviderClassName"], s["mounted"], s["objects"][0]["id"]
                )
            });
        statuses.push(status.unwrap_or_else(|e| format!("{e:#}")));
    }
    checks.check(
        "azure: two classes: a PodStatus for each class",
        same(
            statuses.join(", "),
            r#""azure-spc-0" true "secret/db-user", "azure-spc-1" true "secret/db-pass""#,
        ),
    );
    let init_log = ns.logs(pod, "secret-injector-init").await;
    checks.check(
        "azure: two classes: the init container used the service principal of nodePublishSecretRef",
        has(&init_log, &format!("client secret (client {sp_client})")),
    );
    let app_mounts: Vec<&Value> = spec["containers"][0]["volumeMounts"]
        .as_array()
        .map(|m| m.iter().map(|m| &m["name"]).collect())
        .unwrap_or_default();
    checks.check(
        "azure: two classes: the app's container does not mount the credentials Secret",
        holds(
            !app_mounts
                .iter()
                .any(|m| m.to_string().contains("provider-secret")),
            || format!("the app mounts {app_mounts:?}"),
        ),
    );
    let sidecar_log = ns.logs(pod, "secret-injector").await;
    let leaked = [&init_log, &sidecar_log]
        .iter()
        .any(|l| l.as_ref().is_ok_and(|l| l.contains(sp_secret.as_str())));
    checks.check(
        "azure: two classes: no log carries the service principal's secret",
        holds(!leaked && init_log.is_ok() && sidecar_log.is_ok(), || {
            "a log has it, or could not be read".into()
        }),
    );
    let _ = ns.delete_object("v1", "Pod", pod).await;
}

/// A secret the vault does not have: the app never starts, and the pod says
/// why as a CSI volume that cannot mount would (Warning FailedMount).
async fn missing_secret(checks: &mut Checks, ns: &Ns, store: &Azure) {
    let pod = "missing-secret";
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  annotations:
    secret-injector.io/inject: "true"
    secret-injector.io/secret-db-user: azure://{vault}/secrets/db-user
    secret-injector.io/secret-api-key: azure://{vault}/secrets/no-such-secret
    secret-injector.io/tenant-id: {tenant}
    secret-injector.io/client-id: {client}
spec:
  containers: [{{name: app, image: nginx:1.23.1}}]
"#,
        vault = store.vault,
        tenant = store.tenant,
        client = store.client,
    ))
    .await
    .unwrap();
    let fields = format!("involvedObject.name={pod},reason=FailedMount");
    let event = e2e::eventually(
        "a FailedMount Event",
        Duration::from_secs(60),
        "yes",
        || async {
            let events = ns.events(&fields).await?;
            let named = events.iter().any(|e| {
                e.message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("cannot fetch api-key: 404")
            });
            Ok(if named { "yes" } else { "no" }.to_string())
        },
    )
    .await;
    checks.check(
        "azure: a missing secret: a FailedMount Event on the pod names the file",
        event.map(drop),
    );
    checks.check(
        "azure: a missing secret: the app container has not started",
        app_not_started(&ns.pod(pod).await.unwrap()),
    );
    let _ = ns.delete_object("v1", "Pod", pod).await;
}

/// H2: secretObjects never take over a Secret they did not create. A Secret
/// made by someone else under the class's secretName: the pod is refused
/// (its init container fails at once, saying why) and the Secret stays.
async fn takeover_refused(checks: &mut Checks, ns: &Ns) {
    ns.apply(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: k8s-secret}
stringData: {username: theirs, other: kept}
"#,
    )
    .await
    .unwrap();
    let snapshot = || async {
        let s = ns.secret_object("k8s-secret").await?.unwrap_or_default();
        anyhow::Ok(json!({
            "data": s.data, "type": s.type_, "labels": s.metadata.labels,
            "owners": s.metadata.owner_references, "rv": s.metadata.resource_version,
        }))
    };
    let before = snapshot().await.unwrap();
    for f in [
        "10-secretProviderClass_secretObjects.yml",
        "11-deployment.yml",
    ] {
        ns.apply(&seed_file(f)).await.unwrap();
    }
    let refused = e2e::eventually("the refusal", Duration::from_secs(90), "yes", || async {
        let events = ns.events("reason=SecretSyncRefused").await?;
        let event = events.iter().any(|e| {
            e.message
                .as_deref()
                .unwrap_or_default()
                .contains("k8s-secret")
        });
        let pods = ns
            .pods()
            .list(&kube::api::ListParams::default().labels("app=nginx"))
            .await?;
        let init_says = pods.items.iter().any(|p| {
            pod_json(p)["status"]["initContainerStatuses"][0]
                .to_string()
                .contains("never takes over")
        });
        Ok(if event || init_says { "yes" } else { "no" }.to_string())
    })
    .await;
    checks.check(
        "azure: h2: a pod whose secretObjects name someone else's Secret is refused, saying why",
        refused.map(drop),
    );
    let pods = ns
        .pods()
        .list(&kube::api::ListParams::default().labels("app=nginx"))
        .await
        .unwrap();
    checks.check(
        "azure: h2: the app of that pod has not started",
        pods.items
            .first()
            .ok_or_else(|| anyhow::anyhow!("no pod"))
            .and_then(app_not_started),
    );
    checks.check(
        "azure: h2: the Secret is byte-identical afterwards (data, type, labels, owners, resourceVersion)",
        snapshot().await.and_then(|after| same(after.to_string(), before.to_string())),
    );
    let _ = ns
        .delete_object("apps/v1", "Deployment", "nginx-deployment")
        .await;
    let _ = ns.no_pods("app=nginx", Duration::from_secs(60)).await;
    let _ = ns.delete_object("v1", "Secret", "k8s-secret").await;
}

/// A RoleBinding of `role` to the pods' ServiceAccount `default`.
fn binding(name: &str, role: &str) -> String {
    format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: {name}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {role}}}
subjects: [{{kind: ServiceAccount, name: default, namespace: default}}]
"#
    )
}

fn seed_file(name: &str) -> String {
    repo_file(&format!("manifests/examples/seed/{name}")).unwrap()
}

fn seed_app<'a>(ns: &'a Ns, pod: &str) -> App<'a> {
    App {
        ns,
        pod: pod.to_string(),
        container: "nginx".into(),
        mount: "/mnt/secrets-store".into(),
        status: format!("{pod}-{}-{SEED_CLASS}", ns.name),
        interval: interval(),
    }
}

/// `nginx-deployment` rolled out (one check named `what`); its pod.
async fn rolled_out(checks: &mut Checks, ns: &Ns, what: &str) -> Option<String> {
    match ns.rolled_out("nginx-deployment", WITHIN).await {
        Ok(pods) => {
            checks.check(what, Ok(()));
            pods.into_iter().next()
        }
        Err(e) => {
            checks.check(what, Err(e));
            None
        }
    }
}

fn pod_json(pod: &Pod) -> Value {
    serde_json::to_value(pod).unwrap_or_default()
}

fn app_not_started(pod: &Pod) -> anyhow::Result<()> {
    let started = pod_json(pod)["status"]["containerStatuses"][0]["started"] == true;
    anyhow::ensure!(!started, "the app container started");
    Ok(())
}

fn suite_report(took: anyhow::Result<Duration>) -> anyhow::Result<()> {
    let took = took?;
    println!("pods:   (after {:.1} s)", took.as_secs_f64());
    Ok(())
}
