//! `FileName::new`: accepted names are one safe path component, and the serde
//! form validates the same way.
#![no_main]

use fuzz_support::{check, check_file_name};
use libfuzzer_sys::fuzz_target;
use shared::FileName;

fuzz_target!(|data: &[u8]| {
    let text = fuzz_support::text(data);
    let result = FileName::new(text.as_ref());
    let json = serde_json::to_string(text.as_ref()).unwrap_or_default();
    let via_serde = serde_json::from_str::<FileName>(&json);
    check!(
        "file-name-serde-agrees",
        result.is_ok() == via_serde.is_ok(),
        "{text:?}: new {result:?}, serde {via_serde:?}"
    );
    let Ok(name) = result else { return };
    check_file_name(&name);
    check!(
        "file-name-verbatim",
        name.as_str() == text,
        "{text:?} became {name:?}"
    );
    let back = serde_json::to_string(&name)
        .ok()
        .and_then(|j| serde_json::from_str::<FileName>(&j).ok());
    check!(
        "file-name-json",
        back.as_ref() == Some(&name),
        "{name:?} -> {back:?}"
    );
});
