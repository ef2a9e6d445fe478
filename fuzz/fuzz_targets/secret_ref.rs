//! `SecretRef: FromStr`: an accepted reference round-trips through `Display`
//! and through serde JSON, and its canonical text is a fixed point.
#![no_main]

use fuzz_support::check;
use libfuzzer_sys::fuzz_target;
use shared::SecretRef;

fuzz_target!(|data: &[u8]| {
    let text = fuzz_support::text(data);
    let Ok(reference) = text.parse::<SecretRef>() else {
        return;
    };
    let shown = reference.to_string();
    let reparsed = shown.parse::<SecretRef>();
    check!(
        "ref-display-round-trip",
        reparsed.as_ref() == Ok(&reference),
        "{text:?} -> {reference:?} displays as {shown:?}, which parses as {reparsed:?}"
    );
    if let Ok(again) = &reparsed {
        check!(
            "ref-display-canonical",
            again.to_string() == shown,
            "{shown:?} displays as {:?} after a round trip",
            again.to_string()
        );
    }
    let json = serde_json::to_string(&reference);
    check!(
        "ref-json",
        json.is_ok(),
        "{reference:?} does not serialise: {json:?}"
    );
    if let Ok(json) = json {
        let back = serde_json::from_str::<SecretRef>(&json).map_err(|e| e.to_string());
        check!(
            "ref-json-round-trip",
            back.as_ref() == Ok(&reference),
            "{reference:?} -> {json} -> {back:?}"
        );
    }
    check!(
        "ref-provider",
        shown.starts_with(&format!("{}://", reference.provider())),
        "{shown:?} does not start with its provider {}",
        reference.provider()
    );
    if let SecretRef::Azure(azure) = &reference {
        let url = azure.vault.url();
        check!(
            "ref-azure-url",
            url.starts_with("https://")
                && !url[8..].contains(['/', '@', '?', '#', ' '])
                && !url.chars().any(char::is_control),
            "vault URL {url:?} is not a bare https origin"
        );
    }
});
