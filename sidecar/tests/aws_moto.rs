//! The sidecar binary (as the init container runs it) against moto, the AWS
//! stand-in from PyPI, with boto3 writing and rotating the fixtures: version
//! stages and ids, binary secrets, JSON keys and paths, Parameter Store
//! versions, labels, SecureString and batches, IRSA through STS, EKS Pod
//! Identity through a stand-in agent that checks the token, and SigV4
//! checked by moto's auth mode. moto's own gaps are not asserted (its 404s,
//! its unchecked web-identity tokens, `Selector`).
//!
//! These need the moto venv: `tests/moto/run.sh` (part of `make test`)
//! builds it and runs them with `--ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use secret_injector_sidecar::status::Status;
use serde_json::{Value, json};

const SIDECAR: &str = env!("CARGO_BIN_EXE_secret-injector-sidecar");

fn venv() -> PathBuf {
    std::env::var_os("MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("SECRET_INJECTOR_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| "/var/cache/secret-injector".into());
            cache.join("moto-venv")
        })
}

fn fixture_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/moto/fixture.py")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Moto {
    child: Child,
    port: u16,
    /// moto's request recorder writes here (its default is one file in the
    /// working directory, shared by every server).
    _recording: tempfile::TempDir,
}

impl Moto {
    /// moto_server on a free loopback port. `free_calls`: auth mode, after
    /// that many unauthenticated calls (for the fixtures).
    fn start(free_calls: Option<u32>) -> Self {
        let port = free_port();
        let recording = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(venv().join("bin/moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env(
                "MOTO_RECORDER_FILEPATH",
                recording.path().join("requests.jsonl"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = free_calls {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server from {}: {e}", venv().display()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            port,
            _recording: recording,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// boto3 makes these calls; their replies.
    fn boto3(&self, calls: Value) -> Vec<Value> {
        let mut child = Command::new(venv().join("bin/python"))
            .arg(fixture_script())
            .arg(self.endpoint())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(calls.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn moto_api(&self, path: &str) -> String {
        let out = Command::new(venv().join("bin/python"))
            .arg(fixture_script())
            .arg(self.endpoint())
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn start_recording(&self) {
        self.moto_api("recorder/start-recording");
    }

    /// Every request moto received since recording started: (target or
    /// action, Authorization header, body).
    fn recorded(&self) -> Vec<(String, String, String)> {
        self.moto_api("recorder/download-recording")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let r: Value = serde_json::from_str(line).unwrap();
                let header = |name: &str| {
                    r["headers"]
                        .as_object()
                        .and_then(|h| {
                            h.iter()
                                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                                .map(|(_, v)| v.as_str().unwrap_or_default().to_owned())
                        })
                        .unwrap_or_default()
                };
                let body = r["body"].as_str().unwrap_or_default();
                let body = if r["body_encoded"].as_bool() == Some(true) {
                    String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD
                            .decode(body)
                            .unwrap_or_default(),
                    )
                    .into_owned()
                } else {
                    body.to_owned()
                };
                let target = match header("X-Amz-Target") {
                    t if !t.is_empty() => t,
                    _ => body
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("Action="))
                        .unwrap_or_default()
                        .to_owned(),
                };
                (target, header("Authorization"), body)
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spec(objects: Value) -> String {
    json!({
        "objects": objects,
        "mountPath": "/mnt/secrets-store",
        "rotation": "1m",
        "filePermission": "0644",
    })
    .to_string()
}

fn object(file: &str, source: &str) -> Value {
    json!({"file": file, "source": source})
}

/// `fetch --once` as the init container runs it, with only `env`.
fn fetch_once(dir: &Path, spec: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(SIDECAR);
    cmd.args(["fetch", "--once", "--dir", dir.to_str().unwrap()])
        .env_clear()
        .env("SECRET_INJECTOR_DEADLINE", "4s")
        .env("SECRET_INJECTOR_SPEC", spec)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn static_keys(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE".into()),
        ("AWS_SECRET_ACCESS_KEY", "secret-key-do-not-log-51a7".into()),
    ]
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "sidecar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_not_logged(out: &Output, values: &[&str]) {
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for value in values {
        assert!(!logs.contains(value), "{value:?} reached the logs: {logs}");
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn text(dir: &Path, file: &str) -> String {
    String::from_utf8(read(dir, file)).unwrap()
}

fn version(dir: &Path, file: &str) -> String {
    Status::read(dir).unwrap().objects[file]
        .version
        .clone()
        .unwrap_or_default()
}

#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn secrets_manager_stages_version_ids_binary_json_keys_and_paths() {
    let moto = Moto::start(None);
    let first = &moto.boto3(json!([{"service": "secretsmanager", "op": "create_secret",
        "args": {"Name": "app/db", "SecretString": r#"{"username":"admin","password":"pw-one-8c1f","db":{"hosts":["a","b"]}}"#}}]))[0];
    let second = &moto.boto3(json!([
        {"service": "secretsmanager", "op": "put_secret_value",
         "args": {"SecretId": "app/db", "SecretString": r#"{"username":"admin","password":"pw-two-77d0","db":{"hosts":["c"]}}"#}},
        {"service": "secretsmanager", "op": "create_secret",
         "args": {"Name": "blob", "SecretBinaryBase64": "AP8Q/w=="}},
    ]))[0];
    let (v1, v2) = (
        first["VersionId"].as_str().unwrap(),
        second["VersionId"].as_str().unwrap(),
    );
    let arn = first["ARN"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(json!([
        object("current", "aws://us-east-1/app/db"),
        object("previous", "aws://us-east-1/app/db?stage=AWSPREVIOUS"),
        object("pinned", &format!("aws://us-east-1/app/db?version={v1}")),
        object("by-arn", &format!("aws://us-east-1/{arn}#password")),
        object("user", "aws://us-east-1/app/db#username"),
        {"file": "host", "source": "aws://us-east-1/app/db", "jsonPath": "db.hosts[0]"},
        object("blob", "aws://us-east-1/blob"),
    ]));
    let out = fetch_once(dir.path(), &spec, &static_keys(&moto));
    assert_ok(&out);
    let d = dir.path();
    assert!(text(d, "current").contains("pw-two-77d0"));
    assert!(text(d, "previous").contains("pw-one-8c1f"));
    assert!(text(d, "pinned").contains("pw-one-8c1f"));
    assert_eq!(text(d, "by-arn"), "pw-two-77d0");
    assert_eq!(text(d, "user"), "admin");
    assert_eq!(text(d, "host"), "c");
    assert_eq!(read(d, "blob"), [0x00, 0xff, 0x10, 0xff]);
    assert_eq!(version(d, "current"), v2);
    assert_eq!(version(d, "previous"), v1);
    assert_eq!(version(d, "pinned"), v1);
    assert_not_logged(
        &out,
        &["pw-one-8c1f", "pw-two-77d0", "secret-key-do-not-log-51a7"],
    );
}

#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn parameter_store_versions_labels_secure_strings_and_batches() {
    let moto = Moto::start(None);
    let mut calls = vec![
        json!({"service": "ssm", "op": "put_parameter",
               "args": {"Name": "/prod/db/password", "Value": "ssm-one-3e9a", "Type": "SecureString"}}),
        json!({"service": "ssm", "op": "put_parameter",
               "args": {"Name": "/prod/db/password", "Value": "ssm-two-a41c", "Type": "SecureString", "Overwrite": true}}),
        json!({"service": "ssm", "op": "label_parameter_version",
               "args": {"Name": "/prod/db/password", "ParameterVersion": 1, "Labels": ["stable"]}}),
        json!({"service": "ssm", "op": "put_parameter",
               "args": {"Name": "config", "Value": r#"{"url":"https://example.com"}"#, "Type": "String"}}),
    ];
    for i in 0..12 {
        calls.push(json!({"service": "ssm", "op": "put_parameter",
            "args": {"Name": format!("p{i}"), "Value": format!("value-{i}"), "Type": "String"}}));
    }
    moto.boto3(Value::Array(calls));
    let mut objects = vec![
        object("current", "aws-ssm://us-east-1/prod/db/password"),
        object("first", "aws-ssm://us-east-1/prod/db/password?version=1"),
        object(
            "stable",
            "aws-ssm://us-east-1/prod/db/password?label=stable",
        ),
        object("url", "aws-ssm://us-east-1/config#url"),
    ];
    for i in 0..12 {
        objects.push(object(
            &format!("p{i}"),
            &format!("aws-ssm://us-east-1/p{i}"),
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    moto.start_recording();
    let out = fetch_once(
        dir.path(),
        &spec(Value::Array(objects.clone())),
        &static_keys(&moto),
    );
    assert_ok(&out);
    let d = dir.path();
    // Decrypted, not moto's "kms:alias/aws/ssm:..." ciphertext stand-in.
    assert_eq!(text(d, "current"), "ssm-two-a41c");
    assert_eq!(text(d, "first"), "ssm-one-3e9a");
    assert_eq!(text(d, "stable"), "ssm-one-3e9a");
    assert_eq!(text(d, "url"), "https://example.com");
    assert_eq!(text(d, "p11"), "value-11");
    assert_eq!(version(d, "current"), "2");
    assert_eq!(version(d, "stable"), "1");
    assert_not_logged(&out, &["ssm-one-3e9a", "ssm-two-a41c"]);
    // 16 objects in calls of at most 10 names, a name once per call: the
    // three selectors of /prod/db/password go to three calls (10 and 4
    // names, then two alone).
    let recorded = moto.recorded();
    let calls: Vec<&str> = recorded.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        calls,
        [
            "AmazonSSM.GetParameters",
            "AmazonSSM.GetParameters",
            "AmazonSSM.GetParameter",
            "AmazonSSM.GetParameter"
        ]
    );
    let names = |body: &str| -> usize {
        serde_json::from_str::<Value>(body).unwrap()["Names"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(names(&recorded[0].2), 10);
    assert_eq!(names(&recorded[1].2), 4);

    // A missing parameter in a batch is that file's error, by name.
    objects.push(object("missing", "aws-ssm://us-east-1/nothing-here"));
    let dir = tempfile::tempdir().unwrap();
    let out = fetch_once(
        dir.path(),
        &spec(Value::Array(objects)),
        &static_keys(&moto),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("not_found"),
        "{err}"
    );
    assert!(!dir.path().join("p0").exists(), "no partial set is written");
}

// IRSA: no keys in the environment, only the role and kubelet's token file;
// the SDK's chain asks STS for credentials with them and signs with those.
#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn irsa_assumes_the_pods_role_with_its_token() {
    let moto = Moto::start(None);
    moto.boto3(json!([{"service": "secretsmanager", "op": "create_secret",
        "args": {"Name": "irsa", "SecretString": "irsa-value-2b7e"}}]));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.kubelet-token-do-not-log").unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    moto.start_recording();
    let out = fetch_once(
        &out_dir,
        &spec(json!([object("irsa", "aws://us-east-1/irsa")])),
        &[
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/app-reader".into(),
            ),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ],
    );
    assert_ok(&out);
    assert_eq!(text(&out_dir, "irsa"), "irsa-value-2b7e");
    let recorded = moto.recorded();
    let assume = recorded
        .iter()
        .find(|(target, _, _)| target == "AssumeRoleWithWebIdentity")
        .unwrap_or_else(|| panic!("no STS call: {recorded:?}"));
    assert!(
        assume
            .2
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fapp-reader"),
        "{}",
        assume.2
    );
    assert!(
        assume.2.contains("kubelet-token-do-not-log"),
        "{}",
        assume.2
    );
    let get = recorded
        .iter()
        .find(|(target, _, _)| target == "secretsmanager.GetSecretValue")
        .unwrap();
    // Signed with the assumed role's temporary key, not a static one.
    assert!(get.1.contains("Credential=ASIA"), "{}", get.1);
    assert_not_logged(&out, &["irsa-value-2b7e", "kubelet-token-do-not-log"]);
}

/// A stand-in for the EKS Pod Identity agent: answers credentials only to
/// the `Authorization` header that equals the token file, as the agent does.
struct PodIdentityAgent {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl PodIdentityAgent {
    fn start(token: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut authorization = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        authorization = v.trim().to_owned();
                    }
                    line.clear();
                }
                record.lock().unwrap().push(authorization.clone());
                let (status, body) = if authorization == token {
                    (
                        "200 OK",
                        json!({"AccessKeyId": "ASIAPODIDENTITYTEST1", "SecretAccessKey": "pod-identity-secret",
                               "Token": "pod-identity-session", "Expiration": "2099-01-01T00:00:00Z"})
                        .to_string(),
                    )
                } else {
                    ("403 Forbidden", r#"{"message":"bad token"}"#.to_owned())
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest);
            }
        });
        Self { port, seen }
    }
}

#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn eks_pod_identity_sends_the_token_file_to_the_agent() {
    const TOKEN: &str = "pod-identity-token-do-not-log";
    let agent = PodIdentityAgent::start(TOKEN);
    let moto = Moto::start(None);
    moto.boto3(json!([{"service": "secretsmanager", "op": "create_secret",
        "args": {"Name": "pi", "SecretString": "pod-identity-value-6d2a"}}]));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    // As kubelet writes it: no trailing newline (the SDK refuses one).
    std::fs::write(&token, TOKEN).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let env = |file: &Path| {
        vec![
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://127.0.0.1:{}/v1/credentials", agent.port),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                file.display().to_string(),
            ),
        ]
    };
    moto.start_recording();
    let out = fetch_once(
        &out_dir,
        &spec(json!([object("pi", "aws://us-east-1/pi")])),
        &env(&token),
    );
    assert_ok(&out);
    assert_eq!(text(&out_dir, "pi"), "pod-identity-value-6d2a");
    assert_eq!(
        agent.seen.lock().unwrap().first().map(String::as_str),
        Some(TOKEN)
    );
    let get = moto
        .recorded()
        .into_iter()
        .find(|(target, _, _)| target == "secretsmanager.GetSecretValue")
        .unwrap();
    assert!(
        get.1.contains("Credential=ASIAPODIDENTITYTEST1/"),
        "{}",
        get.1
    );

    // Another token is refused by the agent: no credentials, no file.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "someone-elses-token").unwrap();
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let out = fetch_once(
        &other,
        &spec(json!([object("pi", "aws://us-east-1/pi")])),
        &env(&wrong),
    );
    assert!(!out.status.success());
    assert!(!other.join("pi").exists());
    assert_not_logged(&out, &[TOKEN, "someone-elses-token", "pod-identity-secret"]);
}

// moto's auth mode recomputes SigV4 with botocore's verifier: the right key
// is accepted, a wrong secret is refused, and the sidecar says so.
#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn sigv4_signatures_pass_moto_s_verifier() {
    let moto = Moto::start(Some(4));
    let replies = moto.boto3(json!([
        {"service": "iam", "op": "create_user", "args": {"UserName": "reader"}},
        {"service": "iam", "op": "create_access_key", "args": {"UserName": "reader"}},
        {"service": "iam", "op": "put_user_policy", "args": {"UserName": "reader", "PolicyName": "read",
         "PolicyDocument": json!({"Version": "2012-10-17", "Statement": [
             {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]}).to_string()}},
        {"service": "secretsmanager", "op": "create_secret",
         "args": {"Name": "signed", "SecretString": "signed-value-90ce"}},
    ]));
    let key = &replies[1]["AccessKey"];
    let (id, secret) = (
        key["AccessKeyId"].as_str().unwrap().to_owned(),
        key["SecretAccessKey"].as_str().unwrap().to_owned(),
    );
    let run = |secret: &str| {
        let dir = tempfile::tempdir().unwrap();
        let out = fetch_once(
            dir.path(),
            &spec(json!([object("signed", "aws://us-east-1/signed")])),
            &[
                ("AWS_ENDPOINT_URL", moto.endpoint()),
                ("AWS_ACCESS_KEY_ID", id.clone()),
                ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
            ],
        );
        let value = std::fs::read_to_string(dir.path().join("signed")).ok();
        (out, value)
    };
    let (out, value) = run(&secret);
    assert_ok(&out);
    assert_eq!(value.as_deref(), Some("signed-value-90ce"));
    let (out, value) = run("not-the-secret-key-0000");
    assert!(!out.status.success());
    assert_eq!(value, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signed"), "{err}");
    assert_not_logged(
        &out,
        &[&secret, "not-the-secret-key-0000", "signed-value-90ce"],
    );
}

/// Answers the first `throttle` requests as AWS does when a caller exceeds
/// its rate (400, `ThrottlingException`, awsJson 1.1) and passes the rest to
/// moto: moto itself never throttles.
struct Throttler {
    port: u16,
    throttled: Arc<Mutex<u32>>,
    forwarded: Arc<Mutex<u32>>,
}

impl Throttler {
    fn start(moto: &Moto, throttle: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (throttled, forwarded) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let (t, f, backend) = (throttled.clone(), forwarded.clone(), moto.port);
        std::thread::spawn(move || {
            for mut client in listener.incoming().flatten() {
                let Some(request) = read_request(&mut client) else {
                    continue;
                };
                let mut count = t.lock().unwrap();
                if *count < throttle {
                    *count += 1;
                    let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                    let _ = write!(
                        client,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                         x-amzn-RequestId: throttled\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                drop(count);
                *f.lock().unwrap() += 1;
                // The rest of this connection goes to moto as it is.
                let mut server = TcpStream::connect(("127.0.0.1", backend)).unwrap();
                server.write_all(&request).unwrap();
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || std::io::copy(&mut s2, &mut c2));
                std::thread::spawn(move || std::io::copy(&mut client, &mut server));
            }
        });
        Self {
            port,
            throttled,
            forwarded,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn counts(&self) -> (u32, u32) {
        (
            *self.throttled.lock().unwrap(),
            *self.forwarded.lock().unwrap(),
        )
    }
}

/// One HTTP/1.1 request's bytes (head and a `Content-Length` body).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    head.extend_from_slice(&body);
    Some(head)
}

fn throttling_spec() -> String {
    spec(json!([
        object("sm", "aws://us-east-1/throttled/secret"),
        object("p1", "aws-ssm://us-east-1/throttled/one"),
        object("p2", "aws-ssm://us-east-1/throttled/two"),
    ]))
}

fn throttling_fixtures(moto: &Moto) {
    moto.boto3(json!([
        {"service": "secretsmanager", "op": "create_secret",
         "args": {"Name": "throttled/secret", "SecretString": "sm-value"}},
        {"service": "ssm", "op": "put_parameter",
         "args": {"Name": "/throttled/one", "Value": "one", "Type": "String"}},
        {"service": "ssm", "op": "put_parameter",
         "args": {"Name": "/throttled/two", "Value": "two", "Type": "SecureString"}},
    ]));
}

// ThrottlingException reaches the project's one retry policy (the SDK's own
// retries are off): each throttled answer is a logged, backed-off retry, and
// the round completes once AWS lets the calls through.
#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn throttling_is_retried_by_the_sidecar_s_backoff_until_it_passes() {
    let moto = Moto::start(None);
    throttling_fixtures(&moto);
    let throttler = Throttler::start(&moto, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut env = static_keys(&moto);
    env[0].1 = throttler.endpoint();
    env.push(("SECRET_INJECTOR_DEADLINE", "20s".into()));
    let out = fetch_once(dir.path(), &throttling_spec(), &env);
    assert_ok(&out);
    let d = dir.path();
    assert_eq!(
        (text(d, "sm"), text(d, "p1"), text(d, "p2")),
        ("sm-value".into(), "one".into(), "two".into())
    );
    let (throttled, forwarded) = throttler.counts();
    assert_eq!(throttled, 2, "both throttled answers were seen");
    assert!(
        forwarded >= 2,
        "the calls went through afterwards: {forwarded}"
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("throttled"),
        "the retry names the throttling: {logs}"
    );
}

// Throttled without end: the init container gives up at its deadline naming
// the throttling, and backs off rather than hammering the API meanwhile.
#[test]
#[ignore = "needs moto: tests/moto/run.sh"]
fn endless_throttling_fails_at_the_deadline_saying_so_without_hammering() {
    let moto = Moto::start(None);
    throttling_fixtures(&moto);
    let throttler = Throttler::start(&moto, u32::MAX);
    let dir = tempfile::tempdir().unwrap();
    let mut env = static_keys(&moto);
    env[0].1 = throttler.endpoint();
    env.push(("SECRET_INJECTOR_DEADLINE", "5s".into()));
    let out = fetch_once(dir.path(), &throttling_spec(), &env);
    assert!(!out.status.success(), "it cannot succeed");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("throttled"), "{logs}");
    let (throttled, forwarded) = throttler.counts();
    assert_eq!(forwarded, 0);
    // One Secrets Manager call and one batched GetParameters per round;
    // backoff from 500 ms doubling gives about four rounds in 5 s.
    assert!(
        (2..=12).contains(&throttled),
        "{throttled} calls in 5 s: not backed off"
    );
}
