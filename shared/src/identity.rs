//! Who the sidecar is to each store: the part of the spec the webhook fills
//! from the pod, its class, its ServiceAccount and the operator's defaults.
//! Names and ids only; tokens are files the webhook projects.

use serde::{Deserialize, Serialize};

/// One entry per store; a store the pod does not use stays empty and is not
/// serialised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identities {
    #[serde(default, skip_serializing_if = "AzureIdentity::is_empty")]
    pub azure: AzureIdentity,
    #[serde(default, skip_serializing_if = "AwsIdentity::is_empty")]
    pub aws: AwsIdentity,
    #[serde(default, skip_serializing_if = "VaultIdentity::is_empty")]
    pub vault: VaultIdentity,
    #[serde(default, skip_serializing_if = "GcpIdentity::is_empty")]
    pub gcp: GcpIdentity,
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.azure.is_empty() && self.aws.is_empty() && self.vault.is_empty() && self.gcp.is_empty()
    }

    /// The pod's identity annotations over its class's: what the pod names
    /// wins, what it leaves out stays the class's.
    pub fn overlay(&mut self, pod: &Identities) {
        let pick = |class: &mut Option<String>, pod: &Option<String>| {
            if pod.is_some() {
                class.clone_from(pod);
            }
        };
        pick(&mut self.azure.client_id, &pod.azure.client_id);
        pick(&mut self.azure.tenant_id, &pod.azure.tenant_id);
        pick(&mut self.aws.role_arn, &pod.aws.role_arn);
        self.aws.use_pod_identity |= pod.aws.use_pod_identity;
        pick(&mut self.gcp.service_account, &pod.gcp.service_account);
        pick(
            &mut self.gcp.workload_identity_provider,
            &pod.gcp.workload_identity_provider,
        );
        let (class, pod) = (&mut self.vault, &pod.vault);
        pick(&mut class.role, &pod.role);
        pick(&mut class.auth_path, &pod.auth_path);
        pick(&mut class.address, &pod.address);
        pick(&mut class.namespace, &pod.namespace);
        pick(&mut class.audience, &pod.audience);
        pick(&mut class.tls_server_name, &pod.tls_server_name);
        class.revoke_on_shutdown |= pod.revoke_on_shutdown;
    }
}

/// Azure workload identity; unset fields fall back to operator defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Use the node's managed identity (IMDS) instead of workload identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_managed_identity: bool,
    /// With `use_managed_identity`: the user-assigned identity's client id;
    /// `None` means the system-assigned identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_assigned_identity_id: Option<String>,
    /// The Entra ID authority for a sovereign cloud, such as
    /// `https://login.chinacloudapi.cn/`; `None` means the public cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
}

impl AzureIdentity {
    pub fn is_empty(&self) -> bool {
        self.client_id.is_none()
            && self.tenant_id.is_none()
            && !self.use_managed_identity
            && self.user_assigned_identity_id.is_none()
            && self.authority_host.is_none()
    }
}

/// AWS: IRSA (a web identity token for `role_arn`) unless the pod asked for
/// EKS Pod Identity, whose agent decides the role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsIdentity {
    /// The IAM role IRSA assumes (`AWS_ROLE_ARN`); from the pod's
    /// `secret-injector.io/aws-role-arn` or its ServiceAccount's
    /// `eks.amazonaws.com/role-arn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// EKS Pod Identity (the class's `usePodIdentity`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_pod_identity: bool,
}

impl AwsIdentity {
    pub fn is_empty(&self) -> bool {
        self.role_arn.is_none() && !self.use_pod_identity
    }
}

/// Vault / OpenBao: a role of its kubernetes or jwt auth method (both log
/// in with the projected token), on the operator's server unless the pod
/// or its class names another within the allowlist of store hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultIdentity {
    /// The auth method's role (`secret-injector.io/vault-role`, the class's `roleName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The auth method's mount path (`kubernetes`, `jwt`); the operator's default without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_path: Option<String>,
    /// The server (`https://host[:port]`) when not the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Vault Enterprise / OpenBao namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The projected token's audience; the operator's default without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The name the server's certificate must carry, when not the address's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Revoke the leases of dynamic secrets when the sidecar stops
    /// (`secret-injector.io/vault-revoke-on-shutdown`), as Vault Agent's
    /// `agent-revoke-on-shutdown` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoke_on_shutdown: bool,
}

impl VaultIdentity {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A Vault role, auth mount path or namespace: what Vault itself accepts in
/// a path segment, bounded.
pub fn is_vault_name(s: &str, slashes: bool) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//")
        && s.split('/').all(|seg| seg != "." && seg != "..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b) || (slashes && b == b'/'))
}

/// A Vault address a pod or class names, `https://<host>[:<port>]`: its
/// host and port, which the operator's allowlist then governs. Plain
/// `http` only for the operator's own address (a flag), never a pod's.
pub fn parse_vault_address(s: &str) -> Result<(String, Option<u16>), &'static str> {
    const RULE: &str = "an address https://<host>[:<port>] such as https://vault.example.com:8200";
    let rest = s.strip_prefix("https://").ok_or(RULE)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host,
            Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(RULE)?),
        ),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !host_ok {
        return Err(RULE);
    }
    Ok((host.to_ascii_lowercase(), port))
}

/// Google: the pod's Kubernetes token exchanged at Google's STS for the
/// workload identity pool provider (the operator's, or the pod's), then,
/// with a service account, `generateAccessToken` for it; on GKE the
/// metadata server instead (the operator's choice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpIdentity {
    /// The Google service account to impersonate: the pod's
    /// `secret-injector.io/gcp-service-account`, else its ServiceAccount's
    /// `iam.gke.io/gcp-service-account`; `None`: the federated identity
    /// itself (`principal://.../subject/system:serviceaccount:<ns>:<sa>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`;
    /// the operator's default without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity_provider: Option<String>,
}

impl GcpIdentity {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A Google service account's email: `<id>@<project>.iam.gserviceaccount.com`
/// (or Google's own `developer.`/`appspot.` forms).
pub fn is_gcp_service_account(s: &str) -> bool {
    let Some((id, domain)) = s.split_once('@') else {
        return false;
    };
    let id_ok = (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let domain_ok = domain.len() <= 190
        && domain
            .strip_suffix(".gserviceaccount.com")
            .is_some_and(|project| {
                !project.is_empty()
                    && project.split('.').all(|l| {
                        !l.is_empty()
                            && l.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    })
            });
    id_ok && domain_ok
}

/// A workload identity pool provider, with or without the
/// `//iam.googleapis.com/` of its audience: the normalised
/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`.
pub fn parse_workload_identity_provider(s: &str) -> Option<String> {
    let name = s.strip_prefix("//iam.googleapis.com/").unwrap_or(s);
    let id_ok = |id: &str| {
        (4..=32).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match name.split('/').collect::<Vec<_>>().as_slice() {
        [
            "projects",
            number,
            "locations",
            "global",
            "workloadIdentityPools",
            pool,
            "providers",
            provider,
        ] if (1..=20).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
            && id_ok(pool)
            && id_ok(provider) =>
        {
            Some(name.to_owned())
        }
        _ => None,
    }
}

/// M4: audiences a pod's token must never carry to a Vault server, which
/// could replay it: the cloud token exchanges (AWS STS and Pod Identity,
/// Entra ID, Google's STS) and the Kubernetes apiserver itself.
pub fn is_reserved_audience(audience: &str) -> bool {
    let a = audience.to_ascii_lowercase();
    let a = a.trim_end_matches('/');
    matches!(
        a,
        "sts.amazonaws.com"
            | "pods.eks.amazonaws.com"
            | "api://azureadtokenexchange"
            | "api://azureadtokenexchangechina"
            | "api://azureadtokenexchangeusgov"
            | "kubernetes"
            | "kubernetes.default"
            | "kubernetes.default.svc"
            | "https://kubernetes.default.svc"
            | "kubernetes.default.svc.cluster.local"
            | "https://kubernetes.default.svc.cluster.local"
    ) || a.starts_with("//iam.googleapis.com/")
        || a.starts_with("https://iam.googleapis.com/")
        || a.ends_with(".amazonaws.com")
        // GKE's workload identity pool (`<project>.svc.id.goog`).
        || a.ends_with(".svc.id.goog")
}

/// `arn:<partition>:iam::<12-digit account>:role/<path and name>`.
pub fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:") else {
        return false;
    };
    let fields: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, "iam", "", account, resource] = fields.as_slice() else {
        return false;
    };
    let name = resource.strip_prefix("role/").unwrap_or_default();
    s.len() <= 2048
        && partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("https://vault.example.com", Ok(("vault.example.com".into(), None)))]
    #[case("https://Vault.example.com:8200/", Ok(("vault.example.com".into(), Some(8200))))]
    #[case("https://10.0.0.5:8200", Ok(("10.0.0.5".into(), Some(8200))))]
    #[case("http://vault.example.com", Err(()))]
    #[case("https://vault.example.com/v1/x", Err(()))]
    #[case("https://vault.example.com:0", Err(()))]
    #[case("https://user@vault.example.com", Err(()))]
    #[case("https://", Err(()))]
    fn vault_addresses(#[case] text: &str, #[case] want: Result<(String, Option<u16>), ()>) {
        assert_eq!(parse_vault_address(text).map_err(drop), want);
    }

    #[rstest]
    #[case("web", false, true)]
    #[case("k8s-jwt", false, true)]
    #[case("team/kubernetes", true, true)]
    #[case("team/kubernetes", false, false)]
    #[case("../sys", true, false)]
    #[case("a//b", true, false)]
    #[case("", false, false)]
    #[case("a b", false, false)]
    fn vault_names(#[case] text: &str, #[case] slashes: bool, #[case] ok: bool) {
        assert_eq!(is_vault_name(text, slashes), ok);
    }

    #[rstest]
    #[case("arn:aws:iam::123456789012:role/app", true)]
    #[case("arn:aws-us-gov:iam::123456789012:role/team/app-reader", true)]
    #[case("arn:aws:iam::123456789012:user/app", false)]
    #[case("arn:aws:iam::12345:role/app", false)]
    #[case("arn:aws:sts::123456789012:role/app", false)]
    #[case("arn:aws:iam::123456789012:role/", false)]
    #[case("arn:aws:iam::123456789012:role/a b", false)]
    fn role_arns(#[case] arn: &str, #[case] ok: bool) {
        assert_eq!(is_role_arn(arn), ok, "{arn}");
    }
}
