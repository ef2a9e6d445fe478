//! The checks every store passes on a real pod, parametrised by the store's
//! fixture: the files as the store's CSI provider writes them, the synced
//! Secrets, the PodStatus versions, a rotation reaching file, Secret and
//! PodStatus within the interval (+10 % jitter) + 1 s, and an outage that
//! keeps the last good files while the status file says why.

use std::time::Duration;

use crate::{cluster::Ns, eventually, store::Store};

/// Counts and prints checks as `pods.sh` does (`pods: ok   <name>`), so a
/// run shows every failure rather than the first.
#[derive(Default)]
pub struct Checks {
    failed: Vec<String>,
    passed: usize,
}

impl Checks {
    pub fn check(&mut self, name: &str, result: anyhow::Result<()>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("pods: ok   {name}");
            }
            Err(e) => {
                println!("pods: FAIL {name}: {e:#}");
                self.failed.push(name.to_string());
            }
        }
    }

    /// Panics naming every failed check.
    pub fn finish(self) {
        println!(
            "pods: {} passed, {} failed (tests/e2e/tests/pods/)",
            self.passed,
            self.failed.len()
        );
        assert!(self.failed.is_empty(), "failed: {:#?}", self.failed);
    }
}

/// A pod whose container reads a set at `mount`.
#[derive(Clone)]
pub struct App<'a> {
    pub ns: &'a Ns,
    pub pod: String,
    pub container: String,
    pub mount: String,
    /// Its SecretProviderClassPodStatus: `<pod>-<namespace>-<class>`.
    pub status: String,
    /// The rotation interval the webhook gave it.
    pub interval: Duration,
}

impl App<'_> {
    pub async fn file(&self, name: &str) -> anyhow::Result<String> {
        self.ns
            .read(
                &self.pod,
                &self.container,
                &format!("{}/{name}", self.mount),
            )
            .await
    }

    /// How long a rotation may take to arrive: interval + 10 % jitter + 1 s,
    /// + 2 s for exec's own round trip.
    fn rotation_bound(&self) -> Duration {
        self.interval + self.interval / 10 + Duration::from_secs(3)
    }
}

/// Every `(file, contents)` byte for byte.
pub async fn files(app: &App<'_>, want: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for (file, contents) in want {
        match app.file(file).await {
            Ok(got) if got == *contents => {}
            Ok(got) => wrong.push(format!("{file}: {got:?}, not {contents:?}")),
            Err(e) => wrong.push(format!("{file}: {e:#}")),
        }
    }
    anyhow::ensure!(wrong.is_empty(), "{}", wrong.join("; "));
    Ok(())
}

/// Every `(secret, key, value)` of the synced Secrets.
pub async fn synced(ns: &Ns, want: &[(&str, &str, &str)]) -> anyhow::Result<()> {
    for (secret, key, value) in want {
        let got = ns.secret(secret, key).await?;
        anyhow::ensure!(
            got == *value,
            "Secret {secret} key {key}: {got:?}, not {value:?}"
        );
    }
    Ok(())
}

/// Every `(object id, version)` of the app's PodStatus.
pub async fn versions(app: &App<'_>, want: &[(&str, &str)]) -> anyhow::Result<()> {
    for (id, version) in want {
        let got = app.ns.pod_status_version(&app.status, id).await?;
        anyhow::ensure!(
            got == *version,
            "PodStatus {} {id}: {got:?}, not {version:?}",
            app.status
        );
    }
    Ok(())
}

/// One object's rotation: what the store changes and where it shows.
pub struct Rotation<'a> {
    /// The store's name for it (a secret, a parameter).
    pub object: &'a str,
    /// The file the app reads.
    pub file: &'a str,
    /// The PodStatus object id (a class's sets have one; annotations' none).
    pub status_id: Option<&'a str>,
    /// A synced Secret's `(name, key)` that carries it, if any.
    pub secret: Option<(&'a str, &'a str)>,
    pub value: &'a str,
}

/// The store rotates `r`; file, PodStatus and synced Secret follow.
pub async fn rotation(checks: &mut Checks, store: &impl Store, app: &App<'_>, r: &Rotation<'_>) {
    let s = store.name();
    let version = match store.rotate(r.object, r.value).await {
        Ok(v) => v,
        Err(e) => {
            return checks.check(
                &format!("{s} rotation: the store takes {}", r.object),
                Err(e),
            );
        }
    };
    let bound = app.rotation_bound();
    let file = eventually(r.file, bound, r.value, || app.file(r.file)).await;
    checks.check(
        &format!("{s} rotation: the file {} follows", r.file),
        report(file),
    );
    if let Some(id) = r.status_id {
        let status = eventually(id, bound, &version, || {
            app.ns.pod_status_version(&app.status, id)
        })
        .await;
        checks.check(
            &format!("{s} rotation: the PodStatus has {id}'s new version"),
            report(status),
        );
    }
    if let Some((secret, key)) = r.secret {
        let synced = eventually(secret, bound, r.value, || app.ns.secret(secret, key)).await;
        checks.check(
            &format!("{s} rotation: the synced Secret {secret} follows"),
            report(synced),
        );
    }
}

fn report(took: anyhow::Result<Duration>) -> anyhow::Result<()> {
    let took = took?;
    println!("pods:   (after {:.1} s)", took.as_secs_f64());
    Ok(())
}

/// The store down for two intervals: the files keep `last_good`, the status
/// file names the store's outage kind; then the store comes back.
pub async fn outage(
    checks: &mut Checks,
    store: &mut impl Store,
    app: &App<'_>,
    last_good: &[(&str, &str)],
) {
    let s = store.name();
    if let Err(e) = store.down().await {
        return checks.check(&format!("{s} outage: the store goes down"), Err(e));
    }
    tokio::time::sleep(app.interval * 2 + Duration::from_secs(2)).await;
    checks.check(
        &format!("{s} outage: the files keep their last good values"),
        files(app, last_good).await,
    );
    let kind = format!("\"errorKind\": \"{}\"", store.outage_kind());
    let status = app
        .file("..secret-injector-status.json")
        .await
        .and_then(|status| {
            anyhow::ensure!(
                status.contains(&kind),
                "the status file lacks {kind}: {status}"
            );
            Ok(())
        });
    checks.check(
        &format!("{s} outage: the status file names the outage"),
        status,
    );
    checks.check(
        &format!("{s} outage: the store comes back"),
        store.up().await,
    );
}
