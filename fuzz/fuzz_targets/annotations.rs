//! `shared::annotations::parse` on an arbitrary annotation map.
//!
//! Input: records `key=value` (split at the first '='), one per line; when the
//! input holds a `\x1e` (ASCII record separator), records are split on it
//! instead, so values may carry newlines.
#![no_main]

use std::collections::BTreeMap;

use fuzz_support::{check, check_file_name, check_spec};
use libfuzzer_sys::fuzz_target;
use shared::{
    Defaults, Request,
    annotations::{self, INJECT},
};

fuzz_target!(|data: &[u8]| {
    let text = fuzz_support::text(data);
    let separator = if text.contains('\x1e') { '\x1e' } else { '\n' };
    let map: BTreeMap<String, String> = text
        .split(separator)
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (r.to_owned(), String::new()),
        })
        .collect();
    let defaults = Defaults::default();
    let Ok(request) = annotations::parse(&map, &defaults) else {
        return;
    };
    let opted_in = map.get(INJECT).map(String::as_str) == Some("true");
    match request {
        Request::NotOptedIn { .. } => {
            check!("opt-in", !opted_in, "inject: \"true\" was not opted in");
        }
        Request::OptedIn(spec) => {
            check!("opt-in", opted_in, "opted in without inject: \"true\"");
            for object in &spec.objects {
                check_file_name(&object.file);
            }
            check_spec(&spec);
            check!(
                "spec-sorted",
                spec.objects.windows(2).all(|w| w[0].file < w[1].file),
                "objects not sorted by file: {:?}",
                spec.objects
            );
            check!(
                "spec-no-class",
                spec.provider_class.is_none(),
                "annotation form named a class"
            );
        }
        Request::FromClass(class) => {
            check!("opt-in", opted_in, "opted in without inject: \"true\"");
            check!(
                "class-mount-path",
                annotations::check_mount_path(&class.defaults.mount_path).as_deref()
                    == Ok(class.defaults.mount_path.as_str()),
                "mount path {:?} is not canonical",
                class.defaults.mount_path
            );
            check!(
                "class-name",
                !class.class.is_empty()
                    && class.class.len() <= 253
                    && class.class.bytes().all(|b| b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'-'
                        || b == b'.'),
                "class name {:?} is not a DNS subdomain",
                class.class
            );
        }
    }
});
