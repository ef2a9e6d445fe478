//! Azure's part of the sidecar's configuration: which credential, from the
//! env the webhook set (Azure's own variable names) and the spec.

use std::path::PathBuf;
#[cfg(test)]
use std::{collections::HashMap, time::Duration};

use shared::{InjectionSpec, ProviderSecret, contract::azure as azure_env};
use zeroize::Zeroizing;

use super::{AzureAuth, AzureConfig};
use crate::{config::EnvSource, providers::TransportOptions};

pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// Bigger than any client id or secret.
const MAX_PROVIDER_SECRET_BYTES: u64 = 16 * 1024;

/// One key of the CSI volume's `nodePublishSecretRef` Secret, which the
/// webhook mounted at `dir`; surrounding whitespace (a file's newline) trimmed.
fn read_provider_secret(
    secret: &ProviderSecret,
    key: &'static str,
) -> Result<Zeroizing<String>, AzureConfigError> {
    use std::io::Read;
    let failed = |why: String| AzureConfigError::ProviderSecret {
        secret: secret.secret_name.clone(),
        key,
        why,
    };
    let path = std::path::Path::new(&secret.dir).join(key);
    let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => failed("it has no such key".to_owned()),
        _ => failed(format!("cannot read {}: {e}", path.display())),
    })?;
    let mut value = Zeroizing::new(String::new());
    file.take(MAX_PROVIDER_SECRET_BYTES)
        .read_to_string(&mut value)
        .map_err(|_| failed("its value is not UTF-8 text".to_owned()))?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(failed("its value is empty".to_owned()));
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

enum Mode<'a> {
    Workload,
    Managed,
    Secret,
    /// The CSI volume's nodePublishSecretRef.
    ProviderSecret(&'a ProviderSecret),
}

#[derive(Debug, thiserror::Error)]
pub enum AzureConfigError {
    #[error(
        "the Secret {secret:?} named by the volume's nodePublishSecretRef, key {key}: {why}; the Azure provider reads the service principal's clientid and clientsecret from it"
    )]
    ProviderSecret {
        secret: String,
        key: &'static str,
        why: String,
    },
    #[error("SECRET_INJECTOR_AZURE_AUTH is {0:?}; accepted: workload, managed, secret")]
    AuthMode(String),
    #[error("Azure {mode} authentication needs {missing}")]
    Missing {
        mode: &'static str,
        missing: &'static str,
    },
}

pub fn from_env(
    env: &impl EnvSource,
    spec: &InjectionSpec,
    transport: &TransportOptions,
) -> Result<AzureConfig, AzureConfigError> {
    let identity = &spec.identities.azure;
    // The spec's first: a pod with two volumes may name two identities, and
    // the env carries the first one's only.
    let spec_client = identity.client_id.clone();
    let client_id = spec_client
        .clone()
        .or_else(|| env.get(azure_env::CLIENT_ID));
    let tenant_id = identity
        .tenant_id
        .clone()
        .or_else(|| env.get(azure_env::TENANT_ID));
    let token_file = env.get(azure_env::FEDERATED_TOKEN_FILE);
    // Wiped when dropped, used or not (the process environment keeps its
    // own copy: see `secret`).
    let secret = env.get("AZURE_CLIENT_SECRET").map(Zeroizing::new);
    let mode = match env.get("SECRET_INJECTOR_AZURE_AUTH").as_deref() {
        Some("workload") => Mode::Workload,
        Some("managed") => Mode::Managed,
        Some("secret") => Mode::Secret,
        Some(other) => return Err(AzureConfigError::AuthMode(other.to_owned())),
        // The spec said so: a class's useVMManagedIdentity, or the pod's
        // explicit annotation. The node's identity is never a fallback (M1):
        // it may reach vaults this pod was never meant to.
        None if identity.use_managed_identity => Mode::Managed,
        None if spec_client.is_some() => Mode::Workload,
        // The CSI volume's nodePublishSecretRef, as the CSI Azure provider
        // reads it when the class names no other identity.
        None => match &spec.provider_secret {
            Some(provider_secret) => Mode::ProviderSecret(provider_secret),
            // Otherwise what is present decides: a client secret, else workload
            // identity, which names what is missing rather than falling back.
            None if secret.is_some() => Mode::Secret,
            None => Mode::Workload,
        },
    };
    let need =
        |v: Option<String>, mode, missing| v.ok_or(AzureConfigError::Missing { mode, missing });
    let auth = match mode {
        Mode::Workload => AzureAuth::Workload {
            client_id: need(
                client_id,
                "workload identity",
                "a client id: AZURE_CLIENT_ID, the pod's secret-injector.io/client-id annotation, or the ServiceAccount's azure.workload.identity/client-id annotation (the node's managed identity is used only when the SecretProviderClass sets useVMManagedIdentity or SECRET_INJECTOR_AZURE_AUTH=managed)",
            )?,
            tenant_id: need(
                tenant_id,
                "workload identity",
                "AZURE_TENANT_ID (or secret-injector.io/tenant-id)",
            )?,
            token_file: PathBuf::from(need(
                token_file,
                "workload identity",
                "AZURE_FEDERATED_TOKEN_FILE",
            )?),
        },
        Mode::ProviderSecret(provider_secret) => {
            let read = |key| read_provider_secret(provider_secret, key);
            AzureAuth::ClientSecret {
                client_id: read("clientid")?.to_string(),
                tenant_id: need(tenant_id, "service principal", "the class's tenantId")?,
                secret: read("clientsecret")?,
            }
        }
        Mode::Secret => AzureAuth::ClientSecret {
            client_id: need(client_id, "client secret", "AZURE_CLIENT_ID")?,
            tenant_id: need(tenant_id, "client secret", "AZURE_TENANT_ID")?,
            secret: secret.ok_or(AzureConfigError::Missing {
                mode: "client secret",
                missing: "AZURE_CLIENT_SECRET",
            })?,
        },
        Mode::Managed => AzureAuth::Managed {
            client_id: if identity.use_managed_identity {
                // userAssignedIdentityID; empty means the system-assigned identity.
                identity.user_assigned_identity_id.clone()
            } else {
                client_id
            },
        },
    };
    Ok(AzureConfig {
        auth,
        // The class's cloud (China, US Government) wins over the operator default.
        authority_host: spec
            .identities
            .azure
            .authority_host
            .clone()
            .or_else(|| env.get(azure_env::AUTHORITY_HOST))
            .unwrap_or_else(|| DEFAULT_AUTHORITY_HOST.to_owned()),
        ca_bundle: transport.ca_bundle.clone(),
        resolve: transport.resolve.clone(),
        timeout: transport.timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn spec() -> InjectionSpec {
        InjectionSpec::from_env_value(
            r#"{"objects":[{"file":"a","source":"azure://kv-one/secrets/a"}],"mountPath":"/mnt/secrets-store","rotation":"1m","filePermission":"0644","azure":{"tenantId":"t"}}"#,
        )
        .unwrap()
    }

    fn transport() -> TransportOptions {
        TransportOptions {
            timeout: Duration::from_secs(1),
            ..TransportOptions::default()
        }
    }

    fn auth(pairs: &[(&str, &str)]) -> Result<AzureAuth, AzureConfigError> {
        from_env(&env(pairs), &spec(), &transport()).map(|c| c.auth)
    }

    #[test]
    fn workload_identity_when_the_webhook_wired_it() {
        let a = auth(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
        ])
        .unwrap();
        assert!(matches!(a, AzureAuth::Workload { ref tenant_id, .. } if tenant_id == "t"));
    }

    /// M1: no silent fallback to the node's managed identity.
    #[test]
    fn managed_identity_without_a_client_id_for_workload_identity() {
        for env in [&[("AZURE_FEDERATED_TOKEN_FILE", "/t")][..], &[]] {
            let err = auth(env).unwrap_err();
            assert!(
                matches!(
                    err,
                    AzureConfigError::Missing {
                        mode: "workload identity",
                        ..
                    }
                ),
                "{err}"
            );
            let err = err.to_string();
            for named in [
                "AZURE_CLIENT_ID",
                "secret-injector.io/client-id",
                "azure.workload.identity/client-id",
            ] {
                assert!(err.contains(named), "{err}");
            }
        }
        // A client id without a token file says that instead.
        let err = auth(&[("AZURE_CLIENT_ID", "c")]).unwrap_err().to_string();
        assert!(err.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn m1_managed_identity_only_when_the_spec_or_the_operator_says_so() {
        let a = auth(&[("SECRET_INJECTOR_AZURE_AUTH", "managed")]).unwrap();
        assert!(matches!(a, AzureAuth::Managed { client_id: None }));
        let a = auth(&[
            ("SECRET_INJECTOR_AZURE_AUTH", "managed"),
            ("AZURE_CLIENT_ID", "uai"),
        ])
        .unwrap();
        assert!(matches!(a, AzureAuth::Managed { client_id: Some(ref id) } if id == "uai"));
        let mut spec = spec();
        spec.identities.azure.use_managed_identity = true;
        let config = from_env(&env(&[]), &spec, &transport()).unwrap();
        assert!(matches!(
            config.auth,
            AzureAuth::Managed { client_id: None }
        ));
    }

    #[test]
    fn a_client_secret_wins_and_is_never_printed() {
        let a = auth(&[("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s3cr3t")]).unwrap();
        assert!(matches!(a, AzureAuth::ClientSecret { .. }));
        assert!(!format!("{a:?}").contains("s3cr3t"));
    }

    #[test]
    fn explicit_modes_say_what_is_missing() {
        let err = auth(&[("SECRET_INJECTOR_AZURE_AUTH", "workload")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
        let err = auth(&[("SECRET_INJECTOR_AZURE_AUTH", "pod")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("accepted: workload, managed, secret"), "{err}");
    }

    #[test]
    fn the_specs_client_wins_over_the_env_which_carries_the_first_sets() {
        let mut spec = spec();
        spec.identities.azure.client_id = Some("second".into());
        let e = env(&[
            ("AZURE_CLIENT_ID", "first"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
        ]);
        let config = from_env(&e, &spec, &transport()).unwrap();
        assert!(
            matches!(config.auth, AzureAuth::Workload { ref client_id, .. } if client_id == "second")
        );
    }

    #[test]
    fn node_publish_secret_ref_is_a_service_principal_read_from_its_mount() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clientid"), "sp-client\n").unwrap();
        std::fs::write(dir.path().join("clientsecret"), "sp-s3cr3t\n").unwrap();
        let mut spec = spec();
        spec.provider_secret = Some(ProviderSecret {
            secret_name: "secrets-store-creds".into(),
            dir: dir.path().display().to_string(),
        });
        // The env's workload identity is the first set's, not this one's.
        let e = env(&[
            ("AZURE_CLIENT_ID", "first"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
        ]);
        let auth = from_env(&e, &spec, &transport()).unwrap().auth;
        match &auth {
            AzureAuth::ClientSecret {
                client_id,
                tenant_id,
                secret,
            } => {
                assert_eq!(client_id, "sp-client");
                assert_eq!(tenant_id, "t");
                assert_eq!(secret.as_str(), "sp-s3cr3t");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{auth:?}").contains("sp-s3cr3t"));

        // A missing key is named with the Secret, never a value.
        std::fs::remove_file(dir.path().join("clientsecret")).unwrap();
        let err = from_env(&e, &spec, &transport()).unwrap_err().to_string();
        assert!(err.contains("\"secrets-store-creds\""), "{err}");
        assert!(
            err.contains("key clientsecret: it has no such key"),
            "{err}"
        );
        assert!(!err.contains("sp-client"), "{err}");
    }

    #[test]
    fn a_provider_class_with_use_vm_managed_identity_picks_the_user_assigned_one() {
        let mut spec = spec();
        spec.identities.azure.use_managed_identity = true;
        spec.identities.azure.user_assigned_identity_id = Some("uai".into());
        spec.identities.azure.authority_host = Some("https://login.chinacloudapi.cn/".into());
        // Even with a federated token wired by the webhook.
        let e = env(&[
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
        ]);
        let config = from_env(&e, &spec, &transport()).unwrap();
        assert!(
            matches!(config.auth, AzureAuth::Managed { client_id: Some(ref id) } if id == "uai")
        );
        assert_eq!(config.authority_host, "https://login.chinacloudapi.cn/");
    }
}
