//! The small parsers, all on the same text: `Rotation: FromStr` and
//! `parse_duration`, `FileMode: FromStr`, `annotations::check_mount_path`.
#![no_main]

use std::time::Duration;

use fuzz_support::check;
use libfuzzer_sys::fuzz_target;
use shared::{
    FileMode, MIN_ROTATION_INTERVAL, Rotation, annotations::check_mount_path, parse_duration,
};

fuzz_target!(|data: &[u8]| {
    let text = fuzz_support::text(data);
    let s = text.as_ref();

    if let Some(d) = parse_duration(s) {
        check!(
            "duration-ascii",
            s.bytes().all(|b| b.is_ascii_digit() || b"hms".contains(&b)),
            "{s:?} -> {d:?}"
        );
    }
    if let Ok(rotation) = s.parse::<Rotation>() {
        let shown = rotation.to_string();
        let back = shown.parse::<Rotation>();
        check!(
            "rotation-round-trip",
            back == Ok(rotation),
            "{s:?} -> {rotation:?} -> {shown:?} -> {back:?}"
        );
        if let Rotation::Every(d) = rotation {
            check!("rotation-min", d >= MIN_ROTATION_INTERVAL, "{s:?} -> {d:?}");
            // What the sidecar does with it (sidecar/src/plan.rs `jittered`:
            // `interval.mul_f64(0.9..1.1)`): must not overflow.
            check!(
                "rotation-jitterable",
                Duration::try_from_secs_f64(d.as_secs_f64() * 1.1).is_ok(),
                "{s:?} -> {d:?}: interval × 1.1 is not a Duration (Duration::mul_f64 panics)"
            );
        }
    }
    if let Ok(mode) = s.parse::<FileMode>() {
        check!(
            "file-mode-bits",
            mode.bits() <= 0o777,
            "{s:?} -> {:o}",
            mode.bits()
        );
        let back = mode.to_string().parse::<FileMode>();
        check!(
            "file-mode-round-trip",
            back == Ok(mode),
            "{s:?} -> {mode:?} -> {back:?}"
        );
    }
    if let Ok(path) = check_mount_path(s) {
        check!(
            "mount-path-shape",
            path.starts_with('/')
                && path != "/"
                && path.len() <= 1024
                && !path.contains(':')
                && !path.contains("//")
                && !path.ends_with('/')
                && !path.chars().any(char::is_control)
                && path[1..].split('/').all(|seg| seg != "." && seg != ".."),
            "{s:?} -> {path:?}"
        );
        let again = check_mount_path(&path);
        check!(
            "mount-path-idempotent",
            again.as_deref() == Ok(path.as_str()),
            "{path:?} -> {again:?}"
        );
    }
});
