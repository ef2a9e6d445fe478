//! The simple form: pod annotations under `secret-injector.io/`.

use std::{collections::BTreeMap, fmt, time::Duration};

use crate::{
    AwsIdentity, FileMode, FileName, FileNameError, HostRefused, Identities, InjectionSpec,
    ReferenceError, Rotation, SecretObject, SecretRef, SpecError, StoreHosts,
    is_gcp_service_account, is_role_arn, is_vault_name, parse_vault_address,
    parse_workload_identity_provider, spec::DEFAULT_MOUNT_PATH,
};

pub const PREFIX: &str = "secret-injector.io/";
pub const INJECT: &str = "secret-injector.io/inject";
pub const STATUS: &str = "secret-injector.io/status";
pub const NO_SIDECAR_REASON: &str = "secret-injector.io/no-sidecar-reason";
pub const MOUNT_PATH: &str = "secret-injector.io/mount-path";
pub const ROTATION_INTERVAL: &str = "secret-injector.io/rotation-interval";
pub const CONTAINERS: &str = "secret-injector.io/containers";
pub const FILE_PERMISSION: &str = "secret-injector.io/file-permission";
pub const CLIENT_ID: &str = "secret-injector.io/client-id";
pub const TENANT_ID: &str = "secret-injector.io/tenant-id";
/// `"true"`: the node's managed identity (with `client-id`, a user-assigned
/// one), as a SecretProviderClass's `useVMManagedIdentity` asks.
/// The IAM role IRSA assumes, overriding the ServiceAccount's
/// `eks.amazonaws.com/role-arn`.
pub const AWS_ROLE_ARN: &str = "secret-injector.io/aws-role-arn";
/// `"true"`: EKS Pod Identity instead of IRSA (the class's `usePodIdentity`).
pub const AWS_USE_POD_IDENTITY: &str = "secret-injector.io/aws-use-pod-identity";
pub const USE_MANAGED_IDENTITY: &str = "secret-injector.io/use-managed-identity";
/// The Vault role the sidecar logs in as (kubernetes or jwt auth).
pub const VAULT_ROLE: &str = "secret-injector.io/vault-role";
/// The Vault auth method's mount path (`kubernetes`, `jwt`, `team/k8s`).
pub const VAULT_AUTH_PATH: &str = "secret-injector.io/vault-auth-path";
/// A Vault server other than the operator's, within the allowlist.
pub const VAULT_ADDRESS: &str = "secret-injector.io/vault-address";
/// A Vault Enterprise / OpenBao namespace.
pub const VAULT_NAMESPACE: &str = "secret-injector.io/vault-namespace";
/// `"true"`: the sidecar revokes its dynamic secrets' leases when it stops.
pub const VAULT_REVOKE_ON_SHUTDOWN: &str = "secret-injector.io/vault-revoke-on-shutdown";
/// The Google service account to impersonate, overriding the
/// ServiceAccount's `iam.gke.io/gcp-service-account`.
pub const GCP_SERVICE_ACCOUNT: &str = "secret-injector.io/gcp-service-account";
/// The workload identity pool provider, overriding the operator's.
pub const GCP_WORKLOAD_IDENTITY_PROVIDER: &str =
    "secret-injector.io/gcp-workload-identity-provider";
pub const SECRET_PROVIDER_CLASS: &str = "secret-injector.io/secret-provider-class";
/// `secret-injector.io/secret-<file>: <uri>`
pub const SECRET_KEY_PREFIX: &str = "secret-injector.io/secret-";

/// The value of [`STATUS`] once a pod has been patched.
pub const STATUS_INJECTED: &str = "injected";

/// Every key a user may write, for "did you mean" suggestions.
const KNOWN_KEYS: &[&str] = &[
    INJECT,
    MOUNT_PATH,
    ROTATION_INTERVAL,
    CONTAINERS,
    FILE_PERMISSION,
    CLIENT_ID,
    TENANT_ID,
    USE_MANAGED_IDENTITY,
    AWS_ROLE_ARN,
    AWS_USE_POD_IDENTITY,
    VAULT_ROLE,
    VAULT_AUTH_PATH,
    VAULT_ADDRESS,
    VAULT_NAMESPACE,
    VAULT_REVOKE_ON_SHUTDOWN,
    GCP_SERVICE_ACCOUNT,
    GCP_WORKLOAD_IDENTITY_PROVIDER,
    SECRET_PROVIDER_CLASS,
    STATUS,
    NO_SIDECAR_REASON,
];

/// Operator defaults for what a pod does not say, and the limits of what it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub mount_path: String,
    pub rotation: Rotation,
    pub file_permission: FileMode,
    pub limits: Limits,
    /// The region of an AWS SecretProviderClass without `parameters.region`
    /// (the operator's `--aws-region`; the AWS provider takes its own
    /// `AWS_REGION` or the node's label, which admission cannot see).
    pub aws_region: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            mount_path: DEFAULT_MOUNT_PATH.to_owned(),
            rotation: Rotation::Every(Duration::from_secs(120)),
            file_permission: FileMode::DEFAULT,
            limits: Limits::default(),
            aws_region: None,
        }
    }
}

/// What the operator allows, whatever a pod or a SecretProviderClass asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Hosts a reference or class may name as its store.
    pub store_hosts: StoreHosts,
    /// Rotation intervals a pod may ask for (`0`, fetch once, always may).
    pub min_rotation: Duration,
    pub max_rotation: Duration,
    /// Whether a pod or class may use the node's managed identity.
    pub allow_managed_identity: bool,
}

/// The operator's default bounds of `rotation-interval`.
pub const DEFAULT_MIN_ROTATION: Duration = crate::MIN_ROTATION_INTERVAL;
pub const DEFAULT_MAX_ROTATION: Duration = Duration::from_secs(24 * 3600);

impl Default for Limits {
    fn default() -> Self {
        Self {
            store_hosts: StoreHosts::default(),
            min_rotation: DEFAULT_MIN_ROTATION,
            max_rotation: DEFAULT_MAX_ROTATION,
            allow_managed_identity: true,
        }
    }
}

impl Limits {
    /// A rotation the operator allows, or the rule it breaks.
    pub fn check_rotation(&self, rotation: Rotation) -> Result<(), String> {
        match rotation.interval() {
            Some(d) if d < self.min_rotation || d > self.max_rotation => Err(format!(
                "use an interval from {} to {} (the operator's bounds), or 0 to fetch once",
                Rotation::Every(self.min_rotation),
                Rotation::Every(self.max_rotation)
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotation {key}: {source}")]
    FileName {
        key: String,
        #[source]
        source: FileNameError,
    },
    #[error("annotation {key}: reference {value:?} is not valid: {source}")]
    Reference {
        key: String,
        value: String,
        #[source]
        source: ReferenceError,
    },
    #[error("annotation {key}: reference {value:?} is refused: {source}")]
    Host {
        key: String,
        value: String,
        #[source]
        source: HostRefused,
    },
    #[error("annotation {key}: {value:?} is not valid: {accepted}")]
    Value {
        key: &'static str,
        value: String,
        accepted: String,
    },
    #[error("annotation {key} is not known; {}", match .suggestion {
        Some(s) => format!("did you mean {s}?"),
        None => format!("known keys: {}, and {SECRET_KEY_PREFIX}<file>", KNOWN_KEYS.join(", ")),
    })]
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    #[error(
        "annotations {SECRET_PROVIDER_CLASS} and {SECRET_KEY_PREFIX}<file> cannot be combined; name the files in the SecretProviderClass, or drop {SECRET_PROVIDER_CLASS}"
    )]
    ClassAndFiles,
    #[error(
        "annotation {SECRET_PROVIDER_CLASS}: {0:?} is not a SecretProviderClass name (a DNS subdomain: lowercase letters, digits, '-' and '.')"
    )]
    ClassName(String),
    #[error(
        "the pod opts in with {INJECT}: \"true\" but names no secret; add {SECRET_KEY_PREFIX}<file>: <uri>"
    )]
    NoSecrets,
    #[error("{0}")]
    Spec(#[from] SpecError),
}

/// All that is wrong with a pod's annotations, reported together so one
/// round trip fixes them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AnnotationErrors(pub Vec<AnnotationError>);

impl fmt::Display for AnnotationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What a pod's annotations ask for.
// One per admission and moved, not stored: boxing the spec would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Not opted in. Warnings explain near-misses (`inject: "yes"`).
    NotOptedIn {
        warnings: Vec<String>,
    },
    OptedIn(InjectionSpec),
    /// Opted in with `secret-provider-class`: the objects come from that
    /// SecretProviderClass; the annotations' options apply on top.
    FromClass(ClassRequest),
}

/// A pod asking for a SecretProviderClass, with its own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRequest {
    pub class: String,
    /// Mount path, rotation and file mode: the operator's, overridden by the pod.
    pub defaults: Defaults,
    pub containers: Option<Vec<String>>,
    /// Identity annotations (`client-id`, `tenant-id`, `aws-role-arn`,
    /// ...), which win over the class.
    pub identities: Identities,
}

/// Reads a pod's annotations. Only `inject: "true"` opts in; every other
/// `secret-injector.io/` key is then checked, unknown keys included, because a
/// typo must not silently change what the pod gets.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    defaults: &Defaults,
) -> Result<Request, AnnotationErrors> {
    parse_opted_in(annotations, defaults, false)
}

/// [`parse`], for a pod that may have opted in by its label
/// `secret-injector.io/inject: "true"` (`by_label`) rather than the annotation.
pub fn parse_opted_in(
    annotations: &BTreeMap<String, String>,
    defaults: &Defaults,
    by_label: bool,
) -> Result<Request, AnnotationErrors> {
    match annotations.get(INJECT).map(String::as_str) {
        _ if by_label => {}
        Some("true") => {}
        Some(other) => {
            return Ok(Request::NotOptedIn {
                warnings: vec![format!(
                    "{INJECT} is {other:?}; only \"true\" opts in, so no secrets were injected"
                )],
            });
        }
        None => return Ok(Request::NotOptedIn { warnings: vec![] }),
    }

    let mut errors = Vec::new();
    let mut objects = Vec::new();
    let mut mount_path = defaults.mount_path.clone();
    let mut rotation = defaults.rotation;
    let mut containers = None;
    let mut file_permission = defaults.file_permission;
    let mut identities = Identities::default();
    let azure = &mut identities.azure;
    let mut aws = AwsIdentity::default();
    let mut managed = false;
    let mut class = None;
    let limits = &defaults.limits;

    for (key, value) in annotations {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        match key.as_str() {
            INJECT | STATUS | NO_SIDECAR_REASON => {}
            MOUNT_PATH => match check_mount_path(value) {
                Ok(path) => mount_path = path,
                Err(accepted) => errors.push(value_error(MOUNT_PATH, value, accepted)),
            },
            ROTATION_INTERVAL => match value.parse() {
                Ok(r) => match limits.check_rotation(r) {
                    Ok(()) => rotation = r,
                    Err(accepted) => errors.push(value_error(ROTATION_INTERVAL, value, accepted)),
                },
                Err(e) => errors.push(AnnotationError::Value {
                    key: ROTATION_INTERVAL,
                    value: value.clone(),
                    accepted: rotation_rule(&e),
                }),
            },
            CONTAINERS => match parse_container_list(value) {
                Ok(list) => containers = Some(list),
                Err(accepted) => errors.push(value_error(CONTAINERS, value, accepted)),
            },
            FILE_PERMISSION => match value.parse() {
                Ok(mode) => file_permission = mode,
                Err(_) => errors.push(value_error(
                    FILE_PERMISSION,
                    value,
                    "use 3 or 4 octal digits from 0000 to 0777, such as 0644 or 0440",
                )),
            },
            CLIENT_ID => match is_guid(value) {
                true => azure.client_id = Some(value.to_ascii_lowercase()),
                false => errors.push(value_error(
                    CLIENT_ID,
                    value,
                    "a client id is a GUID such as 00000000-0000-0000-0000-000000000001",
                )),
            },
            TENANT_ID => match is_guid(value) || is_domain(value) {
                true => azure.tenant_id = Some(value.to_ascii_lowercase()),
                false => errors.push(value_error(
                    TENANT_ID,
                    value,
                    "a tenant id is a GUID or a domain such as contoso.onmicrosoft.com",
                )),
            },
            USE_MANAGED_IDENTITY => match value.as_str() {
                "true" if limits.allow_managed_identity => managed = true,
                "true" => errors.push(value_error(
                    USE_MANAGED_IDENTITY,
                    value,
                    "\"false\" or absent: the operator does not allow the node's managed identity (--allow-managed-identity)",
                )),
                "false" => {}
                _ => errors.push(value_error(USE_MANAGED_IDENTITY, value, "\"true\" or \"false\"")),
            },
            AWS_ROLE_ARN => match is_role_arn(value) {
                true => aws.role_arn = Some(value.clone()),
                false => errors.push(value_error(
                    AWS_ROLE_ARN,
                    value,
                    "an IAM role ARN such as arn:aws:iam::123456789012:role/app",
                )),
            },
            AWS_USE_POD_IDENTITY => match value.as_str() {
                "true" => aws.use_pod_identity = true,
                "false" => {}
                _ => errors.push(value_error(AWS_USE_POD_IDENTITY, value, "\"true\" or \"false\"")),
            },
            VAULT_ROLE => match is_vault_name(value, false) {
                true => identities.vault.role = Some(value.clone()),
                false => errors.push(value_error(VAULT_ROLE, value, VAULT_NAME_RULE)),
            },
            VAULT_AUTH_PATH => match is_vault_name(value.trim_matches('/'), true) {
                true => identities.vault.auth_path = Some(value.trim_matches('/').to_owned()),
                false => errors.push(value_error(VAULT_AUTH_PATH, value, VAULT_PATH_RULE)),
            },
            VAULT_NAMESPACE => match is_vault_name(value.trim_matches('/'), true) {
                true => identities.vault.namespace = Some(value.trim_matches('/').to_owned()),
                false => errors.push(value_error(VAULT_NAMESPACE, value, VAULT_PATH_RULE)),
            },
            VAULT_REVOKE_ON_SHUTDOWN => match value.as_str() {
                "true" => identities.vault.revoke_on_shutdown = true,
                "false" => {}
                _ => errors.push(value_error(VAULT_REVOKE_ON_SHUTDOWN, value, "\"true\" or \"false\"")),
            },
            VAULT_ADDRESS => match parse_vault_address(value) {
                Ok((host, port)) => match limits.store_hosts.check(&host, port) {
                    Ok(()) => identities.vault.address = Some(value.trim_end_matches('/').to_owned()),
                    Err(refused) => errors.push(AnnotationError::Host {
                        key: key.clone(),
                        value: value.clone(),
                        source: refused,
                    }),
                },
                Err(rule) => errors.push(value_error(VAULT_ADDRESS, value, rule)),
            },
            GCP_SERVICE_ACCOUNT => match is_gcp_service_account(value) {
                true => identities.gcp.service_account = Some(value.clone()),
                false => errors.push(value_error(
                    GCP_SERVICE_ACCOUNT,
                    value,
                    "a Google service account email such as app@my-project.iam.gserviceaccount.com",
                )),
            },
            GCP_WORKLOAD_IDENTITY_PROVIDER => match parse_workload_identity_provider(value) {
                Some(name) => identities.gcp.workload_identity_provider = Some(name),
                None => errors.push(value_error(
                    GCP_WORKLOAD_IDENTITY_PROVIDER,
                    value,
                    "projects/<project number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>",
                )),
            },
            SECRET_PROVIDER_CLASS => match is_dns_subdomain(value) {
                true => class = Some(value.clone()),
                false => errors.push(AnnotationError::ClassName(value.clone())),
            },
            _ => match key.strip_prefix(SECRET_KEY_PREFIX) {
                Some(file) => match parse_object(key, file, value, &limits.store_hosts) {
                    Ok(object) => objects.push(object),
                    Err(e) => errors.push(e),
                },
                None => errors.push(AnnotationError::UnknownKey {
                    key: key.clone(),
                    suggestion: suggest(name),
                }),
            },
        }
    }

    if class.is_some() && !objects.is_empty() {
        errors.push(AnnotationError::ClassAndFiles);
    }
    if managed {
        // `client-id` names the user-assigned identity; none: system-assigned.
        azure.use_managed_identity = true;
        azure.user_assigned_identity_id = azure.client_id.take();
    }
    identities.aws = aws;
    if objects.is_empty() && class.is_none() && errors.is_empty() {
        errors.push(AnnotationError::NoSecrets);
    }
    if !errors.is_empty() {
        return Err(AnnotationErrors(errors));
    }
    if let Some(class) = class {
        return Ok(Request::FromClass(ClassRequest {
            class,
            defaults: Defaults {
                mount_path,
                rotation,
                file_permission,
                limits: limits.clone(),
                aws_region: defaults.aws_region.clone(),
            },
            containers,
            identities,
        }));
    }
    InjectionSpec::new(
        objects,
        mount_path,
        rotation,
        containers,
        file_permission,
        identities,
    )
    .map(Request::OptedIn)
    .map_err(|e| AnnotationErrors(vec![e.into()]))
}

fn is_dns_subdomain(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn parse_object(
    key: &str,
    file: &str,
    value: &str,
    hosts: &StoreHosts,
) -> Result<SecretObject, AnnotationError> {
    let file = FileName::new(file).map_err(|source| AnnotationError::FileName {
        key: key.to_owned(),
        source,
    })?;
    let source: SecretRef = value
        .trim()
        .parse()
        .map_err(|source| AnnotationError::Reference {
            key: key.to_owned(),
            value: value.to_owned(),
            source,
        })?;
    if let Some((host, port)) = source.named_host() {
        hosts
            .check(&host, port)
            .map_err(|refused| AnnotationError::Host {
                key: key.to_owned(),
                value: value.to_owned(),
                source: refused,
            })?;
    }
    Ok(SecretObject::new(file, source))
}

const VAULT_NAME_RULE: &str = "a Vault role name: letters, digits and -_.@, at most 128 bytes";
const VAULT_PATH_RULE: &str = "a Vault path such as kubernetes or team/jwt: segments of letters, digits and -_.@, at most 128 bytes";

fn value_error(key: &'static str, value: &str, accepted: impl Into<String>) -> AnnotationError {
    AnnotationError::Value {
        key,
        value: value.to_owned(),
        accepted: accepted.into(),
    }
}

fn rotation_rule(e: &crate::RotationError) -> String {
    // The error's own text repeats the value; keep only the rule.
    let text = e.to_string();
    text.split_once(": ")
        .map(|(_, rule)| rule.to_owned())
        .unwrap_or(text)
}

/// Paths a mount would shadow what the containers need: the system, the
/// ServiceAccount token, and the token directories the webhook injects.
const PROTECTED_PATHS: &[&str] = &[
    // /etc itself, and what the containers read from it (trust stores,
    // name resolution, users); apps' own /etc/<app> directories are fine.
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/ssh",
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ld.so.preload",
    "/etc/ld.so.cache",
    "/etc/kubernetes",
    "/proc",
    "/sys",
    "/dev",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/var/run/secrets/kubernetes.io",
    "/run/secrets/kubernetes.io",
    "/var/run/secrets/azure",
    "/var/run/secrets/eks.amazonaws.com",
    "/var/run/secrets/pods.eks.amazonaws.com",
    "/var/run/secrets/secret-injector",
];

/// An absolute, normalised path that is neither `/`, a system path, nor an
/// ancestor of one (which would shadow it).
pub fn check_mount_path(value: &str) -> Result<String, &'static str> {
    const RULE: &str = "use an absolute path such as /mnt/secrets-store, without '.', '..', '//' or ':', and not '/', a system path (/etc, /etc/ssl, /etc/hosts and other system files of /etc, /usr, /bin, /lib, /proc, /sys, /dev, /boot and below) or the ServiceAccount and token paths (/var/run/secrets/kubernetes.io, /var/run/secrets/azure and their parents)";
    let trimmed = value.strip_suffix('/').unwrap_or(value);
    let ok = trimmed.starts_with('/')
        && trimmed.len() > 1
        && trimmed.len() <= 1024
        && !trimmed.contains(':')
        && !trimmed.chars().any(char::is_control)
        && trimmed[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && trimmed != "/etc"
        && !PROTECTED_PATHS.iter().any(|p| {
            let under = trimmed
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            let above = p
                .strip_prefix(trimmed)
                .is_some_and(|rest| rest.starts_with('/'));
            under || above
        });
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(RULE)
    }
}

fn parse_container_list(value: &str) -> Result<Vec<String>, &'static str> {
    const RULE: &str = "a comma-separated list of container names (lowercase letters, digits and '-', at most 63 characters each)";
    let names: Vec<String> = value.split(',').map(str::trim).map(str::to_owned).collect();
    let ok = names.iter().all(|n| {
        (1..=63).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-')
    });
    if ok { Ok(names) } else { Err(RULE) }
}

pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn is_domain(s: &str) -> bool {
    s.contains('.')
        && s.len() <= 253
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The closest known key to a mistyped one, if it is close enough to be a typo.
fn suggest(name: &str) -> Option<String> {
    let mut candidates: Vec<String> = KNOWN_KEYS
        .iter()
        .filter_map(|k| k.strip_prefix(PREFIX))
        .map(str::to_owned)
        .collect();
    // `secrets-db`, `secret_db`, `Secret-db`: a mistyped `secret-<file>`.
    if let Some((_, file)) = name.split_once(['-', '_']) {
        candidates.push(format!("secret-{file}"));
    }
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, &c), c))
        .filter(|(distance, c)| *distance <= (c.len() / 4).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| format!("{PREFIX}{c}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rstest::rstest;

    use super::*;
    use crate::Store;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn opted_in(pairs: &[(&str, &str)]) -> Result<InjectionSpec, AnnotationErrors> {
        let mut all = vec![(INJECT, "true")];
        all.extend_from_slice(pairs);
        match parse(&annotations(&all), &Defaults::default())? {
            Request::OptedIn(spec) => Ok(spec),
            other => panic!("not an annotation-form spec: {other:?}"),
        }
    }

    fn error_text(pairs: &[(&str, &str)]) -> String {
        opted_in(pairs).unwrap_err().to_string()
    }

    /// The seed's SecretProviderClass, written as annotations.
    #[test]
    fn seed_pod_in_annotation_form() {
        let spec = opted_in(&[
            (
                "secret-injector.io/secret-db-user",
                "azure://kv-aks-csi-weu-01/secrets/db-user",
            ),
            (
                "secret-injector.io/secret-db-pass",
                "azure://kv-aks-csi-weu-01/secrets/db-pass",
            ),
            (ROTATION_INTERVAL, "1m"),
            (TENANT_ID, "00000000-0000-0000-0000-00000000000a"),
            (CLIENT_ID, "00000000-0000-0000-0000-000000000001"),
        ])
        .unwrap();
        assert_eq!(spec.objects.len(), 2);
        assert_eq!(spec.objects[0].file.as_str(), "db-pass");
        assert_eq!(
            spec.objects[0].source.to_string(),
            "azure://kv-aks-csi-weu-01/secrets/db-pass"
        );
        assert_eq!(spec.mount_path, "/mnt/secrets-store");
        assert_eq!(spec.rotation, Rotation::Every(Duration::from_secs(60)));
        assert_eq!(spec.file_permission, FileMode::DEFAULT);
        assert_eq!(
            spec.identities.azure.tenant_id.as_deref(),
            Some("00000000-0000-0000-0000-00000000000a")
        );
        assert_eq!(spec.containers, None);
    }

    #[test]
    fn all_four_providers_parse() {
        let spec = opted_in(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (
                "secret-injector.io/secret-b",
                "aws://us-east-1/prod/db#password",
            ),
            ("secret-injector.io/secret-c", "vault://secret/app#key"),
            (
                "secret-injector.io/secret-d",
                "gcp://projects/my-project/secrets/d",
            ),
        ])
        .unwrap();
        let stores: Vec<_> = spec.stores().into_keys().collect();
        assert_eq!(stores, Store::ALL);
    }

    #[test]
    fn options_override_defaults() {
        let spec = opted_in(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (MOUNT_PATH, "/run/secrets/app/"),
            (ROTATION_INTERVAL, "0"),
            (CONTAINERS, "app, worker"),
            (FILE_PERMISSION, "0440"),
        ])
        .unwrap();
        assert_eq!(spec.mount_path, "/run/secrets/app");
        assert_eq!(spec.rotation, Rotation::Once);
        assert_eq!(spec.containers, Some(vec!["app".into(), "worker".into()]));
        assert_eq!(spec.file_permission.bits(), 0o440);
    }

    #[rstest]
    #[case(None)]
    #[case(Some("false"))]
    fn not_opted_in_is_silent(#[case] inject: Option<&str>) {
        let mut a = annotations(&[("secret-injector.io/secret-a", "nonsense")]);
        if let Some(v) = inject {
            a.insert(INJECT.into(), v.into());
        }
        let Request::NotOptedIn { warnings } = parse(&a, &Defaults::default()).unwrap() else {
            panic!("opted in")
        };
        assert!(warnings.is_empty() || inject == Some("false"));
    }

    #[test]
    fn the_label_opts_in_without_the_annotation() {
        let a = annotations(&[("secret-injector.io/secret-a", "azure://kv-one/secrets/a")]);
        assert!(matches!(
            parse(&a, &Defaults::default()),
            Ok(Request::NotOptedIn { .. })
        ));
        assert!(matches!(
            parse_opted_in(&a, &Defaults::default(), true),
            Ok(Request::OptedIn(_))
        ));
    }

    #[test]
    fn near_miss_opt_in_warns_but_does_not_inject() {
        let a = annotations(&[(INJECT, "True")]);
        let Request::NotOptedIn { warnings } = parse(&a, &Defaults::default()).unwrap() else {
            panic!("opted in")
        };
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("\"True\""), "{}", warnings[0]);
    }

    #[rstest]
    #[case(&[(ROTATION_INTERVAL, "2 minutes")], &["secret-injector.io/rotation-interval", "\"2 minutes\"", "1h30m"])]
    #[case(&[(ROTATION_INTERVAL, "1s")], &["at least 5s"])]
    #[case(&[(MOUNT_PATH, "relative/path")], &["secret-injector.io/mount-path", "absolute path"])]
    #[case(&[(MOUNT_PATH, "/mnt/../etc")], &["'..'"])]
    #[case(&[(FILE_PERMISSION, "0999")], &["secret-injector.io/file-permission", "\"0999\"", "octal"])]
    #[case(&[(CONTAINERS, "app,,worker")], &["secret-injector.io/containers", "comma-separated"])]
    #[case(&[(CLIENT_ID, "my-app")], &["secret-injector.io/client-id", "GUID"])]
    #[case(&[(TENANT_ID, "not a tenant")], &["secret-injector.io/tenant-id"])]
    #[case(&[("secret-injector.io/secret-..data", "azure://kv-one/secrets/a")], &["secret-injector.io/secret-..data", "starts with '..'"])]
    #[case(&[("secret-injector.io/secret-a", "azure://kv-one/blobs/a")], &["secret-injector.io/secret-a", "\"azure://kv-one/blobs/a\"", "secrets, certificates or keys"])]
    #[case(&[("secret-injector.io/rotation-intreval", "1m")], &["secret-injector.io/rotation-intreval is not known; did you mean secret-injector.io/rotation-interval?"])]
    #[case(&[("secret-injector.io/secrets-db", "azure://kv-one/secrets/a")], &["did you mean secret-injector.io/secret-db?"])]
    #[case(&[("secret-injector.io/mountpath", "/x")], &["did you mean secret-injector.io/mount-path?"])]
    #[case(&[("secret-injector.io/zzzzzzzzzzzzzzzzz", "x")], &["not known; known keys: secret-injector.io/inject"])]
    #[case(&[(SECRET_PROVIDER_CLASS, "kv")], &["cannot be combined"])]
    #[case(&[(SECRET_PROVIDER_CLASS, "KV_1")], &["\"KV_1\" is not a SecretProviderClass name"])]
    fn errors_name_the_annotation_the_value_and_the_rule(
        #[case] extra: &[(&str, &str)],
        #[case] says: &[&str],
    ) {
        let mut pairs = vec![("secret-injector.io/secret-ok", "azure://kv-one/secrets/ok")];
        pairs.extend_from_slice(extra);
        let text = error_text(&pairs);
        for s in says {
            assert!(text.contains(s), "expected {s:?} in: {text}");
        }
    }

    // L6: system paths, the token paths, and their parents.
    #[rstest]
    #[case("/")]
    #[case("/etc")]
    #[case("/etc/ssl/certs")]
    #[case("/etc/resolv.conf")]
    #[case("/usr/local/bin")]
    #[case("/proc/self")]
    #[case("/var/run/secrets/kubernetes.io/serviceaccount")]
    #[case("/var/run/secrets/azure/tokens")]
    #[case("/var/run/secrets")]
    #[case("/var/run")]
    #[case("/var")]
    #[case("/run/secrets/kubernetes.io")]
    fn l6_system_mount_paths_are_refused(#[case] path: &str) {
        let text = error_text(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (MOUNT_PATH, path),
        ]);
        assert!(text.contains("secret-injector.io/mount-path"), "{text}");
        assert!(text.contains(&format!("{path:?}")), "{text}");
        assert!(text.contains("a system path"), "{text}");
    }

    #[rstest]
    #[case("/mnt/secrets-store")]
    #[case("/etcetera")]
    #[case("/etc/app/secrets")]
    #[case("/var/run/secrets/app")]
    #[case("/run/secrets/app")]
    #[case("/usrdata")]
    fn l6_nearby_paths_are_fine(#[case] path: &str) {
        assert_eq!(check_mount_path(path).as_deref(), Ok(path));
    }

    // L1, L9: the operator bounds the interval (default 5s to 24h).
    #[test]
    fn l1_rotation_is_within_the_operators_bounds() {
        let text = error_text(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (ROTATION_INTERVAL, "48h"),
        ]);
        assert!(text.contains("\"48h\""), "{text}");
        assert!(text.contains("from 5s to 24h"), "{text}");
        let text = error_text(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (ROTATION_INTERVAL, "5000000000000000h"),
        ]);
        assert!(text.contains("at most 720h"), "{text}");
        let strict = Defaults {
            limits: Limits {
                min_rotation: Duration::from_secs(60),
                max_rotation: Duration::from_secs(3600),
                ..Limits::default()
            },
            ..Defaults::default()
        };
        let a = annotations(&[
            (INJECT, "true"),
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (ROTATION_INTERVAL, "30s"),
        ]);
        let text = parse(&a, &strict).unwrap_err().to_string();
        assert!(text.contains("from 1m to 1h"), "{text}");
        let mut once = a.clone();
        once.insert(ROTATION_INTERVAL.into(), "0".into());
        assert!(parse(&once, &strict).is_ok());
    }

    // H1: a reference may name only hosts the operator allows.
    #[rstest]
    #[case("azure://169.254.169.254/secrets/a")]
    #[case("azure://kubernetes.default.svc:443/secrets/a")]
    #[case("azure://kv.attacker.example/secrets/a")]
    #[case("azure://kv-one.vault.azure.net:8443/secrets/a")]
    fn h1_references_to_hosts_outside_the_allowlist_are_refused(#[case] uri: &str) {
        let text = error_text(&[("secret-injector.io/secret-a", uri)]);
        assert!(
            text.contains("annotation secret-injector.io/secret-a"),
            "{text}"
        );
        assert!(text.contains(&format!("{uri:?} is refused")), "{text}");
        assert!(text.contains("--allowed-store-hosts"), "{text}");
    }

    #[test]
    fn h1_the_operator_may_allow_a_private_endpoint() {
        let defaults = Defaults {
            limits: Limits {
                store_hosts: "*.vault.azure.net,kv.internal.example:8443"
                    .parse()
                    .unwrap(),
                ..Limits::default()
            },
            ..Defaults::default()
        };
        let a = annotations(&[
            (INJECT, "true"),
            (
                "secret-injector.io/secret-a",
                "azure://kv.internal.example:8443/secrets/a",
            ),
        ]);
        assert!(matches!(parse(&a, &defaults), Ok(Request::OptedIn(_))));
    }

    // M1: the node's managed identity only when asked for, and allowed.
    #[test]
    fn m1_managed_identity_is_explicit() {
        let spec = opted_in(&[
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (USE_MANAGED_IDENTITY, "true"),
            (CLIENT_ID, "00000000-0000-0000-0000-000000000001"),
        ])
        .unwrap();
        assert!(spec.identities.azure.use_managed_identity);
        assert_eq!(spec.identities.azure.client_id, None);
        assert_eq!(
            spec.identities.azure.user_assigned_identity_id.as_deref(),
            Some("00000000-0000-0000-0000-000000000001")
        );
        let text = error_text(&[(USE_MANAGED_IDENTITY, "yes")]);
        assert!(text.contains("\"true\" or \"false\""), "{text}");
        let denied = Defaults {
            limits: Limits {
                allow_managed_identity: false,
                ..Limits::default()
            },
            ..Defaults::default()
        };
        let a = annotations(&[
            (INJECT, "true"),
            ("secret-injector.io/secret-a", "azure://kv-one/secrets/a"),
            (USE_MANAGED_IDENTITY, "true"),
        ]);
        let text = parse(&a, &denied).unwrap_err().to_string();
        assert!(text.contains("--allow-managed-identity"), "{text}");
    }

    #[test]
    fn a_provider_class_carries_the_pod_options() {
        let a = annotations(&[
            (INJECT, "true"),
            (SECRET_PROVIDER_CLASS, "kv-aks-csi-weu-01"),
            (ROTATION_INTERVAL, "1m"),
            (CONTAINERS, "app"),
            (CLIENT_ID, "00000000-0000-0000-0000-000000000001"),
        ]);
        let Request::FromClass(request) = parse(&a, &Defaults::default()).unwrap() else {
            panic!("not a class request")
        };
        assert_eq!(request.class, "kv-aks-csi-weu-01");
        assert_eq!(
            request.defaults.rotation,
            Rotation::Every(Duration::from_secs(60))
        );
        assert_eq!(request.defaults.mount_path, "/mnt/secrets-store");
        assert_eq!(request.containers, Some(vec!["app".into()]));
        assert!(request.identities.azure.client_id.is_some());
    }

    #[test]
    fn opting_in_without_secrets_is_an_error() {
        assert_eq!(
            opted_in(&[]).unwrap_err(),
            AnnotationErrors(vec![AnnotationError::NoSecrets])
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = opted_in(&[
            (ROTATION_INTERVAL, "soon"),
            (FILE_PERMISSION, "rw"),
            ("secret-injector.io/secret-a", "s3://x"),
        ])
        .unwrap_err();
        assert_eq!(errors.0.len(), 3, "{errors}");
    }
}
