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
}

impl Identities {
    pub fn is_empty(&self) -> bool {
        self.azure.is_empty() && self.aws.is_empty()
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
