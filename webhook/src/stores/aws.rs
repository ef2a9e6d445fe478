//! AWS Secrets Manager and Parameter Store: IRSA (a projected token with
//! audience `sts.amazonaws.com` and `AWS_ROLE_ARN`) or EKS Pod Identity (a
//! token for `pods.eks.amazonaws.com` and the agent's endpoint), at the paths
//! and env names of EKS's own webhooks, so the SDK's default chain finds them.

use shared::{AwsIdentity, InjectionSpec, annotations, contract};

use super::{Wiring, plain, read_only_mount, token_volume};
use crate::{accounts::AccountIdentity, config::InjectorConfig, mutate::MutationError};

/// The ServiceAccount annotation EKS's pod identity webhook reads.
pub const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

pub const IRSA_TOKEN_VOLUME_NAME: &str = "secret-injector-aws-token";
pub const IRSA_TOKEN_DIR: &str = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
pub const IRSA_TOKEN_FILE: &str = "token";
pub const IRSA_AUDIENCE: &str = "sts.amazonaws.com";

pub const POD_IDENTITY_TOKEN_VOLUME_NAME: &str = "secret-injector-aws-pod-identity-token";
pub const POD_IDENTITY_TOKEN_DIR: &str = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount";
pub const POD_IDENTITY_TOKEN_FILE: &str = "eks-pod-identity-token";
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";
/// The EKS Pod Identity agent on every node.
pub const DEFAULT_POD_IDENTITY_ENDPOINT: &str = "http://169.254.170.23/v1/credentials";

/// As EKS's webhook: a day; kubelet refreshes at 80 %.
const TOKEN_EXPIRATION_SECONDS: i64 = 86400;

pub(super) fn wants_account(aws: &AwsIdentity) -> bool {
    !aws.use_pod_identity && aws.role_arn.is_none()
}

/// IRSA: the role the pod did not name comes from its ServiceAccount's
/// `eks.amazonaws.com/role-arn`, as EKS's webhook reads it.
pub(super) fn from_account(aws: &mut AwsIdentity, found: &AccountIdentity) {
    if wants_account(aws) {
        aws.role_arn = found
            .get(ROLE_ARN_ANNOTATION)
            .filter(|arn| shared::is_role_arn(arn));
    }
}

/// Like Azure's M1: a role the pod, its class or its ServiceAccount named, or
/// Pod Identity when asked for; never the node's instance role.
pub(super) fn check(aws: &AwsIdentity, account: &str) -> Result<(), MutationError> {
    if wants_account(aws) {
        return Err(MutationError::NoIdentity {
            store: "AWS",
            how: format!(
                "set {} to an IAM role ARN (IRSA), annotate its ServiceAccount {account:?} with {ROLE_ARN_ANNOTATION}, or use EKS Pod Identity with {}: \"true\" (or usePodIdentity in the SecretProviderClass)",
                annotations::AWS_ROLE_ARN,
                annotations::AWS_USE_POD_IDENTITY
            ),
        });
    }
    Ok(())
}

/// One pod, one AWS identity: the SDK in the sidecar reads one role (or the
/// Pod Identity agent) from its env.
pub(super) fn same_identity(a: &AwsIdentity, b: &AwsIdentity) -> Result<(), MutationError> {
    if a == b {
        return Ok(());
    }
    let describe = |i: &AwsIdentity| match (&i.role_arn, i.use_pod_identity) {
        (_, true) => "EKS Pod Identity".to_owned(),
        (Some(role), false) => format!("role {role}"),
        (None, false) => "no role".to_owned(),
    };
    Err(MutationError::IdentitiesDiffer {
        store: "AWS",
        first: describe(a),
        second: describe(b),
    })
}

pub(super) fn wiring(spec: &InjectionSpec, config: &InjectorConfig) -> Wiring {
    let aws = &spec.identities.aws;
    let mut env = vec![plain(contract::aws::EC2_METADATA_DISABLED, "true")];
    if let Some(endpoint) = &config.aws_endpoint_url {
        env.push(plain(contract::aws::ENDPOINT_URL, endpoint.clone()));
    }
    if aws.use_pod_identity {
        env.push(plain(
            contract::aws::CONTAINER_CREDENTIALS_FULL_URI,
            config.aws_pod_identity_endpoint.clone(),
        ));
        env.push(plain(
            contract::aws::CONTAINER_AUTHORIZATION_TOKEN_FILE,
            format!("{POD_IDENTITY_TOKEN_DIR}/{POD_IDENTITY_TOKEN_FILE}"),
        ));
        return Wiring {
            volumes: vec![token_volume(
                POD_IDENTITY_TOKEN_VOLUME_NAME,
                POD_IDENTITY_AUDIENCE,
                POD_IDENTITY_TOKEN_FILE,
                TOKEN_EXPIRATION_SECONDS,
            )],
            mounts: vec![read_only_mount(
                POD_IDENTITY_TOKEN_VOLUME_NAME,
                POD_IDENTITY_TOKEN_DIR,
            )],
            env,
        };
    }
    env.push(plain(contract::aws::STS_REGIONAL_ENDPOINTS, "regional"));
    if let Some(role) = &aws.role_arn {
        env.push(plain(contract::aws::ROLE_ARN, role.clone()));
    }
    env.push(plain(
        contract::aws::WEB_IDENTITY_TOKEN_FILE,
        format!("{IRSA_TOKEN_DIR}/{IRSA_TOKEN_FILE}"),
    ));
    Wiring {
        volumes: vec![token_volume(
            IRSA_TOKEN_VOLUME_NAME,
            IRSA_AUDIENCE,
            IRSA_TOKEN_FILE,
            TOKEN_EXPIRATION_SECONDS,
        )],
        mounts: vec![read_only_mount(IRSA_TOKEN_VOLUME_NAME, IRSA_TOKEN_DIR)],
        env,
    }
}
