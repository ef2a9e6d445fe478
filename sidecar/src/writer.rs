//! The atomic set writer, as kubelet's AtomicWriter does it: the data goes into
//! a fresh hidden directory `..<timestamp>`, then one symlink `..data` is
//! swapped to it with a rename, and each visible file is a symlink
//! `<name> -> ..data/<name>`. A reader never sees a torn or mixed set.
//!
//! The volume is an `emptyDir` that kubelet makes world-writable, so another
//! container of the pod with a writable mount may plant entries in it (M4, the
//! CVE-2017-1002102 class). Nothing found there is trusted: every access goes
//! through a descriptor of the volume directory (`openat`, never a joined
//! path through a link), `..data` counts only when it is a symlink to a
//! directory name this writer makes, files are opened with `O_NOFOLLOW` and
//! `O_NONBLOCK`, must be regular and are size-bounded, and nothing is removed
//! but names this writer makes, as direct children of the volume.

use std::{
    collections::BTreeMap,
    ffi::CStr,
    fs,
    io::{Read, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::PermissionsExt,
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::SystemTime,
};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use shared::FileName;

use crate::secret::SecretBytes;

pub const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";

/// No file this writer makes is larger: the volume's default `sizeLimit`.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Nor a whole set, nor one with more entries.
const MAX_SET_BYTES: u64 = 4 * MAX_FILE_BYTES;
const MAX_SET_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {path}: {source}")]
pub struct WriteError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn io<T, E: Into<std::io::Error>>(
    action: &'static str,
    path: &Path,
    r: Result<T, E>,
) -> Result<T, WriteError> {
    r.map_err(|source| WriteError {
        action,
        path: path.to_owned(),
        source: source.into(),
    })
}

/// One file of a set: its bytes and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub data: SecretBytes,
    pub mode: u32,
}

pub type FileSet = BTreeMap<FileName, FileEntry>;

/// What makes the volume's content not a set this writer wrote. Fixed texts:
/// nothing a planting container chose (a link target, a name) is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untrusted {
    DataNotALink,
    DataTargetNotOurs,
    DataTargetNotADirectory,
    NotARegularFile,
    Unreadable,
    TooLarge,
    TooManyEntries,
}

impl Untrusted {
    fn describe(self) -> &'static str {
        match self {
            Self::DataNotALink => "..data is not a symlink",
            Self::DataTargetNotOurs => {
                "..data points somewhere other than a data directory this sidecar makes"
            }
            Self::DataTargetNotADirectory => "..data points at something that is not a directory",
            Self::NotARegularFile => {
                "the data directory holds a symlink, FIFO, device or directory"
            }
            Self::Unreadable => "the data directory holds an entry this sidecar cannot open",
            Self::TooLarge => "the data directory holds more bytes than the volume can",
            Self::TooManyEntries => "the data directory holds too many entries",
        }
    }
}

/// `Ok(Err(_))`: the volume holds something, but not a set of ours.
type Checked<T> = Result<Result<T, Untrusted>, WriteError>;

#[derive(Debug, Clone)]
pub struct AtomicWriter {
    dir: PathBuf,
    /// The "not a set of ours" warning is logged once per process.
    warned: Arc<AtomicBool>,
}

impl AtomicWriter {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True once a complete set has been written (the native sidecar's probe):
    /// `..data` is our link to a real data directory.
    pub fn has_data(&self) -> bool {
        let Ok(dir) = self.open_volume() else {
            return false;
        };
        matches!(current_target(&dir, &self.dir), Ok(Ok(Some(_))))
    }

    fn open_volume(&self) -> Result<OwnedFd, WriteError> {
        // The volume itself is the pod's mount point: trusted.
        io(
            "open",
            &self.dir,
            rfs::open(
                &self.dir,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        )
    }

    fn untrusted(&self, why: Untrusted) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                dir = %self.dir.display(),
                "{}: treating the volume as holding no set, nothing in it is read, followed or removed (another container may be writing to it)",
                why.describe()
            );
        }
    }

    /// The set the `..data` link points at now, if any. Anything that is not a
    /// set this writer could have written is "no set" (and a warning, once).
    pub fn read_current(&self) -> Result<Option<FileSet>, WriteError> {
        let volume = self.open_volume()?;
        match read_set(&volume, &self.dir)? {
            Ok(set) => Ok(set),
            Err(why) => {
                self.untrusted(why);
                Ok(None)
            }
        }
    }

    /// Writes the set unless it equals what is there. Returns whether it wrote.
    pub fn write(&self, set: &FileSet) -> Result<bool, WriteError> {
        if self.read_current()?.as_ref() == Some(set) {
            return Ok(false);
        }
        let volume = self.open_volume()?;
        let old_target = match current_target(&volume, &self.dir)? {
            Ok(target) => target,
            Err(why) => {
                self.untrusted(why);
                None
            }
        };

        // 1. The new data, complete and synced, in a directory no reader uses
        //    yet, written through its descriptor (a swapped path cannot
        //    redirect a write).
        let stamp = timestamp_dir_name();
        let new_dir = self.dir.join(&stamp);
        io(
            "create",
            &new_dir,
            rfs::mkdirat(&volume, stamp.as_str(), Mode::from_raw_mode(0o755)),
        )?;
        let data = io("open", &new_dir, open_dir_at(&volume, &stamp))?;
        io(
            "chmod",
            &new_dir,
            rfs::fchmod(&data, Mode::from_raw_mode(0o755)),
        )?;
        for (name, entry) in set {
            let path = new_dir.join(name.as_str());
            let fd = io(
                "create",
                &path,
                rfs::openat(
                    &data,
                    name.as_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(entry.mode),
                ),
            )?;
            let mut file = fs::File::from(fd);
            io("write", &path, file.write_all(entry.data.expose()))?;
            // The umask may have narrowed the mode at creation.
            io(
                "chmod",
                &path,
                file.set_permissions(fs::Permissions::from_mode(entry.mode)),
            )?;
            io("sync", &path, file.sync_all())?;
        }
        io("sync", &new_dir, rfs::fsync(&data))?;

        // 2. One rename swaps the whole set.
        let tmp = self.dir.join(DATA_LINK_TMP);
        let _ = rfs::unlinkat(&volume, DATA_LINK_TMP, AtFlags::empty());
        io(
            "link",
            &tmp,
            rfs::symlinkat(stamp.as_str(), &volume, DATA_LINK_TMP),
        )?;
        io(
            "rename",
            &self.dir.join(DATA_LINK),
            rfs::renameat(&volume, DATA_LINK_TMP, &volume, DATA_LINK),
        )?;
        io("sync", &self.dir, rfs::fsync(&volume))?;

        // 3. Visible names: add the new, drop the gone (only our own links:
        //    a symlink `<name>` whose target is exactly `..data/<name>`).
        for name in set.keys() {
            self.ensure_visible_link(&volume, name)?;
        }
        let entries = io("list", &self.dir, rfs::Dir::read_from(&volume))?;
        for entry in entries {
            let entry = io("list", &self.dir, entry)?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name.starts_with("..") || name == "." {
                continue;
            }
            let ours = link_target(&volume, name)
                .is_some_and(|t| t.as_bytes() == format!("{DATA_LINK}/{name}").as_bytes());
            let kept = FileName::new(name).is_ok_and(|n| set.contains_key(&n));
            if ours && !kept {
                // unlink never follows a link: at worst it removes an entry
                // swapped in under the same name, inside the volume.
                io(
                    "remove",
                    &self.dir.join(name),
                    rfs::unlinkat(&volume, name, AtFlags::empty()),
                )?;
            }
        }

        // 4. The old data directory, once nothing points at it: only a name
        //    of ours (checked in `current_target`), a direct child of the
        //    volume. `remove_dir_all` removes a symlink itself, never its
        //    target, and does not follow links inside.
        //    The new set is in place whatever happens here, so a failure is
        //    said, not returned.
        if let Some(old) = old_target
            && old != stamp
            && is_data_dir_name(&old)
        {
            let old = self.dir.join(old);
            if let Err(e) = fs::remove_dir_all(&old) {
                tracing::warn!(path = %old.display(), error = %e, "cannot remove the previous data directory");
            }
        }
        Ok(true)
    }

    fn ensure_visible_link(&self, volume: &OwnedFd, name: &FileName) -> Result<(), WriteError> {
        let target = format!("{DATA_LINK}/{}", name.as_str());
        if link_target(volume, name.as_str()).is_some_and(|t| t.as_bytes() == target.as_bytes()) {
            return Ok(());
        }
        let tmp = format!("..{}.tmp", name.as_str());
        let _ = rfs::unlinkat(volume, tmp.as_str(), AtFlags::empty());
        io(
            "link",
            &self.dir.join(&tmp),
            rfs::symlinkat(target.as_str(), volume, tmp.as_str()),
        )?;
        io(
            "rename",
            &self.dir.join(name.as_str()),
            rfs::renameat(volume, tmp.as_str(), volume, name.as_str()),
        )
    }
}

fn open_dir_at(dir: &impl AsFd, name: &str) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn link_target(dir: &impl AsFd, name: &str) -> Option<std::ffi::CString> {
    rfs::readlinkat(dir, name, Vec::new()).ok()
}

/// The data directory `..data` names, if it is one this writer makes: a
/// symlink whose target is one relative path component matching
/// `timestamp_dir_name`, naming a real directory (not a symlink) in the volume.
fn current_target(volume: &OwnedFd, dir: &Path) -> Checked<Option<String>> {
    let target = match rfs::readlinkat(volume, DATA_LINK, Vec::new()) {
        Ok(target) => target,
        Err(rustix::io::Errno::NOENT) => return Ok(Ok(None)),
        Err(rustix::io::Errno::INVAL) => return Ok(Err(Untrusted::DataNotALink)),
        Err(e) => return io("read", &dir.join(DATA_LINK), Err(e)),
    };
    let Some(name) = target.to_str().ok().filter(|t| is_data_dir_name(t)) else {
        return Ok(Err(Untrusted::DataTargetNotOurs));
    };
    match rfs::statat(volume, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            Ok(Ok(Some(name.to_owned())))
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(Err(Untrusted::DataTargetNotADirectory)),
        Err(e) => io("stat", &dir.join(name), Err(e)),
    }
}

fn read_set(volume: &OwnedFd, dir: &Path) -> Checked<Option<FileSet>> {
    let name = match current_target(volume, dir)? {
        Ok(Some(name)) => name,
        Ok(None) => return Ok(Ok(None)),
        Err(why) => return Ok(Err(why)),
    };
    let data_path = dir.join(&name);
    // O_NOFOLLOW: if the directory was swapped for a link since the check,
    // this fails rather than following it.
    let data = match open_dir_at(volume, &name) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::NOENT) => {
            return Ok(Err(Untrusted::DataTargetNotADirectory));
        }
        Err(e) => return io("open", &data_path, Err(e)),
    };
    let mut set = FileSet::new();
    let mut total = 0u64;
    let mut entries = 0usize;
    for entry in io("list", &data_path, rfs::Dir::read_from(&data))? {
        let entry = io("list", &data_path, entry)?;
        let raw: &CStr = entry.file_name();
        if raw == c"." || raw == c".." {
            continue;
        }
        entries += 1;
        if entries > MAX_SET_ENTRIES {
            return Ok(Err(Untrusted::TooManyEntries));
        }
        let Some(file) = raw.to_str().ok().and_then(|n| FileName::new(n).ok()) else {
            continue;
        };
        let path = data_path.join(file.as_str());
        // O_NONBLOCK: a FIFO never blocks the open; it is refused below.
        let fd = match rfs::openat(
            &data,
            file.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::ISDIR) => {
                return Ok(Err(Untrusted::NotARegularFile));
            }
            // A socket (ENXIO), a file of another owner (EACCES): not ours.
            Err(_) => return Ok(Err(Untrusted::Unreadable)),
        };
        let stat = io("stat", &path, rfs::fstat(&fd))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(Err(Untrusted::NotARegularFile));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if size > MAX_FILE_BYTES || total > MAX_SET_BYTES {
            return Ok(Err(Untrusted::TooLarge));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        io(
            "read",
            &path,
            fs::File::from(fd)
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes),
        )?;
        let bytes = SecretBytes::new(bytes);
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Ok(Err(Untrusted::TooLarge));
        }
        set.insert(
            file,
            FileEntry {
                data: bytes,
                mode: stat.st_mode & 0o777,
            },
        );
    }
    Ok(Ok(Some(set)))
}

/// `..1795827845.123456789_0`: seconds and nanoseconds since the epoch and a
/// per-process counter. Sortable, unique per call, hidden.
fn timestamp_dir_name() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("..{}.{:09}_{n}", now.as_secs(), now.subsec_nanos())
}

/// Whether `name` is exactly what `timestamp_dir_name` makes:
/// `..<digits>.<9 digits>_<digits>`. One path component by construction.
pub fn is_data_dir_name(name: &str) -> bool {
    let all_digits =
        |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let Some((secs, rest)) = rest.split_once('.') else {
        return false;
    };
    let Some((nanos, n)) = rest.split_once('_') else {
        return false;
    };
    all_digits(secs) && nanos.len() == 9 && all_digits(nanos) && all_digits(n)
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

    /// A volume `<root>/a/vol` and, outside it, `<root>/victim/a` holding
    /// "victim": what a planted entry would lead the sidecar to.
    struct Planted {
        _root: tempfile::TempDir,
        vol: PathBuf,
        victim: PathBuf,
    }

    impl Planted {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            let vol = root.path().join("a").join("vol");
            fs::create_dir_all(&vol).unwrap();
            let victim = root.path().join("victim");
            fs::create_dir(&victim).unwrap();
            fs::write(victim.join("a"), "victim").unwrap();
            Self {
                _root: root,
                vol,
                victim,
            }
        }

        fn writer(&self) -> AtomicWriter {
            AtomicWriter::new(&self.vol)
        }

        fn link(&self, name: &str, target: impl AsRef<Path>) {
            std::os::unix::fs::symlink(target, self.vol.join(name)).unwrap();
        }

        fn data_dir(&self) -> PathBuf {
            self.vol
                .join(fs::read_link(self.vol.join(DATA_LINK)).unwrap())
        }

        /// Nothing outside the volume was removed or changed.
        fn assert_victim_intact(&self) {
            assert_eq!(fs::read_to_string(self.victim.join("a")).unwrap(), "victim");
        }

        /// A write still works and leaves our own set in place.
        fn assert_writes_a_fresh_set(&self) {
            let writer = self.writer();
            assert!(writer.write(&set(&[("a", "1")])).unwrap());
            assert_eq!(fs::read_to_string(self.vol.join("a")).unwrap(), "1");
            let target = fs::read_link(self.vol.join(DATA_LINK)).unwrap();
            assert!(is_data_dir_name(target.to_str().unwrap()), "{target:?}");
            assert_eq!(writer.read_current().unwrap(), Some(set(&[("a", "1")])));
            self.assert_victim_intact();
        }
    }

    #[test]
    fn data_dir_names_are_exactly_what_the_writer_makes() {
        for _ in 0..3 {
            assert!(is_data_dir_name(&timestamp_dir_name()));
        }
        for bad in [
            "..data",
            "..1.00000000_0",
            "..1.0000000000_0",
            "..1.000000000_",
            "..1.000000000",
            "...000000000_0",
            "..1.000000000_0/..",
            "../..1.000000000_0",
            "..1.000000000_0/../../victim",
            "/..1.000000000_0",
            "1.000000000_0",
            "..1.00000000a_0",
            "..+1.000000000_0",
            "",
        ] {
            assert!(!is_data_dir_name(bad), "{bad}");
        }
    }

    #[test]
    fn m4_data_link_to_a_relative_parent_is_not_read_and_nothing_outside_is_removed() {
        for target in [
            "../../victim",
            "../../victim/",
            "..1.000000000_0/../../../victim",
            "../..1.000000000_0",
        ] {
            let p = Planted::new();
            p.link(DATA_LINK, target);
            let writer = p.writer();
            assert_eq!(writer.read_current().unwrap(), None, "{target}");
            assert!(!writer.has_data(), "{target}");
            p.assert_writes_a_fresh_set();
            // And again: the planted target is never the "old" directory.
            p.writer().write(&set(&[("a", "2")])).unwrap();
            p.assert_victim_intact();
        }
    }

    #[test]
    fn m4_data_link_to_etc_or_any_absolute_path_is_not_read() {
        let p = Planted::new();
        p.link(DATA_LINK, "/etc");
        assert_eq!(p.writer().read_current().unwrap(), None);
        p.assert_writes_a_fresh_set();
        assert!(Path::new("/etc").is_dir());

        let p = Planted::new();
        p.link(DATA_LINK, &p.victim);
        assert_eq!(p.writer().read_current().unwrap(), None);
        p.assert_writes_a_fresh_set();
    }

    #[test]
    fn m4_a_data_link_to_a_pattern_named_symlink_is_not_followed() {
        let p = Planted::new();
        p.link("..1.000000000_0", &p.victim);
        p.link(DATA_LINK, "..1.000000000_0");
        assert_eq!(p.writer().read_current().unwrap(), None);
        assert!(!p.writer().has_data());
        p.assert_writes_a_fresh_set();
    }

    #[test]
    fn m4_a_data_link_to_a_directory_not_named_by_the_writer_is_neither_read_nor_removed() {
        let p = Planted::new();
        fs::create_dir(p.vol.join("keep")).unwrap();
        fs::write(p.vol.join("keep").join("a"), "theirs").unwrap();
        p.link(DATA_LINK, "keep");
        assert_eq!(p.writer().read_current().unwrap(), None);
        p.assert_writes_a_fresh_set();
        assert_eq!(
            fs::read_to_string(p.vol.join("keep").join("a")).unwrap(),
            "theirs"
        );
    }

    #[test]
    fn m4_a_data_dir_swapped_for_a_symlink_is_not_followed() {
        let p = Planted::new();
        p.writer().write(&set(&[("a", "1")])).unwrap();
        let ours = p.data_dir();
        fs::rename(&ours, p.vol.join("..moved-away")).unwrap();
        std::os::unix::fs::symlink(&p.victim, &ours).unwrap();
        assert_eq!(p.writer().read_current().unwrap(), None);
        assert!(p.writer().write(&set(&[("a", "2")])).unwrap());
        assert_eq!(fs::read_to_string(p.vol.join("a")).unwrap(), "2");
        p.assert_victim_intact();
    }

    #[test]
    fn m4_a_planted_symlink_file_inside_the_data_dir_is_never_read() {
        let p = Planted::new();
        p.writer().write(&set(&[("a", "1"), ("b", "2")])).unwrap();
        let data = p.data_dir();
        std::os::unix::fs::symlink(p.victim.join("a"), data.join("evil")).unwrap();
        assert_eq!(p.writer().read_current().unwrap(), None);

        // Also in place of one of our own files.
        fs::remove_file(data.join("evil")).unwrap();
        fs::remove_file(data.join("b")).unwrap();
        std::os::unix::fs::symlink(p.victim.join("a"), data.join("b")).unwrap();
        assert_eq!(p.writer().read_current().unwrap(), None);
        // The next write replaces the tampered set rather than keeping it.
        assert!(p.writer().write(&set(&[("a", "1"), ("b", "2")])).unwrap());
        assert_eq!(fs::read_to_string(p.vol.join("b")).unwrap(), "2");
        p.assert_victim_intact();
    }

    #[test]
    fn m4_a_fifo_in_the_data_dir_is_not_read_and_does_not_hang() {
        let p = Planted::new();
        p.writer().write(&set(&[("a", "1")])).unwrap();
        let data = fs::File::open(p.data_dir()).unwrap();
        rfs::mkfifoat(&data, "pipe", Mode::from_raw_mode(0o644)).unwrap();
        let writer = p.writer();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(writer.read_current().map_err(|e| e.to_string()));
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("read_current hung on a FIFO");
        assert_eq!(read.unwrap(), None);
        p.assert_writes_a_fresh_set();
    }

    #[test]
    fn m4_an_oversized_file_is_not_read() {
        let p = Planted::new();
        p.writer().write(&set(&[("a", "1")])).unwrap();
        let file = fs::OpenOptions::new()
            .write(true)
            .open(p.data_dir().join("a"))
            .unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(p.writer().read_current().unwrap(), None);
    }

    #[test]
    fn m4_visible_links_are_removed_only_when_they_point_at_data_slash_their_name() {
        let p = Planted::new();
        p.link("x", p.victim.join("a"));
        p.link("y", "..data/other");
        p.link("z", "..data/z/../../../victim/a");
        p.link("w", "../../victim");
        let writer = p.writer();
        writer.write(&set(&[("a", "1"), ("gone", "1")])).unwrap();
        writer.write(&set(&[("a", "2")])).unwrap();
        assert!(fs::symlink_metadata(p.vol.join("gone")).is_err());
        for name in ["x", "y", "z", "w"] {
            assert!(
                fs::symlink_metadata(p.vol.join(name)).is_ok(),
                "{name} was removed"
            );
        }
        p.assert_victim_intact();
        assert!(p.victim.is_dir());
    }
}
