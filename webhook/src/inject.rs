//! `webhook inject`: the admission mutation, offline, over multi-document
//! YAML (Pods and the pod templates of workload kinds), like
//! `istioctl kube-inject`. Documents that do not opt in pass through as written.

use json_patch::jsonptr::PointerBuf;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use std::collections::BTreeMap;

use crate::{
    accounts::AccountIdentity,
    classes::Context,
    config::InjectorConfig,
    mutate::{self, Decision, MutationError},
};

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    // The cause is part of the message (one line for a CI log), so it is not
    // also chained as a `source`, which would print it twice.
    #[error("document {index} is not valid YAML: {error}")]
    Yaml {
        index: usize,
        error: serde_yaml_ng::Error,
    },
    #[error("document {index} ({what}): {error}")]
    Denied {
        index: usize,
        what: String,
        error: Box<MutationError>,
    },
    #[error("document {index} ({what}): its pod template is not a valid pod: {reason}")]
    BadTemplate {
        index: usize,
        what: String,
        reason: String,
    },
}

/// The result of injecting a stream: the output text and warnings to print.
#[derive(Debug, Default)]
pub struct Injected {
    pub output: String,
    pub warnings: Vec<String>,
    pub injected: usize,
}

/// Where each supported kind keeps its pod template.
fn template_pointer(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Options of an `inject` run besides the operator's configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct InjectOptions {
    /// Convert Secrets Store CSI volumes, as in a namespace labelled for it.
    pub csi_compat: bool,
}

pub fn inject_stream(input: &str, config: &InjectorConfig) -> Result<Injected, InjectError> {
    inject_stream_with(input, config, InjectOptions::default())
}

/// SecretProviderClasses in the stream are what its pods may name.
pub fn inject_stream_with(
    input: &str,
    config: &InjectorConfig,
    options: InjectOptions,
) -> Result<Injected, InjectError> {
    let mut result = Injected::default();
    let mut documents = Vec::new();
    let texts = split_documents(input);
    // What the pods may refer to: SecretProviderClasses and ServiceAccounts
    // in the same input.
    let mut classes: BTreeMap<(String, String), Value> = BTreeMap::new();
    let mut accounts: BTreeMap<(String, String), AccountIdentity> = BTreeMap::new();
    for (i, text) in texts.iter().enumerate() {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|source| InjectError::Yaml {
            index: i + 1,
            error: source,
        })?;
        let key = || {
            let namespace = doc
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (namespace.to_owned(), name.to_owned())
        };
        match doc.get("kind").and_then(Value::as_str) {
            Some(shared::provider_class::PROVIDER_CLASS_KIND) => {
                classes.insert(key(), doc.clone());
            }
            Some("ServiceAccount") => {
                let annotations: Option<BTreeMap<String, String>> = doc
                    .pointer("/metadata/annotations")
                    .and_then(|a| serde_json::from_value(a.clone()).ok());
                accounts.insert(
                    key(),
                    AccountIdentity::from_annotations(annotations.as_ref()),
                );
            }
            _ => {}
        }
    }
    let known = Known {
        classes: &classes,
        accounts: &accounts,
    };
    for (i, text) in texts.into_iter().enumerate() {
        let index = i + 1;
        match inject_document(text, index, config, &known, options)? {
            Some((yaml, warnings)) => {
                result.injected += 1;
                result.warnings.extend(
                    warnings
                        .into_iter()
                        .map(|w| format!("document {index}: {w}")),
                );
                documents.push(yaml);
            }
            None => documents.push(text.to_owned()),
        }
    }
    result.output = documents
        .iter()
        .map(|d| {
            if d.ends_with('\n') || d.is_empty() {
                d.clone()
            } else {
                format!("{d}\n")
            }
        })
        .collect::<Vec<_>>()
        .join("---\n");
    Ok(result)
}

/// Splits on `---` lines (a separator at column 0 cannot be block-scalar
/// content, which is indented). Blank leading documents are dropped.
fn split_documents(input: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == "---" {
            docs.push(&input[start..offset]);
            start = offset + line.len();
        } else if bare.starts_with("--- ") || bare.starts_with("---\t") {
            // `--- {kind: ConfigMap, ...}`: the document starts on the marker's line.
            docs.push(&input[start..offset]);
            start = offset + 4;
        }
        offset += line.len();
    }
    docs.push(&input[start..]);
    docs.into_iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// What the input's other documents provide.
struct Known<'a> {
    classes: &'a BTreeMap<(String, String), Value>,
    accounts: &'a BTreeMap<(String, String), AccountIdentity>,
}

/// `Ok(None)`: pass the document through untouched.
fn inject_document(
    text: &str,
    index: usize,
    config: &InjectorConfig,
    known: &Known<'_>,
    options: InjectOptions,
) -> Result<Option<(String, Vec<String>)>, InjectError> {
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|source| InjectError::Yaml {
        index,
        error: source,
    })?;
    let kind = doc
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(tokens) = template_pointer(&kind) else {
        return Ok(None);
    };
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed")
        .to_owned();
    let what = format!("{kind} {name}");
    let pointer = PointerBuf::from_tokens(tokens.iter().copied()).to_string();
    let namespace = doc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned();
    let Some(template) = doc.pointer_mut(&pointer) else {
        return Ok(None);
    };

    let mut pod_value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    });
    let pod: Pod =
        serde_json::from_value(pod_value.clone()).map_err(|e| InjectError::BadTemplate {
            index,
            what: what.clone(),
            reason: e.to_string(),
        })?;
    let ctx = Context {
        namespace: &namespace,
        classes: known.classes,
        accounts: known.accounts,
        csi_compat: options.csi_compat,
    };
    let mutation = match mutate::decide_with(&pod, config, &ctx) {
        Ok(Decision::Skip { .. }) => return Ok(None),
        Ok(Decision::Inject(mutation)) => mutation,
        Err(source) => {
            return Err(InjectError::Denied {
                index,
                what,
                error: Box::new(source),
            });
        }
    };
    json_patch::patch(&mut pod_value, &mutation.patch).map_err(|e| InjectError::BadTemplate {
        index,
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let Value::Object(template_map) = template else {
        return Ok(None);
    };
    for field in ["metadata", "spec"] {
        if let Some(value) = pod_value.get_mut(field) {
            template_map.insert(field.to_owned(), value.take());
        }
    }
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|source| InjectError::Yaml {
        index,
        error: source,
    })?;
    Ok(Some((yaml, mutation.warnings)))
}
