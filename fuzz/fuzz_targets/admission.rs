//! `admission::review_with` on an arbitrary request body, with in-memory
//! SecretProviderClasses (the seed's) and ServiceAccounts, in two
//! configurations: classic sidecars without CSI conversion, and native
//! sidecars with it.
//!
//! Invariants: peak heap during one review is at most 16 × body + 1 MiB; a
//! patch applies to the request's object, which then decodes as a Pod; every
//! container the patch adds runs restricted with the operator's image; the
//! patch gives no container a mount path twice; every app mount of the
//! injected volume is read-only; reviewing the patched pod again gives no
//! patch; the answer encodes for the wire.
#![no_main]

use std::{
    collections::BTreeMap,
    path::{Component, Path},
    sync::LazyLock,
    time::Duration,
};

use fuzz_support::{CountingAlloc, check, peak_during};
use k8s_openapi::api::core::v1::{Container, Pod};
use libfuzzer_sys::fuzz_target;
use secret_injector_webhook::{
    InjectorConfig,
    accounts::AccountIdentity,
    admission::{self, review_with},
    mutate::{INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME, VOLUME_NAME},
};
use serde_json::Value;
use shared::Defaults;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const IMAGE: &str = "registry.fuzz.invalid/secret-injector-sidecar:fuzz";

struct World {
    classes: BTreeMap<(String, String), Value>,
    accounts: BTreeMap<(String, String), AccountIdentity>,
    /// (config, csi_compat)
    variants: Vec<(InjectorConfig, bool)>,
}

fn class(yaml: &str, namespace: &str, name: &str) -> ((String, String), Value) {
    let mut value: Value = serde_yaml_ng::from_str(yaml).expect("seed class is YAML");
    value["metadata"]["name"] = Value::String(name.to_owned());
    value["metadata"]["namespace"] = Value::String(namespace.to_owned());
    ((namespace.to_owned(), name.to_owned()), value)
}

fn config(native_sidecars: bool) -> InjectorConfig {
    InjectorConfig {
        image: IMAGE.to_owned(),
        image_pull_policy: "IfNotPresent".to_owned(),
        command: "/usr/local/bin/secret-injector-sidecar".to_owned(),
        cpu_request: "10m".to_owned(),
        cpu_limit: None,
        memory_request: "16Mi".to_owned(),
        memory_limit: Some("64Mi".to_owned()),
        run_as_user: 65532,
        run_as_group: 65532,
        volume_size_limit: "16Mi".to_owned(),
        native_sidecars,
        startup_timeout: Duration::from_secs(120),
        defaults: Defaults::default(),
        azure_authority_host: "https://login.microsoftonline.com/".to_owned(),
        azure_tenant_id: Some("00000000-0000-0000-0000-00000000000a".to_owned()),
        ..InjectorConfig::default()
    }
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    const CLASS_01: &str = include_str!("../../manifests/examples/seed/01-secretProviderClass.yml");
    const CLASS_10: &str =
        include_str!("../../manifests/examples/seed/10-secretProviderClass_secretObjects.yml");
    let classes = BTreeMap::from([
        class(CLASS_01, "default", "kv-aks-csi-weu-01"),
        class(CLASS_10, "default", "kv-aks-csi-weu-01-sync"),
        class(CLASS_10, "team-a", "kv-aks-csi-weu-01"),
    ]);
    let account = |client: &str, tenant: Option<&str>| {
        let mut annotations =
            BTreeMap::from([("azure.workload.identity/client-id".to_owned(), client.to_owned())]);
        if let Some(tenant) = tenant {
            annotations.insert("azure.workload.identity/tenant-id".to_owned(), tenant.to_owned());
        }
        AccountIdentity::from_annotations(Some(&annotations))
    };
    let accounts = BTreeMap::from([
        (
            ("default".to_owned(), "default".to_owned()),
            account(
                "00000000-0000-0000-0000-0000000000c1",
                Some("00000000-0000-0000-0000-0000000000d1"),
            ),
        ),
        (
            ("default".to_owned(), "app".to_owned()),
            account("00000000-0000-0000-0000-0000000000c2", None),
        ),
    ]);
    World {
        classes,
        accounts,
        variants: vec![(config(false), false), (config(true), true)],
    }
});

/// A mount path as the kernel sees it: `.` segments, repeated and trailing
/// slashes do not make another path.
fn normalised(path: &str) -> String {
    let parts: Vec<String> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect();
    format!("/{}", parts.join("/"))
}

fn containers(pod: &Pod) -> Vec<(&'static str, &Container)> {
    let spec = pod.spec.as_ref();
    let app = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    app.iter()
        .map(|c| ("containers", c))
        .chain(init.iter().map(|c| ("initContainers", c)))
        .collect()
}

/// Paths mounted more than once in `container`, under `key`.
fn repeated(container: Option<&Container>, key: fn(&str) -> String) -> Vec<String> {
    let mut seen = BTreeMap::<String, usize>::new();
    for m in container
        .and_then(|c| c.volume_mounts.as_deref())
        .unwrap_or_default()
    {
        *seen.entry(key(&m.mount_path)).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p)
        .collect()
}

fn check_patched(before: &Pod, after: &Pod) {
    let before_containers = containers(before);
    let after_containers = containers(after);

    // Containers the patch added: by name, with multiplicity.
    let mut old_names: Vec<&str> = before_containers
        .iter()
        .map(|(_, c)| c.name.as_str())
        .collect();
    let mut added = Vec::new();
    for (_, c) in &after_containers {
        match old_names.iter().position(|n| *n == c.name) {
            Some(i) => {
                old_names.remove(i);
            }
            None => added.push(*c),
        }
    }
    check!(
        "patch-adds-container",
        !added.is_empty(),
        "a patch that adds no container"
    );
    for c in &added {
        let sc = c.security_context.as_ref();
        check!(
            "injected-restricted",
            [INIT_CONTAINER_NAME, SIDECAR_CONTAINER_NAME].contains(&c.name.as_str())
                && c.image.as_deref() == Some(IMAGE)
                && sc.and_then(|s| s.run_as_non_root) == Some(true)
                && sc.and_then(|s| s.read_only_root_filesystem) == Some(true)
                && sc.and_then(|s| s.allow_privilege_escalation) == Some(false)
                && sc.and_then(|s| s.privileged) != Some(true),
            "added container {:?}: image {:?}, securityContext {sc:?}",
            c.name,
            c.image
        );
    }

    // No mount path twice in one container, unless it already was.
    for (list, c) in &after_containers {
        let old = before_containers
            .iter()
            .find(|(l, o)| l == list && o.name == c.name)
            .map(|(_, o)| *o);
        let trim = |p: &str| p.trim_end_matches('/').to_owned();
        for (name, key) in [
            ("mount-path-unique", trim as fn(&str) -> String),
            ("mount-path-unique-normalised", normalised),
        ] {
            let was = repeated(old, key);
            let now = repeated(Some(c), key);
            let new: Vec<_> = now.iter().filter(|p| !was.contains(p)).collect();
            match name {
                "mount-path-unique" => check!(
                    "mount-path-unique",
                    new.is_empty(),
                    "{list} {:?} mounts {new:?} more than once: {:?}",
                    c.name,
                    c.volume_mounts
                ),
                _ => check!(
                    "mount-path-unique-normalised",
                    new.is_empty(),
                    "{list} {:?} mounts {new:?} more than once: {:?}",
                    c.name,
                    c.volume_mounts
                ),
            }
        }
    }

    // The injected volume: ours, or a CSI volume the patch replaced.
    let volumes = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
    };
    let old_volumes = volumes(before);
    let injected: Vec<String> = volumes(after)
        .into_iter()
        .filter(|v| {
            v.empty_dir.is_some() && (v.name == VOLUME_NAME || !old_volumes.iter().any(|o| o == v))
        })
        .map(|v| v.name)
        .collect();
    for (list, c) in &after_containers {
        if added.iter().any(|a| std::ptr::eq(*a, *c)) {
            continue;
        }
        for m in c.volume_mounts.iter().flatten() {
            if !injected.contains(&m.name) {
                continue;
            }
            let why = || {
                format!(
                    "{list} {:?} mounts the injected volume {:?} at {:?} with readOnly {:?}",
                    c.name, m.name, m.mount_path, m.read_only
                )
            };
            // Ours (a mount the pod declared itself), or a converted CSI volume.
            if m.name == VOLUME_NAME {
                check!(
                    "app-mount-read-only",
                    m.read_only == Some(true),
                    "{}",
                    why()
                );
            } else {
                check!(
                    "app-mount-read-only-csi",
                    m.read_only == Some(true),
                    "{}",
                    why()
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let world = &*WORLD;
    for (config, csi) in &world.variants {
        let (result, peak) =
            peak_during(|| review_with(data, config, &world.classes, &world.accounts, *csi));
        let bound = 16 * data.len() + (1 << 20);
        if std::env::var_os("FUZZ_PRINT_PEAK").is_some() {
            eprintln!(
                "review of {} bytes (csi {csi}): peak {peak} heap bytes",
                data.len()
            );
        }
        check!(
            "review-memory",
            peak <= bound,
            "one review of a {}-byte body peaked at {peak} heap bytes (bound {bound})",
            data.len()
        );
        let Ok(reviewed) = result else { continue };
        let encoded = admission::encode(reviewed.review.clone());
        check!("review-encodes", encoded.is_ok(), "{encoded:?}");
        let Some(response) = reviewed.review.response else {
            check!("review-has-response", false, "no response");
            continue;
        };
        let Some(patch_bytes) = response.patch else {
            continue;
        };
        check!("patch-allowed", response.allowed, "a patch on a denial");
        let patch = serde_json::from_slice::<json_patch::Patch>(&patch_bytes);
        check!("patch-is-json-patch", patch.is_ok(), "{patch:?}");
        let Ok(patch) = patch else { continue };
        // serde_json skips ignored fields without checking their UTF-8, so
        // the typed decode takes bodies that are not JSON text; read those
        // with the bad bytes replaced.
        let body: Result<Value, _> = match std::str::from_utf8(data) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_str(&String::from_utf8_lossy(data)),
        };
        check!(
            "patch-body-json",
            body.is_ok(),
            "a patch for a body that is not JSON: {body:?}"
        );
        let Ok(mut body) = body else { continue };
        let Some(mut object) = body.pointer("/request/object").cloned() else {
            check!("patch-has-object", false, "a patch without request.object");
            continue;
        };
        let Ok(before) = serde_json::from_value::<Pod>(object.clone()) else {
            check!(
                "patch-object-is-pod",
                false,
                "a patch for an object that is not a Pod"
            );
            continue;
        };
        // The apiserver always sends `metadata` and `spec` (and a pod without
        // containers fails validation anyway); a patch that fails only
        // without them is its own, lesser finding.
        let whole = object.get("metadata").is_some_and(Value::is_object)
            && object
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
        let applied = json_patch::patch(&mut object, &patch);
        let why = || {
            format!(
                "{applied:?}\n object {}\n patch {}",
                body["request"]["object"],
                String::from_utf8_lossy(&patch_bytes)
            )
        };
        if whole {
            check!("patch-applies", applied.is_ok(), "{}", why());
        } else {
            check!("patch-applies-partial-object", applied.is_ok(), "{}", why());
        }
        if applied.is_err() {
            continue;
        }
        let after = serde_json::from_value::<Pod>(object.clone());
        check!("patched-is-pod", after.is_ok(), "{after:?}\n {object}");
        let Ok(after) = after else { continue };
        check_patched(&before, &after);

        // Reinvocation: the same envelope with the patched pod.
        body["request"]["object"] = object;
        let again_body = serde_json::to_vec(&body).unwrap_or_default();
        let again = review_with(&again_body, config, &world.classes, &world.accounts, *csi);
        let again_patch = again
            .as_ref()
            .ok()
            .and_then(|r| r.review.response.as_ref())
            .and_then(|r| r.patch.clone());
        check!(
            "idempotent",
            again.is_ok() && again_patch.is_none(),
            "reviewing the patched pod again gave {:?}, patch {:?}",
            again.as_ref().map(|r| r.outcome),
            again_patch.map(|p| String::from_utf8_lossy(&p).into_owned())
        );
    }
});
