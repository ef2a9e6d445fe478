//! The status file: per object, the store's version and the last success and
//! failure, so a person (and the app) can see what the files hold, cluster or
//! not. It lives beside the files as `..secret-injector-status.json`: names
//! starting with `..` belong to the writer, never to a secret.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use shared::InjectionSpec;

use crate::plan::Merged;

pub const STATUS_FILE: &str = "..secret-injector-status.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub objects: BTreeMap<String, ObjectStatus>,
    /// When the files last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_write: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Set while the object is failing; cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
}

impl Status {
    pub fn record(&mut self, spec: &InjectionSpec, merged: &Merged, wrote: bool, now: SystemTime) {
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        for object in &spec.objects {
            let entry = self.objects.entry(object.file.to_string()).or_default();
            entry.source = object.source.to_string();
            if let Some(known) = merged.known.get(&object.file) {
                entry.version = Some(known.version.clone());
            }
            match merged.failures.iter().find(|(f, _)| f == &object.file) {
                Some((_, e)) => {
                    entry.last_failure = Some(stamp.clone());
                    entry.error = Some(e.to_string());
                    entry.error_kind = Some(e.label().to_owned());
                }
                None => {
                    entry.last_success = Some(stamp.clone());
                    entry.error = None;
                    entry.error_kind = None;
                }
            }
        }
        if wrote {
            self.last_write = Some(stamp);
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATUS_FILE)
    }

    pub fn read(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&fs::read(Self::path(dir)).ok()?).ok()
    }

    /// Written whole, by rename: readers never see half a file.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join("..secret-injector-status.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        fs::rename(tmp, Self::path(dir))
    }
}
