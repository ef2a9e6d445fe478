//! Self-managed TLS, the effects: keeps the serving certificate in one Secret
//! shared by every replica, writes its CA bundle into the webhook's
//! MutatingWebhookConfiguration, and renews before expiry. Replicas agree
//! through the apiserver: creating an existing Secret or replacing a changed
//! one fails (409), and the loser re-reads and serves what the winner wrote.
//! A restarting replica reads the Secret and never replaces a good CA.

use std::{path::Path, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration,
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, Client, api::PostParams};
use time::OffsetDateTime;

use crate::{
    managed_tls::{self, Lifetimes, Material, Plan, RENEW_ANNOTATION, RENEWED_FOR_ANNOTATION},
    tls::{self, CertResolver},
};

#[derive(Debug, Clone)]
pub struct KeeperConfig {
    pub namespace: String,
    pub secret_name: String,
    /// The MutatingWebhookConfiguration whose webhooks get the CA bundle.
    pub webhook_configuration: Option<String>,
    /// DNS names of the serving certificate (`<service>.<namespace>.svc`, ...).
    pub names: Vec<String>,
    pub lifetimes: Lifetimes,
    /// How often the Secret is read again (renewals by other replicas, requests).
    pub check_every: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    #[error("Secret {namespace}/{name}: {source}")]
    Secret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("MutatingWebhookConfiguration {name}: {source}")]
    Webhook {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Material(#[from] managed_tls::MaterialError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("Secret {0}: other replicas kept changing it; will try again")]
    Contended(String),
}

pub struct TlsKeeper {
    config: KeeperConfig,
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl TlsKeeper {
    pub fn new(client: Client, config: KeeperConfig) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            webhooks: Api::all(client),
            config,
        }
    }

    fn secret_error(&self, source: kube::Error) -> KeeperError {
        KeeperError::Secret {
            namespace: self.config.namespace.clone(),
            name: self.config.secret_name.clone(),
            source,
        }
    }

    /// Reads the Secret, creates or renews what it holds when needed, and
    /// returns what to serve.
    pub async fn ensure(&self) -> Result<Material, KeeperError> {
        let name = &self.config.secret_name;
        for _ in 0..5 {
            let existing = self
                .secrets
                .get_opt(name)
                .await
                .map_err(|e| self.secret_error(e))?;
            let now = OffsetDateTime::now_utc();
            let lifetimes = &self.config.lifetimes;
            let Some(mut secret) = existing else {
                let material =
                    managed_tls::issue(&Plan::Create, None, &self.config.names, now, lifetimes)?;
                let secret = self.new_secret(&material);
                match self.secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        tracing::info!(secret = %name, "created a CA and a serving certificate");
                        return Ok(material);
                    }
                    // Another replica was first: serve what it wrote.
                    Err(e) if is_conflict(&e) => continue,
                    Err(e) => return Err(self.secret_error(e)),
                }
            };
            let data = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            let current = Material::from_data(&data).ok();
            let annotations = secret.metadata.annotations.clone().unwrap_or_default();
            let requested = annotations
                .get(RENEW_ANNOTATION)
                .filter(|asked| annotations.get(RENEWED_FOR_ANNOTATION) != Some(*asked));
            let plan = managed_tls::plan(
                current.as_ref(),
                &self.config.names,
                now,
                lifetimes,
                requested.is_some(),
            );
            let renewed = match (&plan, current) {
                (Plan::Keep, Some(material)) => return Ok(material),
                (_, current) => {
                    managed_tls::issue(&plan, current.as_ref(), &self.config.names, now, lifetimes)?
                }
            };
            match self
                .replace(&mut secret, renewed, requested.cloned(), &plan)
                .await?
            {
                Some(material) => return Ok(material),
                // Another replica changed it first: read it again.
                None => continue,
            }
        }
        Err(KeeperError::Contended(name.clone()))
    }

    /// Ok(None): another replica changed the Secret first; read it again.
    async fn replace(
        &self,
        secret: &mut Secret,
        material: Material,
        answered: Option<String>,
        plan: &Plan,
    ) -> Result<Option<Material>, KeeperError> {
        secret.data = Some(secret_data(&material));
        if let Some(answered) = answered {
            secret
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(RENEWED_FOR_ANNOTATION.to_owned(), answered);
        }
        // resourceVersion is kept: a concurrent change makes this a 409.
        match self
            .secrets
            .replace(&self.config.secret_name, &PostParams::default(), secret)
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %self.config.secret_name, why = ?plan, "renewed the webhook certificate");
                Ok(Some(material))
            }
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(self.secret_error(e)),
        }
    }

    fn new_secret(&self, material: &Material) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.config.secret_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some(
                    [(
                        "app.kubernetes.io/part-of".to_owned(),
                        "secret-injector".to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(secret_data(material)),
            ..Default::default()
        }
    }

    /// Every webhook of the configuration trusts the bundle; written only
    /// when it differs, retried on conflicts.
    pub async fn publish_ca(&self, bundle_pem: &str) -> Result<(), KeeperError> {
        let Some(name) = &self.config.webhook_configuration else {
            return Ok(());
        };
        let error = |source| KeeperError::Webhook {
            name: name.clone(),
            source,
        };
        let wanted = ByteString(bundle_pem.as_bytes().to_vec());
        for _ in 0..5 {
            let mut configuration = self.webhooks.get(name).await.map_err(error)?;
            let mut changed = false;
            for webhook in configuration.webhooks.iter_mut().flatten() {
                if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
                    webhook.client_config.ca_bundle = Some(wanted.clone());
                    changed = true;
                }
            }
            if !changed {
                return Ok(());
            }
            match self
                .webhooks
                .replace(name, &PostParams::default(), &configuration)
                .await
            {
                Ok(_) => {
                    let cas = managed_tls::certificates_in(bundle_pem).len();
                    tracing::info!(configuration = %name, cas, "wrote the CA bundle into the webhook configuration");
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(error(e)),
            }
        }
        Err(KeeperError::Contended(name.clone()))
    }

    /// Ensures once (retrying until it works: nothing can be served before),
    /// then keeps checking in the background, swapping what the resolver
    /// serves when the Secret changes.
    pub async fn start(self) -> Result<Arc<CertResolver>, KeeperError> {
        let mut delay = Duration::from_millis(500);
        let material = loop {
            match self.ensure().await {
                Ok(material) => break material,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get the webhook certificate yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        let resolver = CertResolver::new(certified_key(&material)?);
        if let Err(e) = self.publish_ca(&material.ca_bundle_pem).await {
            tracing::warn!(error = %e, "cannot write the CA bundle yet; retrying with the next check");
        }
        let background = resolver.clone();
        tokio::spawn(async move {
            let mut serving = material;
            loop {
                tokio::time::sleep(self.config.check_every).await;
                match self.ensure().await {
                    Ok(material) => {
                        if material != serving {
                            match certified_key(&material) {
                                Ok(key) => {
                                    background.replace(key);
                                    tracing::info!("serving the renewed certificate");
                                    serving = material;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "the Secret's certificate cannot be served; keeping the current one")
                                }
                            }
                        }
                        if let Err(e) = self.publish_ca(&serving.ca_bundle_pem).await {
                            tracing::warn!(error = %e, "cannot write the CA bundle; retrying with the next check");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check the webhook certificate; serving the current one")
                    }
                }
            }
        });
        Ok(resolver)
    }
}

fn secret_data(material: &Material) -> std::collections::BTreeMap<String, ByteString> {
    material
        .to_data()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v)))
        .collect()
}

fn certified_key(material: &Material) -> Result<rustls::sign::CertifiedKey, tls::TlsError> {
    tls::certified_key(
        material.cert_pem.as_bytes(),
        material.key_pem.as_bytes(),
        Path::new("Secret tls.crt"),
        Path::new("Secret tls.key"),
    )
}
