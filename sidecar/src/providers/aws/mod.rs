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
    providers::{
        FetchError, Fetched, Provider, Request, TransportOptions, chain::SystemResolver, fetch_each,
    },
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
        Ok(Fetched::new(
            value,
            out.version_id().unwrap_or_default().to_owned(),
        ))
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
        Ok(Fetched::new(
            SecretBytes::from(value.to_owned()),
            parameter.version().to_string(),
        ))
    }
}

impl AwsProvider {
    /// Parameter Store objects of one region through `GetParameters`. A
    /// call that fails for a reason of the call (throttled, unreachable,
    /// no credentials) fails each; one a parameter may have caused (denied,
    /// a missing version) is asked again one by one, so each file carries
    /// its own error.
    async fn parameters(&self, region: &str, refs: &[&AwsRef]) -> Vec<Result<Fetched, FetchError>> {
        if let [single] = refs {
            return vec![self.parameter(single).await];
        }
        let clients = match self.clients(region) {
            Ok(c) => c,
            Err(e) => return vec![Err(e); refs.len()],
        };
        let names: Vec<String> = refs.iter().map(|r| r.ssm_selector_name()).collect();
        let out = match clients
            .parameters
            .get_parameters()
            .set_names(Some(names.clone()))
            .with_decryption(true)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let whole_call = matches!(
                    classify(&e, refs[0]),
                    FetchError::Throttled { .. }
                        | FetchError::Unauthorized(_)
                        | FetchError::Credential(_)
                ) || classify(&e, refs[0]).is_outage();
                if whole_call {
                    return refs.iter().map(|r| Err(classify(&e, r))).collect();
                }
                let mut each = Vec::with_capacity(refs.len());
                for r in refs {
                    each.push(self.parameter(r).await);
                }
                return each;
            }
        };
        refs.iter()
            .zip(&names)
            .map(|(r, asked)| {
                let found = out.parameters().iter().find(|p| {
                    p.name() == Some(r.name.as_str()) || p.arn() == Some(r.name.as_str())
                });
                match found {
                    Some(p) => {
                        let value = p.value().ok_or_else(|| {
                            FetchError::Invalid(format!("{r}: the parameter has no value").into())
                        })?;
                        Ok(Fetched::new(
                            SecretBytes::from(value.to_owned()),
                            p.version().to_string(),
                        ))
                    }
                    None if out.invalid_parameters().iter().any(|n| n == asked || *n == r.name) => {
                        Err(FetchError::NotFound(
                            format!("{r}: ParameterNotFound: the parameter or its version does not exist")
                                .into(),
                        ))
                    }
                    None => Err(FetchError::Invalid(
                        format!("{r}: GetParameters did not answer for it").into(),
                    )),
                }
            })
            .collect()
    }
}

/// Parameter Store's `GetParameters` takes at most 10 names.
const PARAMETERS_PER_CALL: usize = 10;

/// Which requests go to `GetParameters` together: per region, at most
/// [`PARAMETERS_PER_CALL`], and a name once per call (the reply names a
/// parameter, not the version asked, so two versions of one name would be
/// indistinguishable). Everything else is fetched alone.
fn parameter_batches(requests: &[Request]) -> (Vec<(String, Vec<usize>)>, Vec<usize>) {
    let mut batches: Vec<(String, Vec<usize>)> = Vec::new();
    let mut alone = Vec::new();
    for (i, (source, format)) in requests.iter().enumerate() {
        let SecretRef::Aws(r) = source else {
            alone.push(i);
            continue;
        };
        if r.service != AwsService::ParameterStore || format.is_some() {
            alone.push(i);
            continue;
        }
        let name_of = |j: usize| match &requests[j].0 {
            SecretRef::Aws(other) => other.name.as_str(),
            _ => "",
        };
        let slot = batches.iter_mut().find(|(region, members)| {
            *region == r.region
                && members.len() < PARAMETERS_PER_CALL
                && !members.iter().any(|&j| name_of(j) == r.name)
        });
        match slot {
            Some((_, members)) => members.push(i),
            None => batches.push((r.region.clone(), vec![i])),
        }
    }
    (batches, alone)
}

#[async_trait]
impl Provider for AwsProvider {
    async fn fetch_batch(
        &self,
        requests: &[Request],
        concurrency: usize,
    ) -> Vec<Result<Fetched, FetchError>> {
        let (batches, alone) = parameter_batches(requests);
        let mut answers: Vec<Option<Result<Fetched, FetchError>>> = vec![None; requests.len()];
        let singles: Vec<Request> = alone.iter().map(|&i| requests[i].clone()).collect();
        for (i, answer) in alone
            .into_iter()
            .zip(fetch_each(self, &singles, concurrency).await)
        {
            answers[i] = Some(answer);
        }
        for (region, members) in batches {
            let refs: Vec<&AwsRef> = members
                .iter()
                .filter_map(|&i| match &requests[i].0 {
                    SecretRef::Aws(r) => Some(r),
                    _ => None,
                })
                .collect();
            for (i, answer) in members
                .into_iter()
                .zip(self.parameters(&region, &refs).await)
            {
                answers[i] = Some(answer);
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(FetchError::Unsupported("not fetched".into()))))
            .collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        (uri.parse().unwrap(), None)
    }

    #[test]
    fn parameters_are_batched_per_region_ten_at_most_and_a_name_once() {
        let mut requests: Vec<Request> = (0..12)
            .map(|i| request(&format!("aws-ssm://us-east-1/p{i}")))
            .collect();
        requests.push(request("aws-ssm://us-east-1/p0?version=2"));
        requests.push(request("aws-ssm://eu-west-1/p0"));
        requests.push(request("aws://us-east-1/secret"));
        let (batches, alone) = parameter_batches(&requests);
        let shape: Vec<(&str, usize)> = batches
            .iter()
            .map(|(region, members)| (region.as_str(), members.len()))
            .collect();
        assert_eq!(
            shape,
            [("us-east-1", 10), ("us-east-1", 3), ("eu-west-1", 1)]
        );
        // p0 and p0:2 never share a call.
        assert!(batches[0].1.contains(&0) && batches[1].1.contains(&12));
        assert_eq!(alone, [14]);
    }
}
