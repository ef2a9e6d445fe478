//! Azure's part of the sidecar's configuration: which credential, from the
//! env the webhook set (Azure's own variable names) and the spec.

use std::path::PathBuf;
#[cfg(test)]
use std::{collections::HashMap, time::Duration};

use shared::{InjectionSpec, contract::azure as azure_env};
use zeroize::Zeroizing;

use super::{AzureAuth, AzureConfig};
use crate::{config::EnvSource, providers::TransportOptions};

pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

#[derive(Debug, thiserror::Error)]
pub enum AzureConfigError {
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
    let client_id = env
        .get(azure_env::CLIENT_ID)
        .or_else(|| spec.identities.azure.client_id.clone());
    let tenant_id = env
        .get(azure_env::TENANT_ID)
        .or_else(|| spec.identities.azure.tenant_id.clone());
    let token_file = env.get(azure_env::FEDERATED_TOKEN_FILE);
    // Wiped when dropped, used or not (the process environment keeps its
    // own copy: see `secret`).
    let secret = env.get("AZURE_CLIENT_SECRET").map(Zeroizing::new);
    let mode = match env.get("SECRET_INJECTOR_AZURE_AUTH").as_deref() {
        Some(m @ ("workload" | "managed" | "secret")) => m.to_owned(),
        Some(other) => return Err(AzureConfigError::AuthMode(other.to_owned())),
        // The spec said so: a class's useVMManagedIdentity, or the pod's
        // explicit annotation. The node's identity is never a fallback (M1):
        // it may reach vaults this pod was never meant to.
        None if spec.identities.azure.use_managed_identity => "managed".to_owned(),
        // Otherwise what is present decides: a client secret, else workload
        // identity, which names what is missing rather than falling back.
        None if secret.is_some() => "secret".to_owned(),
        None => "workload".to_owned(),
    };
    let need =
        |v: Option<String>, mode, missing| v.ok_or(AzureConfigError::Missing { mode, missing });
    let auth = match mode.as_str() {
        "workload" => AzureAuth::Workload {
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
        "secret" => AzureAuth::ClientSecret {
            client_id: need(client_id, "client secret", "AZURE_CLIENT_ID")?,
            tenant_id: need(tenant_id, "client secret", "AZURE_TENANT_ID")?,
            secret: secret.ok_or(AzureConfigError::Missing {
                mode: "client secret",
                missing: "AZURE_CLIENT_SECRET",
            })?,
        },
        _ => AzureAuth::Managed {
            client_id: if spec.identities.azure.use_managed_identity {
                // userAssignedIdentityID; empty means the system-assigned identity.
                spec.identities.azure.user_assigned_identity_id.clone()
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
