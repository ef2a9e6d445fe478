//! What the sidecar tells Kubernetes, decided without a network: the Secrets
//! a SecretProviderClass's `secretObjects` asks for, the per-pod
//! SecretProviderClassPodStatus, and the Events on the pod. `kube_sink` sends
//! them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    ByteString,
    api::core::v1::{ObjectReference, Secret},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use serde_json::{Value, json};
use shared::{
    AzureObjectKind, FileName, InjectionSpec, SecretObject, SecretRef, SyncTarget,
    provider_class::PROVIDER_CLASS_API_VERSION,
};

use crate::{plan::Known, providers::FetchError};

/// The label the CSI driver puts on the Secrets it syncs; kept so selectors
/// written for the driver still find them.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";
/// On every Secret the sidecar writes: the SecretProviderClass it syncs. With
/// the managed label, the only proof that an existing Secret is ours to update.
pub const PROVIDER_CLASS_ANNOTATION: &str = "secret-injector.io/provider-class";
pub const POD_STATUS_KIND: &str = "SecretProviderClassPodStatus";
pub const POD_STATUS_PLURAL: &str = "secretproviderclasspodstatuses";

/// The pod the sidecar runs in, from the downward API env the webhook sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub service_account: String,
}

impl PodIdentity {
    /// None outside a pod (no `POD_NAME`/`POD_NAMESPACE`/`POD_UID`).
    pub fn from_env(read: impl Fn(&str) -> Option<String>) -> Option<Self> {
        use shared::contract::env;
        let get = |k: &str| read(k).filter(|v| !v.is_empty());
        Some(Self {
            name: get(env::POD_NAME)?,
            namespace: get(env::POD_NAMESPACE)?,
            uid: get(env::POD_UID)?,
            service_account: get(env::POD_SERVICE_ACCOUNT).unwrap_or_else(|| "default".to_owned()),
        })
    }

    /// Not a controller reference: every pod syncing a Secret owns it, so the
    /// garbage collector deletes it with the last of them.
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }

    pub fn object_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            uid: Some(self.uid.clone()),
            ..Default::default()
        }
    }

    /// Server-side-apply field manager: one per pod, so one pod's apply never
    /// drops another pod's owner reference from a shared Secret.
    pub fn field_manager(&self) -> String {
        // Field managers are limited to 128 characters.
        format!("secret-injector/{}", self.uid)
            .chars()
            .take(128)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("Secret {secret:?} key {key:?} names object {file:?}, which has no value yet")]
    NoValue {
        secret: String,
        key: String,
        file: String,
    },
    #[error(
        "Secret {secret:?} is of type kubernetes.io/tls, but object {file:?} holds no PEM {wanted} for key {key:?}; accepted: a PEM bundle with the certificate chain and its private key (a Key Vault certificate's secret, objectType secret)"
    )]
    NotTls {
        secret: String,
        key: String,
        file: String,
        wanted: &'static str,
    },
}

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// For `kubernetes.io/tls` Secrets, as the CSI driver does: `tls.crt` gets
/// the certificate chain and `tls.key` the private key out of the object's
/// PEM bundle. Other keys and types get the object's bytes as they are.
fn secret_value(
    target: &SyncTarget,
    key: &str,
    file: &FileName,
    bytes: &[u8],
) -> Result<Vec<u8>, SyncError> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    if target.secret_type != TLS_SECRET_TYPE || !matches!(key, "tls.crt" | "tls.key") {
        return Ok(bytes.to_vec());
    }
    let not_tls = |wanted| SyncError::NotTls {
        secret: target.secret_name.clone(),
        key: key.to_owned(),
        file: file.to_string(),
        wanted,
    };
    if key == "tls.crt" {
        let chain: String = CertificateDer::pem_slice_iter(bytes)
            .filter_map(Result::ok)
            .map(|c| crate::pem::certificate_pem(c.as_ref()))
            .collect();
        return if chain.is_empty() {
            Err(not_tls("CERTIFICATE"))
        } else {
            Ok(chain.into_bytes())
        };
    }
    let label = |k: &PrivateKeyDer<'_>| match k {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    PrivateKeyDer::from_pem_slice(bytes)
        .map(zeroize::Zeroizing::new)
        .map(|k| crate::pem::pem(label(&k), k.secret_der()).into_bytes())
        .map_err(|_| not_tls("PRIVATE KEY"))
}

/// Wipes the values of a Secret this process holds (one it built, or one the
/// apiserver returned), best effort: once applied they are not needed.
pub fn wipe_secret_data(secret: &mut Secret) {
    use zeroize::Zeroize;
    if let Some(data) = secret.data.as_mut() {
        for value in data.values_mut() {
            value.0.zeroize();
        }
    }
    if let Some(data) = secret.string_data.as_mut() {
        for value in data.values_mut() {
            value.zeroize();
        }
    }
}

/// A Secret whose values are wiped when it is dropped.
pub struct WipedSecret(pub Secret);

impl Drop for WipedSecret {
    fn drop(&mut self) {
        wipe_secret_data(&mut self.0);
    }
}

/// The Secret a sync target asks for, filled from the current values. The
/// whole desired state: applied server-side, it replaces what this pod set.
/// Only the target's keys are in it; the class annotation names `class`.
pub fn synced_secret(
    target: &SyncTarget,
    known: &BTreeMap<FileName, Known>,
    pod: &PodIdentity,
    class: &str,
) -> Result<Secret, SyncError> {
    let mut data = BTreeMap::new();
    for (key, file) in &target.data {
        let value = known.get(file).ok_or_else(|| SyncError::NoValue {
            secret: target.secret_name.clone(),
            key: key.clone(),
            file: file.to_string(),
        })?;
        let bytes = secret_value(target, key, file, value.bytes.expose())?;
        data.insert(key.clone(), ByteString(bytes));
    }
    let mut labels = target.labels.clone();
    labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
    let mut annotations = target.annotations.clone();
    annotations.insert(PROVIDER_CLASS_ANNOTATION.to_owned(), class.to_owned());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(target.secret_name.clone()),
            namespace: Some(pod.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![pod.owner_reference()]),
            ..Default::default()
        },
        type_: Some(target.secret_type.clone()),
        data: Some(data),
        ..Default::default()
    })
}

/// What the sidecar may do to a sync target's Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretWrite {
    /// It does not exist: create it.
    Create,
    /// It is ours, for this class: update it, only if it is still at the
    /// version that was read (a precondition of the apply).
    Update { resource_version: String },
}

/// Why an existing Secret is not the sidecar's to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    NotManaged,
    NoClass,
    OtherClass(String),
    TypeDiffers { found: String, wanted: String },
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values read from the cluster are quoted and bounded.
        let quoted = |s: &str| format!("{:?}", crate::text::bounded(s, 64));
        match self {
            Self::NotManaged => write!(f, "it has no label {MANAGED_LABEL}: \"true\""),
            Self::NoClass => write!(f, "it has no annotation {PROVIDER_CLASS_ANNOTATION}"),
            Self::OtherClass(other) => write!(
                f,
                "its annotation {PROVIDER_CLASS_ANNOTATION} names {}",
                quoted(other)
            ),
            Self::TypeDiffers { found, wanted } => write!(
                f,
                "its type is {}, secretObjects asks for {}, and a Secret's type cannot change",
                quoted(found),
                quoted(wanted)
            ),
        }
    }
}

/// An existing Secret the sidecar will not write. Permanent: retrying cannot
/// help until a person deletes or renames something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Secret {namespace}/{secret} exists and was not created by secret-injector for SecretProviderClass {class} ({why}); secret-injector never takes over a Secret; delete it or rename secretObjects[].secretName"
)]
pub struct Refusal {
    pub namespace: String,
    pub secret: String,
    pub class: String,
    pub why: RefusalReason,
}

/// May the sidecar write this sync target's Secret, given what a GET of it
/// returned (`None`: it does not exist)? Only a Secret it created for this
/// very class, which carries the managed label and the class annotation and
/// has the asked type, is updated; any other is refused, never taken over.
pub fn may_write(
    existing: Option<&Secret>,
    target: &SyncTarget,
    class: &str,
    namespace: &str,
) -> Result<SecretWrite, Refusal> {
    let Some(existing) = existing else {
        return Ok(SecretWrite::Create);
    };
    let refuse = |why| Refusal {
        namespace: namespace.to_owned(),
        secret: target.secret_name.clone(),
        class: class.to_owned(),
        why,
    };
    let meta = &existing.metadata;
    let label = meta.labels.as_ref().and_then(|l| l.get(MANAGED_LABEL));
    if label.map(String::as_str) != Some("true") {
        return Err(refuse(RefusalReason::NotManaged));
    }
    match meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVIDER_CLASS_ANNOTATION))
    {
        // Synced before Secrets carried the class (secret-injector 0.1):
        // ours only if nothing but our sidecars ever wrote it, for pods.
        None if written_only_by_our_sidecars(meta) => {}
        None => return Err(refuse(RefusalReason::NoClass)),
        Some(other) if other != class => {
            return Err(refuse(RefusalReason::OtherClass(other.clone())));
        }
        Some(_) => {}
    }
    // The apiserver defaults an unset type to Opaque.
    let found = existing.type_.as_deref().unwrap_or("Opaque");
    if found != target.secret_type {
        return Err(refuse(RefusalReason::TypeDiffers {
            found: found.to_owned(),
            wanted: target.secret_type.clone(),
        }));
    }
    Ok(SecretWrite::Update {
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    })
}

fn written_only_by_our_sidecars(meta: &ObjectMeta) -> bool {
    let managers = meta.managed_fields.as_deref().unwrap_or_default();
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    !managers.is_empty()
        && managers.iter().all(|m| {
            m.manager
                .as_deref()
                .is_some_and(|name| name.starts_with("secret-injector/"))
        })
        && !owners.is_empty()
        && owners
            .iter()
            .all(|o| o.kind == "Pod" && o.api_version == "v1")
}

/// The Warning Event on the pod for a refused Secret: the same words as the
/// error the init container ends with.
pub fn refusal_note(refusal: &Refusal) -> Note {
    Note {
        type_: NoteType::Warning,
        reason: REASON_SYNC_REFUSED,
        action: "Sync",
        message: refusal.to_string(),
    }
}

/// The versions a sync target's Secret was built from: when they have not
/// changed since the last successful apply, there is nothing to send.
pub fn target_versions(
    target: &SyncTarget,
    known: &BTreeMap<FileName, Known>,
) -> BTreeMap<String, String> {
    target
        .data
        .iter()
        .map(|(key, file)| {
            let version = known
                .get(file)
                .map(|k| k.version.clone())
                .unwrap_or_default();
            (key.clone(), version)
        })
        .collect()
}

/// `<pod>-<namespace>-<class>`, as the CSI driver names it.
pub fn pod_status_name(pod: &PodIdentity, class: &str) -> String {
    format!("{}-{}-{}", pod.name, pod.namespace, class)
}

/// How each CSI provider names an object in the status: Azure's
/// `<objectType>/<objectName>`, AWS's file name.
pub fn object_id(object: &SecretObject) -> String {
    match &object.source {
        SecretRef::Azure(r) => {
            let kind = match r.kind {
                AzureObjectKind::Secret => "secret",
                AzureObjectKind::Key => "key",
                AzureObjectKind::Certificate => "cert",
            };
            format!("{kind}/{}", r.name)
        }
        // The AWS provider's id is the file name (a jmesPath file gets its
        // own), and so is the Vault provider's (`objectName`).
        SecretRef::Aws(_) | SecretRef::Vault(_) => object.file.to_string(),
        // The GCP provider's id is the resourceName as the class writes it.
        SecretRef::Gcp(r) => r.resource_name(),
    }
}

/// `(id, version)` per object with a value, in the spec's order.
pub fn object_versions(
    spec: &InjectionSpec,
    known: &BTreeMap<FileName, Known>,
) -> Vec<(String, String)> {
    spec.objects
        .iter()
        .filter_map(|o| {
            known
                .get(&o.file)
                .map(|k| (object_id(o), k.version.clone()))
        })
        .collect()
}

/// The SecretProviderClassPodStatus for this pod, owned by it. `mounted` is
/// true once a complete set is in the volume.
pub fn pod_status(
    pod: &PodIdentity,
    class: &str,
    target_path: &str,
    objects: &[(String, String)],
) -> Value {
    let objects: Vec<Value> = objects
        .iter()
        .map(|(id, version)| json!({"id": id, "version": version}))
        .collect();
    json!({
        "apiVersion": PROVIDER_CLASS_API_VERSION,
        "kind": POD_STATUS_KIND,
        "metadata": {
            "name": pod_status_name(pod, class),
            "namespace": pod.namespace,
            "labels": {"app.kubernetes.io/managed-by": "secret-injector"},
            "ownerReferences": [pod.owner_reference()],
        },
        "status": {
            "podName": pod.name,
            "secretProviderClassName": class,
            "mounted": true,
            "targetPath": target_path,
            "objects": objects,
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteType {
    Normal,
    Warning,
}

/// An Event to record on the pod. Names objects and versions, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub type_: NoteType,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl Note {
    /// The note as published: the apiserver refuses one over its 1024-byte
    /// `NoteLengthLimit`, so a long message (many failing objects) is cut on
    /// a character boundary instead of losing the whole Event.
    pub fn bounded_message(&self) -> String {
        crate::text::truncate(&self.message, crate::text::EVENT_NOTE_LIMIT)
    }
}

pub const REASON_MOUNTED: &str = "SecretsMounted";
pub const REASON_ROTATED: &str = "SecretRotationComplete";
pub const REASON_FAILED: &str = "SecretRotationFailed";
pub const REASON_RECOVERED: &str = "SecretRotationRecovered";
/// kubelet's reason when the CSI driver cannot mount: users' alerts on a
/// pod's first fetch watch for it.
pub const REASON_MOUNT_FAILED: &str = "FailedMount";
/// A `secretObjects` Secret exists and is not this class's to write.
pub const REASON_SYNC_REFUSED: &str = "SecretSyncRefused";

/// One round, as the Event decision sees it.
pub struct RoundFacts<'a> {
    /// This process wrote the pod's first set (no earlier run had).
    pub first_set: bool,
    pub wrote: bool,
    /// Every object has a value (now or from before).
    pub complete: bool,
    pub changed: &'a [FileName],
    pub failures: &'a [(FileName, FetchError)],
    /// Files that were failing after the previous round.
    pub previously_failing: &'a BTreeSet<FileName>,
    pub known: &'a BTreeMap<FileName, Known>,
    pub mount_path: &'a str,
}

/// Which Events a round deserves: the first set, each rotation, and a
/// failure when the set of failing objects changes (not every retry), then
/// its recovery.
pub fn notes_for(round: &RoundFacts<'_>) -> Vec<Note> {
    let mut notes = Vec::new();
    let with_versions = |files: &[FileName]| -> String {
        files
            .iter()
            .map(|f| match round.known.get(f).map(|k| k.version.as_str()) {
                Some(v) if !v.is_empty() => format!("{f} (version {v})"),
                _ => f.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if round.wrote && round.first_set {
        let files: Vec<FileName> = round.known.keys().cloned().collect();
        notes.push(Note {
            type_: NoteType::Normal,
            reason: REASON_MOUNTED,
            action: "Mount",
            message: format!("wrote {} to {}", with_versions(&files), round.mount_path),
        });
    } else if round.wrote && !round.changed.is_empty() {
        notes.push(Note {
            type_: NoteType::Normal,
            reason: REASON_ROTATED,
            action: "Rotate",
            message: format!("rotated {}", with_versions(round.changed)),
        });
    }
    let failing: BTreeSet<FileName> = round.failures.iter().map(|(f, _)| f.clone()).collect();
    if !failing.is_empty() && &failing != round.previously_failing {
        let parts: Vec<String> = round
            .failures
            .iter()
            .map(|(f, e)| format!("{f}: {e}"))
            .collect();
        // Without a complete set nothing is written yet: the pod waits, as
        // with a CSI volume that cannot mount.
        let (reason, action, consequence) = if round.complete {
            (
                REASON_FAILED,
                "Rotate",
                "the files keep their last good values",
            )
        } else {
            (
                REASON_MOUNT_FAILED,
                "Mount",
                "no file is written until every object is fetched (retrying)",
            )
        };
        notes.push(Note {
            type_: NoteType::Warning,
            reason,
            action,
            message: format!("cannot fetch {}; {consequence}", parts.join("; ")),
        });
    } else if failing.is_empty() && !round.previously_failing.is_empty() && !round.first_set {
        let names: Vec<String> = round
            .previously_failing
            .iter()
            .map(ToString::to_string)
            .collect();
        notes.push(Note {
            type_: NoteType::Normal,
            reason: REASON_RECOVERED,
            action: "Rotate",
            message: format!("fetching {} works again", names.join(", ")),
        });
    }
    notes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::secret::SecretBytes;

    fn pod() -> PodIdentity {
        PodIdentity {
            name: "nginx-deployment-5d59d67564-x2x7q".into(),
            namespace: "default".into(),
            uid: "0b1e7c9a-0000-4000-8000-000000000001".into(),
            service_account: "default".into(),
        }
    }

    fn file(name: &str) -> FileName {
        FileName::new(name).unwrap()
    }

    fn known(pairs: &[(&str, &str, &str)]) -> BTreeMap<FileName, Known> {
        pairs
            .iter()
            .map(|(f, value, version)| {
                (
                    file(f),
                    Known::new(SecretBytes::from(value.to_string()), version.to_string()),
                )
            })
            .collect()
    }

    fn seed_target() -> SyncTarget {
        SyncTarget {
            secret_name: "k8s-secret".into(),
            secret_type: "Opaque".into(),
            labels: BTreeMap::from([("environment".into(), "test".into())]),
            annotations: BTreeMap::new(),
            data: BTreeMap::from([
                ("username".into(), file("db-user")),
                ("password".into(), file("db-pass")),
            ]),
        }
    }

    #[test]
    fn the_synced_secret_carries_the_values_type_labels_and_this_pod_as_an_owner() {
        let values = known(&[
            ("db-user", "administrator", "v1"),
            ("db-pass", "mysupersecretpassword", "v2"),
        ]);
        let secret = synced_secret(&seed_target(), &values, &pod(), "kv").unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data["username"].0, b"administrator");
        assert_eq!(data["password"].0, b"mysupersecretpassword");
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels["environment"], "test");
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert_eq!(secret.metadata.namespace.as_deref(), Some("default"));
        let owners = secret.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "Pod");
        assert_eq!(owners[0].uid, pod().uid);
        // Not a controller: several pods may own one Secret.
        assert_eq!(owners[0].controller, None);
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations[PROVIDER_CLASS_ANNOTATION], "kv");
    }

    #[test]
    fn a_secrets_values_are_wiped() {
        let values = known(&[("db-user", "u", "v1"), ("db-pass", "p", "v2")]);
        let mut secret = synced_secret(&seed_target(), &values, &pod(), "kv").unwrap();
        wipe_secret_data(&mut secret);
        for value in secret.data.unwrap().values() {
            assert!(value.0.is_empty());
        }
    }

    #[test]
    fn h2_the_class_annotation_cannot_be_overridden_by_the_class() {
        let mut target = seed_target();
        target
            .annotations
            .insert(PROVIDER_CLASS_ANNOTATION.into(), "someone-else".into());
        target.annotations.insert("team".into(), "db".into());
        let values = known(&[("db-user", "u", "v1"), ("db-pass", "p", "v2")]);
        let secret = synced_secret(&target, &values, &pod(), "kv").unwrap();
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations[PROVIDER_CLASS_ANNOTATION], "kv");
        assert_eq!(annotations["team"], "db");
    }

    fn existing(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        type_: Option<&str>,
    ) -> Secret {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        };
        Secret {
            metadata: ObjectMeta {
                name: Some("k8s-secret".into()),
                namespace: Some("default".into()),
                labels: map(labels),
                annotations: map(annotations),
                resource_version: Some("4711".into()),
                ..Default::default()
            },
            type_: type_.map(str::to_owned),
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"theirs".to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn h2_may_write_creates_an_absent_secret_and_updates_only_its_own() {
        let target = seed_target();
        let ours = [(MANAGED_LABEL, "true")];
        let class = [(PROVIDER_CLASS_ANNOTATION, "kv")];
        let decide = |s: &Secret| may_write(Some(s), &target, "kv", "default");

        assert_eq!(
            may_write(None, &target, "kv", "default"),
            Ok(SecretWrite::Create)
        );
        let update = Ok(SecretWrite::Update {
            resource_version: "4711".into(),
        });
        assert_eq!(decide(&existing(&ours, &class, Some("Opaque"))), update);
        // An unset type is Opaque.
        assert_eq!(decide(&existing(&ours, &class, None)), update);

        let why = |s: Secret| decide(&s).unwrap_err().why;
        assert_eq!(
            why(existing(
                &ours,
                &[(PROVIDER_CLASS_ANNOTATION, "other")],
                None
            )),
            RefusalReason::OtherClass("other".into())
        );
        // Unlabelled: made by Terraform, Helm, kubectl, the CSI driver...
        assert_eq!(why(existing(&[], &class, None)), RefusalReason::NotManaged);
        assert_eq!(
            why(existing(&[(MANAGED_LABEL, "false")], &class, None)),
            RefusalReason::NotManaged
        );
        // The CSI driver's own Secret: its label, not our class annotation.
        assert_eq!(why(existing(&ours, &[], None)), RefusalReason::NoClass);
        assert_eq!(
            why(existing(
                &ours,
                &class,
                Some("kubernetes.io/service-account-token")
            )),
            RefusalReason::TypeDiffers {
                found: "kubernetes.io/service-account-token".into(),
                wanted: "Opaque".into()
            }
        );
    }

    // Secrets synced by secret-injector 0.1 carry no class annotation: still
    // ours when only our sidecars wrote them, for pods; the CSI driver's or
    // anyone else's are not.
    #[test]
    fn h2_a_secret_synced_before_the_class_annotation_is_still_ours() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let target = seed_target();
        let with = |managers: &[&str], owner_kind: &str| {
            let mut s = existing(&[(MANAGED_LABEL, "true")], &[], None);
            s.metadata.managed_fields = Some(
                managers
                    .iter()
                    .map(|m| ManagedFieldsEntry {
                        manager: Some((*m).to_owned()),
                        ..Default::default()
                    })
                    .collect(),
            );
            s.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: owner_kind.into(),
                name: "p".into(),
                uid: "u".into(),
                ..Default::default()
            }]);
            may_write(Some(&s), &target, "kv", "default")
        };
        assert!(matches!(
            with(&["secret-injector/uid-1", "secret-injector/uid-2"], "Pod"),
            Ok(SecretWrite::Update { .. })
        ));
        for (managers, kind) in [
            (&["secret-injector/uid-1", "kubectl-edit"][..], "Pod"),
            (&["secrets-store-csi-driver"][..], "Pod"),
            (&["secret-injector/uid-1"][..], "ReplicaSet"),
            (&[][..], "Pod"),
        ] {
            assert_eq!(
                with(managers, kind).unwrap_err().why,
                RefusalReason::NoClass,
                "{managers:?} {kind}"
            );
        }
    }

    #[test]
    fn h2_a_refusal_names_the_secret_the_namespace_the_class_and_what_to_do() {
        let refusal = may_write(
            Some(&existing(&[], &[], None)),
            &seed_target(),
            "kv",
            "prod",
        )
        .unwrap_err();
        let text = refusal.to_string();
        assert_eq!(
            text,
            "Secret prod/k8s-secret exists and was not created by secret-injector for SecretProviderClass kv (it has no label secrets-store.csi.k8s.io/managed: \"true\"); secret-injector never takes over a Secret; delete it or rename secretObjects[].secretName"
        );
        let note = refusal_note(&refusal);
        assert_eq!(note.type_, NoteType::Warning);
        assert_eq!(note.reason, REASON_SYNC_REFUSED);
        assert_eq!(note.message, text);
        // What the cluster holds is quoted and bounded, never the data.
        let odd = "x\ny".repeat(100);
        let refusal = may_write(
            Some(&existing(
                &[(MANAGED_LABEL, "true")],
                &[(PROVIDER_CLASS_ANNOTATION, &odd)],
                None,
            )),
            &seed_target(),
            "kv",
            "prod",
        )
        .unwrap_err()
        .to_string();
        assert!(!refusal.contains('\n') && refusal.len() < 400, "{refusal}");
        assert!(!refusal.contains("theirs"));
    }

    #[test]
    fn a_tls_secret_splits_the_pem_bundle_into_chain_and_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        // What Key Vault keeps as a PEM certificate's secret: key, then cert.
        let bundle = format!("{}{}", key.serialize_pem(), cert.pem());
        let values = known(&[("ingress-cert", &bundle, "v1")]);
        let target = SyncTarget {
            secret_name: "ingress-tls".into(),
            secret_type: TLS_SECRET_TYPE.into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            data: BTreeMap::from([
                ("tls.crt".into(), file("ingress-cert")),
                ("tls.key".into(), file("ingress-cert")),
            ]),
        };
        let secret = synced_secret(&target, &values, &pod(), "kv").unwrap();
        let data = secret.data.unwrap();
        let crt = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
        let tls_key = String::from_utf8(data["tls.key"].0.clone()).unwrap();
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----") && !crt.contains("PRIVATE KEY"));
        assert!(tls_key.contains("PRIVATE KEY-----") && !tls_key.contains("CERTIFICATE"));
        assert_eq!(tls_key, key.serialize_pem());

        // A value without a key cannot make a TLS Secret: said, not guessed.
        let values = known(&[("ingress-cert", &cert.pem(), "v1")]);
        let err = synced_secret(&target, &values, &pod(), "kv")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no PEM PRIVATE KEY for key \"tls.key\""),
            "{err}"
        );
    }

    #[test]
    fn a_secret_is_not_built_from_a_missing_value() {
        let values = known(&[("db-user", "administrator", "v1")]);
        let err = synced_secret(&seed_target(), &values, &pod(), "kv").unwrap_err();
        assert!(err.to_string().contains("\"db-pass\""), "{err}");
        assert!(!err.to_string().contains("administrator"));
    }

    #[test]
    fn the_pod_status_is_named_and_shaped_as_the_csi_drivers() {
        let status = pod_status(
            &pod(),
            "kv-aks-csi-weu-01",
            "/mnt/secrets-store",
            &[("secret/db-user".into(), "v1".into())],
        );
        assert_eq!(
            status["metadata"]["name"],
            "nginx-deployment-5d59d67564-x2x7q-default-kv-aks-csi-weu-01"
        );
        assert_eq!(status["apiVersion"], "secrets-store.csi.x-k8s.io/v1");
        assert_eq!(status["status"]["mounted"], true);
        assert_eq!(
            status["status"]["secretProviderClassName"],
            "kv-aks-csi-weu-01"
        );
        assert_eq!(status["status"]["podName"], pod().name);
        assert_eq!(status["status"]["objects"][0]["id"], "secret/db-user");
        assert_eq!(status["status"]["objects"][0]["version"], "v1");
        assert_eq!(status["metadata"]["ownerReferences"][0]["uid"], pod().uid);
    }

    #[test]
    fn object_ids_follow_the_azure_provider() {
        let object = |uri: &str| SecretObject {
            file: file("f"),
            source: uri.parse().unwrap(),
            encoding: None,
            format: None,
            json_key: None,
            yaml_key: None,
            json_path: None,
            file_permission: None,
            failover: None,
        };
        assert_eq!(
            object_id(&object("azure://kv-1/secrets/db-pass")),
            "secret/db-pass"
        );
        assert_eq!(object_id(&object("azure://kv-1/keys/k/abc")), "key/k");
        assert_eq!(
            object_id(&object(
                "gcp://projects/p-123456/locations/us-east1/secrets/db#user"
            )),
            "projects/p-123456/locations/us-east1/secrets/db/versions/latest"
        );
        assert_eq!(object_id(&object("azure://kv-1/certificates/c")), "cert/c");
        assert_eq!(object_id(&object("aws://us-east-1/prod/db")), "f");
        assert_eq!(
            object_id(&object("vault://secret/data/kv1?api=true#bar1")),
            "f"
        );
    }

    #[test]
    fn field_managers_differ_per_pod() {
        let mut other = pod();
        other.uid = "another".into();
        assert_ne!(pod().field_manager(), other.field_manager());
    }

    #[test]
    fn pod_identity_needs_name_namespace_and_uid() {
        let env = |k: &str| match k {
            "POD_NAME" => Some("p".to_owned()),
            "POD_NAMESPACE" => Some("ns".to_owned()),
            "POD_UID" => Some("u".to_owned()),
            _ => None,
        };
        let id = PodIdentity::from_env(env).unwrap();
        assert_eq!(id.service_account, "default");
        assert!(PodIdentity::from_env(|k| (k != "POD_UID").then(|| "x".to_owned())).is_none());
    }

    fn facts<'a>(
        first_set: bool,
        wrote: bool,
        changed: &'a [FileName],
        failures: &'a [(FileName, FetchError)],
        previously_failing: &'a BTreeSet<FileName>,
        known: &'a BTreeMap<FileName, Known>,
    ) -> RoundFacts<'a> {
        RoundFacts {
            first_set,
            wrote,
            complete: true,
            changed,
            failures,
            previously_failing,
            known,
            mount_path: "/mnt/secrets-store",
        }
    }

    #[test]
    fn a_first_fetch_that_fails_is_a_failed_mount_and_its_success_a_mount() {
        let values = known(&[("db-user", "administrator", "u1")]);
        let none = BTreeSet::new();
        let failures = [(
            file("db-pass"),
            FetchError::NotFound("SecretNotFound from the vault".into()),
        )];
        let waiting = RoundFacts {
            complete: false,
            ..facts(false, false, &[], &failures, &none, &values)
        };
        let notes = notes_for(&waiting);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].type_, NoteType::Warning);
        assert_eq!(notes[0].reason, REASON_MOUNT_FAILED);
        assert!(
            notes[0].message.starts_with("cannot fetch db-pass: ")
                && notes[0].message.contains("no file is written"),
            "{}",
            notes[0].message
        );

        // The set arrives: mounted, not "recovered" from a rotation failure.
        let failing = BTreeSet::from([file("db-pass")]);
        let mounted = notes_for(&facts(true, true, &[], &[], &failing, &values));
        let reasons: Vec<&str> = mounted.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, [REASON_MOUNTED]);
    }

    #[test]
    fn l2_a_ten_kilobyte_error_gives_a_bounded_event_note() {
        let values = known(&[("db-user", "administrator", "u1")]);
        let none = BTreeSet::new();
        let huge = "x".repeat(10 * 1024);
        let failures: Vec<(FileName, FetchError)> = (0..20)
            .map(|i| {
                (
                    file(&format!("f{i}")),
                    FetchError::Unavailable(huge.as_str().into()),
                )
            })
            .collect();
        let notes = notes_for(&facts(false, false, &[], &failures, &none, &values));
        assert_eq!(notes.len(), 1);
        let note = notes[0].bounded_message();
        assert!(note.len() <= 1024, "{}", note.len());
        assert!(note.starts_with("cannot fetch f0: store unavailable: xxx"));
        assert!(note.ends_with('…'));
    }

    #[test]
    fn events_for_the_first_set_a_rotation_a_failure_and_its_recovery() {
        let values = known(&[
            ("db-user", "administrator", "u1"),
            ("db-pass", "s3cret-value", "p2"),
        ]);
        let none = BTreeSet::new();

        let first = notes_for(&facts(true, true, &[], &[], &none, &values));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].reason, REASON_MOUNTED);
        assert!(
            first[0].message.contains("db-pass (version p2)"),
            "{}",
            first[0].message
        );

        let changed = [file("db-pass")];
        let rotated = notes_for(&facts(false, true, &changed, &[], &none, &values));
        assert_eq!(rotated.len(), 1);
        assert_eq!(rotated[0].reason, REASON_ROTATED);
        assert_eq!(rotated[0].message, "rotated db-pass (version p2)");

        // Nothing changed, nothing failing: no Event.
        assert!(notes_for(&facts(false, false, &[], &[], &none, &values)).is_empty());

        let failures = [(
            file("db-pass"),
            FetchError::Unavailable("503 from the vault".into()),
        )];
        let failed = notes_for(&facts(false, false, &[], &failures, &none, &values));
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].type_, NoteType::Warning);
        assert_eq!(failed[0].reason, REASON_FAILED);
        assert!(
            failed[0].message.contains("db-pass: store unavailable"),
            "{}",
            failed[0].message
        );

        // The same failure again: no new Event each retry.
        let failing = BTreeSet::from([file("db-pass")]);
        assert!(notes_for(&facts(false, false, &[], &failures, &failing, &values)).is_empty());

        let recovered = notes_for(&facts(false, false, &[], &[], &failing, &values));
        assert_eq!(recovered[0].reason, REASON_RECOVERED);

        // No Event ever carries a value.
        for note in first
            .iter()
            .chain(&rotated)
            .chain(&failed)
            .chain(&recovered)
        {
            assert!(
                !note.message.contains("s3cret-value") && !note.message.contains("administrator")
            );
        }
    }
}
