//! `inject::inject_stream_with` (the offline `webhook inject`) on arbitrary
//! text, with and without CSI conversion: no panic, the output is YAML with
//! as many documents as the input, and injecting the output again changes
//! nothing.
#![no_main]

use std::time::Duration;

use fuzz_support::check;
use libfuzzer_sys::fuzz_target;
use secret_injector_webhook::{
    InjectorConfig,
    inject::{InjectOptions, inject_stream_with},
};
use serde::Deserialize;
use serde_json::Value;
use shared::Defaults;

fn config() -> InjectorConfig {
    InjectorConfig {
        image: "registry.fuzz.invalid/secret-injector-sidecar:fuzz".to_owned(),
        image_pull_policy: "IfNotPresent".to_owned(),
        command: "/usr/local/bin/secret-injector-sidecar".to_owned(),
        cpu_request: "10m".to_owned(),
        cpu_limit: None,
        memory_request: "16Mi".to_owned(),
        memory_limit: Some("64Mi".to_owned()),
        run_as_user: 65532,
        run_as_group: 65532,
        volume_size_limit: "16Mi".to_owned(),
        native_sidecars: false,
        startup_timeout: Duration::from_secs(120),
        defaults: Defaults::default(),
        azure_authority_host: "https://login.microsoftonline.com/".to_owned(),
        azure_tenant_id: None,
        ..InjectorConfig::default()
    }
}

/// How many non-empty YAML documents `text` holds, if it parses.
fn documents(text: &str) -> Option<usize> {
    let mut n = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        if !Value::deserialize(doc).ok()?.is_null() {
            n += 1;
        }
    }
    Some(n)
}

fuzz_target!(|data: &[u8]| {
    let text = fuzz_support::text(data);
    let config = config();
    for csi_compat in [false, true] {
        let options = InjectOptions { csi_compat };
        let Ok(first) = inject_stream_with(&text, &config, options) else {
            continue;
        };
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&first.output).enumerate() {
            let parsed = Value::deserialize(doc);
            check!(
                "inject-output-yaml",
                parsed.is_ok(),
                "output document {} does not parse: {parsed:?}\n output:\n{}",
                i + 1,
                first.output
            );
            if parsed.is_err() {
                break;
            }
        }
        // Every document of the input is still there (injected or as written).
        if let (Some(before), Some(after)) = (documents(&text), documents(&first.output)) {
            check!(
                "inject-keeps-documents",
                before == after,
                "{before} documents in, {after} out\n input:\n{text}\n output:\n{}",
                first.output
            );
        }
        let second = inject_stream_with(&first.output, &config, options);
        match &second {
            Ok(second) => check!(
                "inject-idempotent",
                second.output == first.output && second.injected == 0,
                "injecting the output again injected {} and changed it:\n first:\n{}\n second:\n{}",
                second.injected,
                first.output,
                second.output
            ),
            Err(e) => check!(
                "inject-idempotent",
                false,
                "injecting the output again fails: {e}\n output:\n{}",
                first.output
            ),
        }
    }
});
