//! The atomic set writer, as kubelet's AtomicWriter does it: the data goes into
//! a fresh hidden directory `..<timestamp>`, then one symlink `..data` is
//! swapped to it with a rename, and each visible file is a symlink
//! `<name> -> ..data/<name>`. A reader never sees a torn or mixed set.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    time::SystemTime,
};

use shared::FileName;

use crate::secret::SecretBytes;

pub const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct WriteError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io<T>(action: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T, WriteError> {
    r.map_err(|source| WriteError {
        action,
        path: path.to_owned(),
        source,
    })
}

/// One file of a set: its bytes and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub data: SecretBytes,
    pub mode: u32,
}

pub type FileSet = BTreeMap<FileName, FileEntry>;

#[derive(Debug, Clone)]
pub struct AtomicWriter {
    dir: PathBuf,
}

impl AtomicWriter {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True once a complete set has been written (the native sidecar's probe).
    pub fn has_data(&self) -> bool {
        fs::symlink_metadata(self.dir.join(DATA_LINK)).is_ok()
    }

    /// The set the `..data` link points at now, if any.
    pub fn read_current(&self) -> Result<Option<FileSet>, WriteError> {
        let data = self.dir.join(DATA_LINK);
        if fs::symlink_metadata(&data).is_err() {
            return Ok(None);
        }
        let mut set = FileSet::new();
        for entry in io("list", &data, fs::read_dir(&data))? {
            let entry = io("list", &data, entry)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(name) = FileName::new(name) else {
                continue;
            };
            let path = entry.path();
            let bytes = io("read", &path, fs::read(&path))?;
            let mode = io("stat", &path, fs::metadata(&path))?.permissions().mode() & 0o777;
            set.insert(
                name,
                FileEntry {
                    data: SecretBytes::new(bytes),
                    mode,
                },
            );
        }
        Ok(Some(set))
    }

    /// Writes the set unless it equals what is there. Returns whether it wrote.
    pub fn write(&self, set: &FileSet) -> Result<bool, WriteError> {
        if self.read_current()?.as_ref() == Some(set) {
            return Ok(false);
        }
        let old_target = fs::read_link(self.dir.join(DATA_LINK)).ok();

        // 1. The new data, complete and synced, in a directory no reader uses yet.
        let stamp = timestamp_dir_name();
        let new_dir = self.dir.join(&stamp);
        io("create", &new_dir, fs::create_dir(&new_dir))?;
        io(
            "chmod",
            &new_dir,
            fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755)),
        )?;
        for (name, entry) in set {
            let path = new_dir.join(name.as_str());
            let mut file = io(
                "create",
                &path,
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(entry.mode)
                    .open(&path),
            )?;
            io("write", &path, file.write_all(entry.data.expose()))?;
            // The umask may have narrowed the mode at creation.
            io(
                "chmod",
                &path,
                file.set_permissions(fs::Permissions::from_mode(entry.mode)),
            )?;
            io("sync", &path, file.sync_all())?;
        }
        sync_dir(&new_dir)?;

        // 2. One rename swaps the whole set.
        let tmp = self.dir.join(DATA_LINK_TMP);
        let _ = fs::remove_file(&tmp);
        io("link", &tmp, symlink(&stamp, &tmp))?;
        let data = self.dir.join(DATA_LINK);
        io("rename", &data, fs::rename(&tmp, &data))?;
        sync_dir(&self.dir)?;

        // 3. Visible names: add the new, drop the gone (only our own links).
        for name in set.keys() {
            self.ensure_visible_link(name)?;
        }
        for entry in io("list", &self.dir, fs::read_dir(&self.dir))? {
            let entry = io("list", &self.dir, entry)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") {
                continue;
            }
            let ours = fs::read_link(entry.path()).is_ok_and(|t| t.starts_with(DATA_LINK));
            let kept = FileName::new(name).is_ok_and(|n| set.contains_key(&n));
            if ours && !kept {
                io("remove", &entry.path(), fs::remove_file(entry.path()))?;
            }
        }

        // 4. The old data directory, once nothing points at it.
        if let Some(old) = old_target
            && old.as_os_str() != stamp.as_str()
        {
            let old = self.dir.join(old);
            if old.starts_with(&self.dir) {
                io("remove", &old, fs::remove_dir_all(&old))?;
            }
        }
        Ok(true)
    }

    fn ensure_visible_link(&self, name: &FileName) -> Result<(), WriteError> {
        let path = self.dir.join(name.as_str());
        let target = Path::new(DATA_LINK).join(name.as_str());
        if fs::read_link(&path).is_ok_and(|t| t == target) {
            return Ok(());
        }
        let tmp = self.dir.join(format!("..{}.tmp", name.as_str()));
        let _ = fs::remove_file(&tmp);
        io("link", &tmp, symlink(&target, &tmp))?;
        io("rename", &path, fs::rename(&tmp, &path))
    }
}

fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    let handle = io("open", dir, fs::File::open(dir))?;
    io("sync", dir, handle.sync_all())
}

/// `..2026_11_29_03_04_05.123456789`: sortable, unique per call, hidden.
fn timestamp_dir_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("..{}.{:09}_{n}", now.as_secs(), now.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> FileSet {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    FileName::new(*n).unwrap(),
                    FileEntry {
                        data: SecretBytes::from(v.to_string()),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_files_as_links_through_data() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        assert!(!writer.has_data());
        assert!(
            writer
                .write(&set(&[("db-user", "administrator"), ("db-pass", "pw")]))
                .unwrap()
        );
        assert!(writer.has_data());
        assert_eq!(
            fs::read_to_string(dir.path().join("db-user")).unwrap(),
            "administrator"
        );
        assert_eq!(
            fs::read_link(dir.path().join("db-pass")).unwrap(),
            Path::new("..data/db-pass")
        );
        let mode = fs::metadata(dir.path().join("db-pass"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn nothing_is_rewritten_when_nothing_changed() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&set(&[("a", "1")])).unwrap();
        let before = fs::read_link(dir.path().join(DATA_LINK)).unwrap();
        assert!(!writer.write(&set(&[("a", "1")])).unwrap());
        assert_eq!(fs::read_link(dir.path().join(DATA_LINK)).unwrap(), before);
    }

    #[test]
    fn a_change_swaps_the_set_and_removes_the_old_data() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&set(&[("a", "1"), ("gone", "x")])).unwrap();
        writer.write(&set(&[("a", "2"), ("new", "y")])).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "2");
        assert_eq!(fs::read_to_string(dir.path().join("new")).unwrap(), "y");
        assert!(fs::symlink_metadata(dir.path().join("gone")).is_err());
        assert_eq!(
            hidden_dirs(dir.path()).len(),
            1,
            "{:?}",
            hidden_dirs(dir.path())
        );
    }

    #[test]
    fn modes_are_per_file_and_a_mode_change_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        let mut files = set(&[("a", "1")]);
        writer.write(&files).unwrap();
        files.values_mut().for_each(|e| e.mode = 0o440);
        assert!(writer.write(&files).unwrap());
        let mode = fs::metadata(dir.path().join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o440);
    }

    #[test]
    fn files_not_written_by_us_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("README"), "mine").unwrap();
        let writer = AtomicWriter::new(dir.path());
        writer.write(&set(&[("a", "1")])).unwrap();
        writer.write(&set(&[("b", "1")])).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("README")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn read_current_returns_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let writer = AtomicWriter::new(dir.path());
        assert_eq!(writer.read_current().unwrap(), None);
        let files = set(&[("a", "1"), ("b", "2")]);
        writer.write(&files).unwrap();
        assert_eq!(writer.read_current().unwrap(), Some(files));
    }
}
