//! AWS Secrets Manager and SSM Parameter Store through the official SDK
//! crates, on the project's one rustls/aws-lc stack. Credentials come from
//! the SDK's default chain, so the variables the webhook sets (IRSA's
//! `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, Pod Identity's
//! `AWS_CONTAINER_CREDENTIALS_*`) and the standard ones for local runs
//! (`AWS_ENDPOINT_URL*`, `AWS_REGION`, static keys) work as users expect.
//! The SDK's own retries are off: the engine's one policy owns backoff.

mod errors;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use aws_config::{
    BehaviorVersion, Region, meta::region::RegionProviderChain, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use rustls_pki_types::{CertificateDer, pem::PemObject};
use shared::{AwsRef, AwsService, ObjectFormat, SecretRef};

pub use errors::classify;

use crate::{
    providers::{FetchError, Fetched, Provider, TransportOptions, chain::SystemResolver},
    secret::SecretBytes,
};

#[derive(Debug, thiserror::Error)]
pub enum AwsSetupError {
    #[error("the CA bundle is not PEM certificates")]
    CaBundle,
}

/// The clients of one region.
struct Clients {
    secrets: aws_sdk_secretsmanager::Client,
    parameters: aws_sdk_ssm::Client,
}

pub struct AwsProvider {
    /// The loaded chain (credentials, endpoints, HTTP client); regions per reference.
    sdk: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, Arc<Clients>>>,
}

impl AwsProvider {
    /// Loads the SDK's configuration once. `default_region` is used for STS
    /// (web identity) when the environment names none.
    pub async fn new(
        options: &TransportOptions,
        default_region: Option<String>,
    ) -> Result<Self, AwsSetupError> {
        let mut trust = TrustStore::default();
        if let Some(pem) = &options.ca_bundle {
            // The TLS layer parses it only at the first connection: check now.
            let certificates = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>();
            if certificates.is_err() || certificates.is_ok_and(|c| c.is_empty()) {
                return Err(AwsSetupError::CaBundle);
            }
            trust = trust.with_pem_certificate(pem.clone());
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(trust)
                    .build()
                    .map_err(|_| AwsSetupError::CaBundle)?,
            )
            .build_with_resolver(SystemResolver::new(options.resolve.clone()));
        // The environment's region first (AWS_REGION, profiles), else the
        // spec's, for STS; each reference's own region picks its clients.
        let region =
            RegionProviderChain::default_provider().or_else(default_region.map(Region::new));
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .http_client(http)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(options.timeout)
                    .build(),
            );
        Ok(Self {
            sdk: loader.load().await,
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn clients(&self, region: &str) -> Result<Arc<Clients>, FetchError> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| FetchError::Invalid("internal lock poisoned".into()))?;
        if let Some(c) = clients.get(region) {
            return Ok(c.clone());
        }
        let region = Region::new(region.to_owned());
        let secrets = aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
            .region(region.clone())
            .build();
        let parameters = aws_sdk_ssm::config::Builder::from(&self.sdk)
            .region(region.clone())
            .build();
        let built = Arc::new(Clients {
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets),
            parameters: aws_sdk_ssm::Client::from_conf(parameters),
        });
        clients.insert(region.to_string(), built.clone());
        Ok(built)
    }

    async fn secret(&self, r: &AwsRef) -> Result<Fetched, FetchError> {
        let clients = self.clients(&r.region)?;
        let out = clients
            .secrets
            .get_secret_value()
            .secret_id(&r.name)
            .set_version_id(r.version.clone())
            .set_version_stage(r.label.clone())
            .send()
            .await
            .map_err(|e| classify(&e, r))?;
        let value = match (out.secret_string(), out.secret_binary()) {
            (Some(text), _) => SecretBytes::from(text.to_owned()),
            // Written as the bytes the secret holds.
            (None, Some(blob)) => SecretBytes::new(blob.as_ref().to_vec()),
            (None, None) => {
                return Err(FetchError::Invalid(
                    format!("{r}: the secret version has neither SecretString nor SecretBinary")
                        .into(),
                ));
            }
        };
        Ok(Fetched {
            value,
            version: out.version_id().unwrap_or_default().to_owned(),
        })
    }

    async fn parameter(&self, r: &AwsRef) -> Result<Fetched, FetchError> {
        let clients = self.clients(&r.region)?;
        let out = clients
            .parameters
            .get_parameter()
            .name(r.ssm_selector_name())
            // SecureString decrypted; other types ignore it.
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify(&e, r))?;
        let parameter = out.parameter().ok_or_else(|| {
            FetchError::Invalid(format!("{r}: the reply carries no parameter").into())
        })?;
        let value = parameter.value().ok_or_else(|| {
            FetchError::Invalid(format!("{r}: the parameter has no value").into())
        })?;
        Ok(Fetched {
            value: SecretBytes::from(value.to_owned()),
            version: parameter.version().to_string(),
        })
    }
}

#[async_trait]
impl Provider for AwsProvider {
    async fn fetch(
        &self,
        source: &SecretRef,
        format: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        let SecretRef::Aws(r) = source else {
            return Err(FetchError::Unsupported(
                format!("{source} is not an AWS reference").into(),
            ));
        };
        if format.is_some() {
            return Err(FetchError::Unsupported(
                format!("{r}: objectFormat (PEM/PFX) is a Key Vault certificate option").into(),
            ));
        }
        match r.service {
            AwsService::SecretsManager => self.secret(r).await,
            AwsService::ParameterStore => self.parameter(r).await,
        }
    }
}
