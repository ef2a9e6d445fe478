//! The cluster as a test sees it: one namespace per test, manifests applied
//! as users apply them (server-side apply of every document), and what an
//! app or an operator would look at afterwards.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use k8s_openapi::api::{
    apps::v1::Deployment,
    authorization::v1::SubjectAccessReview,
    core::v1::{Event, Namespace, Pod, Secret},
};
use kube::{
    Api, Client, ResourceExt,
    api::{
        ApiResource, AttachParams, DeleteParams, DynamicObject, GroupVersionKind, ListParams,
        LogParams, Patch, PatchParams, PostParams,
    },
    discovery::{self, Scope},
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// The repository's root, for the manifests the tests apply unchanged.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The contents of a file of the repository (`manifests/...`).
pub fn repo_file(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(repo().join(path)).with_context(|| format!("reading {path}"))
}

pub async fn client() -> anyhow::Result<Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Client::try_default()
        .await
        .context("a client from KUBECONFIG")
}

/// A namespace of its own for one test: opted in to CSI conversion, with
/// the example pod Role (`manifests/examples/rbac/pod-role.yaml`); or one
/// that exists already (`default`, which manifests applied unchanged may
/// name), left in place afterwards.
pub struct Ns {
    pub client: Client,
    pub name: String,
    owned: bool,
}

impl Ns {
    pub async fn create(client: &Client, name: &str) -> anyhow::Result<Self> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let ns = Self {
            client: client.clone(),
            name: name.to_string(),
            owned: true,
        };
        ns.opt_in_csi().await?;
        Ok(ns)
    }

    /// A namespace that exists, as it is (not opted in to CSI conversion).
    pub fn existing(client: &Client, name: &str) -> Self {
        Self {
            client: client.clone(),
            name: name.to_string(),
            owned: false,
        }
    }

    /// The csi-compat label (the webhook converts CSI volumes here) and the
    /// example pod Role.
    pub async fn opt_in_csi(&self) -> anyhow::Result<()> {
        let label = json!({"metadata": {"labels": {"secret-injector.io/csi-compat": "enabled"}}});
        Api::<Namespace>::all(self.client.clone())
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&label))
            .await
            .with_context(|| format!("labelling namespace {}", self.name))?;
        self.apply(&repo_file("manifests/examples/rbac/pod-role.yaml")?)
            .await
    }

    /// Every document of `yaml`, server-side applied in this namespace
    /// (cluster-scoped kinds where they are).
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value: Value = serde::Deserialize::deserialize(doc).context("a YAML document")?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(value.clone())?;
            let types = object
                .types
                .clone()
                .context("a document without apiVersion/kind")?;
            let gvk = GroupVersionKind::try_from(&types)?;
            let (resource, caps) = discovery::pinned_kind(&self.client, &gvk).await?;
            let api = self.api(&resource, caps.scope == Scope::Namespaced);
            let name = object.name_any();
            api.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&value),
            )
            .await
            .with_context(|| format!("applying {} {name}", gvk.kind))?;
        }
        Ok(())
    }

    fn api(&self, resource: &ApiResource, namespaced: bool) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.client.clone(), &self.name, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub async fn pod(&self, name: &str) -> anyhow::Result<Pod> {
        self.pods()
            .get(name)
            .await
            .with_context(|| format!("pod {name}"))
    }

    /// `kind` `name` (`"Deployment"`, `"Pod"`, ...), deleted in the
    /// background; `Ok` when it was already gone.
    pub async fn delete_object(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = discovery::pinned_kind(&self.client, &gvk).await?;
        match self
            .api(&resource, caps.scope == Scope::Namespaced)
            .delete(name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {kind} {name}")),
        }
    }

    /// Waits until no pod `selector` picks is left, deleting or not.
    pub async fn no_pods(&self, selector: &str, within: Duration) -> anyhow::Result<()> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if self
                .pods()
                .list(&ListParams::default().labels(selector))
                .await?
                .items
                .is_empty()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("pods {selector} still there after {within:?}")
    }

    /// The Events of this namespace that `fields` selects
    /// (`involvedObject.name=...,reason=...`).
    pub async fn events(&self, fields: &str) -> anyhow::Result<Vec<Event>> {
        Ok(Api::<Event>::namespaced(self.client.clone(), &self.name)
            .list(&ListParams::default().fields(fields))
            .await?
            .items)
    }

    /// Whether `user` (with the groups the apiserver gives a ServiceAccount)
    /// may `verb` `resource` (`secrets/<name>`, `<plural>.<group>`), as
    /// `kubectl auth can-i --as` asks.
    pub async fn can_i(&self, user: &str, verb: &str, resource: &str) -> anyhow::Result<bool> {
        let (resource, name) = resource.split_once('/').unwrap_or((resource, ""));
        let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
        let mut groups = vec!["system:authenticated".to_string()];
        if let Some(rest) = user.strip_prefix("system:serviceaccount:")
            && let Some((namespace, _)) = rest.split_once(':')
        {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{namespace}"));
        }
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "namespace": self.name, "verb": verb, "group": group,
                    "resource": resource, "name": name,
                },
            }
        }))?;
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }

    /// The names of the pods `selector` picks once at least one exists and
    /// every one not being deleted is Ready.
    pub async fn ready(&self, selector: &str, within: Duration) -> anyhow::Result<Vec<String>> {
        self.ready_listed(ListParams::default().labels(selector), selector, within)
            .await
    }

    /// The pods of Deployment `name` once its rollout is complete (as
    /// `kubectl rollout status`: every replica updated and available, no
    /// old one left).
    pub async fn rolled_out(&self, name: &str, within: Duration) -> anyhow::Result<Vec<String>> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.name);
        let start = std::time::Instant::now();
        let mut last = String::from("no Deployment");
        while start.elapsed() < within {
            if let Some(d) = deployments.get_opt(name).await? {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let status = d.status.clone().unwrap_or_default();
                let done = status.observed_generation >= d.metadata.generation
                    && status.updated_replicas == Some(want)
                    && status.available_replicas == Some(want)
                    && status.replicas == Some(want);
                if done {
                    let labels = d
                        .spec
                        .and_then(|s| s.selector.match_labels)
                        .unwrap_or_default()
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",");
                    return self
                        .ready(&labels, within.saturating_sub(start.elapsed()))
                        .await;
                }
                last = format!(
                    "{} updated, {} available of {want}",
                    status.updated_replicas.unwrap_or(0),
                    status.available_replicas.unwrap_or(0)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "Deployment {name} in {} not rolled out within {within:?}: {last}",
            self.name
        )
    }

    /// The pod `name` once it is Ready.
    pub async fn ready_pod(&self, name: &str, within: Duration) -> anyhow::Result<()> {
        let fields = format!("metadata.name={name}");
        self.ready_listed(ListParams::default().fields(&fields), name, within)
            .await
            .map(drop)
    }

    async fn ready_listed(
        &self,
        list: ListParams,
        selector: &str,
        within: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let start = std::time::Instant::now();
        let mut last = String::from("no pod");
        while start.elapsed() < within {
            let pods = self.pods().list(&list).await?;
            let live: Vec<&Pod> = pods
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = |p: &Pod| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            };
            if !live.is_empty() && live.iter().all(|p| ready(p)) {
                return Ok(live.iter().map(|p| p.name_any()).collect());
            }
            if let Some(p) = live.iter().find(|p| !ready(p)) {
                last = format!("{} is {}", p.name_any(), describe(p));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "pods {selector} in {} not Ready within {within:?}: {last}",
            self.name
        )
    }

    /// What `cmd` prints in `container` of `pod` (as `kubectl exec`).
    pub async fn exec(&self, pod: &str, container: &str, cmd: &[&str]) -> anyhow::Result<String> {
        let params = AttachParams::default().container(container).stderr(false);
        let mut attached = self.pods().exec(pod, cmd.to_vec(), &params).await?;
        let mut out = String::new();
        if let Some(mut stdout) = attached.stdout() {
            stdout.read_to_string(&mut out).await?;
        }
        if let Some(status) = attached.take_status()
            && let Some(status) = status.await
            && status.status.as_deref() == Some("Failure")
        {
            bail!(
                "{cmd:?} in {pod}/{container}: {}",
                status.message.unwrap_or_default()
            );
        }
        Ok(out)
    }

    /// A file as the app's container reads it.
    pub async fn read(&self, pod: &str, container: &str, path: &str) -> anyhow::Result<String> {
        self.exec(pod, container, &["cat", path]).await
    }

    pub async fn logs(&self, pod: &str, container: &str) -> anyhow::Result<String> {
        let params = LogParams {
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        Ok(self.pods().logs(pod, &params).await?)
    }

    /// One key of a Secret, decoded.
    pub async fn secret(&self, name: &str, key: &str) -> anyhow::Result<String> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.name)
            .get(name)
            .await?;
        let data = secret
            .data
            .and_then(|d| d.get(key).cloned())
            .with_context(|| format!("Secret {name} has no {key}"))?;
        Ok(String::from_utf8(data.0)?)
    }

    /// A Secret as the apiserver has it; `None` when there is none.
    pub async fn secret_object(&self, name: &str) -> anyhow::Result<Option<Secret>> {
        Ok(Api::<Secret>::namespaced(self.client.clone(), &self.name)
            .get_opt(name)
            .await?)
    }

    /// A SecretProviderClassPodStatus as JSON.
    pub async fn pod_status(&self, name: &str) -> anyhow::Result<Value> {
        self.pod_status_opt(name)
            .await?
            .with_context(|| format!("no PodStatus {name}"))
    }

    /// The same; `None` when there is none.
    pub async fn pod_status_opt(&self, name: &str) -> anyhow::Result<Option<Value>> {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "secrets-store.csi.x-k8s.io",
                "v1",
                "SecretProviderClassPodStatus",
            ),
            "secretproviderclasspodstatuses",
        );
        let object = self.api(&resource, true).get_opt(name).await?;
        Ok(object.map(serde_json::to_value).transpose()?)
    }

    /// The version a PodStatus records for the object `id`.
    pub async fn pod_status_version(&self, name: &str, id: &str) -> anyhow::Result<String> {
        let status = self.pod_status(name).await?;
        status["status"]["objects"]
            .as_array()
            .and_then(|objects| objects.iter().find(|o| o["id"] == id))
            .and_then(|o| o["version"].as_str())
            .map(str::to_string)
            .with_context(|| format!("PodStatus {name} has no object {id}"))
    }

    /// Every Event of this namespace as YAML-ish text, to assert what never
    /// reaches one.
    pub async fn events_text(&self) -> anyhow::Result<String> {
        let events = Api::<Event>::namespaced(self.client.clone(), &self.name)
            .list(&ListParams::default())
            .await?;
        Ok(serde_json::to_string(&events.items)?)
    }

    /// Deletes the namespace if this test created it.
    pub async fn delete(self) {
        if !self.owned {
            return;
        }
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

/// A pod's state in a line, for a failure message.
fn describe(pod: &Pod) -> String {
    let Some(status) = &pod.status else {
        return "without status".into();
    };
    let waiting = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten()
        .filter_map(|c| {
            let state = c.state.as_ref()?;
            let (reason, message) = if let Some(w) = &state.waiting {
                (w.reason.clone(), w.message.clone())
            } else {
                let t = state.terminated.as_ref()?;
                (t.reason.clone(), t.message.clone())
            };
            Some(format!(
                "{}: {} {}",
                c.name,
                reason.unwrap_or_default(),
                message.unwrap_or_default()
            ))
        })
        .collect::<Vec<_>>();
    format!(
        "{} {}",
        status.phase.clone().unwrap_or_default(),
        waiting.join("; ")
    )
}
