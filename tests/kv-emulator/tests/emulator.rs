//! The emulator over real HTTPS on loopback: challenge, data plane, Entra,
//! faults, counters, token expiry and the admin HTTP API.

mod common;

use std::time::Duration;

use common::{API, CLIENT_ID, assertion, client, config, get, start, token};
use kv_emulator::{
    CertificateSpec, ContentType, Fault, FaultTarget, KeyKind, ObjectKind, SecretSpec,
};
use serde_json::{Value, json};

#[tokio::test]
async fn unauthenticated_requests_get_the_challenge_with_content_length() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    for path in [
        "/secrets/db/",
        "/secrets/db",
        "/certificates/tls/",
        "/keys/k/versions",
        "/secrets",
    ] {
        let r = get(&http, &format!("{}{path}?{API}", emu.url()), None).await;
        assert_eq!(r.status(), 401, "{path}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(
            challenge,
            format!(
                "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
                emu.url(),
                emu.tenant_id()
            )
        );
        let len: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(len, body.len());
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "Unauthorized");
    }
    // A token that was never issued is refused the same way.
    let r = get(
        &http,
        &format!("{}/secrets/db?{API}", emu.url()),
        Some("forged"),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn challenge_names_the_configured_authority_and_tenant() {
    let mut c = config();
    c.authority_host = Some("https://login.microsoftonline.com/".into());
    c.tenant_id = "72f9aaaa-86f1-41af-91ab-2d7cd011db47".into();
    let emu = start(c).await;
    let r = get(
        &client(&emu, &[]),
        &format!("{}/secrets/x?{API}", emu.url()),
        None,
    )
    .await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer authorization=\"https://login.microsoftonline.com/72f9aaaa-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\""
    );
}

#[tokio::test]
async fn secrets_by_host_name_vault_with_ids_on_that_host() {
    let emu = start(config()).await;
    let host = "kv-aks-csi-weu-01.vault.azure.net";
    let http = client(&emu, &[host]);
    let tok = token(&emu, &http).await;
    let v1 = emu
        .state()
        .set_secret("kv-aks-csi-weu-01", "db-password", "one")
        .unwrap();
    let spec = SecretSpec {
        value: "two".into(),
        content_type: Some("text/plain".into()),
        tags: [("team".to_owned(), "payments".to_owned())].into(),
        ..SecretSpec::default()
    };
    let v2 = emu
        .state()
        .set_secret_with("kv-aks-csi-weu-01", "db-password", spec)
        .unwrap();
    let base = format!("https://{host}:{}", emu.addr().port());

    let r = get(
        &http,
        &format!("{base}/secrets/db-password/?{API}"),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["value"], "two");
    assert_eq!(s["id"], format!("{base}/secrets/db-password/{v2}"));
    assert_eq!(s["contentType"], "text/plain");
    assert_eq!(s["tags"]["team"], "payments");
    assert_eq!(s["attributes"]["enabled"], true);
    assert!(s["attributes"]["created"].is_i64() && s["attributes"]["updated"].is_i64());
    assert_eq!(s["attributes"]["recoveryLevel"], "Recoverable+Purgeable");

    let s: Value = get(
        &http,
        &format!("{base}/secrets/DB-Password/{v1}?{API}"),
        Some(&tok),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(s["value"], "one");

    // The default vault (IP host) does not have it.
    let r = get(
        &http,
        &format!("{}/secrets/db-password?{API}", emu.url()),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "SecretNotFound");
}

#[tokio::test]
async fn versions_page_with_absolute_next_link() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let tok = token(&emu, &http).await;
    let vault = emu.default_vault().to_owned();
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            emu.state()
                .set_secret(&vault, "rotated", &format!("v{i}"))
                .unwrap(),
        );
    }
    let mut url = format!("{}/secrets/rotated/versions?{API}&maxresults=2", emu.url());
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = get(&http, &url, Some(&tok)).await.json().await.unwrap();
        pages += 1;
        for item in page["value"].as_array().unwrap() {
            assert!(item.get("value").is_none(), "list items carry no value");
            seen.push(
                item["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        match page["nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&emu.url()));
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made);
    let r = get(
        &http,
        &format!("{}/secrets/rotated/versions?{API}&maxresults=26", emu.url()),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = get(
        &http,
        &format!("{}/secrets/rotated/versions", emu.url()),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 400, "api-version is required");
}

#[tokio::test]
async fn disabled_denied_and_missing() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let tok = token(&emu, &http).await;
    let vault = emu.default_vault().to_owned();
    let st = emu.state();
    let v = st.set_secret(&vault, "s", "x").unwrap();
    st.set_enabled(&vault, ObjectKind::Secrets, "s", &v, false)
        .unwrap();
    let r = get(
        &http,
        &format!("{}/secrets/s/?{API}", emu.url()),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "Forbidden");
    assert_eq!(e["error"]["innererror"]["code"], "SecretDisabled");
    st.set_enabled(&vault, ObjectKind::Secrets, "s", &v, true)
        .unwrap();

    st.deny(&vault, CLIENT_ID, "secrets/s").unwrap();
    let r = get(
        &http,
        &format!("{}/secrets/s/?{API}", emu.url()),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["innererror"]["code"], "AccessDenied");
    st.clear_denials();
    assert_eq!(
        get(
            &http,
            &format!("{}/secrets/s/?{API}", emu.url()),
            Some(&tok)
        )
        .await
        .status(),
        200
    );

    for (path, code) in [
        ("/secrets/nope/", "SecretNotFound"),
        ("/certificates/nope/", "CertificateNotFound"),
        ("/keys/nope/", "KeyNotFound"),
    ] {
        let r = get(&http, &format!("{}{path}?{API}", emu.url()), Some(&tok)).await;
        assert_eq!(r.status(), 404);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code);
    }
}

#[tokio::test]
async fn certificates_and_keys_as_key_vault_stores_them() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let tok = token(&emu, &http).await;
    let vault = emu.default_vault().to_owned();
    let spec = CertificateSpec {
        key_type: KeyKind::EcP256,
        content_type: ContentType::Pem,
        dns_names: vec!["web.example.test".into()],
        ..CertificateSpec::default()
    };
    let made = emu
        .state()
        .create_certificate(&vault, "tls", &spec)
        .unwrap();
    let c: Value = get(
        &http,
        &format!("{}/certificates/tls/?{API}", emu.url()),
        Some(&tok),
    )
    .await
    .json()
    .await
    .unwrap();
    let base = emu.url();
    assert_eq!(c["id"], format!("{base}/certificates/tls/{}", made.version));
    assert_eq!(c["kid"], format!("{base}/keys/tls/{}", made.version));
    assert_eq!(c["sid"], format!("{base}/secrets/tls/{}", made.version));
    assert_eq!(c["x5t"], made.x5t);
    assert_eq!(
        c["policy"]["secret_props"]["contentType"],
        "application/x-pem-file"
    );
    use base64::Engine as _;
    let cer = base64::engine::general_purpose::STANDARD
        .decode(c["cer"].as_str().unwrap())
        .unwrap();
    assert_eq!(cer, made.der);

    let s: Value = get(&http, &format!("{base}/secrets/tls/?{API}"), Some(&tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["managed"], true);
    assert_eq!(s["kid"], c["kid"]);
    assert_eq!(s["value"], made.secret_value);
    assert!(made.secret_value.starts_with("-----BEGIN PRIVATE KEY-----"));

    let k: Value = get(&http, &format!("{base}/keys/tls/?{API}"), Some(&tok))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(k["key"]["kty"], "EC");
    assert_eq!(k["key"]["crv"], "P-256");
    assert_eq!(k["managed"], true);

    let made = emu
        .state()
        .create_key(&vault, "signing", KeyKind::Rsa2048)
        .unwrap();
    let k: Value = get(
        &http,
        &format!("{base}/keys/signing/{}?{API}", made.version),
        Some(&tok),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(k["key"]["kty"], "RSA");
    assert_eq!(k["key"]["e"], "AQAB");
    assert_eq!(k["key"]["n"], made.jwk["n"]);
    assert_eq!(
        k["key"]["kid"],
        format!("{base}/keys/signing/{}", made.version)
    );
}

#[tokio::test]
async fn throttle_then_recover_and_outage() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let tok = token(&emu, &http).await;
    let vault = emu.default_vault().to_owned();
    emu.state().set_secret(&vault, "s", "x").unwrap();
    let url = format!("{}/secrets/s?{API}", emu.url());

    emu.state().set_fault(
        FaultTarget::Vault(vault.clone()),
        Fault::Throttle {
            retry_after_secs: 3,
            count: Some(2),
        },
    );
    for _ in 0..2 {
        let r = get(&http, &url, Some(&tok)).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "Throttled");
    }
    assert_eq!(get(&http, &url, Some(&tok)).await.status(), 200);

    // Until cleared: every vault, even without a token.
    emu.state().set_fault(
        FaultTarget::AllVaults,
        Fault::Throttle {
            retry_after_secs: 1,
            count: None,
        },
    );
    for _ in 0..3 {
        assert_eq!(get(&http, &url, None).await.status(), 429);
    }
    emu.state().clear_faults(Some(&FaultTarget::AllVaults));

    emu.state()
        .set_fault(FaultTarget::Vault(vault.clone()), Fault::Down);
    for _ in 0..2 {
        let r = get(&http, &url, Some(&tok)).await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("content-length"));
    }
    // Another vault is unaffected.
    let other = client(&emu, &["other.vault.azure.net"]);
    let r = get(
        &other,
        &format!(
            "https://other.vault.azure.net:{}/secrets/s?{API}",
            emu.addr().port()
        ),
        Some(&tok),
    )
    .await;
    assert_eq!(r.status(), 404);
    emu.state().clear_faults(None);
    assert_eq!(get(&http, &url, Some(&tok)).await.status(), 200);

    // Latency only delays; the answer is unchanged.
    emu.state().set_fault(
        FaultTarget::AllVaults,
        Fault::Latency(Duration::from_millis(20)),
    );
    assert_eq!(get(&http, &url, Some(&tok)).await.status(), 200);
    emu.state().clear_faults(None);

    // Identity endpoints can fail too.
    emu.state().set_fault(
        FaultTarget::Identity,
        Fault::Throttle {
            retry_after_secs: 5,
            count: Some(1),
        },
    );
    let r = http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            emu.url(),
            emu.tenant_id()
        ))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "5");
    token(&emu, &http).await;
}

#[tokio::test]
async fn counters_count_fetches_per_path_and_identity() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let tok = token(&emu, &http).await;
    let vault = emu.default_vault().to_owned();
    emu.state().set_secret(&vault, "a", "x").unwrap();
    for _ in 0..3 {
        get(
            &http,
            &format!("{}/secrets/a/?{API}", emu.url()),
            Some(&tok),
        )
        .await;
    }
    get(&http, &format!("{}/secrets/a?{API}", emu.url()), None).await;
    assert_eq!(emu.state().fetches(&vault, "/secrets/a"), 3);
    assert_eq!(emu.state().fetches(&vault, "/secrets/b"), 0);
    let counts = emu.state().request_counts();
    let by_app: u64 = counts
        .iter()
        .filter(|c| c.path == "/secrets/a" && c.identity.as_deref() == Some(CLIENT_ID))
        .map(|c| c.count)
        .sum();
    assert_eq!(by_app, 3);
    assert!(
        counts
            .iter()
            .any(|c| c.path == "/secrets/a" && c.status == 401 && c.identity.is_none())
    );
    assert!(
        counts
            .iter()
            .any(|c| c.target == "@identity" && c.identity.as_deref() == Some(CLIENT_ID))
    );
    emu.state().reset_counts();
    assert!(emu.state().request_counts().is_empty());
}

#[tokio::test]
async fn tokens_expire_by_lifetime_and_on_demand() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let vault = emu.default_vault().to_owned();
    emu.state().set_secret(&vault, "s", "x").unwrap();
    let url = format!("{}/secrets/s?{API}", emu.url());

    let tok = token(&emu, &http).await;
    assert_eq!(get(&http, &url, Some(&tok)).await.status(), 200);
    emu.state().expire_tokens();
    let r = get(&http, &url, Some(&tok)).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    emu.state().set_token_lifetime(Duration::ZERO);
    let dead = token(&emu, &http).await;
    assert_eq!(get(&http, &url, Some(&dead)).await.status(), 401);
    emu.state().set_token_lifetime(Duration::from_secs(60));
    let tok = token(&emu, &http).await;
    assert_eq!(get(&http, &url, Some(&tok)).await.status(), 200);

    // A token for another resource is not a Key Vault token.
    let arm = common::token_for(&emu, &http, "https://management.azure.com/.default").await;
    assert_eq!(get(&http, &url, Some(&arm)).await.status(), 401);
}

#[tokio::test]
async fn token_endpoint_errors_are_aadsts_json() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let post = |form: Vec<(&'static str, &'static str)>, tenant: String| {
        let http = http.clone();
        let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.url());
        async move { http.post(url).form(&form).send().await.unwrap() }
    };
    let base = vec![
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", "https://vault.azure.net/.default"),
    ];
    let tenant = emu.tenant_id().to_owned();
    let cases = [
        (
            [base.clone(), vec![("client_secret", "wrong")]].concat(),
            tenant.clone(),
            401,
            "invalid_client",
            7000215,
        ),
        (base.clone(), tenant.clone(), 401, "invalid_client", 7000218),
        (
            [base.clone(), vec![("client_secret", "x")]].concat(),
            "other-tenant".to_owned(),
            400,
            "invalid_request",
            90002,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "ghost"),
                ("client_secret", "x"),
                ("scope", "https://vault.azure.net/.default"),
            ],
            tenant.clone(),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", common::CLIENT_SECRET),
                ("scope", "https://vault.azure.net"),
            ],
            tenant.clone(),
            400,
            "invalid_scope",
            1002012,
        ),
    ];
    for (form, tenant, status, error, code) in cases {
        let r = post(form, tenant).await;
        assert_eq!(r.status(), status, "{error} {code}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], error);
        assert_eq!(e["error_codes"][0], code);
        assert!(
            e["error_description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AADSTS{code}:"))
        );
    }
}

#[tokio::test]
async fn federated_assertions_are_verified() {
    common::install_crypto();
    let trusted = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut c = config();
    c.federated_keys.push(trusted.public_key_pem());
    c.federated_subjects.insert(
        "wi-app".into(),
        vec!["system:serviceaccount:apps:web".into()],
    );
    let emu = start(c).await;
    let http = client(&emu, &[]);
    let url = format!("{}/{}/oauth2/v2.0/token", emu.url(), emu.tenant_id());
    let exchange = |jwt: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "wi-app"),
                    ("scope", "https://vault.azure.net/.default"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", jwt.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let sub = "system:serviceaccount:apps:web";
    let ok = exchange(assertion(
        &trusted.serialize_pem(),
        "api://AzureADTokenExchange",
        sub,
        600,
    ))
    .await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    let tok = body["access_token"].as_str().unwrap().to_owned();
    emu.state()
        .set_secret(emu.default_vault(), "s", "x")
        .unwrap();
    let r = get(&http, &format!("{}/secrets/s?{API}", emu.url()), Some(&tok)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        emu.state()
            .request_counts()
            .iter()
            .filter(|c| c.identity.as_deref() == Some("wi-app"))
            .count(),
        2
    );

    for (jwt, code) in [
        (
            assertion(
                &stranger.serialize_pem(),
                "api://AzureADTokenExchange",
                sub,
                600,
            ),
            50013,
        ),
        (
            assertion(&trusted.serialize_pem(), "api://Other", sub, 600),
            700212,
        ),
        (
            assertion(
                &trusted.serialize_pem(),
                "api://AzureADTokenExchange",
                "system:serviceaccount:x:y",
                600,
            ),
            700213,
        ),
        (
            assertion(
                &trusted.serialize_pem(),
                "api://AzureADTokenExchange",
                sub,
                -60,
            ),
            700024,
        ),
        ("not-a-jwt".to_owned(), 50027),
    ] {
        let r = exchange(jwt).await;
        assert!(
            r.status() == 400 || r.status() == 401,
            "{code}: {}",
            r.status()
        );
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error_codes"][0], code);
    }
}

#[tokio::test]
async fn managed_identity_endpoint() {
    let mut c = config();
    c.identity_header = Some("hdr".into());
    let emu = start(c).await;
    let http = client(&emu, &[]);
    let url = format!(
        "{}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net&client_id=mi-1",
        emu.url()
    );
    let r = http
        .get(&url)
        .header("X-IDENTITY-HEADER", "hdr")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let expires_on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(expires_on > 1_700_000_000);
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert_eq!(body["token_type"], "Bearer");
    emu.state()
        .set_secret(emu.default_vault(), "s", "x")
        .unwrap();
    let r = get(
        &http,
        &format!("{}/secrets/s?{API}", emu.url()),
        body["access_token"].as_str(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        emu.state()
            .request_counts()
            .iter()
            .any(|c| c.path == "/secrets/s" && c.identity.as_deref() == Some("mi-1"))
    );

    let r = http
        .get(&url)
        .header("X-IDENTITY-HEADER", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn imds_endpoint_over_plain_http_as_on_a_vm() {
    let mut c = config();
    c.imds_listen = Some("127.0.0.1:0".parse().unwrap());
    let emu = start(c).await;
    let imds = emu.imds_addr().unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "http://{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&client_id=uai-1"
    );
    let r = http
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["client_id"], "uai-1");
    assert!(body["expires_on"].as_str().unwrap().parse::<i64>().unwrap() > 1_700_000_000);
    emu.state()
        .set_secret(emu.default_vault(), "s", "x")
        .unwrap();
    let r = get(
        &client(&emu, &[]),
        &format!("{}/secrets/s?{API}", emu.url()),
        body["access_token"].as_str(),
    )
    .await;
    assert_eq!(r.status(), 200);
    // Without the Metadata header IMDS refuses, as the real one does.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Not enabled: not served.
    let emu = start(config()).await;
    let r = client(&emu, &[])
        .get(format!(
            "{}/metadata/identity/oauth2/token?api-version=1&resource=r",
            emu.url()
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn admin_http_api_mirrors_the_state_handle() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let admin = |p: &str| format!("{}/admin{p}", emu.url());
    let tok = token(&emu, &http).await;

    let r: Value = http
        .post(admin("/vaults/kv1/secrets/db"))
        .json(&json!({"value": "v1", "contentType": "text/plain"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = r["version"].as_str().unwrap().to_owned();
    assert_eq!(version.len(), 32);
    let r = http
        .post(admin(&format!("/vaults/kv1/secrets/db/{version}/disable")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let kv1 = client(&emu, &["kv1.vault.azure.net"]);
    let url = format!(
        "https://kv1.vault.azure.net:{}/secrets/db?{API}",
        emu.addr().port()
    );
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 403);
    http.post(admin(&format!("/vaults/kv1/secrets/db/{version}/enable")))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 200);

    let r: Value = http
        .post(admin("/vaults/kv1/certificates/tls"))
        .json(&json!({"keyType": "RSA", "contentType": "application/x-pkcs12"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["cer"].as_str().unwrap().len() > 100);
    let r: Value = http
        .post(admin("/vaults/kv1/keys/k"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["jwk"]["kty"], "RSA");

    let r = http
        .post(admin("/faults"))
        .json(&json!({"target": "kv1", "fault": "throttle", "retryAfter": 2, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 429);
    http.post(admin("/faults"))
        .json(&json!({"target": "*", "fault": "down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 503);
    http.delete(admin("/faults")).send().await.unwrap();
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 200);

    http.post(admin("/denials"))
        .json(&json!({"vault": "kv1", "identity": CLIENT_ID, "object": "secrets/*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 403);
    http.delete(admin("/denials")).send().await.unwrap();

    let counters: Vec<Value> = http
        .get(admin("/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        counters
            .iter()
            .any(|c| c["target"] == "kv1" && c["path"] == "/secrets/db" && c["status"] == 200)
    );

    http.post(admin("/tokens/expire")).send().await.unwrap();
    assert_eq!(get(&kv1, &url, Some(&tok)).await.status(), 401);
    let r = http
        .put(admin("/tokens/lifetime"))
        .json(&json!({"seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(emu.state().token_lifetime(), Duration::ZERO);

    let r = http
        .delete(admin("/vaults/kv1/secrets/db"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .post(admin("/vaults/kv1/secrets/bad_name"))
        .json(&json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    http.delete(admin("/counters")).send().await.unwrap();
    emu.shutdown().await;
}

#[tokio::test]
async fn openid_configuration_for_msal() {
    let emu = start(config()).await;
    let http = client(&emu, &[]);
    let r: Value = get(
        &http,
        &format!(
            "{}/{}/v2.0/.well-known/openid-configuration",
            emu.url(),
            emu.tenant_id()
        ),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        r["token_endpoint"],
        format!("{}/{}/oauth2/v2.0/token", emu.url(), emu.tenant_id())
    );
    assert!(r["authorization_endpoint"].is_string());
}

#[tokio::test]
async fn write_ca_and_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config();
    c.seeds
        .push(("kv-emulator".into(), "seeded".into(), "v".into()));
    let emu = start(c).await;
    let path = dir.path().join("ca.pem");
    emu.write_ca_pem(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), emu.ca_pem());
    assert_eq!(
        emu.state()
            .set_secret_with("kv-emulator", "seeded", SecretSpec::from("w"))
            .unwrap()
            .len(),
        32
    );
    assert!(emu.url().starts_with("https://127.0.0.1:"));
}
