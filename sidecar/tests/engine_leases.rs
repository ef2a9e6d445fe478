//! The engine with a store that lends its values (no network): dynamic
//! credentials kept while their lease runs, renewed once per lease, replaced
//! as a new set when the store will not extend them, released on shutdown.
//! The store's leases are dated so each round finds the step under test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use secret_injector_sidecar::{
    engine::Engine,
    lease::Lease,
    plan::Backoff,
    providers::{FetchError, Fetched, Provider, Providers},
    secret::SecretBytes,
    status::Status,
    writer::AtomicWriter,
};
use shared::{InjectionSpec, ObjectFormat, SecretRef};

/// How old a lease is when the store hands it out, and what a renewal does.
#[derive(Clone, Copy)]
enum Renewal {
    /// The full term again, renewable.
    Full,
    /// Less than asked (the max TTL), ending at once.
    Capped,
    /// The store cannot be reached.
    Down,
    /// The lease is gone (revoked by an operator).
    Gone,
}

#[derive(Default)]
struct State {
    issued: usize,
    renewals: Vec<String>,
    released: Vec<String>,
    /// Age of the next lease issued: `due` makes it due for renewal.
    due: bool,
    renewal: Option<Renewal>,
}

#[derive(Clone, Default)]
struct LendingStore(Arc<Mutex<State>>);

const TERM: Duration = Duration::from_secs(120);

impl LendingStore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

#[async_trait]
impl Provider for LendingStore {
    async fn fetch(
        &self,
        source: &SecretRef,
        _: Option<ObjectFormat>,
    ) -> Result<Fetched, FetchError> {
        let mut state = self.state();
        state.issued += 1;
        let n = state.issued;
        let now = SystemTime::now();
        let since = if state.due {
            now - Duration::from_secs(100)
        } else {
            now
        };
        let lease = Lease::granted(
            Some(format!("database/creds/app/{n}")),
            true,
            TERM,
            since,
            None,
        );
        let key = source.to_string();
        let value = if key.ends_with("username") {
            format!("v-app-{n}")
        } else {
            format!("pw-{n}")
        };
        Ok(Fetched {
            lease: Some(lease),
            ..Fetched::new(SecretBytes::from(value), format!("database/creds/app/{n}"))
        })
    }

    async fn renew(&self, lease: &Lease) -> Result<Lease, FetchError> {
        let mut state = self.state();
        state.renewals.push(lease.id.clone().unwrap_or_default());
        let now = SystemTime::now();
        match state.renewal.unwrap_or(Renewal::Full) {
            Renewal::Full => Ok(lease.renewed(TERM, now, None)),
            Renewal::Capped => Ok(Lease {
                renewable: false,
                since: now - Duration::from_secs(30),
                until: now + Duration::from_secs(5),
                ..lease.clone()
            }),
            Renewal::Down => Err(FetchError::Unavailable("503 from the store".into())),
            Renewal::Gone => Err(FetchError::Invalid("lease not found".into())),
        }
    }

    async fn release(&self, leases: &[Lease]) {
        let ids = leases.iter().filter_map(|l| l.id.clone());
        self.state().released.extend(ids);
    }
}

const USER: &str = "vault://database/creds/app#username";
const PASS: &str = "vault://database/creds/app#password";

fn spec() -> InjectionSpec {
    InjectionSpec::from_env_value(&format!(
        r#"{{"objects":[{{"file":"db-user","source":"{USER}"}},{{"file":"db-pass","source":"{PASS}"}},
            {{"file":"copy-user","source":"{USER}"}}],
            "mountPath":"/mnt/secrets-store","rotation":"1m","filePermission":"0640",
            "identities":{{"vault":{{"role":"app"}}}}}}"#
    ))
    .unwrap()
}

fn engine(store: &LendingStore, dir: &std::path::Path) -> Engine {
    let providers = Providers::new().with(shared::Store::Vault, Box::new(store.clone()));
    Engine::new(spec(), providers, AtomicWriter::new(dir)).with_backoff(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
    })
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

#[tokio::test]
async fn credentials_are_kept_while_their_lease_runs() {
    let store = LendingStore::default();
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path());
    assert!(engine.round().await.unwrap().wrote);
    let issued = store.state().issued;
    // A poll later: nothing asked of the store, nothing rewritten (a
    // dynamic read would mint new credentials every interval).
    let report = engine.round().await.unwrap();
    assert!(!report.wrote);
    assert_eq!(store.state().issued, issued);
    assert!(store.state().renewals.is_empty());
    let wait = engine.lease_wait().unwrap();
    assert!(
        wait > Duration::from_secs(70) && wait <= Duration::from_secs(80),
        "{wait:?}"
    );
    let status = Status::read(dir.path()).unwrap();
    let lease = status.objects["db-user"]
        .lease
        .as_ref()
        .expect("lease in the status file");
    assert!(
        lease
            .id
            .as_deref()
            .is_some_and(|id| id.starts_with("database/creds/app/")),
        "{lease:?}"
    );
    assert_eq!(
        status.objects["copy-user"]
            .lease
            .as_ref()
            .and_then(|l| l.id.clone()),
        lease.id,
        "one fetch, one lease for both files"
    );
    assert!(lease.renewable);
}

#[tokio::test]
async fn a_due_lease_is_renewed_once_for_all_its_files_without_a_rewrite() {
    let store = LendingStore::default();
    store.state().due = true;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path());
    engine.round().await.unwrap();
    let user = read(dir.path(), "db-user");
    let before = Status::read(dir.path()).unwrap().objects["db-user"]
        .lease
        .clone()
        .unwrap();
    let report = engine.round().await.unwrap();
    assert!(!report.wrote, "a renewal changes no file");
    let renewals = store.state().renewals.clone();
    // db-user, copy-user and db-pass: one request (if the provider groups
    // them) or two leases, each renewed exactly once.
    let mut unique = renewals.clone();
    unique.dedup();
    assert_eq!(renewals, unique, "each lease once: {renewals:?}");
    assert_eq!(read(dir.path(), "db-user"), user);
    let after = Status::read(dir.path()).unwrap().objects["db-user"]
        .lease
        .clone()
        .unwrap();
    assert!(after.expires > before.expires, "{before:?} → {after:?}");
}

#[tokio::test]
async fn a_capped_lease_is_replaced_by_new_credentials_as_one_new_set() {
    let store = LendingStore::default();
    store.state().due = true;
    store.state().renewal = Some(Renewal::Capped);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path());
    engine.round().await.unwrap();
    let first = (read(dir.path(), "db-user"), read(dir.path(), "db-pass"));
    store.state().due = false;
    // Renewed, but only to the cap: kept for now, no new file.
    assert!(!engine.round().await.unwrap().wrote);
    // The capped term is two thirds gone: new credentials, written together.
    let report = engine.round().await.unwrap();
    assert!(report.wrote);
    let second = (read(dir.path(), "db-user"), read(dir.path(), "db-pass"));
    assert_ne!(first.0, second.0);
    assert_ne!(first.1, second.1);
    assert_eq!(read(dir.path(), "copy-user"), second.0);
    let lease = Status::read(dir.path()).unwrap().objects["db-pass"]
        .lease
        .clone()
        .unwrap();
    assert!(lease.renewable, "the new credentials' own lease");
}

#[tokio::test]
async fn a_renewal_during_an_outage_keeps_the_files_and_a_lost_lease_is_replaced() {
    let store = LendingStore::default();
    store.state().due = true;
    store.state().renewal = Some(Renewal::Down);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&store, dir.path());
    engine.round().await.unwrap();
    let user = read(dir.path(), "db-user");
    let issued = store.state().issued;
    let report = engine.round().await.unwrap();
    assert!(!report.wrote);
    assert!(!report.failures.is_empty(), "the outage is reported");
    assert_eq!(
        store.state().issued,
        issued,
        "no new credentials during an outage"
    );
    assert_eq!(read(dir.path(), "db-user"), user);
    // The store is back but the lease is gone: new credentials at once.
    store.state().renewal = Some(Renewal::Gone);
    let report = engine.round().await.unwrap();
    assert!(report.wrote);
    assert_ne!(read(dir.path(), "db-user"), user);
}

#[tokio::test]
async fn shutdown_releases_each_lease_once_and_a_restart_keeps_them() {
    let store = LendingStore::default();
    let dir = tempfile::tempdir().unwrap();
    let mut first = engine(&store, dir.path());
    first.round().await.unwrap();
    let issued = store.state().issued;
    // A restarted sidecar resumes with the leases of the status file.
    let mut restarted = engine(&store, dir.path());
    assert!(restarted.resume().unwrap());
    assert!(!restarted.round().await.unwrap().wrote);
    assert_eq!(
        store.state().issued,
        issued,
        "resumed leases are not re-issued"
    );
    restarted.release_leases().await;
    let mut released = store.state().released.clone();
    let count = released.len();
    released.sort();
    released.dedup();
    assert_eq!(released.len(), count, "each lease once");
    assert!(!released.is_empty());
}

// A renewal that fails during an outage waits the backoff, not the lease's
// one-second look: a fleet of pods must not poll a down Vault every second.
#[tokio::test]
async fn an_outage_backs_off_even_with_a_lease_due() {
    let store = LendingStore::default();
    store.state().due = true;
    store.state().renewal = Some(Renewal::Down);
    let dir = tempfile::tempdir().unwrap();
    let providers = Providers::new().with(shared::Store::Vault, Box::new(store.clone()));
    let mut engine =
        Engine::new(spec(), providers, AtomicWriter::new(dir.path())).with_backoff(Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(60),
        });
    engine.round().await.unwrap();
    let report = engine.round().await.unwrap();
    assert!(!report.failures.is_empty());
    let delay = engine.next_delay(&report);
    assert!(delay >= Duration::from_secs(20), "{delay:?}");
}
