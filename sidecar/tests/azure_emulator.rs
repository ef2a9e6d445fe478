//! The sidecar against the Key Vault + Entra ID emulator: every credential
//! type, object type, format, encoding and fault, through the real binary
//! (as the init container and sidecar run it) or the real provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use kv_emulator::{
    CertificateSpec, ContentType, Emulator, EmulatorConfig, Fault, FaultTarget, KeyKind,
    RunningEmulator,
};
use secret_injector_sidecar::{
    providers::azure::{AzureAuth, AzureConfig, AzureProvider},
    providers::{FetchError, Provider},
};

const VAULT: &str = "kv-aks-csi-weu-01";
const TENANT: &str = "00000000-0000-0000-0000-00000000000a";
const CLIENT: &str = "00000000-0000-0000-0000-000000000001";
const CLIENT_SECRET: &str = "client-secret-do-not-log-4b1d";
const IDENTITY_HEADER: &str = "identity-header-do-not-log-9c2e";
const SIDECAR: &str = env!("CARGO_BIN_EXE_secret-injector-sidecar");

struct Fixture {
    emulator: RunningEmulator,
    dir: tempfile::TempDir,
    /// The private key whose public half the emulator trusts for assertions.
    signing_key: String,
}

impl Fixture {
    async fn start() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("sa.key");
        let pub_path = dir.path().join("sa.pub");
        run_ok(
            "openssl",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                key_path.to_str().unwrap(),
            ],
        );
        run_ok(
            "openssl",
            &[
                "pkey",
                "-in",
                key_path.to_str().unwrap(),
                "-pubout",
                "-out",
                pub_path.to_str().unwrap(),
            ],
        );
        let config = EmulatorConfig {
            default_vault: VAULT.into(),
            tenant_id: TENANT.into(),
            authority_host: Some("https://login.microsoftonline.com".into()),
            extra_names: vec![
                "*.vault.azure.net".into(),
                "login.microsoftonline.com".into(),
            ],
            client_secrets: BTreeMap::from([(CLIENT.into(), CLIENT_SECRET.into())]),
            federated_keys: vec![std::fs::read_to_string(&pub_path).unwrap()],
            federated_subjects: BTreeMap::from([(
                CLIENT.into(),
                vec!["system:serviceaccount:default:app".into()],
            )]),
            identity_header: Some(IDENTITY_HEADER.into()),
            seeds: vec![
                (VAULT.into(), "db-user".into(), "administrator".into()),
                (
                    VAULT.into(),
                    "db-pass".into(),
                    "mysupersecretpassword".into(),
                ),
            ],
            ..Default::default()
        };
        let emulator = Emulator::start(config).await.unwrap();
        emulator.write_ca_pem(dir.path().join("ca.pem")).unwrap();
        let signing_key = std::fs::read_to_string(&key_path).unwrap();
        Self {
            emulator,
            dir,
            signing_key,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    fn resolve(&self) -> String {
        let port = self.emulator.addr().port();
        format!(
            "{VAULT}.vault.azure.net=127.0.0.1:{port},login.microsoftonline.com=127.0.0.1:{port}"
        )
    }

    /// A kubelet-style projected token, signed with the trusted key.
    fn federated_token(&self, subject: &str) -> PathBuf {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "aud": ["api://AzureADTokenExchange"], "iss": "https://kubernetes.default.svc",
            "sub": subject, "iat": now, "exp": now + 3600,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.signing_key.as_bytes()).unwrap();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap();
        let path = self
            .dir
            .path()
            .join(format!("token-{}", subject.replace(':', "-")));
        std::fs::write(&path, jwt).unwrap();
        path
    }

    /// The sidecar binary with the env the webhook injects, plus `extra`.
    fn sidecar(&self, args: &[&str], spec: &str, extra: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(SIDECAR);
        cmd.args(args)
            .args([
                "--dir",
                self.out().to_str().unwrap(),
                "--ca-bundle",
                self.ca().to_str().unwrap(),
            ])
            .args(["--resolve", &self.resolve()])
            .env_clear()
            .env("SECRET_INJECTOR_DEADLINE", "10s")
            .env("SECRET_INJECTOR_SPEC", spec)
            .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
            .env("AZURE_TENANT_ID", TENANT)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.out().join(file)).unwrap()
    }

    fn provider(&self) -> AzureProvider {
        let port = self.emulator.addr().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        AzureProvider::new(AzureConfig {
            auth: AzureAuth::ClientSecret {
                client_id: CLIENT.into(),
                tenant_id: TENANT.into(),
                secret: zeroize::Zeroizing::new(CLIENT_SECRET.into()),
            },
            authority_host: "https://login.microsoftonline.com/".into(),
            ca_bundle: Some(self.emulator.ca_pem().as_bytes().to_vec()),
            resolve: vec![
                (format!("{VAULT}.vault.azure.net"), addr),
                ("login.microsoftonline.com".into(), addr),
            ],
            timeout: Duration::from_secs(2),
        })
        .unwrap()
    }
}

fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spec(objects: &str, rotation: &str) -> String {
    format!(
        r#"{{"objects":[{objects}],"mountPath":"/mnt/secrets-store","rotation":"{rotation}","filePermission":"0644"}}"#
    )
}

fn seed_spec() -> String {
    spec(
        &format!(
            r#"{{"file":"db-user","source":"azure://{VAULT}/secrets/db-user"}},{{"file":"db-pass","source":"azure://{VAULT}/secrets/db-pass"}}"#
        ),
        "1m",
    )
}

fn finish(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn secret_env() -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_CLIENT_ID", CLIENT.into()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_credential_fetches_the_seed() {
    let f = Fixture::start().await;
    let out = finish(&mut f.sidecar(&["fetch", "--once"], &seed_spec(), &secret_env()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.read("db-user"), b"administrator");
    assert_eq!(f.read("db-pass"), b"mysupersecretpassword");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_exchanges_a_signed_service_account_token() {
    let f = Fixture::start().await;
    let token = f.federated_token("system:serviceaccount:default:app");
    let env = [
        ("AZURE_CLIENT_ID", CLIENT.to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", token.display().to_string()),
    ];
    let out = finish(&mut f.sidecar(&["fetch", "--once"], &seed_spec(), &env));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.read("db-pass"), b"mysupersecretpassword");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_from_the_wrong_service_account_is_refused_in_one_line() {
    let f = Fixture::start().await;
    let token = f.federated_token("system:serviceaccount:default:intruder");
    let env = [
        ("AZURE_CLIENT_ID", CLIENT.to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", token.display().to_string()),
    ];
    let out = finish(
        f.sidecar(&["fetch", "--once"], &seed_spec(), &env)
            .args(["--deadline", "2s"]),
    );
    assert!(!out.status.success());
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("secret-injector: cannot fetch db-user from azure://kv-aks-csi-weu-01/secrets/db-user (vault https://kv-aks-csi-weu-01.vault.azure.net): credential:"), "{last}");
    assert!(last.contains("cannot fetch db-pass from"), "{last}");
    assert!(
        last.contains("system:serviceaccount:default:intruder"),
        "{last}"
    );
    assert!(
        !f.out().join("db-user").exists(),
        "a partial set was written"
    );
    let jwt = std::fs::read_to_string(token).unwrap();
    assert!(
        !stderr(&out).contains(&jwt),
        "the assertion reached the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_through_the_identity_endpoint() {
    let f = Fixture::start().await;
    let env = [
        (
            "IDENTITY_ENDPOINT",
            "https://login.microsoftonline.com/msi/token".to_owned(),
        ),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
    ];
    // As a SecretProviderClass with useVMManagedIdentity: "true" asks.
    let managed = seed_spec().replacen('{', r#"{"azure":{"useManagedIdentity":true},"#, 1);
    let out = finish(&mut f.sidecar(&["fetch", "--once"], &managed, &env));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(f.read("db-user"), b"administrator");

    // M1: without it, a missing client id is an error, never the node's identity.
    let out = finish(&mut f.sidecar(&["fetch", "--once"], &seed_spec(), &env));
    assert!(!out.status.success());
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.contains("needs a client id: AZURE_CLIENT_ID"),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_keys_versions_formats_and_encodings() {
    let f = Fixture::start().await;
    let state = f.emulator.state();
    let pem_cert = state
        .create_certificate(
            VAULT,
            "tls",
            &CertificateSpec {
                content_type: ContentType::Pem,
                ..Default::default()
            },
        )
        .unwrap();
    let pfx_cert = state
        .create_certificate(
            VAULT,
            "tls-pfx",
            &CertificateSpec {
                content_type: ContentType::Pkcs12,
                ..Default::default()
            },
        )
        .unwrap();
    state
        .create_key(VAULT, "signing", KeyKind::Rsa2048)
        .unwrap();
    state
        .create_key(VAULT, "signing-ec", KeyKind::default())
        .unwrap();
    let old = state.set_secret(VAULT, "api", "v1-value").unwrap();
    state.set_secret(VAULT, "api", "v2-value").unwrap();
    state.set_secret(VAULT, "b64", "aGVsbG8gd29ybGQ=").unwrap();
    state
        .set_secret(VAULT, "json", r#"{"username":"admin","password":"pw"}"#)
        .unwrap();
    let objects = [
        format!(r#"{{"file":"tls.crt","source":"azure://{VAULT}/certificates/tls"}}"#),
        format!(r#"{{"file":"signing.pub","source":"azure://{VAULT}/keys/signing"}}"#),
        format!(r#"{{"file":"signing-ec.pub","source":"azure://{VAULT}/keys/signing-ec"}}"#),
        format!(r#"{{"file":"tls.pem","source":"azure://{VAULT}/secrets/tls","format":"pem"}}"#),
        format!(
            r#"{{"file":"tls-from-pfx.pem","source":"azure://{VAULT}/secrets/tls-pfx","format":"pem"}}"#
        ),
        format!(
            r#"{{"file":"tls.pfx","source":"azure://{VAULT}/secrets/tls-pfx","format":"pfx"}}"#
        ),
        format!(r#"{{"file":"api-old","source":"azure://{VAULT}/secrets/api/{old}"}}"#),
        format!(r#"{{"file":"api","source":"azure://{VAULT}/secrets/api"}}"#),
        format!(
            r#"{{"file":"hello","source":"azure://{VAULT}/secrets/b64","encoding":"base64","filePermission":"0400"}}"#
        ),
        format!(
            r#"{{"file":"username","source":"azure://{VAULT}/secrets/json","jsonKey":"username"}}"#
        ),
    ];
    let out = finish(&mut f.sidecar(
        &["fetch", "--once"],
        &spec(&objects.join(","), "1m"),
        &secret_env(),
    ));
    assert!(out.status.success(), "{}", stderr(&out));

    let cert = String::from_utf8(f.read("tls.crt")).unwrap();
    assert_eq!(
        cert,
        secret_injector_sidecar::pem::certificate_pem(&pem_cert.der)
    );
    for key in ["signing.pub", "signing-ec.pub"] {
        let text = String::from_utf8(f.read(key)).unwrap();
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----"), "{text}");
        run_ok(
            "openssl",
            &[
                "pkey",
                "-pubin",
                "-in",
                f.out().join(key).to_str().unwrap(),
                "-noout",
            ],
        );
    }
    for pem in ["tls.pem", "tls-from-pfx.pem"] {
        let text = String::from_utf8(f.read(pem)).unwrap();
        assert!(
            text.contains("PRIVATE KEY-----") && text.contains("-----BEGIN CERTIFICATE-----"),
            "{pem}"
        );
    }
    // objectFormat pfx: the base64 Key Vault returns, as the CSI provider
    // writes it (`certificate_secrets_as_the_csi_provider_writes_them`).
    assert_eq!(f.read("tls.pfx"), pfx_cert.secret_value.as_bytes());
    assert_eq!(f.read("api-old"), b"v1-value");
    assert_eq!(f.read("api"), b"v2-value");
    assert_eq!(f.read("hello"), b"hello world");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(f.out().join("hello"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o400
    );
    assert_eq!(f.read("username"), b"admin");
}

/// (label, DER) of each PEM block.
fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine;
    let mut out = Vec::new();
    let (mut label, mut body) = (String::new(), String::new());
    for line in text.lines() {
        if let Some(l) = line.strip_prefix("-----BEGIN ") {
            label = l.trim_end_matches('-').to_owned();
            body.clear();
        } else if line.starts_with("-----END ") {
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .unwrap();
            out.push((label.clone(), der));
        } else {
            body.push_str(line);
        }
    }
    out
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The CSI driver's Azure provider's e2e `certificates_test.go`, against the
/// emulator: a certificate's secret is the PEM bundle of its key and chain
/// (leaf, intermediate, root) by default or with `objectFormat: pem`, the
/// base64 Key Vault returns with `objectFormat: pfx` (its e2e decodes that
/// and reads it with `openssl pkcs12 -nodes -passin pass:`), the binary PFX
/// with `objectEncoding: base64` as well; a PEM certificate's secret as it
/// is. Each bundle's key matches the certificate and the key object
/// (`ValidateCertBundle`), and is the PKCS#8 OpenSSL makes of the PFX's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_secrets_as_the_csi_provider_writes_them() {
    use base64::Engine;
    let f = Fixture::start().await;
    let state = f.emulator.state();
    let pkcs12 = |key_type, chain| CertificateSpec {
        content_type: ContentType::Pkcs12,
        key_type,
        chain,
        dns_names: vec!["test.domain.com".into()],
        ..Default::default()
    };
    let certs = [
        ("pkcs12cert1", pkcs12(KeyKind::Rsa2048, false)),
        ("ecccert1", pkcs12(KeyKind::EcP256, false)),
        ("chaincert1", pkcs12(KeyKind::EcP384, true)),
    ]
    .map(|(name, spec)| (name, state.create_certificate(VAULT, name, &spec).unwrap()));
    let pem_cert = state
        .create_certificate(
            VAULT,
            "pemcert1",
            &CertificateSpec {
                content_type: ContentType::Pem,
                ..Default::default()
            },
        )
        .unwrap();
    state.set_secret(VAULT, "plain", "not-a-pfx").unwrap();

    let mut objects = vec![
        format!(r#"{{"file":"pemcert1-secret","source":"azure://{VAULT}/secrets/pemcert1"}}"#),
        format!(
            r#"{{"file":"pemcert1-secret-pfx","source":"azure://{VAULT}/secrets/pemcert1","format":"pfx"}}"#
        ),
        format!(
            r#"{{"file":"plain-pfx","source":"azure://{VAULT}/secrets/plain","format":"pfx"}}"#
        ),
    ];
    for (name, _) in &certs {
        objects.extend([
            format!(r#"{{"file":"{name}-secret","source":"azure://{VAULT}/secrets/{name}"}}"#),
            format!(
                r#"{{"file":"{name}-secret-pem","source":"azure://{VAULT}/secrets/{name}","format":"pem"}}"#
            ),
            format!(
                r#"{{"file":"{name}-secret-pfx","source":"azure://{VAULT}/secrets/{name}","format":"pfx"}}"#
            ),
            format!(
                r#"{{"file":"{name}.pfx","source":"azure://{VAULT}/secrets/{name}","format":"pfx","encoding":"base64"}}"#
            ),
            format!(r#"{{"file":"{name}-pub-key","source":"azure://{VAULT}/keys/{name}"}}"#),
        ]);
    }
    let out = finish(&mut f.sidecar(
        &["fetch", "--once"],
        &spec(&objects.join(","), "1m"),
        &secret_env(),
    ));
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(f.read("pemcert1-secret"), pem_cert.secret_value.as_bytes());
    assert_eq!(
        f.read("pemcert1-secret-pfx"),
        pem_cert.secret_value.as_bytes()
    );
    assert_eq!(f.read("plain-pfx"), b"not-a-pfx");

    for (name, made) in &certs {
        let pfx = base64::engine::general_purpose::STANDARD
            .decode(&made.secret_value)
            .unwrap();
        assert_eq!(
            f.read(&format!("{name}-secret-pfx")),
            made.secret_value.as_bytes()
        );
        assert_eq!(f.read(&format!("{name}.pfx")), pfx, "{name}");

        let bundle = f.read(&format!("{name}-secret"));
        assert_eq!(bundle, f.read(&format!("{name}-secret-pem")), "{name}");
        let bundle = String::from_utf8(bundle).unwrap();
        assert!(!bundle.contains("Bag Attributes") && !bundle.contains("localKeyID"));
        let blocks = pem_blocks(&bundle);
        let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
        let chain_len = if *name == "chaincert1" { 3 } else { 1 };
        let mut want = vec!["PRIVATE KEY"];
        want.extend(std::iter::repeat_n("CERTIFICATE", chain_len));
        assert_eq!(labels, want, "{name}");
        assert_eq!(blocks[1].1, made.der, "{name}: the leaf first");
        if chain_len == 3 {
            let subject = |der: &[u8]| {
                String::from_utf8(openssl(
                    &[
                        "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253",
                    ],
                    der,
                ))
                .unwrap()
            };
            assert_eq!(
                subject(&blocks[2].1).trim(),
                format!("subject=CN={name} intermediate CA")
            );
            assert_eq!(
                subject(&blocks[3].1).trim(),
                format!("subject=CN={name} root CA")
            );
        }
        // The key: what OpenSSL makes of the PFX's (the same DER as Go's).
        let from_pfx = openssl(&["pkcs12", "-nocerts", "-nodes", "-passin", "pass:"], &pfx);
        let pkcs8 = openssl(
            &["pkcs8", "-topk8", "-nocrypt", "-outform", "DER"],
            &from_pfx,
        );
        assert_eq!(blocks[0].1, pkcs8, "{name}");
        // ValidateCertBundle: key, certificate and key object agree.
        let key_pub = openssl(&["pkey", "-pubout"], bundle.as_bytes());
        let cert_pub = openssl(&["x509", "-noout", "-pubkey"], bundle.as_bytes());
        assert_eq!(key_pub, cert_pub, "{name}");
        assert_eq!(
            openssl(&["pkey", "-pubin"], &f.read(&format!("{name}-pub-key"))),
            key_pub,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_classified_as_a_person_would_name_them() {
    let f = Fixture::start().await;
    let provider = f.provider();
    let db_pass = format!("azure://{VAULT}/secrets/db-pass").parse().unwrap();
    let missing = format!("azure://{VAULT}/secrets/nope").parse().unwrap();
    assert_eq!(
        provider.fetch(&db_pass, None).await.unwrap().value.expose(),
        b"mysupersecretpassword"
    );

    let err = provider.fetch(&missing, None).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound(_)), "{err}");

    f.emulator
        .state()
        .deny(VAULT, CLIENT, "secrets/db-pass")
        .unwrap();
    let err = provider.fetch(&db_pass, None).await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden(_)), "{err}");
    f.emulator.state().clear_denials();

    f.emulator.state().set_fault(
        FaultTarget::AllVaults,
        Fault::Throttle {
            retry_after_secs: 7,
            count: Some(1),
        },
    );
    let err = provider.fetch(&db_pass, None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");

    f.emulator
        .state()
        .set_fault(FaultTarget::AllVaults, Fault::Down);
    let err = provider.fetch(&db_pass, None).await.unwrap_err();
    assert!(matches!(err, FetchError::Unavailable(_)), "{err}");
    f.emulator.state().clear_faults(None);

    f.emulator.state().set_fault(
        FaultTarget::AllVaults,
        Fault::Latency(Duration::from_secs(5)),
    );
    let err = provider.fetch(&db_pass, None).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    f.emulator.state().clear_faults(None);
    assert!(
        provider.fetch(&db_pass, None).await.is_ok(),
        "recovers after the fault"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let f = Fixture::start().await;
    let out = finish(
        Command::new(SIDECAR)
            .args([
                "fetch",
                "--once",
                "--dir",
                f.out().to_str().unwrap(),
                "--resolve",
                &f.resolve(),
                "--deadline",
                "1s",
            ])
            .env_clear()
            .env("SECRET_INJECTOR_SPEC", seed_spec())
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT)
            .env("AZURE_CLIENT_SECRET", CLIENT_SECRET),
    );
    assert!(!out.status.success());
    let last = stderr(&out).lines().last().unwrap_or_default().to_owned();
    assert!(last.contains("TLS:"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_replaced() {
    let f = Fixture::start().await;
    let provider = f.provider();
    let db_user = format!("azure://{VAULT}/secrets/db-user").parse().unwrap();
    let providers = secret_injector_sidecar::providers::Providers::new()
        .with(shared::Store::Azure, Box::new(provider));
    providers.fetch(&db_user, None).await.unwrap();
    f.emulator.state().expire_tokens();
    // The next fetch may meet the 401; the one after must have a new token.
    let first = providers.fetch(&db_user, None).await;
    let second = providers.fetch(&db_user, None).await;
    assert!(first.is_ok() || second.is_ok(), "{first:?} / {second:?}");
    assert!(second.is_ok(), "{second:?}");
}

fn wait_for(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    run_ok("kill", &["-TERM", &child.id().to_string()]);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < until, "the sidecar ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn status_of(f: &Fixture) -> serde_json::Value {
    std::fs::read(f.out().join("..secret-injector-status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The log canary: a whole life at trace level (a planted volume, the first
/// set, a rotation, an outage, a capped error) and no value in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_rotates_keeps_files_through_an_outage_and_never_logs_a_secret() {
    let f = Fixture::start().await;
    let state = f.emulator.state();
    let canary = "CANARY-value-that-must-never-be-logged-51f0";
    state.set_secret(VAULT, "db-pass", canary).unwrap();

    // M4: another container planted a set outside the volume and a status
    // temp link to a file outside it, before the sidecar starts.
    let planted = "CANARY-planted-value-never-read-or-logged-c4a7";
    let outside = f.dir.path().join("planted");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("db-pass"), planted).unwrap();
    std::fs::write(outside.join("db-user"), planted).unwrap();
    let victim = f.dir.path().join("victim-status.json");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::create_dir_all(f.out()).unwrap();
    std::os::unix::fs::symlink("../planted", f.out().join("..data")).unwrap();
    std::os::unix::fs::symlink(&victim, f.out().join("..secret-injector-status.json.tmp")).unwrap();

    let mut env = secret_env();
    env.push(("RUST_LOG", "trace".into()));
    let mut child = f.sidecar(&["run"], &spec(
        &format!(r#"{{"file":"db-user","source":"azure://{VAULT}/secrets/db-user"}},{{"file":"db-pass","source":"azure://{VAULT}/secrets/db-pass"}}"#),
        "5s",
    ), &env).spawn().unwrap();
    // Drained as it comes: trace logs outgrow a pipe's buffer, and a full
    // pipe would stall the sidecar's next log line (and its round).
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = std::io::Read::read_to_end(&mut pipe, &mut buf);
            }
            buf
        })
    };
    let stdout_reader = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let stderr_reader = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    // A native sidecar: no init container ran (and the planted set is not
    // one), so it fetches first.
    wait_for("the first set", Duration::from_secs(20), || {
        f.out().join("db-pass").exists()
            && status_of(&f)["objects"]["db-pass"]["version"].is_string()
    });
    assert_eq!(f.read("db-pass"), canary.as_bytes());
    assert_eq!(
        std::fs::read_to_string(outside.join("db-pass")).unwrap(),
        planted
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    let probe = Command::new(SIDECAR)
        .args(["probe", "--dir", f.out().to_str().unwrap()])
        .env("SECRET_INJECTOR_SPEC", seed_spec())
        .status()
        .unwrap();
    assert!(probe.success());

    // Rotation: the file follows within the interval (5s ± 10%) plus a round
    // (the status file is written just after the files).
    let rotated = "CANARY-rotated-value-also-secret-77aa";
    let version = state.set_secret(VAULT, "db-pass", rotated).unwrap();
    wait_for("the rotated value", Duration::from_secs(15), || {
        f.read("db-pass") == rotated.as_bytes()
            && status_of(&f)["objects"]["db-pass"]["version"] == version.as_str()
    });

    // Outage: the files stay byte-identical, the status names the failure.
    state.set_fault(FaultTarget::AllVaults, Fault::Down);
    wait_for(
        "the failure in the status file",
        Duration::from_secs(15),
        || status_of(&f)["objects"]["db-pass"]["errorKind"] == "unavailable",
    );
    let error = status_of(&f)["objects"]["db-pass"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.len() <= 300 && !error.contains('\n'), "{error}");
    assert_eq!(f.read("db-pass"), rotated.as_bytes());
    assert_eq!(f.read("db-user"), b"administrator");
    state.clear_faults(None);
    wait_for("recovery", Duration::from_secs(40), || {
        status_of(&f)["objects"]["db-pass"].get("error").is_none()
    });

    let stopped = Instant::now();
    let status = terminate(&mut child);
    eprintln!("sidecar exited {:?} after SIGTERM", stopped.elapsed());
    assert!(status.success(), "{status:?}");
    let (out_bytes, err_bytes) = (stdout_reader.join().unwrap(), stderr_reader.join().unwrap());
    let mut logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out_bytes),
        String::from_utf8_lossy(&err_bytes)
    );
    assert!(
        logs.len() > 1000,
        "trace logging produced almost nothing: {logs}"
    );
    // The planted volume was noticed (once), in words of our own.
    assert_eq!(
        logs.matches("treating the volume as holding no set")
            .count(),
        1,
        "{logs}"
    );
    assert!(
        !logs.contains("../planted"),
        "a planted link target reached the log"
    );

    // L2: an error longer than its cap (a long, missing name), at trace level:
    // one bounded line, a bounded status entry, and still no value logged.
    let long_name = "n".repeat(127);
    let capped = finish(
        f.sidecar(
            &["fetch", "--once"],
            &spec(
                &format!(r#"{{"file":"db-pass","source":"azure://{VAULT}/secrets/db-pass"}},{{"file":"missing","source":"azure://{VAULT}/secrets/{long_name}"}}"#),
                "1m",
            ),
            &env,
        )
        .args(["--deadline", "2s"]),
    );
    assert!(!capped.status.success());
    let capped_logs = stderr(&capped);
    // At trace level the runtime may still log its shutdown after the line.
    let last = capped_logs
        .lines()
        .rev()
        .find(|l| l.starts_with("secret-injector: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.starts_with("secret-injector: cannot fetch missing from"),
        "{last}"
    );
    assert!(last.len() <= 2040, "{}", last.len());
    assert!(last.contains('…'), "the detail was not capped: {last}");
    let entry = status_of(&f)["objects"]["missing"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!entry.is_empty() && entry.len() <= 300, "{entry}");
    logs.push_str(&capped_logs);

    for forbidden in [
        canary,
        rotated,
        planted,
        CLIENT_SECRET,
        "mysupersecretpassword",
    ] {
        assert!(!logs.contains(forbidden), "{forbidden} reached the log");
    }
}

/// A pod with two volumes (two classes): one process writes each set into its
/// own directory, the first with workload identity from the env, the second
/// as the service principal of its nodePublishSecretRef Secret; the probe
/// passes only once both are complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sets_each_with_its_own_identity_and_directory() {
    let f = Fixture::start().await;
    let token = f.federated_token("system:serviceaccount:default:app");
    let base = f.dir.path();
    let creds = base.join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("clientid"), format!("{CLIENT}\n")).unwrap();
    std::fs::write(creds.join("clientsecret"), format!("{CLIENT_SECRET}\n")).unwrap();
    let set = |dir: &str, object: &str, class: &str, extra: &str| {
        format!(
            r#"{{"version":4,"objects":[{{"file":"secretalias","source":"azure://{VAULT}/secrets/{object}"}}],"mountPath":"{}","rotation":"0s","filePermission":"0644","identities":{{"azure":{{"tenantId":"{TENANT}"{extra}}}}},"providerClass":"{class}"}}"#,
            base.join(dir).display()
        )
    };
    let spec = format!(
        r#"{{"version":4,"sets":[{},{}]}}"#,
        set("v0", "db-user", "azure-spc-0", &format!(r#","clientId":"{CLIENT}""#)),
        set("v1", "db-pass", "azure-spc-1", "")
            .replacen(
                r#","providerClass""#,
                &format!(
                    r#","providerSecret":{{"secretName":"secrets-store-creds","dir":"{}"}},"providerClass""#,
                    creds.display()
                ),
                1
            ),
    );
    let run = |args: &[&str]| {
        let mut cmd = Command::new(SIDECAR);
        cmd.args(args)
            .args(["--ca-bundle", f.ca().to_str().unwrap()])
            .args(["--resolve", &f.resolve()])
            .env_clear()
            .env("SECRET_INJECTOR_DEADLINE", "10s")
            .env("SECRET_INJECTOR_SPEC", &spec)
            .env("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/")
            .env("AZURE_CLIENT_ID", CLIENT)
            .env("AZURE_FEDERATED_TOKEN_FILE", &token);
        cmd.output().unwrap()
    };
    let probe = run(&["probe"]);
    assert!(!probe.status.success(), "no set yet");
    let out = run(&["fetch", "--once"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(base.join("v0/secretalias")).unwrap(),
        b"administrator"
    );
    assert_eq!(
        std::fs::read(base.join("v1/secretalias")).unwrap(),
        b"mysupersecretpassword"
    );
    for dir in ["v0", "v1"] {
        assert!(
            base.join(dir)
                .join("..secret-injector-status.json")
                .exists()
        );
    }
    let log = stderr(&out);
    assert!(log.contains("client secret (client"), "{log}");
    assert!(!log.contains(CLIENT_SECRET), "{log}");
    let probe = run(&["probe"]);
    assert!(probe.status.success(), "{}", stderr(&probe));

    // A wrong service principal fails its set, naming it; the process fails.
    std::fs::write(creds.join("clientsecret"), "wrong-sp-secret-7f3").unwrap();
    std::fs::remove_dir_all(base.join("v1")).unwrap();
    let out = run(&["fetch", "--once", "--deadline", "2s"]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("secretalias"), "{log}");
    assert!(!log.contains("wrong-sp-secret-7f3"), "{log}");
    // --dir cannot hold two sets.
    let out = run(&["fetch", "--once", "--dir", base.join("x").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("2 sets"), "{}", stderr(&out));
}
