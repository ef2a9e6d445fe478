//! The mutation: a pure function from a Pod, its spec and the operator's
//! configuration to a JSONPatch. No I/O.

use std::collections::BTreeMap;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation, jsonptr::PointerBuf};
use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
        ObjectFieldSelector, Pod, PodSpec, Probe, ResourceRequirements, SeccompProfile,
        SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use serde_json::Value;
use shared::{
    AnnotationErrors, ClassRequest, Identities, Injection, InjectionSpec, ProviderClassError,
    ProviderSecret, Request, SPEC_ENV, SpecError,
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
    #[error(transparent)]
    Sets(#[from] SpecError),
    #[error(
        "the pod's volumes name different {store} identities ({first} and {second}); a pod has one {store} identity, so give its classes the same one"
    )]
    IdentitiesDiffer {
        store: &'static str,
        first: String,
        second: String,
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
    let csi = csi_volumes(pod)?;
    let by_label = opted_in_by_label(pod);
    let by_annotation_only =
        !by_label && pod_annotations.get(annotations::INJECT).map(String::as_str) == Some("true");
    let mut sets = Vec::new();
    let mut warnings = Vec::new();
    // The CSI volumes an annotation set has not taken: with csi-compat every
    // one is converted (a volume no driver serves would hold the pod in
    // ContainerCreating); without it they are the CSI driver's.
    let mut unconverted: Vec<&CsiVolume<'_>> = csi.iter().collect();
    match annotations::parse_opted_in(pod_annotations, &config.defaults, by_label)? {
        Request::OptedIn(mut spec) => {
            complete_identities(&mut spec, pod, ctx)?;
            sets.push(Set {
                spec,
                plan: VolumePlan::Add,
            });
        }
        Request::FromClass(request) => {
            // The pod's own CSI volume for this class becomes our volume.
            let volume = unconverted
                .iter()
                .position(|v| v.class == request.class)
                .map(|i| unconverted.remove(i));
            sets.push(from_class(
                pod,
                ctx,
                &request,
                volume,
                sets.len(),
                &mut warnings,
            )?);
        }
        Request::NotOptedIn { warnings } => {
            if !ctx.csi_compat || csi.is_empty() {
                return Ok(Decision::Skip {
                    reason: SkipReason::NotOptedIn,
                    warnings,
                });
            }
        }
    }
    if ctx.csi_compat {
        for volume in unconverted {
            let request = ClassRequest {
                class: volume.class.to_owned(),
                defaults: config.defaults.clone(),
                containers: None,
                identities: Identities::default(),
            };
            sets.push(from_class(
                pod,
                ctx,
                &request,
                Some(volume),
                sets.len(),
                &mut warnings,
            )?);
        }
    }
    let mut mutation = mutate_sets(pod, sets, config)?;
    mutation.warnings.extend(warnings);
    if by_annotation_only {
        mutation.warnings.push(format!(
            "secret-injector: this pod opts in with the annotation {INJECT}, whose webhook is failurePolicy Ignore: while the webhook is unavailable such a pod starts without its files. Label the pod {INJECT}: \"true\" instead (its webhook refuses the pod rather than start it without them)",
            INJECT = annotations::INJECT
        ));
    }
    Ok(Decision::Inject(mutation))
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

/// One of the pod's Secrets Store CSI volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsiVolume<'a> {
    /// Its index in `spec.volumes`.
    pub index: usize,
    pub name: &'a str,
    /// `volumeAttributes.secretProviderClass`.
    pub class: &'a str,
    /// `nodePublishSecretRef.name`: credentials for the class's provider.
    pub provider_secret: Option<&'a str>,
}

/// The pod's Secrets Store CSI volumes, in the pod's order.
pub fn csi_volumes(pod: &Pod) -> Result<Vec<CsiVolume<'_>>, MutationError> {
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    let mut found = Vec::new();
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
        found.push(CsiVolume {
            index,
            name: volume.name.as_str(),
            class: class.as_str(),
            provider_secret: csi
                .node_publish_secret_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .filter(|n| !n.is_empty()),
        });
    }
    Ok(found)
}

/// Where the injected containers find set `index`'s converted CSI volume and
/// its `nodePublishSecretRef` Secret: outside any path an app mounts, one
/// directory per set so no set's volume holds another's mount point.
pub const SETS_DIR: &str = "/var/run/secret-injector/volumes";
pub const PROVIDER_SECRETS_DIR: &str = "/var/run/secrets/secret-injector/provider";
/// The pod volume that carries set `index`'s `nodePublishSecretRef` Secret.
pub const PROVIDER_SECRET_VOLUME_PREFIX: &str = "secret-injector-provider-secret-";

/// One set of files: a spec, and the volume it is written into.
#[derive(Debug, Clone, PartialEq)]
pub struct Set<'a> {
    pub spec: InjectionSpec,
    pub plan: VolumePlan<'a>,
}

fn from_class<'a>(
    pod: &Pod,
    ctx: &Context<'_>,
    request: &ClassRequest,
    volume: Option<&CsiVolume<'a>>,
    set_index: usize,
    warnings: &mut Vec<String>,
) -> Result<Set<'a>, MutationError> {
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
    let plan = match volume {
        Some(volume) => {
            // The app mounts the volume where it reads it; ours write it here.
            spec.mount_path = format!("{SETS_DIR}/{}", volume.name);
            if let Some(secret) = volume.provider_secret {
                if stores::reads_provider_secret(&spec) {
                    spec.provider_secret = Some(ProviderSecret {
                        secret_name: secret.to_owned(),
                        dir: format!("{PROVIDER_SECRETS_DIR}/{set_index}"),
                    });
                } else {
                    warnings.push(format!(
                        "secret-injector: volume {:?} names nodePublishSecretRef {secret:?}, which the provider of SecretProviderClass {:?} does not read; it is ignored",
                        volume.name, request.class
                    ));
                }
            }
            VolumePlan::ReplaceCsi {
                index: volume.index,
                name: volume.name,
            }
        }
        None => VolumePlan::Add,
    };
    complete_identities(&mut spec, pod, ctx)?;
    warnings.extend(
        class_warnings
            .into_iter()
            .map(|w| format!("secret-injector: {w}")),
    );
    Ok(Set { spec, plan })
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
    let set = Set {
        spec: spec.clone(),
        plan: VolumePlan::Add,
    };
    mutate_sets(pod, vec![set], config)
}

/// The patch for one pod and every set it gets: one init container (and
/// sidecar) writes them all, each into its own volume.
pub fn mutate_sets(
    pod: &Pod,
    sets: Vec<Set<'_>>,
    config: &InjectorConfig,
) -> Result<Mutation, MutationError> {
    let default_spec = PodSpec::default();
    let pod_spec = pod.spec.as_ref().unwrap_or(&default_spec);
    let init_containers: &[Container] = pod_spec.init_containers.as_deref().unwrap_or_default();
    let volumes: &[Volume] = pod_spec.volumes.as_deref().unwrap_or_default();
    let plans: Vec<VolumePlan<'_>> = sets.iter().map(|s| s.plan).collect();
    let injection = Injection::new(sets.into_iter().map(|s| s.spec).collect())?;
    let specs = injection.sets();
    let wiring = stores::wiring(specs, config)?;

    check_names(volumes, &pod_spec.containers, init_containers, &plans)?;
    // The annotation set's own volume goes to its targets; a converted CSI
    // volume is already mounted where the app wants it.
    let added = plans.iter().position(|p| *p == VolumePlan::Add);
    let targets = match added {
        Some(i) => targets(&specs[i], &pod_spec.containers, init_containers)?,
        None => Vec::new(),
    };
    if let Some(i) = added {
        let mount_path = &specs[i].mount_path;
        for (_, container) in &targets {
            if container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path.trim_end_matches('/') == mount_path)
            {
                return Err(MutationError::MountPathTaken {
                    container: container.name.clone(),
                    mount_path: mount_path.clone(),
                });
            }
        }
    }

    let rotates = specs.iter().any(|s| s.rotation.interval().is_some());
    let no_sidecar_reason = no_sidecar_reason(pod, rotates, config);
    let mut ops = Ops::default();

    // Volumes, and where our containers mount each.
    let mut new_volumes = Vec::new();
    let mut our_mounts = Vec::new();
    for (spec, plan) in specs.iter().zip(&plans) {
        let name = match *plan {
            VolumePlan::Add => {
                new_volumes.push(secrets_volume(config, VOLUME_NAME));
                VOLUME_NAME
            }
            VolumePlan::ReplaceCsi { index, name } => {
                ops.replace(
                    &["spec", "volumes", &index.to_string()],
                    to_value(&secrets_volume(config, name)),
                );
                name
            }
        };
        our_mounts.push(VolumeMount {
            name: name.to_owned(),
            mount_path: spec.mount_path.clone(),
            ..Default::default()
        });
    }
    for (i, spec) in specs.iter().enumerate() {
        if let Some(secret) = &spec.provider_secret {
            // Only our containers mount it: the app never sees the credentials.
            let name = format!("{PROVIDER_SECRET_VOLUME_PREFIX}{i}");
            new_volumes.push(Volume {
                name: name.clone(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.secret_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
            our_mounts.push(stores::read_only_mount(&name, &secret.dir));
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
    for plan in &plans {
        let VolumePlan::ReplaceCsi { name, .. } = *plan else {
            continue;
        };
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
    if let Some(i) = added {
        let mount = VolumeMount {
            name: VOLUME_NAME.to_owned(),
            mount_path: specs[i].mount_path.clone(),
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
    }

    // Our containers: one native sidecar, or an init container plus (when the
    // pod may run forever and rotation is on) a classic sidecar.
    let api_access = service_account_mount(pod_spec);
    let injected = Injected {
        config,
        env: env(&injection, config, &wiring),
        wiring: &wiring,
        mounts: our_mounts,
        api_access: api_access.clone(),
    };
    let first_init = if config.native_sidecars && rotates {
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
        .filter(|_| rotates)
        .map(|reason| format!("secret-injector: {reason}"))
        .collect();
    let synced: Vec<&str> = specs
        .iter()
        .flat_map(|s| &s.sync_targets)
        .map(|t| t.secret_name.as_str())
        .collect();
    if api_access.is_none() && !synced.is_empty() {
        warnings.push(format!(
            "secret-injector: no container of this pod mounts its ServiceAccount token at {SERVICE_ACCOUNT_DIR} (automountServiceAccountToken: false?), so the Secrets of secretObjects ({}) cannot be synced",
            synced.join(", ")
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
    plans: &[VolumePlan<'_>],
) -> Result<(), MutationError> {
    let mut ours = Vec::new();
    if plans.contains(&VolumePlan::Add) {
        ours.push(VOLUME_NAME);
    }
    // Every store's, whether this pod uses it or not: simpler to explain.
    ours.extend(stores::VOLUME_NAMES);
    for name in &ours {
        if volumes.iter().any(|v| v.name == *name) {
            return Err(MutationError::VolumeNameTaken(name));
        }
    }
    let reserved = |name: &str| name.starts_with(PROVIDER_SECRET_VOLUME_PREFIX);
    if volumes.iter().any(|v| reserved(&v.name)) {
        return Err(MutationError::VolumeNameTaken(
            PROVIDER_SECRET_VOLUME_PREFIX,
        ));
    }
    // M4, L4: a mount declared before the volume exists would become valid
    // (and writable) once we add it.
    for container in containers.iter().chain(init_containers) {
        let mut mounts = container.volume_mounts.iter().flatten();
        if let Some(volume) = mounts.find_map(|m| {
            ours.iter()
                .find(|o| **o == m.name)
                .copied()
                .or_else(|| reserved(&m.name).then_some(PROVIDER_SECRET_VOLUME_PREFIX))
        }) {
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
fn no_sidecar_reason(pod: &Pod, rotates: bool, config: &InjectorConfig) -> Option<String> {
    if !rotates {
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

fn env(injection: &Injection, config: &InjectorConfig, wiring: &stores::Wiring) -> Vec<EnvVar> {
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
        plain(SPEC_ENV, injection.to_env_value()),
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
    config: &'a InjectorConfig,
    env: Vec<EnvVar>,
    /// What the spec's stores add (token mounts).
    wiring: &'a stores::Wiring,
    /// Each set's volume (ours, or the converted CSI volume under its own
    /// name) and its provider Secret, where the sets' specs say.
    mounts: Vec<VolumeMount>,
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
        let config = self.config;
        let env = self.env.clone();
        let mut mounts = self.mounts.clone();
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
