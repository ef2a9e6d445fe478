//! Microsoft's Rust SDK (the sidecar's client) against the emulator.

mod common;

use azure_core::http::StatusCode;
use azure_security_keyvault_certificates::models::CertificateClientGetCertificateOptions;
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_secrets::models::{
    ContentType, SecretClientGetSecretOptions, SecretClientListSecretPropertiesVersionsOptions,
};
use azure_security_keyvault_secrets::{ResourceExt, SecretClient, SecretClientOptions};
use common::{client_options, config, credential, start};
use futures::TryStreamExt;
use kv_emulator::{CertificateSpec, ContentType as EmuContentType};

#[tokio::test]
async fn secret_client_reads_latest_versions_and_pages() {
    let emu = start(config()).await;
    let vault = emu.default_vault().to_owned();
    let versions: Vec<String> = (0..5)
        .map(|i| {
            emu.state()
                .set_secret(&vault, "db", &format!("v{i}"))
                .unwrap()
        })
        .collect();
    let client = SecretClient::new(
        &emu.url(),
        credential(&emu),
        Some(SecretClientOptions {
            client_options: client_options(&emu),
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .unwrap();

    let latest = client
        .get_secret("db", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(latest.value.as_deref(), Some("v4"));
    assert_eq!(
        latest.resource_id().unwrap().version.as_deref(),
        Some(versions[4].as_str())
    );

    let options = SecretClientGetSecretOptions {
        secret_version: Some(versions[1].clone()),
        ..Default::default()
    };
    let old = client
        .get_secret("db", Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(old.value.as_deref(), Some("v1"));

    let options = SecretClientListSecretPropertiesVersionsOptions {
        maxresults: Some(2),
        ..Default::default()
    };
    let mut pager = client
        .list_secret_properties_versions("db", Some(options))
        .unwrap();
    let mut listed = Vec::new();
    while let Some(p) = pager.try_next().await.unwrap() {
        listed.push(p.resource_id().unwrap().version.unwrap());
    }
    assert_eq!(listed, versions);
    assert_eq!(emu.state().fetches(&vault, "/secrets/db/versions"), 3);

    let err = client.get_secret("missing", None).await.unwrap_err();
    assert_eq!(err.http_status(), Some(StatusCode::NotFound));

    // A PFX certificate's secret, converted to PEM on request (outContentType).
    let spec = CertificateSpec {
        content_type: EmuContentType::Pkcs12,
        ..Default::default()
    };
    let made = emu
        .state()
        .create_certificate(&vault, "tls", &spec)
        .unwrap();
    let options = SecretClientGetSecretOptions {
        out_content_type: Some(ContentType::Pem),
        ..Default::default()
    };
    let pem = client
        .get_secret("tls", Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(pem.content_type.as_deref(), Some("application/x-pem-file"));
    assert!(pem.value.unwrap().contains("-----BEGIN CERTIFICATE-----"));
    let pfx = client
        .get_secret("tls", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(pfx.value.as_deref(), Some(made.secret_value.as_str()));

    let certs = CertificateClient::new(
        &emu.url(),
        credential(&emu),
        Some(CertificateClientOptions {
            client_options: client_options(&emu),
            verify_challenge_resource: Some(false),
            ..Default::default()
        }),
    )
    .unwrap();
    let cert = certs
        .get_certificate("tls", None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(cert.cer.as_deref(), Some(made.der.as_slice()));
    let options = CertificateClientGetCertificateOptions {
        certificate_version: Some(made.version.clone()),
        ..Default::default()
    };
    let cert = certs
        .get_certificate("tls", Some(options))
        .await
        .unwrap()
        .into_model()
        .unwrap();
    assert_eq!(cert.cer, Some(made.der));
}
