//! Sends what `cluster` decides to the Kubernetes API with the pod's own
//! ServiceAccount: server-side applies of the synced Secrets and the
//! SecretProviderClassPodStatus (one field manager per pod), and Events.
//! Applies only what changed since the last successful one.

use std::collections::BTreeMap;

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use shared::{InjectionSpec, SyncTarget, provider_class::CSI_GROUP};

use crate::{
    cluster::{self, NoteType, POD_STATUS_KIND, POD_STATUS_PLURAL, PodIdentity, RoundFacts},
    engine::Publish,
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
            Self::Secrets => "get, create and patch on secrets",
            Self::PodStatuses => {
                "get, create and patch on secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io"
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
        let gvk = GroupVersionKind::gvk(CSI_GROUP, "v1", POD_STATUS_KIND);
        let resource = ApiResource::from_gvk_with_plural(&gvk, POD_STATUS_PLURAL);
        let reporter = Reporter {
            controller: "secret-injector".to_owned(),
            instance: Some(pod.name.clone()),
        };
        Ok(Some(Self {
            secrets: Api::namespaced(client.clone(), &pod.namespace),
            statuses: Api::namespaced_with(client.clone(), &pod.namespace, &resource),
            recorder: Recorder::new(client, reporter),
            class: spec.provider_class.clone(),
            targets: spec.sync_targets.clone(),
            mount_path: spec.mount_path.clone(),
            pod,
            applied_secrets: BTreeMap::new(),
            applied_status: None,
            events_on: true,
            status_warned: false,
        }))
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.pod.field_manager()).force()
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

    async fn sync_secrets(&mut self, round: &RoundFacts<'_>) -> Result<(), String> {
        let mut errors = Vec::new();
        for target in &self.targets {
            let versions = cluster::target_versions(target, round.known);
            if self.applied_secrets.get(&target.secret_name) == Some(&versions) {
                continue;
            }
            let secret = match cluster::synced_secret(target, round.known, &self.pod) {
                Ok(secret) => secret,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match self
                .secrets
                .patch(&target.secret_name, &self.params(), &Patch::Apply(&secret))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %target.secret_name, keys = ?versions.keys().collect::<Vec<_>>(), "synced the Secret");
                    self.applied_secrets
                        .insert(target.secret_name.clone(), versions);
                }
                Err(e) => errors.push(format!(
                    "cannot sync Secret {}/{}: {}",
                    self.pod.namespace,
                    target.secret_name,
                    self.describe(&e, Target::Secrets)
                )),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    async fn update_status(&mut self, spec: &InjectionSpec, round: &RoundFacts<'_>) {
        let Some(class) = &self.class else { return };
        let objects = cluster::object_versions(spec, round.known);
        if self.applied_status.as_ref() == Some(&objects) {
            return;
        }
        let name = cluster::pod_status_name(&self.pod, class);
        let status = cluster::pod_status(&self.pod, class, &self.mount_path, &objects);
        match self
            .statuses
            .patch(&name, &self.params(), &Patch::Apply(&status))
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
                    let why = self.describe(&e, Target::PodStatuses);
                    tracing::warn!(name = %name, "cannot update the SecretProviderClassPodStatus: {why}");
                    self.status_warned = true;
                }
            }
        }
    }

    async fn record_events(&mut self, round: &RoundFacts<'_>) {
        if !self.events_on {
            return;
        }
        let reference = self.pod.object_reference();
        for note in cluster::notes_for(round) {
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
    ) -> Result<(), String> {
        let synced = if round.complete {
            let synced = self.sync_secrets(round).await;
            self.update_status(spec, round).await;
            synced
        } else {
            Ok(())
        };
        self.record_events(round).await;
        synced
    }
}
