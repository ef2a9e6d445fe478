//! What operators decide, never pods: the sidecar's image, resources, security
//! context, native-sidecar mode and the injection defaults.

use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};
use shared::{Defaults, FileMode, Limits, Rotation, StoreHosts};

/// Kubernetes minor version from which init containers with
/// `restartPolicy: Always` (native sidecars) are on by default and stable enough.
pub const NATIVE_SIDECAR_MIN_MINOR: u32 = 29;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NativeSidecarMode {
    /// Native sidecars when the apiserver is 1.29 or newer.
    Auto,
    Always,
    Never,
}

/// Operator flags that shape every injected pod.
#[derive(Debug, Clone, Args)]
pub struct InjectorArgs {
    /// Image of the init container and sidecar.
    #[arg(
        long,
        env = "SECRET_INJECTOR_SIDECAR_IMAGE",
        default_value = concat!("secret-injector-sidecar:", env!("CARGO_PKG_VERSION"))
    )]
    pub sidecar_image: String,

    #[arg(long, env = "SECRET_INJECTOR_SIDECAR_IMAGE_PULL_POLICY", default_value = "IfNotPresent",
          value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: String,

    /// The sidecar binary inside its image; also the startup probe's command.
    #[arg(
        long,
        env = "SECRET_INJECTOR_SIDECAR_COMMAND",
        default_value = "/usr/local/bin/secret-injector-sidecar"
    )]
    pub sidecar_command: String,

    #[arg(
        long,
        env = "SECRET_INJECTOR_SIDECAR_CPU_REQUEST",
        default_value = "10m"
    )]
    pub sidecar_cpu_request: String,
    /// Empty for no CPU limit (the default: throttling a poller helps no one).
    #[arg(long, env = "SECRET_INJECTOR_SIDECAR_CPU_LIMIT", default_value = "")]
    pub sidecar_cpu_limit: String,
    #[arg(
        long,
        env = "SECRET_INJECTOR_SIDECAR_MEMORY_REQUEST",
        default_value = "16Mi"
    )]
    pub sidecar_memory_request: String,
    #[arg(
        long,
        env = "SECRET_INJECTOR_SIDECAR_MEMORY_LIMIT",
        default_value = "64Mi"
    )]
    pub sidecar_memory_limit: String,

    /// UID and GID of the injected containers (non-root, as the "restricted" profile requires).
    #[arg(long, env = "SECRET_INJECTOR_SIDECAR_RUN_AS_USER", default_value_t = 65532,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub sidecar_run_as_user: i64,
    #[arg(long, env = "SECRET_INJECTOR_SIDECAR_RUN_AS_GROUP", default_value_t = 65532,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub sidecar_run_as_group: i64,

    /// `sizeLimit` of the memory-backed volume that holds the files.
    #[arg(
        long,
        env = "SECRET_INJECTOR_VOLUME_SIZE_LIMIT",
        default_value = "16Mi"
    )]
    pub volume_size_limit: String,

    #[arg(
        long,
        env = "SECRET_INJECTOR_NATIVE_SIDECAR",
        value_enum,
        default_value = "auto"
    )]
    pub native_sidecar: NativeSidecarMode,

    /// The cluster's Kubernetes version (for example 1.30), for `--native-sidecar=auto`
    /// without asking the apiserver.
    #[arg(long, env = "SECRET_INJECTOR_KUBE_VERSION")]
    pub kube_version: Option<String>,

    /// How long the native sidecar's startup probe waits for the first complete write.
    #[arg(long, env = "SECRET_INJECTOR_STARTUP_TIMEOUT", default_value = "2m",
          value_parser = parse_duration)]
    pub startup_timeout: Duration,

    /// Default mount path when a pod does not set secret-injector.io/mount-path.
    #[arg(long, env = "SECRET_INJECTOR_DEFAULT_MOUNT_PATH", default_value = shared::DEFAULT_MOUNT_PATH,
          value_parser = parse_mount_path)]
    pub default_mount_path: String,

    /// Default rotation interval (`0` fetches once).
    #[arg(
        long,
        env = "SECRET_INJECTOR_DEFAULT_ROTATION_INTERVAL",
        default_value = "2m"
    )]
    pub default_rotation_interval: Rotation,

    /// Default file permission, octal.
    #[arg(
        long,
        env = "SECRET_INJECTOR_DEFAULT_FILE_PERMISSION",
        default_value = "0644"
    )]
    pub default_file_permission: FileMode,

    /// Entra ID authority for Azure workload identity (sovereign clouds differ).
    #[arg(
        long,
        env = "SECRET_INJECTOR_AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub azure_authority_host: String,

    /// Tenant used when a pod does not set secret-injector.io/tenant-id.
    #[arg(long, env = "SECRET_INJECTOR_AZURE_TENANT_ID")]
    pub azure_tenant_id: Option<String>,

    /// EKS Pod Identity agent endpoint the sidecar asks for credentials
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) when a pod uses Pod Identity.
    #[arg(long, env = "SECRET_INJECTOR_AWS_POD_IDENTITY_ENDPOINT",
          default_value = crate::stores::aws::DEFAULT_POD_IDENTITY_ENDPOINT)]
    pub aws_pod_identity_endpoint: String,

    /// One endpoint for every AWS service the sidecar calls (STS, Secrets
    /// Manager, SSM), set as `AWS_ENDPOINT_URL`: a VPC endpoint or a test
    /// server. Unset: the SDK's regional endpoints.
    #[arg(long, env = "SECRET_INJECTOR_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// The Vault / OpenBao server pods use unless they name another within
    /// the allowlist (`https://vault.vault.svc:8200`; this one needs no
    /// allowlist entry). Set as `SECRET_INJECTOR_VAULT_DEFAULT_ADDRESS` in the
    /// injected containers: the server of every set that names none.
    #[arg(long, env = "SECRET_INJECTOR_VAULT_ADDRESS", value_parser = parse_vault_address)]
    pub vault_address: Option<String>,

    /// The mount path of the Vault auth method pods log in at (kubernetes
    /// or jwt), unless a pod or class names another.
    #[arg(long, env = "SECRET_INJECTOR_VAULT_AUTH_PATH",
          default_value = crate::stores::vault::DEFAULT_AUTH_PATH)]
    pub vault_auth_path: String,

    /// The audience of the token projected for Vault's login, unless a class
    /// names another (`audience`); the auth role's `audience` must match.
    #[arg(long, env = "SECRET_INJECTOR_VAULT_AUDIENCE",
          default_value = crate::stores::vault::DEFAULT_AUDIENCE)]
    pub vault_audience: String,

    /// The region of an AWS SecretProviderClass that names none
    /// (`parameters.region`), as the AWS provider takes its own
    /// `AWS_REGION`: usually the cluster's region.
    #[arg(long, env = "SECRET_INJECTOR_AWS_REGION", value_parser = parse_aws_region)]
    pub aws_region: Option<String>,

    /// Store hosts a pod or SecretProviderClass may name, comma-separated:
    /// host[:port] or *.suffix[:port] (port a number or *; none means 443).
    /// IP addresses, loopback, link-local and cluster-internal names must be
    /// listed by name. The sidecar checks the same list before it sends
    /// anything.
    #[arg(long, env = shared::store_hosts::ALLOWED_STORE_HOSTS_ENV,
          default_value = shared::store_hosts::DEFAULT_ALLOWED_STORE_HOSTS)]
    pub allowed_store_hosts: StoreHosts,

    /// The shortest rotation interval a pod may ask for (at least 5s).
    #[arg(long, env = "SECRET_INJECTOR_MIN_ROTATION_INTERVAL", default_value = "5s",
          value_parser = parse_duration)]
    pub min_rotation_interval: Duration,

    /// The longest rotation interval a pod may ask for (at most 720h).
    #[arg(long, env = "SECRET_INJECTOR_MAX_ROTATION_INTERVAL", default_value = "24h",
          value_parser = parse_duration)]
    pub max_rotation_interval: Duration,

    /// Whether pods and SecretProviderClasses may use the node's managed
    /// identity (useVMManagedIdentity, secret-injector.io/use-managed-identity).
    #[arg(long, env = "SECRET_INJECTOR_ALLOW_MANAGED_IDENTITY", default_value = "true",
          action = ArgAction::Set)]
    pub allow_managed_identity: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--min-rotation-interval {min} and --max-rotation-interval {max}: accepted: {floor} <= min <= max <= {ceiling}"
    )]
    RotationBounds {
        min: Rotation,
        max: Rotation,
        floor: Rotation,
        ceiling: Rotation,
    },
    #[error(
        "--default-rotation-interval {value} is outside --min-rotation-interval {min} and --max-rotation-interval {max}"
    )]
    DefaultRotation {
        value: Rotation,
        min: Rotation,
        max: Rotation,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match shared::parse_duration(s) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "{s:?} is not a duration: use 30s, 2m or 1m30s (more than 0)"
        )),
    }
}

fn parse_aws_region(s: &str) -> Result<String, String> {
    shared::check_aws_region(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// `https://host[:port]` (or `http://` for a test server), without a user,
/// password or path (L6): what the sidecar will accept too.
fn parse_vault_address(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    let as_https = match s.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => s.to_owned(),
    };
    shared::parse_vault_address(&as_https)
        .map(|_| s.trim_end_matches('/').to_owned())
        .map_err(|rule| {
            format!("{rule} (http:// for a local test server; no user, password or path)")
        })
}

fn parse_mount_path(s: &str) -> Result<String, String> {
    shared::annotations::check_mount_path(s).map_err(str::to_owned)
}

/// Parses `1.30`, `v1.30.2`, `1.29+` (GKE/EKS style) into (major, minor).
pub fn parse_kube_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    Some((digits(major.trim_start_matches('v'))?, digits(minor)?))
}

pub fn parse_kube_version_string(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    parse_kube_version(parts.next()?, parts.next()?)
}

pub fn supports_native_sidecars((major, minor): (u32, u32)) -> bool {
    major > 1 || (major == 1 && minor >= NATIVE_SIDECAR_MIN_MINOR)
}

/// The resolved configuration the mutation reads: plain data, no I/O.
#[derive(Debug, Clone)]
pub struct InjectorConfig {
    pub image: String,
    pub image_pull_policy: String,
    pub command: String,
    pub cpu_request: String,
    pub cpu_limit: Option<String>,
    pub memory_request: String,
    pub memory_limit: Option<String>,
    pub run_as_user: i64,
    pub run_as_group: i64,
    pub volume_size_limit: String,
    pub native_sidecars: bool,
    pub startup_timeout: Duration,
    pub defaults: Defaults,
    pub azure_authority_host: String,
    pub azure_tenant_id: Option<String>,
    pub aws_pod_identity_endpoint: String,
    pub aws_endpoint_url: Option<String>,
    pub vault_address: Option<String>,
    pub vault_auth_path: String,
    pub vault_audience: String,
}

impl InjectorArgs {
    /// Flags that only make sense together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let (min, max) = (self.min_rotation_interval, self.max_rotation_interval);
        if min < shared::MIN_ROTATION_INTERVAL || min > max || max > shared::MAX_ROTATION_INTERVAL {
            return Err(ConfigError::RotationBounds {
                min: Rotation::Every(min),
                max: Rotation::Every(max),
                floor: Rotation::Every(shared::MIN_ROTATION_INTERVAL),
                ceiling: Rotation::Every(shared::MAX_ROTATION_INTERVAL),
            });
        }
        let limits = self.limits();
        if limits
            .check_rotation(self.default_rotation_interval)
            .is_err()
        {
            return Err(ConfigError::DefaultRotation {
                value: self.default_rotation_interval,
                min: Rotation::Every(min),
                max: Rotation::Every(max),
            });
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            store_hosts: self.allowed_store_hosts.clone(),
            min_rotation: self.min_rotation_interval,
            max_rotation: self.max_rotation_interval,
            allow_managed_identity: self.allow_managed_identity,
        }
    }

    /// `native_sidecars` is decided by the caller (flag, version flag, or the apiserver).
    pub fn resolve(&self, native_sidecars: bool) -> InjectorConfig {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        InjectorConfig {
            image: self.sidecar_image.clone(),
            image_pull_policy: self.sidecar_image_pull_policy.clone(),
            command: self.sidecar_command.clone(),
            cpu_request: self.sidecar_cpu_request.clone(),
            cpu_limit: non_empty(&self.sidecar_cpu_limit),
            memory_request: self.sidecar_memory_request.clone(),
            memory_limit: non_empty(&self.sidecar_memory_limit),
            run_as_user: self.sidecar_run_as_user,
            run_as_group: self.sidecar_run_as_group,
            volume_size_limit: self.volume_size_limit.clone(),
            native_sidecars,
            startup_timeout: self.startup_timeout,
            defaults: Defaults {
                mount_path: self.default_mount_path.clone(),
                rotation: self.default_rotation_interval,
                file_permission: self.default_file_permission,
                limits: self.limits(),
                aws_region: self.aws_region.clone(),
            },
            azure_authority_host: self.azure_authority_host.clone(),
            azure_tenant_id: self.azure_tenant_id.clone(),
            aws_pod_identity_endpoint: self.aws_pod_identity_endpoint.clone(),
            aws_endpoint_url: self.aws_endpoint_url.clone().filter(|u| !u.is_empty()),
            vault_address: self.vault_address.clone().filter(|u| !u.is_empty()),
            vault_auth_path: self.vault_auth_path.clone(),
            vault_audience: self.vault_audience.clone(),
        }
    }

    /// The native-sidecar decision when it needs no apiserver: `None` means
    /// "auto without a known version", which the caller resolves.
    pub fn native_sidecars_without_discovery(&self) -> Option<bool> {
        match self.native_sidecar {
            NativeSidecarMode::Always => Some(true),
            NativeSidecarMode::Never => Some(false),
            NativeSidecarMode::Auto => self
                .kube_version
                .as_deref()
                .and_then(parse_kube_version_string)
                .map(supports_native_sidecars),
        }
    }
}

impl Default for InjectorConfig {
    fn default() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: InjectorArgs,
        }
        // Parsing no arguments yields the documented defaults, so they are
        // written once, on the flags (SECRET_INJECTOR_* env vars still apply).
        Wrapper::parse_from(["default"]).args.resolve(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_versions() {
        assert_eq!(parse_kube_version("1", "29+"), Some((1, 29)));
        assert_eq!(parse_kube_version_string("v1.30.2"), Some((1, 30)));
        assert_eq!(parse_kube_version_string("1.20"), Some((1, 20)));
        assert_eq!(parse_kube_version_string("banana"), None);
        assert!(supports_native_sidecars((1, 29)));
        assert!(!supports_native_sidecars((1, 28)));
        assert!(supports_native_sidecars((2, 0)));
    }

    // L6: the operator's Vault address is a server, never credentials or a path.
    #[test]
    fn l6_vault_addresses() {
        assert_eq!(
            parse_vault_address("https://vault.vault.svc:8200/").as_deref(),
            Ok("https://vault.vault.svc:8200")
        );
        assert!(parse_vault_address("http://127.0.0.1:8200").is_ok());
        for bad in [
            "https://user:pw@vault:8200",
            "https://vault:8200/v1/x",
            "vault:8200",
            "ftp://vault",
        ] {
            assert!(parse_vault_address(bad).is_err(), "{bad}");
        }
    }
}
