//! Sends what `cluster` decides to the Kubernetes API with the pod's own
//! ServiceAccount: server-side applies of the synced Secrets and the
//! SecretProviderClassPodStatus (one field manager per pod), and Events.
//! Applies only what changed since the last successful one.
//!
//! A synced Secret is never taken over (H2): before its first apply it is
//! read, and `cluster::may_write` decides. An absent one is created (a plain
//! apply, not forced: it conflicts rather than overwrite keys of a Secret
//! made in the instant between the read and the apply); one this class made
//! is updated with the read `resourceVersion` as a precondition (a 409 means
//! it changed: it is read again next round); any other is refused, with a
//! permanent error and a Warning Event.

use std::collections::{BTreeMap, BTreeSet};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use shared::{InjectionSpec, SyncTarget, provider_class::CSI_GROUP};

use crate::{
    cluster::{
        self, Note, NoteType, POD_STATUS_KIND, POD_STATUS_PLURAL, PodIdentity, Refusal, RoundFacts,
        SecretWrite, WipedSecret,
    },
    engine::{Publish, PublishError},
    text,
};

/// Where the example Role for the pods' ServiceAccounts lives.
const ROLE_EXAMPLE: &str = "manifests/examples/rbac/pod-role.yaml";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "secretObjects need the Kubernetes API, but this process is not in a pod with a ServiceAccount token ({0})"
    )]
    NotInCluster(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error(
        "secretObjects come from a SecretProviderClass, but the spec names none; annotation-form specs cannot sync Secrets"
    )]
    NoClass,
}

/// What the sidecar writes, for saying which permission a refusal lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Secrets,
    PodStatuses,
    Events,
}

impl Target {
    fn permission(self) -> &'static str {
        match self {
            Self::Secrets => "get, create and patch on secrets (resourceNames: the synced Secrets)",
            Self::PodStatuses => {
                "create and patch on secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io"
            }
            Self::Events => "create and patch on events (core and events.k8s.io)",
        }
    }
}

pub struct KubeSink {
    pod: PodIdentity,
    class: Option<String>,
    targets: Vec<SyncTarget>,
    mount_path: String,
    secrets: Api<k8s_openapi::api::core::v1::Secret>,
    statuses: Api<DynamicObject>,
    recorder: Recorder,
    /// Secret name → the versions last applied successfully.
    applied_secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name → its resourceVersion after our last successful apply: the
    /// precondition of the next update. Absent: read it first.
    resource_versions: BTreeMap<String, String>,
    /// Secrets refused (not ours): the Warning Event is sent once per refusal.
    refused: BTreeSet<String>,
    applied_status: Option<Vec<(String, String)>>,
    /// Turned off after a 403, so a missing permission is said once rather
    /// than every round; other failures leave it on.
    events_on: bool,
    status_warned: bool,
}

impl KubeSink {
    /// The sink for this pod, or None when there is nothing to publish without
    /// a cluster (no `secretObjects`, outside a pod: a local run).
    pub fn connect(
        spec: &InjectionSpec,
        pod: Option<PodIdentity>,
        in_cluster: bool,
    ) -> Result<Option<Self>, SinkError> {
        let needs_api = !spec.sync_targets.is_empty();
        if needs_api && spec.provider_class.is_none() {
            return Err(SinkError::NoClass);
        }
        let pod = match (pod, in_cluster) {
            (Some(pod), true) => pod,
            (pod, _) if needs_api => {
                let why = if pod.is_none() {
                    "POD_NAME, POD_NAMESPACE or POD_UID is not set"
                } else {
                    "KUBERNETES_SERVICE_HOST is not set"
                };
                return Err(SinkError::NotInCluster(why.to_owned()));
            }
            _ => return Ok(None),
        };
        let config = match kube::Config::incluster() {
            Ok(config) => config,
            Err(e) if needs_api => return Err(SinkError::NotInCluster(e.to_string())),
            Err(e) => {
                tracing::info!(error = %e, "no Kubernetes API access; no Events, no SecretProviderClassPodStatus");
                return Ok(None);
            }
        };
        let client = Client::try_from(config).map_err(|e| SinkError::Client(e.to_string()))?;
        Self::with_client(spec, pod, client).map(Some)
    }

    /// The sink for this pod over a given client (tests pass one to a fake
    /// apiserver).
    pub fn with_client(
        spec: &InjectionSpec,
        pod: PodIdentity,
        client: Client,
    ) -> Result<Self, SinkError> {
        if !spec.sync_targets.is_empty() && spec.provider_class.is_none() {
            return Err(SinkError::NoClass);
        }
        let gvk = GroupVersionKind::gvk(CSI_GROUP, "v1", POD_STATUS_KIND);
        let resource = ApiResource::from_gvk_with_plural(&gvk, POD_STATUS_PLURAL);
        let reporter = Reporter {
            controller: "secret-injector".to_owned(),
            instance: Some(pod.name.clone()),
        };
        Ok(Self {
            secrets: Api::namespaced(client.clone(), &pod.namespace),
            statuses: Api::namespaced_with(client.clone(), &pod.namespace, &resource),
            recorder: Recorder::new(client, reporter),
            class: spec.provider_class.clone(),
            targets: spec.sync_targets.clone(),
            mount_path: spec.mount_path.clone(),
            pod,
            applied_secrets: BTreeMap::new(),
            resource_versions: BTreeMap::new(),
            refused: BTreeSet::new(),
            applied_status: None,
            events_on: true,
            status_warned: false,
        })
    }

    /// Forced: the pod status is this pod's alone, and an update of a synced
    /// Secret is only sent with a `resourceVersion` precondition, after
    /// `may_write` found it ours, so force only wins over other pods'
    /// secret-injector field managers.
    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.pod.field_manager()).force()
    }

    /// Creating: not forced, so a field of a Secret made by someone else in
    /// the meantime is a conflict rather than overwritten.
    fn create_params(&self) -> PatchParams {
        PatchParams::apply(&self.pod.field_manager())
    }

    /// Says what was refused and, for a permission, what to grant.
    fn describe(&self, e: &kube::Error, target: Target) -> String {
        match e {
            kube::Error::Api(status) if status.code == 403 => format!(
                "forbidden: the pod's ServiceAccount {}/{} needs {} in namespace {} (example Role: {ROLE_EXAMPLE})",
                self.pod.namespace,
                self.pod.service_account,
                target.permission(),
                self.pod.namespace
            ),
            kube::Error::Api(status) if status.code == 404 && target == Target::PodStatuses => {
                "the SecretProviderClassPodStatus CRD is not installed (manifests/crds/)".to_owned()
            }
            kube::Error::Api(status) => text::bounded(
                &format!("{} {}: {}", status.code, status.reason, status.message),
                text::DETAIL_LIMIT,
            ),
            other => text::bounded(&other.to_string(), text::DETAIL_LIMIT),
        }
    }

    /// Applies each sync target whose values changed. Returns the errors in
    /// one line (permanent when a Secret was refused) and the Events to send.
    async fn sync_secrets(
        &mut self,
        round: &RoundFacts<'_>,
    ) -> (Result<(), PublishError>, Vec<Note>) {
        let mut errors = Vec::new();
        let mut refusals: Vec<Refusal> = Vec::new();
        let mut notes = Vec::new();
        let Some(class) = self.class.clone() else {
            return (Ok(()), notes);
        };
        let namespace = self.pod.namespace.clone();
        for target in &self.targets {
            let name = &target.secret_name;
            let versions = cluster::target_versions(target, round.known);
            if self.applied_secrets.get(name) == Some(&versions) {
                continue;
            }
            let write = match self.resource_versions.get(name) {
                Some(rv) => SecretWrite::Update {
                    resource_version: rv.clone(),
                },
                None => match self.secrets.get_opt(name).await {
                    Ok(existing) => {
                        // Its values (perhaps someone else's) are never needed.
                        let existing = existing.map(WipedSecret);
                        let existing = existing.as_ref().map(|s| &s.0);
                        match cluster::may_write(existing, target, &class, &namespace) {
                            Ok(write) => write,
                            Err(refusal) => {
                                if self.refused.insert(name.clone()) {
                                    notes.push(cluster::refusal_note(&refusal));
                                }
                                refusals.push(refusal);
                                continue;
                            }
                        }
                    }
                    Err(e) => {
                        errors.push(format!(
                            "cannot read Secret {namespace}/{name}: {}",
                            self.describe(&e, Target::Secrets)
                        ));
                        continue;
                    }
                },
            };
            let mut secret = match cluster::synced_secret(target, round.known, &self.pod, &class) {
                Ok(secret) => WipedSecret(secret),
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let params = match &write {
                SecretWrite::Create => self.create_params(),
                SecretWrite::Update { resource_version } => {
                    secret.0.metadata.resource_version = Some(resource_version.clone());
                    self.params()
                }
            };
            match self
                .secrets
                .patch(name, &params, &Patch::Apply(&secret.0))
                .await
                .map(WipedSecret)
            {
                Ok(applied) => {
                    let verb = match write {
                        SecretWrite::Create => "created",
                        SecretWrite::Update { .. } => "updated",
                    };
                    tracing::info!(secret = %name, keys = ?versions.keys().collect::<Vec<_>>(), "{verb} the synced Secret");
                    self.refused.remove(name);
                    match applied.0.metadata.resource_version.clone() {
                        Some(rv) => self.resource_versions.insert(name.clone(), rv),
                        None => self.resource_versions.remove(name),
                    };
                    self.applied_secrets.insert(name.clone(), versions);
                }
                Err(e) => {
                    // Whatever went wrong, read it again before the next try.
                    self.resource_versions.remove(name);
                    let why = match &e {
                        kube::Error::Api(status) if status.code == 409 => {
                            "it changed since it was read (409 Conflict); it is read again and checked before the next try".to_owned()
                        }
                        _ => self.describe(&e, Target::Secrets),
                    };
                    errors.push(format!("cannot sync Secret {namespace}/{name}: {why}"));
                }
            }
        }
        let permanent = !refusals.is_empty();
        for refusal in &refusals {
            tracing::warn!(secret = %refusal.secret, "{refusal}");
        }
        let all: Vec<String> = refusals
            .iter()
            .map(ToString::to_string)
            .chain(errors)
            .collect();
        let result = if all.is_empty() {
            Ok(())
        } else {
            Err(PublishError {
                message: all.join("; "),
                permanent,
            })
        };
        (result, notes)
    }

    async fn update_status(&mut self, spec: &InjectionSpec, round: &RoundFacts<'_>) {
        let Some(class) = &self.class else { return };
        let objects = cluster::object_versions(spec, round.known);
        if self.applied_status.as_ref() == Some(&objects) {
            return;
        }
        let name = cluster::pod_status_name(&self.pod, class);
        let status = cluster::pod_status(&self.pod, class, &self.mount_path, &objects);
        // L5: not forced. `<pod>-<namespace>-<class>` can name another pod's
        // status (pod web-prod with class kv, pod web with class prod-kv);
        // that pod's field manager then owns it and the apply conflicts
        // rather than take it over.
        match self
            .statuses
            .patch(&name, &self.create_params(), &Patch::Apply(&status))
            .await
        {
            Ok(_) => {
                tracing::info!(name = %name, "updated the SecretProviderClassPodStatus");
                self.applied_status = Some(objects);
                self.status_warned = false;
            }
            Err(e) => {
                // The app does not need it: say so, retry next round.
                if !self.status_warned {
                    let why = match &e {
                        kube::Error::Api(status) if status.code == 409 => {
                            "another pod's status has this name (a name collision); it is left as it is".to_owned()
                        }
                        _ => self.describe(&e, Target::PodStatuses),
                    };
                    tracing::warn!(name = %name, "cannot update the SecretProviderClassPodStatus: {why}");
                    self.status_warned = true;
                }
            }
        }
    }

    async fn record_events(&mut self, round: &RoundFacts<'_>, extra: Vec<Note>) {
        if !self.events_on {
            return;
        }
        let reference = self.pod.object_reference();
        for note in extra.into_iter().chain(cluster::notes_for(round)) {
            let event = Event {
                type_: match note.type_ {
                    NoteType::Normal => EventType::Normal,
                    NoteType::Warning => EventType::Warning,
                },
                reason: note.reason.to_owned(),
                note: Some(note.bounded_message()),
                action: note.action.to_owned(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                let why = self.describe(&e, Target::Events);
                // Only a missing permission is lasting; anything else (a
                // timeout, an apiserver restart) is tried again next time.
                if is_forbidden(&e) {
                    tracing::warn!("cannot record Events on the pod; no more will be tried: {why}");
                    self.events_on = false;
                    return;
                }
                tracing::warn!(
                    reason = note.reason,
                    "cannot record an Event on the pod; the next one will be tried: {why}"
                );
            }
        }
    }
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 403)
}

#[async_trait::async_trait]
impl Publish for KubeSink {
    async fn publish(
        &mut self,
        spec: &InjectionSpec,
        round: &RoundFacts<'_>,
    ) -> Result<(), PublishError> {
        let (synced, notes) = if round.complete {
            let synced = self.sync_secrets(round).await;
            self.update_status(spec, round).await;
            synced
        } else {
            (Ok(()), Vec::new())
        };
        self.record_events(round, notes).await;
        synced
    }
}
