//! The model both binaries speak: what a pod asked for (`InjectionSpec`), how
//! it is read from annotations, how it is validated, and which file names are
//! safe. No I/O, no runtime, no cloud SDK.

pub mod annotations;
pub mod contract;
mod file_name;
mod identity;
mod json_path;
pub mod provider_class;
mod reference;
mod rotation;
mod spec;
pub mod store_hosts;

pub use annotations::{AnnotationError, AnnotationErrors, ClassRequest, Defaults, Limits, Request};
pub use contract::{SPEC_ENV, SPEC_VERSION};
pub use file_name::{FileName, FileNameError, MAX_FILE_NAME_BYTES};
pub use identity::{
    AwsIdentity, AzureIdentity, GcpIdentity, Identities, VaultIdentity, is_gcp_service_account,
    is_role_arn, is_vault_name, parse_vault_address, parse_workload_identity_provider,
};
pub use json_path::{JsonPath, JsonPathError, Step as JsonPathStep};
pub use provider_class::{AzureCloud, ProviderClassError, spec_from_provider_class};
pub use reference::{
    ACCEPTED_FORMS, AwsRef, AwsService, AzureObjectKind, AzureRef, GcpRef, ReferenceError,
    SecretRef, Store, VaultAddress, VaultRef, VaultWrite, WriteMethod,
    check_region as check_aws_region, is_arg_name, is_arg_value,
};
pub use rotation::{
    MAX_ROTATION_INTERVAL, MIN_ROTATION_INTERVAL, Rotation, RotationError, parse_duration,
};
pub use spec::{
    ALLOWED_SECRET_TYPES, DEFAULT_MOUNT_PATH, FileMode, FileModeError, Injection, InjectionSpec,
    MAX_SETS, ObjectEncoding, ObjectFormat, ProviderSecret, SecretObject, SpecError, SyncTarget,
};
pub use store_hosts::{HostRefused, StoreHosts, StoreHostsError, is_dns_name};
