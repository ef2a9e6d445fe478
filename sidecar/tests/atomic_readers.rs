//! A reader hammering the files while the writer swaps 10,000 sets sees no
//! torn file and no mixed set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use secret_injector_sidecar::{
    secret::SecretBytes,
    writer::{AtomicWriter, FileEntry, FileSet},
};
use shared::FileName;

const ROTATIONS: usize = 10_000;
const FILES: [&str; 3] = ["db-user", "db-pass", "tls.crt"];

/// A value that shows tearing: generation number repeated to a few KiB.
fn value(file: &str, generation: usize) -> String {
    format!("{file}:{generation};").repeat(300)
}

fn set(generation: usize) -> FileSet {
    FILES
        .iter()
        .map(|f| {
            (
                FileName::new(*f).unwrap(),
                FileEntry {
                    data: SecretBytes::from(value(f, generation)),
                    mode: 0o644,
                },
            )
        })
        .collect()
}

/// The generation a file's content belongs to, or None if it is torn.
fn generation_of(file: &str, content: &str) -> Option<usize> {
    let first = content.split(';').next()?;
    let generation: usize = first.strip_prefix(&format!("{file}:"))?.parse().ok()?;
    (content == value(file, generation)).then_some(generation)
}

/// Memory-backed like the pod's volume, when the machine has one.
fn scratch() -> tempfile::TempDir {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

#[test]
fn ten_thousand_rotations_no_torn_files_no_mixed_sets() {
    let dir = scratch();
    let writer = AtomicWriter::new(dir.path());
    writer.write(&set(0)).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let torn = Arc::new(AtomicU64::new(0));
    let mixed = Arc::new(AtomicU64::new(0));
    let sets_read = Arc::new(AtomicU64::new(0));
    let reader = {
        let (dir, done, torn, mixed, sets_read) = (
            dir.path().to_owned(),
            done.clone(),
            torn.clone(),
            mixed.clone(),
            sets_read.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                // Each visible file, as an app reads it: never torn.
                for f in FILES {
                    if let Ok(content) = std::fs::read_to_string(dir.join(f))
                        && generation_of(f, &content).is_none()
                    {
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // The set through one resolution of ..data: one generation.
                if let Some(generations) = read_set(&dir) {
                    sets_read.fetch_add(1, Ordering::Relaxed);
                    if generations.iter().any(|g| *g != generations[0]) {
                        mixed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    for generation in 1..=ROTATIONS {
        assert!(writer.write(&set(generation)).unwrap());
    }
    done.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    assert_eq!(torn.load(Ordering::Relaxed), 0, "torn files");
    assert_eq!(mixed.load(Ordering::Relaxed), 0, "mixed sets");
    assert!(
        sets_read.load(Ordering::Relaxed) > 100,
        "the reader barely ran"
    );
    for f in FILES {
        assert_eq!(
            generation_of(f, &std::fs::read_to_string(dir.path().join(f)).unwrap()),
            Some(ROTATIONS)
        );
    }
    // Only the current data directory is left beside ..data.
    let hidden = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data" && !n.starts_with("..secret-injector"))
        .count();
    assert_eq!(hidden, 1);
}

/// Resolves `..data` once and reads every file under that directory; `None`
/// when the directory vanished mid-read (the writer removed an old set).
fn read_set(dir: &Path) -> Option<Vec<usize>> {
    let target = std::fs::read_link(dir.join("..data")).ok()?;
    let base = dir.join(target);
    FILES
        .iter()
        .map(|f| {
            let content = std::fs::read_to_string(base.join(f)).ok()?;
            generation_of(f, &content)
        })
        .collect()
}
