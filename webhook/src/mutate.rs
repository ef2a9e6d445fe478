//! The mutation: a pure function from a Pod, its spec and the operator's
//! configuration to a JSONPatch. No I/O.

use std::collections::BTreeMap;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation, jsonptr::PointerBuf};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
        ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, SeccompProfile,
        SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use serde_json::Value;
use shared::{
    AnnotationErrors, ClassRequest, Identities, InjectionSpec, ProviderClassError, Request,
    SPEC_ENV,
    annotations::{self, NO_SIDECAR_REASON, STATUS, STATUS_INJECTED},
    contract,
};

use crate::{classes::Context, config::InjectorConfig, stores};

pub const VOLUME_NAME: &str = "secret-injector-secrets";
/// The Secrets Store CSI driver whose volumes can be converted.
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
pub const INIT_CONTAINER_NAME: &str = "secret-injector-init";
pub const SIDECAR_CONTAINER_NAME: &str = "secret-injector";
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

// The stores' token paths, for callers that knew them here.
pub use crate::stores::azure::{
    TOKEN_AUDIENCE as AZURE_TOKEN_AUDIENCE, TOKEN_DIR as AZURE_TOKEN_DIR,
    TOKEN_FILE as AZURE_TOKEN_FILE, TOKEN_VOLUME_NAME as AZURE_TOKEN_VOLUME_NAME,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutationError {
    #[error(transparent)]
    Annotations(#[from] AnnotationErrors),
    #[error(
        "annotation {annotation} names container {missing:?}, which the pod does not have; its containers are: {available}",
        annotation = annotations::CONTAINERS
    )]
    UnknownContainer { missing: String, available: String },
    #[error(
        "SecretProviderClass {name:?} not found in namespace {namespace}; create it first (kubectl get secretproviderclass -n {namespace})"
    )]
    UnknownClass { namespace: String, name: String },
    #[error(transparent)]
    Class(#[from] ProviderClassError),
    #[error(
        "volume {0:?} uses the {CSI_DRIVER} driver without volumeAttributes.secretProviderClass"
    )]
    CsiWithoutClass(String),
    #[error(
        "the pod already has a volume named {0:?}, a name secret-injector needs for its own volume; rename yours"
    )]
    VolumeNameTaken(&'static str),
    #[error(
        "the pod already has a container named {0:?}, a name secret-injector needs for its own container; rename yours"
    )]
    ContainerNameTaken(&'static str),
    #[error(
        "container {container:?} mounts volume {volume:?}, which secret-injector adds and mounts itself; remove that volumeMount"
    )]
    VolumeMountTaken {
        container: String,
        volume: &'static str,
    },
    #[error("the pod reads {store} but names no identity: {how}")]
    NoIdentity { store: &'static str, how: String },
    #[error(
        "container {container:?} already mounts something at {mount_path}; set {annotation} to another path",
        annotation = annotations::MOUNT_PATH
    )]
    MountPathTaken {
        container: String,
        mount_path: String,
    },
}

/// What the webhook does with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave the pod as it is.
    Skip {
        reason: SkipReason,
        warnings: Vec<String>,
    },
    Inject(Mutation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NotOptedIn,
    AlreadyInjected,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    /// Shown by `kubectl` to whoever created the pod.
    pub warnings: Vec<String>,
    /// Why no rotating sidecar was added, if none was.
    pub no_sidecar_reason: Option<String>,
}

/// Reads the pod's annotations and decides, for annotation-form pods.
pub fn decide(pod: &Pod, config: &InjectorConfig) -> Result<Decision, MutationError> {
    decide_with(pod, config, &Context::default())
}

/// Reads the pod's annotations (and its SecretProviderClass or Secrets Store
/// CSI volume) and decides. A pod already injected (status annotation, or our
/// sidecar by name) is skipped, so reinvocation is a no-op.
pub fn decide_with(
    pod: &Pod,
    config: &InjectorConfig,
    ctx: &Context<'_>,
) -> Result<Decision, MutationError> {
    static NONE: BTreeMap<String, String> = BTreeMap::new();
    let pod_annotations = pod.metadata.annotations.as_ref().unwrap_or(&NONE);
    if is_injected(pod, pod_annotations) {
        return Ok(Decision::Skip {
            reason: SkipReason::AlreadyInjected,
            warnings: vec![],
        });
    }
    let csi = csi_volume(pod)?;
    let by_label = opted_in_by_label(pod);
    let by_annotation_only =
        !by_label && pod_annotations.get(annotations::INJECT).map(String::as_str) == Some("true");
    let decision = match annotations::parse_opted_in(pod_annotations, &config.defaults, by_label)? {
        Request::OptedIn(mut spec) => {
            complete_identities(&mut spec, pod, ctx)?;
            mutate(pod, &spec, config).map(Decision::Inject)
        }
        Request::FromClass(request) => {
            // The pod's own CSI volume for this class becomes our volume.
            let plan = match csi {
                Some((index, name, class)) if class == request.class => {
                    VolumePlan::ReplaceCsi { index, name }
                }
                _ => VolumePlan::Add,
            };
            from_class(pod, config, ctx, &request, plan).map(Decision::Inject)
        }
        Request::NotOptedIn { warnings } => match csi {
            Some((index, name, class)) if ctx.csi_compat => {
                let request = ClassRequest {
                    class: class.to_owned(),
                    defaults: config.defaults.clone(),
                    containers: None,
                    identities: Identities::default(),
                };
                let plan = VolumePlan::ReplaceCsi { index, name };
                from_class(pod, config, ctx, &request, plan).map(Decision::Inject)
            }
            _ => Ok(Decision::Skip {
                reason: SkipReason::NotOptedIn,
                warnings,
            }),
        },
    };
    match decision {
        Ok(Decision::Inject(mut mutation)) if by_annotation_only => {
            mutation.warnings.push(format!(
                "secret-injector: this pod opts in with the annotation {INJECT}, whose webhook is failurePolicy Ignore: while the webhook is unavailable such a pod starts without its files. Label the pod {INJECT}: \"true\" instead (its webhook refuses the pod rather than start it without them)",
                INJECT = annotations::INJECT
            ));
            Ok(Decision::Inject(mutation))
        }
        other => other,
    }
}

/// The opt-in label `secret-injector.io/inject: "true"`, which the webhook
/// configuration's objectSelector matches (failurePolicy Fail).
pub fn opted_in_by_label(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(annotations::INJECT))
        .is_some_and(|v| v == "true")
}

/// The pod's Secrets Store CSI volume: (index, volume name, class name).
fn csi_volume(pod: &Pod) -> Result<Option<(usize, &str, &str)>, MutationError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for (index, volume) in volumes.iter().enumerate() {
        let Some(csi) = &volume.csi else { continue };
        if csi.driver != CSI_DRIVER {
            continue;
        }
        let class = csi
            .volume_attributes
            .as_ref()
            .and_then(|a| a.get("secretProviderClass"))
            .ok_or_else(|| MutationError::CsiWithoutClass(volume.name.clone()))?;
        return Ok(Some((index, volume.name.as_str(), class.as_str())));
    }
    Ok(None)
}

fn from_class(
    pod: &Pod,
    config: &InjectorConfig,
    ctx: &Context<'_>,
    request: &ClassRequest,
    plan: VolumePlan<'_>,
) -> Result<Mutation, MutationError> {
    // The request's namespace (the apiserver's), never the object's.
    let namespace = ctx.namespace;
    // Read once per watch event (or document); the pod's options apply here.
    let class = ctx
        .classes
        .parsed(namespace, &request.class)
        .ok_or_else(|| MutationError::UnknownClass {
            namespace: namespace.to_owned(),
            name: request.class.clone(),
        })?;
    let (mut spec, class_warnings) = match class.as_ref() {
        Ok(class) => class.spec(&request.defaults)?,
        Err(e) => return Err(e.clone().into()),
    };
    spec.containers = request.containers.clone();
    spec.identities.overlay(&request.identities);
    complete_identities(&mut spec, pod, ctx)?;
    let mut mutation = mutate_with(pod, &spec, config, plan)?;
    mutation.warnings.extend(
        class_warnings
            .into_iter()
            .map(|w| format!("secret-injector: {w}")),
    );
    Ok(mutation)
}

/// Each store's identity: what the pod and its class did not name comes from
/// its ServiceAccount's annotations (`stores`); too little is refused.
fn complete_identities(
    spec: &mut InjectionSpec,
    pod: &Pod,
    ctx: &Context<'_>,
) -> Result<(), MutationError> {
    let account = service_account_name(pod);
    // The request's namespace (the apiserver's), never the object's.
    let namespace = ctx.namespace;
    stores::complete_identities(spec, account, || ctx.accounts.identity(namespace, account))
}

fn service_account_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| {
            s.service_account_name
                .as_deref()
                .or(s.service_account.as_deref())
        })
        .filter(|a| !a.is_empty())
        .unwrap_or("default")
}

fn pod_annotations_contain(pod: &Pod, key: &str) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

fn is_injected(pod: &Pod, pod_annotations: &BTreeMap<String, String>) -> bool {
    if pod_annotations.get(STATUS).map(String::as_str) == Some(STATUS_INJECTED) {
        return true;
    }
    let spec = pod.spec.as_ref();
    let named_ours = |c: &Container| c.name == SIDECAR_CONTAINER_NAME;
    spec.is_some_and(|s| {
        s.containers.iter().any(named_ours) || s.init_containers.iter().flatten().any(named_ours)
    })
}

/// Where the files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumePlan<'a> {
    /// Our own volume, mounted read-only into the target containers.
    Add,
    /// The pod's Secrets Store CSI volume at `index`, replaced by our memory
    /// volume under the same name: the app's existing mounts keep working.
    ReplaceCsi { index: usize, name: &'a str },
}

/// The patch for one pod and its spec, with our own volume.
pub fn mutate(
    pod: &Pod,
    spec: &InjectionSpec,
    config: &InjectorConfig,
) -> Result<Mutation, MutationError> {
    mutate_with(pod, spec, config, VolumePlan::Add)
}

pub fn mutate_with(
    pod: &Pod,
    spec: &InjectionSpec,
    config: &InjectorConfig,
    plan: VolumePlan<'_>,
) -> Result<Mutation, MutationError> {
    let default_spec = PodSpec::default();
    let pod_spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let init_containers: &[Container] = pod_spec.init_containers.as_deref().unwrap_or_default();
    let volumes: &[Volume] = pod_spec.volumes.as_deref().unwrap_or_default();
    let wiring = stores::wiring(spec, config);

    let adding = plan == VolumePlan::Add;
    let volume_name = match plan {
        VolumePlan::Add => VOLUME_NAME,
        VolumePlan::ReplaceCsi { name, .. } => name,
    };
    check_names(volumes, &pod_spec.containers, init_containers, adding)?;
    // With a converted CSI volume the app already mounts it where it wants.
    let targets = if adding {
        targets(spec, &pod_spec.containers, init_containers)?
    } else {
        Vec::new()
    };
    for (_, container) in &targets {
        if container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == spec.mount_path)
        {
            return Err(MutationError::MountPathTaken {
                container: container.name.clone(),
                mount_path: spec.mount_path.clone(),
            });
        }
    }

    let no_sidecar_reason = no_sidecar_reason(pod, spec, config);
    let mut ops = Ops::default();

    // Volumes.
    let mut new_volumes = Vec::new();
    match plan {
        VolumePlan::Add => new_volumes.push(secrets_volume(config, VOLUME_NAME)),
        VolumePlan::ReplaceCsi { index, name } => {
            ops.replace(
                &["spec", "volumes", &index.to_string()],
                to_value(&secrets_volume(config, name)),
            );
        }
    }
    new_volumes.extend(wiring.volumes.iter().cloned());
    if !new_volumes.is_empty() {
        ops.append_all(
            &["spec", "volumes"],
            pod_spec.volumes.is_some(),
            new_volumes.iter().map(to_value),
        );
    }

    // M4: a CSI volume is read-only for the app at the volume level; its
    // memory replacement is writable unless every app mount says otherwise.
    if let VolumePlan::ReplaceCsi { name, .. } = plan {
        for (list, containers) in [
            ("containers", pod_spec.containers.as_slice()),
            ("initContainers", init_containers),
        ] {
            for (i, container) in containers.iter().enumerate() {
                for (j, m) in container.volume_mounts.iter().flatten().enumerate() {
                    if m.name == name && m.read_only != Some(true) {
                        ops.add(
                            &[
                                "spec",
                                list,
                                &i.to_string(),
                                "volumeMounts",
                                &j.to_string(),
                                "readOnly",
                            ],
                            Value::Bool(true),
                        );
                    }
                }
            }
        }
    }

    // Read-only mounts in the targets, before our init container shifts the
    // init containers' indexes.
    let mount = VolumeMount {
        name: VOLUME_NAME.to_owned(),
        mount_path: spec.mount_path.clone(),
        read_only: Some(true),
        ..Default::default()
    };
    for (location, container) in &targets {
        let (list, index) = match location {
            Location::App(i) => ("containers", *i),
            Location::Init(i) => ("initContainers", *i),
        };
        let index = index.to_string();
        ops.append_all(
            &["spec", list, &index, "volumeMounts"],
            container.volume_mounts.is_some(),
            [to_value(&mount)],
        );
    }

    // Our containers: one native sidecar, or an init container plus (when the
    // pod may run forever and rotation is on) a classic sidecar.
    let api_access = service_account_mount(pod_spec);
    let injected = Injected {
        spec,
        config,
        env: env(spec, config, &wiring),
        wiring: &wiring,
        volume: volume_name,
        api_access: api_access.clone(),
    };
    let first_init = if config.native_sidecars && spec.rotation.interval().is_some() {
        injected.native_sidecar()
    } else {
        injected.init_container()
    };
    let first_init = to_value(&first_init);
    // The classic sidecar is the init container under another name and
    // args: its JSON is the init container's with those two replaced, not
    // a second container built and serialised.
    let sidecar = (!config.native_sidecars && no_sidecar_reason.is_none()).then(|| {
        let mut sidecar = first_init.clone();
        if let Some(map) = sidecar.as_object_mut() {
            map.insert("name".to_owned(), SIDECAR_CONTAINER_NAME.into());
            map.insert("args".to_owned(), contract::args::RUN.into());
        }
        sidecar
    });
    if init_containers.is_empty() {
        ops.add(&["spec", "initContainers"], Value::Array(vec![first_init]));
    } else {
        ops.add(&["spec", "initContainers", "0"], first_init);
    }
    if let Some(sidecar) = sidecar {
        ops.add(&["spec", "containers", "-"], sidecar);
    }

    // A projected ServiceAccount token needs `serviceAccountName`, which the
    // ServiceAccount admission plugin sets to "default" before us; where that
    // plugin is off, set what it would have.
    if wiring.projects_tokens()
        && pod_spec
            .service_account_name
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    {
        let account = pod_spec
            .service_account
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        ops.add(&["spec", "serviceAccountName"], Value::String(account));
    }

    // Annotations: `metadata.annotations` exists, since the pod opted in with one.
    let mut new_annotations = vec![(STATUS, STATUS_INJECTED.to_owned())];
    // `kubectl logs` and `exec` keep going to the app, not to our sidecar.
    if let Some(first) = pod_spec.containers.first()
        && !pod_annotations_contain(pod, DEFAULT_CONTAINER_ANNOTATION)
    {
        new_annotations.push((DEFAULT_CONTAINER_ANNOTATION, first.name.clone()));
    }
    if let Some(reason) = &no_sidecar_reason {
        new_annotations.push((NO_SIDECAR_REASON, reason.clone()));
    }
    let has_annotations = pod.metadata.annotations.is_some();
    if has_annotations {
        for (key, value) in new_annotations {
            ops.add(&["metadata", "annotations", key], Value::String(value));
        }
    } else {
        let map = new_annotations
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        ops.add(&["metadata", "annotations"], Value::Object(map));
    }

    let mut warnings: Vec<String> = no_sidecar_reason
        .iter()
        .filter(|_| spec.rotation.interval().is_some())
        .map(|reason| format!("secret-injector: {reason}"))
        .collect();
    if api_access.is_none() && !spec.sync_targets.is_empty() {
        warnings.push(format!(
            "secret-injector: no container of this pod mounts its ServiceAccount token at {SERVICE_ACCOUNT_DIR} (automountServiceAccountToken: false?), so the Secrets of secretObjects ({}) cannot be synced",
            spec.sync_targets
                .iter()
                .map(|t| t.secret_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Mutation {
        patch: Patch(ops.0),
        warnings,
        no_sidecar_reason,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    App(usize),
    Init(usize),
}

/// The containers that get the mount: those named by the spec (app or init),
/// or every app container.
fn targets<'a>(
    spec: &InjectionSpec,
    containers: &'a [Container],
    init_containers: &'a [Container],
) -> Result<Vec<(Location, &'a Container)>, MutationError> {
    let Some(names) = &spec.containers else {
        return Ok(containers
            .iter()
            .enumerate()
            .map(|(i, c)| (Location::App(i), c))
            .collect());
    };
    names
        .iter()
        .map(|name| {
            let app = containers
                .iter()
                .position(|c| &c.name == name)
                .map(|i| (Location::App(i), &containers[i]));
            let init = || {
                init_containers
                    .iter()
                    .position(|c| &c.name == name)
                    .map(|i| (Location::Init(i), &init_containers[i]))
            };
            app.or_else(init)
                .ok_or_else(|| MutationError::UnknownContainer {
                    missing: name.clone(),
                    available: containers
                        .iter()
                        .chain(init_containers)
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

fn check_names(
    volumes: &[Volume],
    containers: &[Container],
    init_containers: &[Container],
    adding_volume: bool,
) -> Result<(), MutationError> {
    let mut ours = Vec::new();
    if adding_volume {
        ours.push(VOLUME_NAME);
    }
    // Every store's, whether this pod uses it or not: simpler to explain.
    ours.extend(stores::VOLUME_NAMES);
    for name in &ours {
        if volumes.iter().any(|v| v.name == *name) {
            return Err(MutationError::VolumeNameTaken(name));
        }
    }
    // M4, L4: a mount declared before the volume exists would become valid
    // (and writable) once we add it.
    for container in containers.iter().chain(init_containers) {
        let mounts = container.volume_mounts.iter().flatten();
        if let Some(volume) = mounts
            .filter_map(|m| ours.iter().find(|o| **o == m.name))
            .next()
        {
            return Err(MutationError::VolumeMountTaken {
                container: container.name.clone(),
                volume,
            });
        }
    }
    if containers
        .iter()
        .chain(init_containers)
        .any(|c| c.name == INIT_CONTAINER_NAME)
    {
        return Err(MutationError::ContainerNameTaken(INIT_CONTAINER_NAME));
    }
    Ok(())
}

/// Pods that must run to completion cannot carry a classic sidecar: it would
/// keep them running forever. They get the init container only.
fn no_sidecar_reason(pod: &Pod, spec: &InjectionSpec, config: &InjectorConfig) -> Option<String> {
    if spec.rotation.interval().is_none() {
        return Some(format!(
            "{} is 0: secrets are fetched once, at start, and not rotated",
            annotations::ROTATION_INTERVAL
        ));
    }
    if config.native_sidecars {
        return None;
    }
    let job_owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Job");
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
    let why = match (job_owner, restart_policy) {
        (Some(owner), _) => format!("the pod belongs to Job {:?}", owner.name),
        (None, Some(policy @ ("Never" | "OnFailure"))) => {
            format!("the pod has restartPolicy {policy}")
        }
        _ => return None,
    };
    Some(format!(
        "{why} and must run to completion, which a sidecar would prevent on a cluster without native sidecars; secrets are fetched once, at start, and not rotated"
    ))
}

/// Where kubelet mounts a pod's ServiceAccount token (kube clients look there).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount token mount the ServiceAccount admission plugin gave the
/// app's containers, which ran before us; ours get the same, read-only. None
/// when the pod opted out of the token (`automountServiceAccountToken: false`).
fn service_account_mount(pod_spec: &PodSpec) -> Option<VolumeMount> {
    pod_spec
        .containers
        .iter()
        .chain(pod_spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_DIR)
        .map(|m| VolumeMount {
            name: m.name.clone(),
            mount_path: SERVICE_ACCOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        })
}

fn secrets_volume(config: &InjectorConfig, name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: Some(Quantity(config.volume_size_limit.clone())),
        }),
        ..Default::default()
    }
}

fn env(spec: &InjectionSpec, config: &InjectorConfig, wiring: &stores::Wiring) -> Vec<EnvVar> {
    let plain = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..Default::default()
    };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![
        plain(SPEC_ENV, spec.to_env_value()),
        field(contract::env::POD_NAME, "metadata.name"),
        field(contract::env::POD_NAMESPACE, "metadata.namespace"),
        field(contract::env::POD_UID, "metadata.uid"),
        field(
            contract::env::POD_SERVICE_ACCOUNT,
            "spec.serviceAccountName",
        ),
        // The sidecar checks every store host again before it sends anything.
        plain(
            contract::env::ALLOWED_STORE_HOSTS,
            config.defaults.limits.store_hosts.to_string(),
        ),
    ];
    env.extend(wiring.env.iter().cloned());
    env
}

/// What every injected container shares: the spec, the operator's settings,
/// the env, and the volume the files go into.
struct Injected<'a> {
    spec: &'a InjectionSpec,
    config: &'a InjectorConfig,
    env: Vec<EnvVar>,
    /// What the spec's stores add (token mounts).
    wiring: &'a stores::Wiring,
    /// Ours, or the converted CSI volume's own name.
    volume: &'a str,
    /// The app's ServiceAccount token mount, for the Kubernetes API (Secret
    /// sync, SecretProviderClassPodStatus, Events).
    api_access: Option<VolumeMount>,
}

impl Injected<'_> {
    fn init_container(&self) -> Container {
        self.container(INIT_CONTAINER_NAME, contract::args::FETCH_ONCE)
    }

    fn sidecar(&self) -> Container {
        self.container(SIDECAR_CONTAINER_NAME, contract::args::RUN)
    }

    /// An init container with `restartPolicy: Always`: kubelet holds the next
    /// containers until its startup probe passes (the first complete write), keeps
    /// it running beside them, and stops it when they finish, so Jobs complete.
    fn native_sidecar(&self) -> Container {
        let config = self.config;
        let mut container = self.sidecar();
        container.restart_policy = Some("Always".to_owned());
        let mut probe_command = vec![config.command.clone()];
        probe_command.extend(contract::args::PROBE.iter().map(|a| (*a).to_owned()));
        let period = 1;
        container.startup_probe = Some(Probe {
            exec: Some(ExecAction {
                command: Some(probe_command),
            }),
            period_seconds: Some(period),
            failure_threshold: Some(
                i32::try_from(config.startup_timeout.as_secs())
                    .unwrap_or(i32::MAX)
                    .max(1),
            ),
            timeout_seconds: Some(1),
            ..Default::default()
        });
        container
    }

    fn container(&self, name: &str, args: &[&str]) -> Container {
        let (spec, config) = (self.spec, self.config);
        let env = self.env.clone();
        let mut mounts = vec![VolumeMount {
            name: self.volume.to_owned(),
            mount_path: spec.mount_path.clone(),
            ..Default::default()
        }];
        mounts.extend(self.wiring.mounts.iter().cloned());
        if let Some(api) = &self.api_access {
            mounts.push(api.clone());
        }
        let quantities = |pairs: [(&str, Option<&String>); 2]| {
            let map: BTreeMap<String, Quantity> = pairs
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), Quantity(v.clone()))))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        Container {
            name: name.to_owned(),
            image: Some(config.image.clone()),
            image_pull_policy: Some(config.image_pull_policy.clone()),
            command: Some(vec![config.command.clone()]),
            args: Some(args.iter().map(|a| (*a).to_owned()).collect()),
            env: Some(env),
            volume_mounts: Some(mounts),
            resources: Some(ResourceRequirements {
                requests: quantities([
                    ("cpu", Some(&config.cpu_request)),
                    ("memory", Some(&config.memory_request)),
                ]),
                limits: quantities([
                    ("cpu", config.cpu_limit.as_ref()),
                    ("memory", config.memory_limit.as_ref()),
                ]),
                ..Default::default()
            }),
            security_context: Some(restricted_security_context(config)),
            termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
            ..Default::default()
        }
    }
}

/// Passes the Pod Security Standard "restricted" profile.
fn restricted_security_context(config: &InjectorConfig) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(config.run_as_user),
        run_as_group: Some(config.run_as_group),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    // k8s-openapi types serialise to JSON infallibly.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[derive(Default)]
struct Ops(Vec<PatchOperation>);

impl Ops {
    fn replace(&mut self, tokens: &[&str], value: Value) {
        self.0.push(PatchOperation::Replace(ReplaceOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        }));
    }

    fn add(&mut self, tokens: &[&str], value: Value) {
        self.0.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        }));
    }

    /// Appends items to an array, creating it first when the pod has none.
    fn append_all(
        &mut self,
        tokens: &[&str],
        exists: bool,
        items: impl IntoIterator<Item = Value>,
    ) {
        if exists {
            let mut path = tokens.to_vec();
            path.push("-");
            for item in items {
                self.add(&path, item);
            }
        } else {
            self.add(tokens, Value::Array(items.into_iter().collect()));
        }
    }
}
