//! The AWS provider's integration suite against moto.

use std::time::Duration;

use e2e::{
    cluster::{self, Ns, repo_file},
    env,
    store::aws::{self, Aws},
    suite::{self, App, Checks, Rotation},
};
use serde_json::json;

use crate::interval;

/// The AWS provider's integration suite (its `tests/` class and pod) and a
/// Deployment of that class reading the synced Secrets as env, against moto
/// at the real host names with kubelet's IRSA token. (Its IRSA example
/// Deployment names `image: nginx`, which kubelet always pulls: this
/// machine reaches no registry.)
#[tokio::test]
#[ignore = "needs the real-pod cluster: tests/e2e/pods.sh"]
async fn aws_provider_manifests_unchanged() {
    let client = cluster::client().await.unwrap();
    let ns = Ns::create(&client, "e2e-aws").await.unwrap();
    let mut store = Aws::start().await.unwrap();
    let mut checks = Checks::default();
    let json = r#"{"username":"SecretsManagerUser","password":"SecretsManagerPassword"}"#;
    let (w2, e2) = (aws::REGION, "us-east-2");
    let sm = |region: &str, name: &str, value: &str| {
        json!({"service": "secretsmanager", "region": region, "op": "create_secret",
               "args": {"Name": name, "SecretString": value}})
    };
    let ssm = |name: &str, value: &str, kind: &str| {
        json!({"service": "ssm", "region": w2, "op": "put_parameter",
               "args": {"Name": name, "Value": value, "Type": kind}})
    };
    let replies = store
        .calls(json!([
            ssm("ParameterStoreTest1", "ParameterStoreTest1Value", "String"),
            ssm(
                "ParameterStoreTestWithLongName",
                "ParameterStoreTest2Value",
                "SecureString"
            ),
            ssm("ParameterStoreRotationTest", "BeforeRotation", "String"),
            ssm("jsonSsm", json, "String"),
            sm(w2, "SecretsManagerRotationTest", "BeforeRotation"),
            sm(w2, "SecretsManagerTest1", "SecretsManagerTest1Value"),
            sm(w2, "SecretsManagerTest2", "SecretsManagerTest2Value"),
            sm(e2, "SecretsManagerTest2", "SecretsManagerTest2Failover"),
            sm(w2, "SecretsManagerSync", "SecretUser"),
            sm(w2, "secretsManagerJson", json),
        ]))
        .await
        .unwrap();
    let test1_version = replies[5]["VersionId"].as_str().unwrap().to_string();

    // The provider's IRSA setup: the ServiceAccounts name the role, and may
    // write the class's three synced Secrets (and nothing else).
    let role = env("E2E_AWS_ROLE").unwrap();
    let n = &ns.name;
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: basic-test-mount-sa, annotations: {{eks.amazonaws.com/role-arn: "{role}"}}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: basic-test-mount}}
rules:
- {{apiGroups: [""], resources: [secrets], verbs: [get, create, patch], resourceNames: [secret, json-ssm, secrets-manager-json]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: basic-test-mount}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: basic-test-mount}}
subjects: [{{kind: ServiceAccount, name: basic-test-mount-sa, namespace: {n}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: secret-injector-pod}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-injector-pod}}
subjects:
- {{kind: ServiceAccount, name: basic-test-mount-sa, namespace: {n}}}
"#
    ))
    .await
    .unwrap();
    ns.apply(&repo_file("manifests/examples/aws/basic-test-mount-spc.yaml").unwrap())
        .await
        .unwrap();
    ns.apply(&repo_file("manifests/examples/aws/basic-test-mount.yaml").unwrap())
        .await
        .unwrap();
    let ready = ns
        .ready_pod("basic-test-mount", Duration::from_secs(180))
        .await;
    checks.check(
        "aws: the provider's integration pod starts (IRSA, Secrets Manager and Parameter Store)",
        ready,
    );
    let app = App {
        ns: &ns,
        pod: "basic-test-mount".into(),
        container: "busybox".into(),
        mount: "/mnt/secrets-store".into(),
        status: format!("basic-test-mount-{n}-basic-test-mount-spc"),
        interval: interval(),
    };
    checks.check(
        "aws: every file as the provider writes it (aliases, ARN, SecureString, jmesPath, failover)",
        suite::files(
            &app,
            &[
                ("ParameterStoreTest1", "ParameterStoreTest1Value"),
                ("ParameterStoreTest2", "ParameterStoreTest2Value"),
                ("ParameterStoreRotationTest", "BeforeRotation"),
                ("SecretsManagerRotationTest", "BeforeRotation"),
                ("SecretsManagerTest1", "SecretsManagerTest1Value"),
                ("SecretsManagerTest2", "SecretsManagerTest2Value"),
                ("SecretsManagerSync", "SecretUser"),
                ("ssmUsername", "SecretsManagerUser"),
                ("ssmPassword", "SecretsManagerPassword"),
                ("secretsManagerUsername", "SecretsManagerUser"),
                ("secretsManagerPassword", "SecretsManagerPassword"),
                ("jsonSsm", json),
                ("secretsManagerJson", json),
            ],
        )
        .await,
    );
    checks.check(
        "aws: the synced Secrets (secret, json-ssm, secrets-manager-json)",
        suite::synced(
            &ns,
            &[
                ("secret", "username", "SecretUser"),
                ("json-ssm", "password", "SecretsManagerPassword"),
                ("secrets-manager-json", "username", "SecretsManagerUser"),
            ],
        )
        .await,
    );
    checks.check(
        "aws: the PodStatus has the Secrets Manager VersionId and the parameter's version",
        suite::versions(
            &app,
            &[
                ("SecretsManagerTest1", &test1_version),
                ("ParameterStoreTest1", "1"),
            ],
        )
        .await,
    );

    // A Deployment of the same class: kubelet resolves env vars from the
    // Secrets it syncs.
    ns.apply(&repo_file("manifests/examples/aws/synced-env-deployment.yaml").unwrap())
        .await
        .unwrap();
    let env_pod = ns.ready("app=synced-env", Duration::from_secs(180)).await;
    checks.check(
        "aws: the Deployment with secretKeyRef env rolls out",
        env_pod
            .as_ref()
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{e:#}")),
    );
    if let Ok(pods) = &env_pod {
        let pod = &pods[0];
        let env_vars = ns
            .exec(pod, "app", &["sh", "-c", "echo \"$DB_USER $DB_PASS\""])
            .await
            .and_then(|got| {
                anyhow::ensure!(
                    got.trim_end() == "SecretUser SecretsManagerPassword",
                    "env: {got:?}"
                );
                Ok(())
            });
        checks.check(
            "aws: kubelet resolved DB_USER and DB_PASS from the synced Secrets",
            env_vars,
        );
        let deployment_app = App {
            pod: pod.clone(),
            container: "app".into(),
            ..app.clone()
        };
        checks.check(
            "aws: the Deployment's pod has the class's files too",
            suite::files(
                &deployment_app,
                &[("SecretsManagerTest1", "SecretsManagerTest1Value")],
            )
            .await,
        );
    }

    let accepted = store.accepted();
    let line = format!("system:serviceaccount:{n}:basic-test-mount-sa {role}");
    checks.check(
        "aws: STS saw the pod's kubelet token for the ServiceAccount's role",
        if accepted.lines().any(|l| l == line) {
            Ok(())
        } else {
            Err(anyhow::anyhow!("accepted: {accepted:?}"))
        },
    );
    checks.check(
        "aws: the STS stand-in refuses a token the cluster did not sign",
        forged_refused(&role).await,
    );

    for (object, file) in [
        ("SecretsManagerRotationTest", "SecretsManagerRotationTest"),
        ("ParameterStoreRotationTest", "ParameterStoreRotationTest"),
    ] {
        let r = Rotation {
            object,
            file,
            status_id: Some(object),
            secret: None,
            value: "AfterRotation",
        };
        suite::rotation(&mut checks, &store, &app, &r).await;
    }
    suite::outage(
        &mut checks,
        &mut store,
        &app,
        &[
            ("SecretsManagerRotationTest", "AfterRotation"),
            ("SecretsManagerTest1", "SecretsManagerTest1Value"),
        ],
    )
    .await;

    ns.delete().await;
    checks.finish();
}

/// A web identity token not signed by the cluster: STS (the front) says
/// InvalidIdentityToken, so the accepted line above proves a check.
async fn forged_refused(role: &str) -> anyhow::Result<()> {
    let w = env("E2E_WORKDIR")?;
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--cacert", &format!("{w}/aws-ca.pem")])
        .args([
            "--resolve",
            &format!(
                "sts.us-west-2.amazonaws.com:443:{}",
                aws::FRONT.trim_end_matches(":443")
            ),
        ])
        .arg("https://sts.us-west-2.amazonaws.com/")
        .arg("-d")
        .arg(format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={role}&RoleSessionName=x\
             &WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJzdHMuYW1hem9uYXdzLmNvbSJ9.Zm9yZ2Vk"
        ))
        .output()
        .await?;
    let body = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        body.contains("InvalidIdentityToken"),
        "STS answered: {body}"
    );
    Ok(())
}
