//! The status file: per object, the store's version and the last success and
//! failure, so a person (and the app) can see what the files hold, cluster or
//! not. It lives beside the files as `..secret-injector-status.json`: names
//! starting with `..` belong to the writer, never to a secret.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

use serde::{Deserialize, Serialize};
use shared::InjectionSpec;

use crate::{lease::Lease, plan::Merged};

pub use shared::contract::STATUS_FILE;
const STATUS_TMP: &str = "..secret-injector-status.json.tmp";
/// Far above what any spec's status takes (errors are bounded): a larger
/// file is not one this sidecar wrote.
pub const MAX_STATUS_BYTES: u64 = 1024 * 1024;

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
    /// The lease of a lent value (dynamic credentials, a certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
}

/// A lease as the status file shows it: its id (not a secret: acting on it
/// takes a token with the right policy), and RFC 3339 times. The sidecar
/// reads it back to go on renewing what the init container was lent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub renewable: bool,
    /// When the store granted it; absent in older files: `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    pub since: String,
    pub expires: String,
    /// The end of the credential that obtained it, which it cannot outlive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
}

impl LeaseStatus {
    pub fn of(lease: &Lease) -> Self {
        let stamp = |t| humantime::format_rfc3339_seconds(t).to_string();
        Self {
            id: lease.id.clone(),
            renewable: lease.renewable,
            issued: Some(stamp(lease.issued)),
            since: stamp(lease.since),
            expires: stamp(lease.until),
            bound: lease.bound.map(stamp),
        }
    }

    /// The lease, if every time parses.
    pub fn to_lease(&self) -> Option<Lease> {
        let time = |s: &str| humantime::parse_rfc3339(s).ok();
        let bound = match &self.bound {
            Some(b) => Some(time(b)?),
            None => None,
        };
        let since = time(&self.since)?;
        let issued = match &self.issued {
            Some(i) => time(i)?,
            None => since,
        };
        Some(Lease {
            id: self.id.clone(),
            renewable: self.renewable,
            issued,
            since,
            until: time(&self.expires)?,
            bound,
        })
    }
}

impl Status {
    pub fn record(&mut self, spec: &InjectionSpec, merged: &Merged, wrote: bool, now: SystemTime) {
        let stamp = humantime::format_rfc3339_seconds(now).to_string();
        for object in &spec.objects {
            let entry = self.objects.entry(object.file.to_string()).or_default();
            entry.source = object.source.to_string();
            if let Some(known) = merged.known.get(&object.file) {
                entry.version = Some(known.version.clone());
                entry.lease = known.lease.as_ref().map(LeaseStatus::of);
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

    /// The status file, if it is a regular file of plausible size that
    /// parses. The volume is world-writable (M4): a symlink planted under
    /// this name is not followed, a FIFO does not block.
    pub fn read(dir: &Path) -> Option<Self> {
        let fd = rfs::open(
            Self::path(dir),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let stat = rfs::fstat(&fd).ok()?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || u64::try_from(stat.st_size).unwrap_or(u64::MAX) > MAX_STATUS_BYTES
        {
            return None;
        }
        let mut bytes = Vec::new();
        fs::File::from(fd)
            .take(MAX_STATUS_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_STATUS_BYTES {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// Written whole, by rename: readers never see half a file. The temp file
    /// is made fresh (`O_EXCL`, `O_NOFOLLOW`) after removing whatever has its
    /// name, so a planted symlink never redirects the write outside the
    /// volume; a name re-planted in between makes the create fail (retried
    /// next round), never write through it.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(STATUS_TMP);
        match rfs::unlink(&tmp) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = rfs::open(
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        let mut file = fs::File::from(fd);
        file.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        drop(file);
        fs::rename(tmp, Self::path(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status {
        let mut status = Status::default();
        status.objects.insert(
            "a".into(),
            ObjectStatus {
                source: "azure://kv/secrets/a".into(),
                version: Some("v1".into()),
                ..Default::default()
            },
        );
        status
    }

    #[test]
    fn a_lease_reads_back_as_it_was_written() {
        use std::time::Duration;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let lease = Lease {
            id: Some("database/creds/app/abc".into()),
            renewable: true,
            issued: t - Duration::from_secs(60),
            since: t,
            until: t + Duration::from_secs(120),
            bound: Some(t + Duration::from_secs(3600)),
        };
        let status = LeaseStatus::of(&lease);
        assert_eq!(status.expires, "2027-01-15T08:02:00Z");
        assert_eq!(status.to_lease().as_ref(), Some(&lease));
        let broken = LeaseStatus {
            expires: "soon".into(),
            ..status
        };
        assert_eq!(broken.to_lease(), None);
        // A file written before `issued` existed: issued when renewed last.
        let older = LeaseStatus {
            issued: None,
            ..LeaseStatus::of(&lease)
        };
        assert_eq!(older.to_lease().map(|l| l.issued), Some(t));
    }

    #[test]
    fn written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        status().write(dir.path()).unwrap();
        assert_eq!(Status::read(dir.path()), Some(status()));
        // Written again over itself.
        status().write(dir.path()).unwrap();
        assert_eq!(Status::read(dir.path()), Some(status()));
    }

    #[test]
    fn m4_a_planted_status_temp_symlink_is_not_written_through() {
        let root = tempfile::tempdir().unwrap();
        let vol = root.path().join("vol");
        fs::create_dir(&vol).unwrap();
        let victim = root.path().join("victim.json");
        fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, vol.join(STATUS_TMP)).unwrap();
        // A dangling one, to a file that would be created outside.
        let created = root.path().join("created-outside");
        status().write(&vol).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(Status::read(&vol), Some(status()));

        std::os::unix::fs::symlink(&created, vol.join(STATUS_TMP)).unwrap();
        status().write(&vol).unwrap();
        assert!(!created.exists());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn m4_a_status_file_that_is_a_symlink_fifo_or_too_large_is_not_read() {
        let root = tempfile::tempdir().unwrap();
        let vol = root.path().join("vol");
        fs::create_dir(&vol).unwrap();
        let outside = root.path().join("status.json");
        status().write(root.path()).unwrap();
        fs::rename(Status::path(root.path()), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, Status::path(&vol)).unwrap();
        assert_eq!(Status::read(&vol), None);

        fs::remove_file(Status::path(&vol)).unwrap();
        let dir = fs::File::open(&vol).unwrap();
        rfs::mkfifoat(&dir, STATUS_FILE, Mode::from_raw_mode(0o644)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let v = vol.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Status::read(&v));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("Status::read hung on a FIFO");
        assert_eq!(read, None);

        fs::remove_file(Status::path(&vol)).unwrap();
        let big = fs::File::create(Status::path(&vol)).unwrap();
        big.set_len(MAX_STATUS_BYTES + 1).unwrap();
        assert_eq!(Status::read(&vol), None);
    }
}
