//! What the fuzz targets share: the invariants on the model, a counting
//! allocator, and a switch to mute a known finding while looking for others.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeSet,
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use shared::{FileName, InjectionSpec, MAX_FILE_NAME_BYTES};

/// Invariants named in `FUZZ_SKIP` (comma-separated) are not checked, so a
/// known finding does not hide the next one. Unset: every invariant is checked.
pub fn enabled(invariant: &str) -> bool {
    static SKIP: OnceLock<BTreeSet<String>> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        std::env::var("FUZZ_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    });
    !skip.contains(invariant)
}

/// Panics (a finding) when `ok` is false and the invariant is not muted.
#[macro_export]
macro_rules! check {
    ($name:literal, $ok:expr, $($msg:tt)+) => {
        if $crate::enabled($name) && !$ok {
            panic!("invariant {} violated: {}", $name, format!($($msg)+));
        }
    };
}

/// What every accepted file name satisfies (shared/src/file_name.rs).
pub fn check_file_name(name: &FileName) {
    let s = name.as_str();
    check!("file-name", !s.is_empty(), "empty file name accepted");
    check!("file-name", !s.contains('/'), "{s:?} contains '/'");
    check!("file-name", s != "." && s != "..", "{s:?} is a dot entry");
    check!("file-name", !s.starts_with(".."), "{s:?} starts with '..'");
    check!("file-name", !s.contains('\0'), "{s:?} contains NUL");
    check!(
        "file-name",
        !s.chars().any(char::is_control),
        "{s:?} contains a control character"
    );
    check!(
        "file-name",
        s.len() <= MAX_FILE_NAME_BYTES,
        "{s:?} is {} bytes",
        s.len()
    );
}

/// What every spec the webhook accepts satisfies: its env value round-trips,
/// file names are safe and unique, the mount path is one `check_mount_path`
/// accepts, sync targets name files of the spec.
pub fn check_spec(spec: &InjectionSpec) {
    let value = spec.to_env_value();
    let back = InjectionSpec::from_env_value(&value);
    check!(
        "spec-env-round-trip",
        back.as_ref() == Ok(spec),
        "spec {spec:?}\n env value {value}\n reads back as {back:?}"
    );
    let mut seen = BTreeSet::new();
    for object in &spec.objects {
        check_file_name(&object.file);
        check!(
            "spec-unique-files",
            seen.insert(object.file.as_str()),
            "file {:?} twice",
            object.file
        );
        let source = object.source.to_string();
        let reparsed = source.parse::<shared::SecretRef>();
        check!(
            "spec-ref-round-trip",
            reparsed.as_ref() == Ok(&object.source),
            "{:?} displays as {source:?}, which parses as {reparsed:?}",
            object.source
        );
    }
    check!(
        "spec-mount-path",
        shared::annotations::check_mount_path(&spec.mount_path).as_deref()
            == Ok(spec.mount_path.as_str()),
        "mount path {:?} is not canonical",
        spec.mount_path
    );
    for target in &spec.sync_targets {
        for file in target.data.values() {
            check!(
                "spec-sync-files",
                spec.objects.iter().any(|o| o.file == *file),
                "sync target {} names file {file:?}, not in the spec",
                target.secret_name
            );
        }
    }
}

/// Counts live and peak heap bytes, for "peak allocation of one call".
pub struct CountingAlloc;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged and only
// updates counters.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Runs `f` and returns its result with the peak heap bytes it added above
/// what was live when it started (the target must install [`CountingAlloc`]).
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f();
    let peak = PEAK.load(Ordering::Relaxed);
    (out, peak.saturating_sub(start))
}

/// Input bytes as text: invalid UTF-8 is replaced, so every input is used.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
