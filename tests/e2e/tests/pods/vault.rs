//! HashiCorp Vault / OpenBao against a real OpenBao in the cluster's
//! network namespace (`vault.secret-injector-e2e.internal`, HTTPS), its
//! kubernetes auth method reviewing kubelet's projected tokens with this
//! cluster's apiserver (TokenReview), kv-v2 and the database engine
//! against a real PostgreSQL. The annotation form, the Vault CSI provider's
//! kv-sync class and Deployment, dynamic credentials an app keeps logging
//! in with, what a pod is refused, an outage, and no value in any log.

use std::time::{Duration, Instant};

use base64::Engine;

use e2e::{
    cluster::{self, Ns, repo_file},
    env,
    store::vault::Vault,
    suite::{self, App, Checks, Rotation},
};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use serde_json::json;

use crate::{has, holds, interval, same};

const NS: &str = "e2e-vault";
const WITHIN: Duration = Duration::from_secs(180);
const KV_PASSWORD: &str = "kv-pass-never-logged-7d21";
const KV_ROTATED: &str = "kv-rotated-never-logged-e94b";
const SYNC1_ROTATED: &str = "hello-sync1-rotated";
/// The database engine's TTLs: renewed at two thirds of 20 s until 45 s caps it.
const DB_TTL: &str = "20s";
const DB_MAX_TTL: Duration = Duration::from_secs(45);
/// The app of the database pod (busybox: nc speaks PostgreSQL's protocol).
const PG_LOGIN: &str = include_str!("pg-login.sh");

#[tokio::test]
#[ignore = "needs the real-pod cluster: tests/e2e/pods.sh"]
async fn vault_openbao_kubernetes_auth_real_pods() {
    let started = Instant::now();
    let client = cluster::client().await.unwrap();
    let ns = Ns::create(&client, NS).await.unwrap();
    let mut store = Vault::start().await.unwrap();
    let mut checks = Checks::default();
    let reviewer = reviewer_token(&client).await.unwrap();
    let pg_password = std::fs::read_to_string(env("E2E_VAULT_PG_PW_FILE").unwrap()).unwrap();
    configure(&store, &reviewer, &pg_password).await.unwrap();
    store
        .put(
            "app/db",
            json!({"username": "app-user", "password": KV_PASSWORD}),
        )
        .await
        .unwrap();
    let sync_version = store
        .put("kv-sync1", json!({"bar1": "hello-sync1"}))
        .await
        .unwrap();
    store
        .put("kv-sync2", json!({"bar2": "hello-sync2"}))
        .await
        .unwrap();
    store
        .put("kv-sync3", json!({"bar3": "aGVsbG8tc3luYzM="}))
        .await
        .unwrap();
    store.put("kv1", json!({"bar1": "hello1"})).await.unwrap();
    store.put("kv2", json!({"bar2": "hello2"})).await.unwrap();
    store
        .put("ops/root", json!({"k": "ops-never-for-kv-role-5a0c"}))
        .await
        .unwrap();
    println!(
        "pods:   (OpenBao started, initialised and configured in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    // Every pod at once: they start in parallel.
    ns.apply(&rbac()).await.unwrap();
    for f in [
        "kv-sync-spc.yaml",
        "kv-env-deployment.yaml",
        "kv-spc.yaml",
        "kv-pod.yaml",
    ] {
        ns.apply(&repo_file(&format!("manifests/examples/vault/{f}")).unwrap())
            .await
            .unwrap();
    }
    ns.apply(&annotated_pod(
        "vault-kv",
        "nginx-kv",
        &[
            ("username", "vault://secret/app/db#username"),
            ("password", "vault://secret/app/db#password"),
        ],
    ))
    .await
    .unwrap();
    ns.apply(&annotated_pod(
        "vault-other-sa",
        "other",
        &[("password", "vault://secret/app/db#password")],
    ))
    .await
    .unwrap();
    ns.apply(&annotated_pod(
        "vault-denied-path",
        "nginx-kv",
        &[("k", "vault://secret/ops/root#k")],
    ))
    .await
    .unwrap();
    ns.apply(&db_pod()).await.unwrap();

    let pod_token = annotation_form(&mut checks, &ns, &store).await;
    refused(&mut checks, &ns).await;
    hello_world(&mut checks, &ns).await;
    csi_class(&mut checks, &ns, &store, &sync_version).await;
    let db = database(&mut checks, &ns).await;

    let kv = kv_app(&ns);
    suite::outage(
        &mut checks,
        &mut store,
        &kv,
        &[("password", KV_ROTATED), ("username", "app-user")],
    )
    .await;
    let after = suite::Rotation {
        object: "app/db#password",
        file: "password",
        status_id: None,
        secret: None,
        value: KV_PASSWORD,
    };
    suite::rotation(&mut checks, &store, &kv, &after).await;

    if let Some((user, password)) = &db.first {
        let gone = e2e::eventually(
            "the first credentials refused",
            DB_MAX_TTL + Duration::from_secs(15),
            "refused",
            || async {
                Ok(match psql(user, password) {
                    Ok(_) => "still logs in".into(),
                    Err(_) => "refused".into(),
                })
            },
        )
        .await;
        checks.check(
            "vault database: the first credentials end with their lease (max TTL)",
            gone.map(drop),
        );
    }

    let mut secrets = vec![
        KV_PASSWORD.to_string(),
        KV_ROTATED.to_string(),
        "ops-never-for-kv-role-5a0c".into(),
        store.root_token().to_string(),
        store.unseal_key().to_string(),
        reviewer.clone(),
        pg_password.clone(),
    ];
    secrets.extend(pod_token);
    secrets.extend(db.passwords);
    checks.check(
        "vault: no log (init containers, sidecars, webhook) carries a value, token or password",
        no_secret_in_logs(&ns, &secrets).await,
    );

    ns.delete().await;
    println!(
        "pods:   (the Vault test took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    checks.finish();
}

/// A ServiceAccount bound to `system:auth-delegator`, as Vault's docs set
/// up the kubernetes auth method's reviewer: its token (1.20 still makes
/// one as a Secret).
async fn reviewer_token(client: &kube::Client) -> anyhow::Result<String> {
    let system = Ns::existing(client, "kube-system");
    system
        .apply(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: openbao-token-reviewer, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: openbao-token-reviewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: openbao-token-reviewer, namespace: kube-system}]
"#,
        )
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let sa = accounts.get("openbao-token-reviewer").await?;
        if let Some(name) = sa
            .secrets
            .unwrap_or_default()
            .first()
            .and_then(|s| s.name.clone())
            && let Ok(token) = system.secret(&name, "token").await
        {
            return Ok(token);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    anyhow::bail!("no token for kube-system/openbao-token-reviewer within 30 s")
}

/// kubernetes auth against the cluster's apiserver, roles bound to this
/// namespace's ServiceAccounts with policies reading only their paths, the
/// database engine on PostgreSQL.
async fn configure(store: &Vault, reviewer: &str, pg_password: &str) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(env("CLUSTER_CA")?)?;
    let read = |paths: &[&str]| {
        paths
            .iter()
            .map(|p| format!("path \"{p}\" {{ capabilities = [\"read\"] }}\n"))
            .collect::<String>()
    };
    let role = |name: &str, sa: &str, policy: &str| {
        json!({"call": "auth.kubernetes.create_role", "args": {
            "name": name, "bound_service_account_names": [sa],
            "bound_service_account_namespaces": [NS], "policies": [policy],
            "audience": "vault", "ttl": "20m"}})
    };
    store
        .calls(json!([
            {"call": "sys.enable_auth_method", "args": {"method_type": "kubernetes"}},
            {"call": "auth.kubernetes.configure", "args": {
                "kubernetes_host": env("APISERVER_URL")?, "kubernetes_ca_cert": ca,
                "token_reviewer_jwt": reviewer, "disable_local_ca_jwt": true}},
            {"call": "sys.create_or_update_policy", "args": {"name": "kv-policy",
                "policy": read(&["secret/data/app/*", "secret/data/kv*"])}},
            {"call": "sys.create_or_update_policy", "args": {"name": "db-policy",
                "policy": read(&["database/creds/app"])}},
            role("kv-role", "nginx-kv", "kv-policy"),
            role("db-role", "nginx-db", "db-policy"),
            {"call": "sys.enable_secrets_engine", "args": {"backend_type": "database", "path": "database"}},
            {"call": "secrets.database.configure", "args": {"name": "pg",
                "plugin_name": "postgresql-database-plugin",
                "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
                "allowed_roles": ["app"], "username": "postgres", "password": pg_password,
                "verify_connection": true}},
            // The Vault CSI provider's e2e creation statements.
            {"call": "secrets.database.create_role", "args": {"name": "app", "db_name": "pg",
                "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN ENCRYPTED PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"],
                "default_ttl": DB_TTL, "max_ttl": format!("{}s", DB_MAX_TTL.as_secs())}},
        ]))
        .await
        .map(drop)
}

/// The ServiceAccounts (nginx-kv comes with the provider's Deployment too)
/// and what the example pod Role gives them: the class's synced Secret,
/// PodStatus and Events.
fn rbac() -> String {
    let mut yaml = String::new();
    for sa in ["nginx-kv", "nginx-db", "other"] {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}}}\n---\n"
        ));
    }
    yaml.push_str(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: vault-kv-sync}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [get, create, patch], resourceNames: [kvsecret]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: vault-kv-sync}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: vault-kv-sync}}
subjects: [{{kind: ServiceAccount, name: nginx-kv, namespace: {NS}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: secret-injector-pod}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-injector-pod}}
subjects:
- {{kind: ServiceAccount, name: nginx-kv, namespace: {NS}}}
- {{kind: ServiceAccount, name: nginx-db, namespace: {NS}}}
- {{kind: ServiceAccount, name: other, namespace: {NS}}}
"#
    ));
    yaml
}

/// A pod opted in with annotations: `vault-role kv-role`, one
/// `secret-<file>: vault://...` each, the operator's Vault address.
fn annotated_pod(name: &str, sa: &str, files: &[(&str, &str)]) -> String {
    let mut annotations = json!({
        "secret-injector.io/inject": "true",
        "secret-injector.io/vault-role": "kv-role",
    });
    for (file, reference) in files {
        annotations[format!("secret-injector.io/secret-{file}")] = json!(reference);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"serviceAccountName": sa, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": "nginx:1.23.1"}]},
    })
    .to_string()
}

/// Dynamic database credentials (one lease for the pair) and an app that
/// logs in with whatever the files hold every 0.5 s.
fn db_pod() -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vault-db", "annotations": {
            "secret-injector.io/inject": "true",
            "secret-injector.io/vault-role": "db-role",
            "secret-injector.io/secret-username": "vault://database/creds/app#username",
            "secret-injector.io/secret-password": "vault://database/creds/app#password",
        }},
        "spec": {"serviceAccountName": "nginx-db", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": "nginx:1.23.1",
                     "command": ["sh", "-c", PG_LOGIN],
                     "env": [{"name": "PGHOST", "value": "10.77.0.3"},
                             {"name": "PGPORT", "value": "5432"},
                             {"name": "DIR", "value": "/mnt/secrets-store"}]}]},
    })
    .to_string()
}

fn kv_app(ns: &Ns) -> App<'_> {
    App {
        ns,
        pod: "vault-kv".into(),
        container: "app".into(),
        mount: "/mnt/secrets-store".into(),
        status: String::new(),
        interval: interval(),
    }
}

/// The annotated pod: its files, kubelet's token for the audience `vault`
/// in the injected containers only, a login with it as its own
/// ServiceAccount (OpenBao's audit log), a rotation. The token, for the
/// log canary.
async fn annotation_form(checks: &mut Checks, ns: &Ns, store: &Vault) -> Option<String> {
    let ready = ns.ready_pod("vault-kv", WITHIN).await;
    let started = ready.is_ok();
    checks.check(
        "vault: the annotated pod starts (init container logged in and fetched)",
        ready,
    );
    if !started {
        return None;
    }
    let token = projected_token(checks, ns).await;
    let app = kv_app(ns);
    checks.check(
        "vault: the annotated pod's files username and password",
        suite::files(&app, &[("username", "app-user"), ("password", KV_PASSWORD)]).await,
    );
    checks.check(
        "vault: the init container logged in at auth/kubernetes as role kv-role, at the operator's address",
        has(
            &ns.logs("vault-kv", "secret-injector-init").await,
            "login at auth/kubernetes as role kv-role",
        )
        .and(has(
            &ns.logs("vault-kv", "secret-injector-init").await,
            "https://vault.secret-injector-e2e.internal:8200",
        )),
    );
    let audit =
        std::fs::read_to_string(format!("{}/openbao-audit.log", env("E2E_WORKDIR").unwrap()))
            .unwrap_or_default();
    let login = audit.lines().any(|l| {
        l.contains("\"type\":\"response\"")
            && l.contains("auth/kubernetes/login")
            && l.contains("\"service_account_name\":\"nginx-kv\"")
            && l.contains(&format!("\"service_account_namespace\":\"{NS}\""))
    });
    checks.check(
        "vault: OpenBao's audit log has the TokenReview'd login of e2e-vault/nginx-kv",
        holds(login, || {
            format!("no such login in {} audit lines", audit.lines().count())
        }),
    );
    let rotation = Rotation {
        object: "app/db#password",
        file: "password",
        status_id: None,
        secret: None,
        value: KV_ROTATED,
    };
    suite::rotation(checks, store, &app, &rotation).await;
    checks.check(
        "vault rotation: the key not patched keeps its value",
        suite::files(&app, &[("username", "app-user")]).await,
    );
    token
}

/// The token kubelet projected for the webhook's volume (read from
/// kubelet's directory on the node): audience `vault`, the pod's
/// ServiceAccount; mounted in the injected containers, not the app's.
async fn projected_token(checks: &mut Checks, ns: &Ns) -> Option<String> {
    let pod = ns.pod("vault-kv").await.ok()?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let path = format!(
        "{}/kubelet/root/pods/{uid}/volumes/kubernetes.io~projected/secret-injector-vault-token/token",
        env("E2E_WORKDIR").ok()?
    );
    let token = std::fs::read_to_string(&path).ok();
    let claims = token.as_deref().and_then(|t| {
        let payload = t.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes).ok()
    });
    checks.check(
        "vault: kubelet's projected token is for the audience vault and the pod's ServiceAccount",
        claims
            .map(|c| format!("{} {}", c["aud"], c["sub"]))
            .ok_or_else(|| anyhow::anyhow!("no token at {path}"))
            .and_then(|c| {
                same(
                    c,
                    format!("[\"vault\"] \"system:serviceaccount:{NS}:nginx-kv\""),
                )
            }),
    );
    let spec = pod.spec.unwrap_or_default();
    let mounts = |c: &k8s_openapi::api::core::v1::Container| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "secret-injector-vault-token")
    };
    let by: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .filter(|c| mounts(c))
        .map(|c| c.name.clone())
        .collect();
    checks.check(
        "vault: only the injected containers mount the token",
        same(by.join(" "), "secret-injector-init secret-injector"),
    );
    token
}

/// Another ServiceAccount for role kv-role, and a path kv-role's policy
/// does not cover: neither pod's app starts, each says why on the pod.
async fn refused(checks: &mut Checks, ns: &Ns) {
    for (pod, what, why) in [
        (
            "vault-other-sa",
            "a pod of another ServiceAccount is refused by OpenBao's kubernetes auth",
            &["not authorized", "403", "permission denied"][..],
        ),
        (
            "vault-denied-path",
            "a path outside the role's policy is refused",
            &["permission denied", "403"][..],
        ),
    ] {
        let fields = format!("involvedObject.name={pod},reason=FailedMount");
        let mut message = String::new();
        let event = e2e::eventually(
            "a FailedMount Event",
            Duration::from_secs(90),
            "yes",
            || {
                let fields = fields.clone();
                async move {
                    let events = ns.events(&fields).await?;
                    let found = events
                        .iter()
                        .filter_map(|e| e.message.clone())
                        .find(|m| m.contains("cannot fetch") && why.iter().any(|w| m.contains(w)));
                    Ok(if found.is_some() { "yes" } else { "no" }.to_string())
                }
            },
        )
        .await;
        if let Ok(events) = ns.events(&fields).await
            && let Some(m) = events.iter().filter_map(|e| e.message.clone()).next()
        {
            message = m;
        }
        println!("pods:   {pod}: {message}");
        let not_started = ns.pod(pod).await.and_then(|p| {
            let s = serde_json::to_value(&p)?;
            let started = s["status"]["containerStatuses"][0]["started"] == true;
            anyhow::ensure!(!started, "the app container started");
            Ok(())
        });
        checks.check(
            &format!("vault: {what} (FailedMount names the file), the app never starts"),
            event.map(drop).and(not_started),
        );
        let _ = ns.delete_object("v1", "Pod", pod).await;
    }
}

/// The Vault CSI provider's test 1: its "Hello World" class inline, the
/// files with the class's permissions (0624 where it says so, else 0644).
async fn hello_world(checks: &mut Checks, ns: &Ns) {
    let ready = ns.ready_pod("nginx-kv", WITHIN).await;
    let started = ready.is_ok();
    checks.check(
        "vault csi: the provider's pod with the inline vault-kv volume starts",
        ready,
    );
    if !started {
        return;
    }
    let app = App {
        pod: "nginx-kv".into(),
        container: "nginx".into(),
        ..kv_app(ns)
    };
    checks.check(
        "vault csi: vault-kv's files secret-1 and secret-2",
        suite::files(&app, &[("secret-1", "hello1"), ("secret-2", "hello2")]).await,
    );
    let modes = ns
        .exec(
            "nginx-kv",
            "nginx",
            &[
                "stat",
                "-L",
                "-c",
                "%a",
                "/mnt/secrets-store/secret-1",
                "/mnt/secrets-store/secret-2",
            ],
        )
        .await;
    checks.check(
        "vault csi: filePermission 0624 on secret-1, the default 0644 on secret-2",
        modes.and_then(|m| same(m, "624\n644\n")),
    );
}

/// The Vault CSI provider's kv-sync class and its Deployment (2 replicas).
async fn csi_class(checks: &mut Checks, ns: &Ns, store: &Vault, sync_version: &str) {
    let pods = match ns.rolled_out("nginx-deployment", WITHIN).await {
        Ok(pods) => {
            checks.check(
                "vault csi: the provider's Deployment (CSI volume, 2 replicas) rolls out",
                Ok(()),
            );
            pods
        }
        Err(e) => return checks.check("vault csi: the provider's Deployment rolls out", Err(e)),
    };
    // The selector app=nginx picks the provider's bare pod nginx-kv too.
    let pods: Vec<String> = pods.into_iter().filter(|p| p != "nginx-kv").collect();
    if pods.len() != 2 {
        return checks.check(
            "vault csi: the Deployment's two pods",
            Err(anyhow::anyhow!("{pods:?}")),
        );
    }
    let pod = pods[0].clone();
    let app = App {
        ns,
        pod: pod.clone(),
        container: "nginx".into(),
        mount: "/mnt/secrets-store".into(),
        status: format!("{pod}-{NS}-vault-kv-sync"),
        interval: interval(),
    };
    checks.check(
        "vault csi: files secret-1, secret-2 and secret-3 (base64-decoded), as the provider writes them",
        suite::files(
            &app,
            &[
                ("secret-1", "hello-sync1"),
                ("secret-2", "hello-sync2"),
                ("secret-3", "hello-sync3"),
            ],
        )
        .await,
    );
    checks.check(
        "vault csi: the synced Secret kvsecret (pwd, username, username_b64)",
        suite::synced(
            ns,
            &[
                ("kvsecret", "pwd", "hello-sync1"),
                ("kvsecret", "username", "hello-sync2"),
                ("kvsecret", "username_b64", "hello-sync3"),
            ],
        )
        .await,
    );
    let secret = ns.secret_object("kvsecret").await.ok().flatten();
    let labels = secret
        .as_ref()
        .and_then(|s| s.metadata.labels.clone())
        .unwrap_or_default();
    checks.check(
        "vault csi: kvsecret carries the class's label environment=test",
        same(
            labels.get("environment").cloned().unwrap_or_default(),
            "test",
        ),
    );
    checks.check(
        "vault csi: kubelet resolved SECRET_USERNAME from the synced Secret",
        ns.exec(&pod, "nginx", &["sh", "-c", "echo \"$SECRET_USERNAME\""])
            .await
            .and_then(|v| same(v, "hello-sync2\n")),
    );
    checks.check(
        "vault csi: the PodStatus has secret-1's kv-v2 version",
        suite::versions(&app, &[("secret-1", sync_version), ("secret-2", "1")]).await,
    );
    let status = ns.pod_status(&app.status).await.map(|s| {
        let s = &s["status"];
        format!(
            "{} {} {}",
            s["podName"], s["secretProviderClassName"], s["mounted"]
        )
    });
    checks.check(
        "vault csi: the PodStatus names the pod and the class, mounted",
        status.and_then(|s| same(s, format!("\"{pod}\" \"vault-kv-sync\" true"))),
    );
    let rotation = Rotation {
        object: "kv-sync1#bar1",
        file: "secret-1",
        status_id: Some("secret-1"),
        secret: Some(("kvsecret", "pwd")),
        value: SYNC1_ROTATED,
    };
    suite::rotation(checks, store, &app, &rotation).await;
    let other = App {
        pod: pods[1].clone(),
        status: format!("{}-{NS}-vault-kv-sync", pods[1]),
        ..app.clone()
    };
    // Its own sidecar, on its own schedule: within the same bound.
    let bound = interval() + interval() / 10 + Duration::from_secs(3);
    let second = e2e::eventually("secret-1", bound, SYNC1_ROTATED, || other.file("secret-1")).await;
    checks.check(
        "vault csi: the second replica's sidecar rotates secret-1 too",
        second.map(drop),
    );
}

/// What the database pod showed: the first pair, and every password seen.
#[derive(Default)]
struct Db {
    first: Option<(String, String)>,
    passwords: Vec<String>,
}

/// Dynamic credentials: one pair per lease, renewed ("renewed a lease"),
/// replaced by a new pair before the max TTL while the old still logs in,
/// and an app that never failed to log in.
async fn database(checks: &mut Checks, ns: &Ns) -> Db {
    let mut db = Db::default();
    let ready = ns.ready_pod("vault-db", WITHIN).await;
    let started = ready.is_ok();
    checks.check(
        "vault database: the pod with dynamic PostgreSQL credentials starts",
        ready,
    );
    if !started {
        return db;
    }
    let app = App {
        pod: "vault-db".into(),
        ..kv_app(ns)
    };
    let pair = || async { anyhow::Ok((app.file("username").await?, app.file("password").await?)) };
    let Ok(first) = pair().await else {
        checks.check(
            "vault database: the files",
            Err(anyhow::anyhow!("unreadable")),
        );
        return db;
    };
    db.passwords.push(first.1.clone());
    db.first = Some(first.clone());
    checks.check(
        "vault database: the files are a pair PostgreSQL accepts (v-... user)",
        psql(&first.0, &first.1)
            .map(drop)
            .and(holds(first.0.starts_with("v-"), || {
                format!("user {:?}", first.0)
            })),
    );
    // Replaced before the max TTL (from the pod's start: issued before it).
    let since = Instant::now();
    let mut second = None;
    while since.elapsed() < DB_MAX_TTL {
        if let Ok(now) = pair().await
            && now.0 != first.0
        {
            second = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = since.elapsed();
    checks.check(
        "vault database: new credentials replace the pair before the max TTL",
        holds(second.is_some(), || {
            format!("still {} after {took:?}", first.0)
        }),
    );
    if let Some(second) = &second {
        println!(
            "pods:   (replaced {:.1} s after the pod was Ready)",
            took.as_secs_f64()
        );
        db.passwords.push(second.1.clone());
        checks.check(
            "vault database: the old pair still logs in when the new one arrives (replaced before its lease ends)",
            psql(&first.0, &first.1).map(drop),
        );
        checks.check(
            "vault database: the new pair logs in",
            psql(&second.0, &second.1).map(drop),
        );
        // The app saw the new pair too.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    checks.check(
        "vault database: the sidecar renewed the lease first (\"renewed a lease\")",
        has(
            &ns.logs("vault-db", "secret-injector").await,
            "renewed a lease",
        ),
    );
    let log = ns.logs("vault-db", "app").await.unwrap_or_default();
    let oks = log.lines().filter(|l| l.starts_with("login ok ")).count();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("login FAIL"))
        .collect();
    let saw_second = second
        .as_ref()
        .is_some_and(|s| log.contains(&format!("login ok {}", s.0)));
    println!(
        "pods:   (the app logged in {oks} times, {} failures)",
        failures.len()
    );
    checks.check(
        "vault database: the app logging in every 0.5 s with the files never failed, old pair then new",
        holds(
            failures.is_empty() && oks > 10 && log.contains(&format!("login ok {}", first.0)) && saw_second,
            || format!("{oks} ok, saw the new pair: {saw_second}, failures: {failures:?}"),
        ),
    );
    db
}

/// `SELECT 1` as `user` over TCP on loopback (scram-sha-256).
fn psql(user: &str, password: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            user,
            "-d",
            "postgres",
        ])
        .args(["-tAc", "SELECT 1"])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "psql as {user}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The injected containers' logs of every pod left in the namespace and
/// the webhook's log hold none of `secrets`.
async fn no_secret_in_logs(ns: &Ns, secrets: &[String]) -> anyhow::Result<()> {
    let pods = ns.pods().list(&Default::default()).await?;
    let mut logs = vec![std::fs::read_to_string(format!(
        "{}/webhook.log",
        env("E2E_WORKDIR")?
    ))?];
    for pod in pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for c in ["secret-injector-init", "secret-injector"] {
            logs.push(ns.logs(&name, c).await?);
        }
    }
    let leaked: Vec<usize> = secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty() && logs.iter().any(|l| l.contains(s.as_str())))
        .map(|(i, _)| i)
        .collect();
    anyhow::ensure!(
        leaked.is_empty(),
        "secrets number {leaked:?} reached a log ({} logs read)",
        logs.len()
    );
    println!(
        "pods:   ({} logs read, {} secrets looked for)",
        logs.len(),
        secrets.len()
    );
    Ok(())
}
