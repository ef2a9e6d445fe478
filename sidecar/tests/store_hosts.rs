//! H1 in the sidecar: the operator's allowlist of store hosts is checked
//! again before any request, whatever the spec in the env says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secret_injector_sidecar::{
    engine::Engine,
    providers::{FetchError, Fetched, Provider, Providers},
    secret::SecretBytes,
    writer::AtomicWriter,
};
use shared::{InjectionSpec, ObjectFormat, SecretRef};

/// A store that answers everything and remembers whom it was asked for.
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Provider for Recording {
    async fn fetch(
        &self,
        source: &SecretRef,
        _: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        self.0.lock().unwrap().push(source.to_string());
        Ok(Fetched::new(SecretBytes::from("v".to_owned()), "1"))
    }
}

fn spec(uri: &str) -> InjectionSpec {
    InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{{"file":"a","source":"{uri}"}}],"mountPath":"/m","rotation":"1m","filePermission":"0644"}}"#
    ))
    .unwrap()
}

async fn round(uri: &str, hosts: Option<&str>) -> (Vec<String>, Vec<FetchError>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Recording::default();
    let providers = Providers::new().with(shared::Store::Azure, Box::new(store.clone()));
    let mut engine = Engine::new(spec(uri), providers, AtomicWriter::new(dir.path()));
    if let Some(hosts) = hosts {
        engine = engine.with_store_hosts(hosts.parse().unwrap());
    }
    let report = engine.round().await.unwrap();
    let asked = store.0.lock().unwrap().clone();
    (asked, report.failures.into_iter().map(|(_, e)| e).collect())
}

#[tokio::test]
async fn h1_a_spec_naming_a_host_outside_the_list_sends_nothing() {
    for uri in [
        "azure://169.254.169.254/secrets/a",
        "azure://kubernetes.default.svc:443/secrets/a",
        "azure://kv.attacker.example/secrets/a",
    ] {
        let (asked, failures) = round(uri, None).await;
        assert!(asked.is_empty(), "{uri} was fetched");
        assert!(
            matches!(&failures[..], [FetchError::Forbidden(m)] if m.as_str().contains("--allowed-store-hosts")),
            "{uri}: {failures:?}"
        );
    }
}

#[tokio::test]
async fn h1_the_default_and_the_operators_list_are_honoured() {
    let (asked, failures) = round("azure://kv-one/secrets/a", None).await;
    assert_eq!(asked, ["azure://kv-one/secrets/a"]);
    assert!(failures.is_empty());
    let uri = "azure://kv.internal.example:8443/secrets/a";
    let (asked, _) = round(uri, Some("kv.internal.example:8443")).await;
    assert_eq!(asked, [uri]);
}
