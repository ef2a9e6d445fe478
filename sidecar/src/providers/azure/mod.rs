//! Azure Key Vault through Microsoft's official crates: secrets (a
//! certificate's as the CSI driver's Azure provider writes it: `pkcs12`),
//! certificates (PEM) and keys (public key, PEM), by version or latest, with
//! workload identity, managed identity or a client secret.

pub mod config;
pub mod pkcs12;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{Secret, TokenCredential},
    error::ErrorKind,
    http::{ClientOptions, RetryOptions, Transport, headers::HeaderName},
};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_certificates::{CertificateClient, CertificateClientOptions};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use azure_security_keyvault_secrets::{
    ResourceExt, SecretClient, SecretClientOptions, models::SecretClientGetSecretOptions,
};
use shared::{AzureObjectKind, AzureRef, ObjectFormat, SecretRef};
use zeroize::Zeroizing;

use crate::{
    pem,
    providers::{
        Detail, FetchError, Fetched, Provider,
        chain::{self, SystemResolver, Transport as Failure},
    },
    secret::SecretBytes,
};

/// How the sidecar proves who it is to Entra ID.
#[derive(Clone)]
pub enum AzureAuth {
    /// A projected ServiceAccount token exchanged for an access token.
    Workload {
        client_id: String,
        tenant_id: String,
        token_file: PathBuf,
    },
    /// A managed identity; `None` is the system-assigned one.
    Managed { client_id: Option<String> },
    ClientSecret {
        client_id: String,
        tenant_id: String,
        secret: Zeroizing<String>,
    },
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Workload { client_id, .. } => write!(f, "workload identity (client {client_id})"),
            Self::Managed {
                client_id: Some(id),
            } => write!(f, "managed identity (client {id})"),
            Self::Managed { client_id: None } => f.write_str("managed identity (system-assigned)"),
            Self::ClientSecret { client_id, .. } => write!(f, "client secret (client {client_id})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub auth: AzureAuth,
    /// Entra ID authority, for example `https://login.microsoftonline.com/`.
    pub authority_host: String,
    /// Extra trusted CAs (PEM), added to the system's: private endpoints, emulators.
    pub ca_bundle: Option<Vec<u8>>,
    /// Fixed addresses for host names, like `/etc/hosts` (private endpoints).
    pub resolve: Vec<(String, SocketAddr)>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AzureSetupError {
    #[error("the CA bundle is not PEM certificates: {0}")]
    CaBundle(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("cannot set up the Azure credential ({auth:?}): {message}")]
    Credential { auth: AzureAuth, message: String },
}

struct Clients {
    secrets: SecretClient,
    certificates: CertificateClient,
    keys: KeyClient,
}

pub struct AzureProvider {
    config: AzureConfig,
    transport: Transport,
    /// Rebuilt after a 401 so a revoked token is not reused.
    credential: Mutex<Arc<dyn TokenCredential>>,
    clients: Mutex<HashMap<String, Arc<Clients>>>,
}

impl AzureProvider {
    pub fn new(config: AzureConfig) -> Result<Self, AzureSetupError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(config.timeout);
        if let Some(pem_bytes) = &config.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem_bytes)
                .map_err(|e| AzureSetupError::CaBundle(e.to_string()))?;
            builder = builder.tls_certs_merge(certs);
        }
        // Typed DNS failures (`chain`); `--resolve` entries win over it.
        builder = builder.dns_resolver(SystemResolver::default());
        for (host, addr) in &config.resolve {
            builder = builder.resolve(host, *addr);
        }
        let http = builder
            .build()
            .map_err(|e| AzureSetupError::Http(e.to_string()))?;
        let transport = Transport::new(Arc::new(http));
        let credential = build_credential(&config, &transport)?;
        Ok(Self {
            config,
            transport,
            credential: Mutex::new(credential),
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn client_options(&self) -> ClientOptions {
        client_options(&self.config, &self.transport)
    }

    fn clients(&self, vault_url: &str) -> Result<Arc<Clients>, FetchError> {
        let mut clients = self.clients.lock().map_err(|_| poisoned())?;
        if let Some(c) = clients.get(vault_url) {
            return Ok(c.clone());
        }
        let credential = self.credential.lock().map_err(|_| poisoned())?.clone();
        // H1: a vault of the clouds' own domains must answer with its cloud's
        // resource. A private endpoint the operator allowed cannot match
        // it; there the credential alone keeps the scope to Key Vault's.
        let verify = reqwest::Url::parse(vault_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .is_some_and(|host| {
                KEY_VAULT_SUFFIXES
                    .iter()
                    .any(|suffix| host.ends_with(&format!(".{suffix}")))
            });
        let setup =
            |e: azure_core::Error| FetchError::Invalid(format!("vault {vault_url}: {e}").into());
        let built = Arc::new(Clients {
            secrets: SecretClient::new(
                vault_url,
                credential.clone(),
                Some(SecretClientOptions {
                    client_options: self.client_options(),
                    verify_challenge_resource: Some(verify),
                    ..Default::default()
                }),
            )
            .map_err(setup)?,
            certificates: CertificateClient::new(
                vault_url,
                credential.clone(),
                Some(CertificateClientOptions {
                    client_options: self.client_options(),
                    verify_challenge_resource: Some(verify),
                    ..Default::default()
                }),
            )
            .map_err(setup)?,
            keys: KeyClient::new(
                vault_url,
                credential,
                Some(KeyClientOptions {
                    client_options: self.client_options(),
                    verify_challenge_resource: Some(verify),
                    ..Default::default()
                }),
            )
            .map_err(setup)?,
        });
        clients.insert(vault_url.to_owned(), built.clone());
        Ok(built)
    }

    async fn fetch_azure(
        &self,
        r: &AzureRef,
        format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        let vault_url = r.vault.url();
        let clients = self.clients(&vault_url)?;
        let what = format!("{} {} in {vault_url}", kind_name(r.kind), r.name);
        match r.kind {
            AzureObjectKind::Secret => {
                // No outContentType: Key Vault's own PFX-to-PEM is not the
                // provider's bytes; `secret_content` converts as it does.
                let options = SecretClientGetSecretOptions {
                    secret_version: r.version.clone(),
                    ..Default::default()
                };
                let mut secret = clients
                    .secrets
                    .get_secret(&r.name, Some(options))
                    .await
                    .and_then(|resp| resp.into_model())
                    .map_err(|e| classify(&e, &what))?;
                let version = secret
                    .resource_id()
                    .ok()
                    .and_then(|id| id.version)
                    .unwrap_or_default();
                // Moved out of the model, not copied; wiped if unused.
                let value = Zeroizing::new(secret.value.take().unwrap_or_default());
                let value = secret_content(
                    &what,
                    secret.kid.as_deref(),
                    secret.content_type.as_deref(),
                    format,
                    value,
                )?;
                Ok(Fetched::new(value, version))
            }
            AzureObjectKind::Certificate => {
                let options = azure_security_keyvault_certificates::models::CertificateClientGetCertificateOptions {
                    certificate_version: r.version.clone(),
                    ..Default::default()
                };
                let cert = clients
                    .certificates
                    .get_certificate(&r.name, Some(options))
                    .await
                    .and_then(|resp| resp.into_model())
                    .map_err(|e| classify(&e, &what))?;
                let version = version_from_id(cert.id.as_deref());
                let der = cert.cer.ok_or_else(|| {
                    FetchError::Invalid(format!("{what} has no certificate body (cer)").into())
                })?;
                Ok(Fetched::new(
                    SecretBytes::from(pem::certificate_pem(&der)),
                    version,
                ))
            }
            AzureObjectKind::Key => {
                let options = azure_security_keyvault_keys::models::KeyClientGetKeyOptions {
                    key_version: r.version.clone(),
                    ..Default::default()
                };
                let key = clients
                    .keys
                    .get_key(&r.name, Some(options))
                    .await
                    .and_then(|resp| resp.into_model())
                    .map_err(|e| classify(&e, &what))?;
                let jwk = key.key.ok_or_else(|| {
                    FetchError::Invalid(format!("{what} has no key material").into())
                })?;
                let version = version_from_id(jwk.kid.as_deref());
                let public = public_key_pem(&jwk)
                    .ok_or_else(|| FetchError::Invalid(format!("{what}: only RSA and EC (P-256, P-384, P-521, P-256K) public keys can be written").into()))?;
                Ok(Fetched::new(SecretBytes::from(public), version))
            }
        }
    }
}

#[async_trait]
impl Provider for AzureProvider {
    async fn fetch(
        &self,
        source: &SecretRef,
        format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        match source {
            SecretRef::Azure(r) => self.fetch_azure(r, format).await,
            other => Err(FetchError::Unsupported(
                format!("{other} is not an Azure reference").into(),
            )),
        }
    }

    fn reset_credentials(&self) {
        match build_credential(&self.config, &self.transport) {
            Ok(fresh) => {
                if let (Ok(mut credential), Ok(mut clients)) =
                    (self.credential.lock(), self.clients.lock())
                {
                    *credential = fresh;
                    clients.clear();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot rebuild the Azure credential"),
        }
    }
}

/// What the CSI driver's Azure provider writes for a secret (`getSecret`):
/// a secret that backs a certificate (it has a `kid`) and holds a PFX is the
/// PEM bundle of its keys and chain, unless `objectFormat: pfx` asks for the
/// base64 Key Vault returns (which `objectEncoding: base64` then makes binary,
/// afterwards, as for any secret); a PEM one and any other secret as they are.
fn secret_content(
    what: &str,
    kid: Option<&str>,
    content_type: Option<&str>,
    format: Option<ObjectFormat>,
    mut value: Zeroizing<String>,
) -> Result<SecretBytes, FetchError> {
    const PEM: &str = "application/x-pem-file";
    const PKCS12: &str = "application/x-pkcs12";
    if kid.is_none_or(str::is_empty) {
        return Ok(SecretBytes::from(std::mem::take(&mut *value)));
    }
    match content_type {
        Some(PEM) => Ok(SecretBytes::from(std::mem::take(&mut *value))),
        Some(PKCS12) if format == Some(ObjectFormat::Pfx) => {
            Ok(SecretBytes::from(std::mem::take(&mut *value)))
        }
        Some(PKCS12) => {
            let mut bundle = pkcs12::pem_bundle(&value).map_err(|e| {
                FetchError::Invalid(
                    format!("{what}: cannot write the certificate as PEM: {e}").into(),
                )
            })?;
            Ok(SecretBytes::from(std::mem::take(&mut *bundle)))
        }
        other => Err(FetchError::Invalid(
            format!(
                "{what} backs a certificate, but its content type is {}, not {PEM} or {PKCS12}",
                other.map_or_else(|| "not set".to_owned(), |t| format!("{t:?}"))
            )
            .into(),
        )),
    }
}

fn poisoned() -> FetchError {
    FetchError::Invalid("internal lock poisoned".into())
}

fn kind_name(kind: AzureObjectKind) -> &'static str {
    match kind {
        AzureObjectKind::Secret => "secret",
        AzureObjectKind::Certificate => "certificate",
        AzureObjectKind::Key => "key",
    }
}

fn version_from_id(id: Option<&str>) -> String {
    id.and_then(|id| id.split('?').next())
        .and_then(|id| id.rsplit('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn public_key_pem(jwk: &azure_security_keyvault_keys::models::JsonWebKey) -> Option<String> {
    use azure_security_keyvault_keys::models::{CurveName, KeyType};
    match jwk.kty.as_ref()? {
        KeyType::Rsa | KeyType::RsaHsm => {
            Some(pem::rsa_public_key_pem(jwk.n.as_ref()?, jwk.e.as_ref()?))
        }
        KeyType::Ec | KeyType::EcHsm => {
            let curve = match jwk.crv.as_ref()? {
                CurveName::P256 => "P-256",
                CurveName::P384 => "P-384",
                CurveName::P521 => "P-521",
                CurveName::P256K => "P-256K",
                _ => return None,
            };
            pem::ec_public_key_pem(curve, jwk.x.as_ref()?, jwk.y.as_ref()?)
        }
        _ => None,
    }
}

fn client_options(config: &AzureConfig, transport: &Transport) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = config.authority_host.trim_end_matches('/').to_owned();
    ClientOptions {
        transport: Some(transport.clone()),
        // The engine owns retries, so backoff and Retry-After are one policy.
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

/// The Key Vault DNS suffixes of Azure's clouds.
const KEY_VAULT_SUFFIXES: &[&str] = &[
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
];

/// H1: a credential that gets tokens for Key Vault's scope of the configured
/// cloud only. The SDK takes the scope from the server's 401 challenge; a host
/// that names `https://management.azure.com` or Graph there gets nothing.
#[derive(Debug)]
pub struct KeyVaultScopeOnly {
    inner: Arc<dyn TokenCredential>,
    scope: &'static str,
}

impl KeyVaultScopeOnly {
    pub fn new(inner: Arc<dyn TokenCredential>, authority_host: &str) -> Self {
        Self {
            inner,
            scope: Self::scope_for(authority_host),
        }
    }

    /// The cloud is the authority's: China's and US Government's have their
    /// own Key Vault resource; any other authority is the public cloud's
    /// (emulators included).
    pub fn scope_for(authority_host: &str) -> &'static str {
        let host = reqwest::Url::parse(authority_host)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host == "login.chinacloudapi.cn" {
            "https://vault.azure.cn/.default"
        } else if host == "login.microsoftonline.us" {
            "https://vault.usgovcloudapi.net/.default"
        } else {
            "https://vault.azure.net/.default"
        }
    }
}

#[async_trait]
impl TokenCredential for KeyVaultScopeOnly {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let wanted = |s: &&str| s.trim_end_matches('/') == self.scope;
        if scopes.is_empty() || !scopes.iter().all(wanted) {
            return Err(azure_core::Error::with_message(
                ErrorKind::Credential,
                format!(
                    "the store asked for a token for {scopes:?}; only Key Vault's scope {} is ever requested",
                    self.scope
                ),
            ));
        }
        self.inner.get_token(scopes, options).await
    }
}

fn build_credential(
    config: &AzureConfig,
    transport: &Transport,
) -> Result<Arc<dyn TokenCredential>, AzureSetupError> {
    let inner = build_sdk_credential(config, transport)?;
    Ok(Arc::new(KeyVaultScopeOnly::new(
        inner,
        &config.authority_host,
    )))
}

fn build_sdk_credential(
    config: &AzureConfig,
    transport: &Transport,
) -> Result<Arc<dyn TokenCredential>, AzureSetupError> {
    let options = client_options(config, transport);
    let fail = |e: azure_core::Error| AzureSetupError::Credential {
        auth: config.auth.clone(),
        message: e.to_string(),
    };
    Ok(match &config.auth {
        AzureAuth::Workload {
            client_id,
            tenant_id,
            token_file,
        } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id: Some(client_id.clone()),
            tenant_id: Some(tenant_id.clone()),
            token_file_path: Some(token_file.clone()),
        }))
        .map_err(fail)?,
        AzureAuth::Managed { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))
            .map_err(fail)?
        }
        AzureAuth::ClientSecret {
            client_id,
            tenant_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.clone(),
            // The SDK keeps its own copy for the credential's life (see `secret`).
            Secret::new(secret.as_str().to_owned()),
            Some(ClientSecretCredentialOptions {
                client_options: options,
            }),
        )
        .map_err(fail)?,
    })
}

/// Maps the SDK's error to what a person can act on. The SDK's messages name
/// the object and the service's error code, never a secret value; a body of
/// any size is cut to one bounded line (`Detail`).
fn classify(e: &azure_core::Error, what: &str) -> FetchError {
    // The SDK's messages carry newlines (troubleshooting links); a status
    // line and a termination message must stay one line.
    let chain = chain::describe(e);
    let text = match e.kind() {
        // The service's message names the object; keep it as it is.
        ErrorKind::HttpResponse { .. } => chain,
        _ => format!("{what}: {chain}"),
    };
    let detail = Detail::new(&text);
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            raw_response,
            ..
        } => match u16::from(*status) {
            401 => FetchError::Unauthorized(detail),
            403 => FetchError::Forbidden(detail),
            404 => FetchError::NotFound(detail),
            429 => FetchError::Throttled {
                retry_after: raw_response
                    .as_ref()
                    .and_then(|r| {
                        r.headers()
                            .get_optional_str(&HeaderName::from_static("retry-after"))
                    })
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
                detail,
            },
            s if s >= 500 => FetchError::Unavailable(detail),
            _ => FetchError::Invalid(detail),
        },
        // A credential that failed on the way (TLS to Entra ID, DNS) says so.
        ErrorKind::Credential => match Failure::of(e) {
            Failure::Connection => FetchError::Credential(detail),
            other => other.error(detail),
        },
        _ => Failure::of(e).error(detail),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use azure_core::credentials::{AccessToken, TokenRequestOptions};

    use super::*;

    #[derive(Debug)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(azure_core::Error::with_message(ErrorKind::Other, "asked"))
        }
    }

    const KID: Option<&str> = Some("https://kv.vault.azure.net/keys/tls/v1");
    const WHAT: &str = "secret tls in https://kv.vault.azure.net/";

    fn content(
        kid: Option<&str>,
        content_type: Option<&str>,
        format: Option<ObjectFormat>,
        value: &str,
    ) -> Result<Vec<u8>, FetchError> {
        secret_content(
            WHAT,
            kid,
            content_type,
            format,
            Zeroizing::new(value.into()),
        )
        .map(|v| v.expose().to_vec())
    }

    // The provider's TestGetSecret cases.
    #[test]
    fn secrets_are_written_as_the_csi_provider_writes_them() {
        let pfx = include_str!("testdata/keyvault-rsa.pfx.b64");
        let pem = include_str!("testdata/keyvault-rsa.pem");
        let p12 = Some("application/x-pkcs12");
        // A plain secret, whatever objectFormat says.
        for format in [None, Some(ObjectFormat::Pem), Some(ObjectFormat::Pfx)] {
            assert_eq!(content(None, None, format, "value").unwrap(), b"value");
            assert_eq!(content(Some(""), p12, format, pfx).unwrap(), pfx.as_bytes());
        }
        // A PEM certificate's secret as it is.
        let cert_and_key = "-----BEGIN CERTIFICATE-----\n...";
        for format in [None, Some(ObjectFormat::Pfx)] {
            assert_eq!(
                content(KID, Some("application/x-pem-file"), format, cert_and_key).unwrap(),
                cert_and_key.as_bytes()
            );
        }
        // A PFX one: PEM by default or with objectFormat pem, the base64 as is with pfx.
        assert_eq!(content(KID, p12, None, pfx).unwrap(), pem.as_bytes());
        assert_eq!(
            content(KID, p12, Some(ObjectFormat::Pem), pfx).unwrap(),
            pem.as_bytes()
        );
        assert_eq!(
            content(KID, p12, Some(ObjectFormat::Pfx), pfx).unwrap(),
            pfx.as_bytes()
        );
    }

    #[test]
    fn a_certificate_secret_that_cannot_be_converted_names_the_object_not_the_value() {
        let value = "invalid-value-do-not-log-77f1";
        for (content_type, expected) in [
            (Some("application/x-pkcs12"), "the PFX is not base64"),
            (Some("text/plain"), "content type is \"text/plain\""),
            (None, "content type is not set"),
        ] {
            let err = content(KID, content_type, None, value).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, FetchError::Invalid(_)), "{text}");
            assert!(text.contains(WHAT) && text.contains(expected), "{text}");
            assert!(!text.contains(value), "{text}");
        }
    }

    // H1: a server's challenge cannot pick the token's audience.
    #[tokio::test]
    async fn h1_only_key_vaults_scope_is_ever_requested() {
        let inner = Arc::new(Counting(Default::default()));
        let public = KeyVaultScopeOnly::new(inner.clone(), "https://login.microsoftonline.com/");
        for scope in [
            "https://management.azure.com/.default",
            "https://graph.microsoft.com/.default",
            "https://vault.azure.cn/.default",
            "https://vault.azure.net.attacker.example/.default",
        ] {
            let err = public.get_token(&[scope], None).await.unwrap_err();
            assert!(err.to_string().contains("only Key Vault's scope"), "{err}");
        }
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let _ = public
            .get_token(&["https://vault.azure.net/.default"], None)
            .await;
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            KeyVaultScopeOnly::scope_for("https://login.chinacloudapi.cn/"),
            "https://vault.azure.cn/.default"
        );
        assert_eq!(
            KeyVaultScopeOnly::scope_for("https://login.microsoftonline.us/"),
            "https://vault.usgovcloudapi.net/.default"
        );
    }
}
