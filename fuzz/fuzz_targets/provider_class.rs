//! `spec_from_provider_class`, fed three ways by the same bytes: as a whole
//! class in YAML (the `inject` path), as JSON (the apiserver's), and as the
//! `parameters.objects` string of a valid class skeleton, so the nested YAML
//! reader (objects, then each `array` item) is reached directly.
#![no_main]

use fuzz_support::{check, check_spec};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use shared::{Defaults, SecretRef, spec_from_provider_class};

fn skeleton(objects: &str) -> Value {
    json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": {
            "provider": "azure",
            "parameters": {
                "keyvaultName": "kv-aks-csi-weu-01",
                "tenantId": "00000000-0000-0000-0000-00000000000a",
                "clientID": "00000000-0000-0000-0000-000000000001",
                "objects": objects,
            },
        },
    })
}

fn convert(class: &Value) {
    let defaults = Defaults::default();
    let Ok((spec, _warnings)) = spec_from_provider_class(class, &defaults) else {
        return;
    };
    check_spec(&spec);
    let name = class
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    check!(
        "class-name-recorded",
        spec.provider_class.as_deref() == Some(name),
        "provider_class {:?}, class {name:?}",
        spec.provider_class
    );
    check!(
        "class-defaults",
        spec.mount_path == defaults.mount_path
            && spec.rotation == defaults.rotation
            && spec.containers.is_none(),
        "spec does not carry the defaults: {spec:?}"
    );
    for object in &spec.objects {
        check!(
            "class-azure-only",
            matches!(object.source, SecretRef::Azure(_)),
            "{:?}",
            object.source
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(class) = serde_yaml_ng::from_slice::<Value>(data) {
        convert(&class);
    }
    if let Ok(class) = serde_json::from_slice::<Value>(data) {
        convert(&class);
    }
    convert(&skeleton(&fuzz_support::text(data)));
});
