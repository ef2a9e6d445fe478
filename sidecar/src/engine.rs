//! The shell around the pure decisions: fetch a round (identical objects once,
//! bounded concurrency), merge, write, record; the init run and the rotation loop.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, Instant, SystemTime},
};

use shared::{FileName, InjectionSpec, ObjectFormat, SecretObject, SecretRef, StoreHosts};

use std::sync::Arc;

use crate::{
    cluster::RoundFacts,
    metrics::Metrics,
    plan::{self, Backoff, Known, Merged},
    providers::{FetchError, Fetched, Providers, Request},
    status::Status,
    text, transform,
    writer::{AtomicWriter, WriteError},
};

/// What one round did, for logs, tests and the caller's loop.
#[derive(Debug, Default)]
pub struct RoundReport {
    pub wrote: bool,
    pub complete: bool,
    pub changed: Vec<FileName>,
    pub failures: Vec<(FileName, FetchError)>,
    /// Distinct store requests made this round.
    pub fetches: usize,
    /// What could not be published (a synced Secret).
    pub publish_error: Option<PublishError>,
}

/// What the app depends on and could not be published, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishError {
    pub message: String,
    /// Retrying cannot help (a Secret that is not ours to write): the init
    /// run fails at once instead of at its deadline, and the sidecar does
    /// not retry it sooner than its interval.
    pub permanent: bool,
}

impl PublishError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// A transient error: retried.
impl From<String> for PublishError {
    fn from(message: String) -> Self {
        Self {
            message,
            permanent: false,
        }
    }
}

impl From<&str> for PublishError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where a round's outcome goes beyond the files: the Kubernetes API (synced
/// Secrets, SecretProviderClassPodStatus, Events). Tests pass a recorder.
#[async_trait::async_trait]
pub trait Publish: Send {
    /// Err: what the app depends on and could not be published; the init run
    /// retries a transient error until its deadline and fails at once on a
    /// permanent one, the sidecar retries next round.
    async fn publish(
        &mut self,
        spec: &InjectionSpec,
        round: &RoundFacts<'_>,
    ) -> Result<(), PublishError>;
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The init run's deadline passed: one line naming each failing object.
    #[error("{0}")]
    Deadline(String),
    /// Something the app depends on can never be published as things are
    /// (a synced Secret that is not ours): one line saying what to do.
    #[error("{0}")]
    Refused(String),
}

pub struct Engine {
    spec: InjectionSpec,
    providers: Providers,
    writer: AtomicWriter,
    backoff: Backoff,
    concurrency: usize,
    known: BTreeMap<FileName, Known>,
    status: Status,
    failed_rounds: u32,
    metrics: Option<Arc<Metrics>>,
    publisher: Option<Box<dyn Publish>>,
    /// Files failing after the last round (Events are sent on changes).
    failing: BTreeSet<FileName>,
    /// A complete set is in the volume (written by us or an earlier run).
    has_set: bool,
    failed_publishes: u32,
    /// The operator's allowlist: checked again here before anything is sent.
    store_hosts: StoreHosts,
}

/// How long the sidecar may spend ending its leases when it stops.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// One fetch: what is asked, in which format, and where else if unreachable.
type FetchKey = (SecretRef, Option<ObjectFormat>, Option<SecretRef>);

impl Engine {
    pub fn new(spec: InjectionSpec, providers: Providers, writer: AtomicWriter) -> Self {
        Self {
            spec,
            providers,
            writer,
            backoff: Backoff::default(),
            concurrency: 4,
            known: BTreeMap::new(),
            status: Status::default(),
            failed_rounds: 0,
            metrics: None,
            publisher: None,
            failing: BTreeSet::new(),
            has_set: false,
            failed_publishes: 0,
            store_hosts: StoreHosts::default(),
        }
    }

    pub fn with_store_hosts(mut self, hosts: StoreHosts) -> Self {
        self.store_hosts = hosts;
        self
    }

    pub fn with_publisher(mut self, publisher: Box<dyn Publish>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn spec(&self) -> &InjectionSpec {
        &self.spec
    }

    /// Picks up the files a previous run (the init container) wrote, so an
    /// unchanged store means no rewrite. Returns whether there were any.
    ///
    /// The rule (M4): the volume is world-writable, so what is on disk seeds
    /// the last-good values only when it agrees with the status file the same
    /// writer left beside it: every object of this spec has its file in the
    /// set and a status entry with the same source and a non-empty version,
    /// and the set holds no other file. Anything else (a set planted or
    /// half-replaced by another container, a status from another spec, no
    /// status at all) is ignored and the sidecar starts fresh: it fetches
    /// before it trusts anything. This does not authenticate the files (a
    /// container that can write the volume can forge both); it keeps a set
    /// without provenance from standing in as "last good" while the store is
    /// failing, and the first successful fetch replaces whatever was seeded.
    pub fn resume(&mut self) -> Result<bool, WriteError> {
        let Some(current) = self.writer.read_current()? else {
            return Ok(false);
        };
        let status = Status::read(self.writer.dir()).unwrap_or_default();
        let mut known = BTreeMap::new();
        for object in &self.spec.objects {
            let recorded = status
                .objects
                .get(object.file.as_str())
                .filter(|s| s.source == object.source.to_string())
                .and_then(|s| s.version.clone())
                .filter(|v| !v.is_empty());
            let (Some(version), Some(entry)) = (recorded, current.get(&object.file)) else {
                tracing::warn!(file = %object.file, "the files in the volume do not match the status file; fetching before using them");
                return Ok(false);
            };
            let lease = status
                .objects
                .get(object.file.as_str())
                .and_then(|s| s.lease.as_ref())
                .and_then(|l| l.to_lease());
            known.insert(
                object.file.clone(),
                Known {
                    lease,
                    ..Known::new(entry.data.clone(), version)
                },
            );
        }
        if current.len() != known.len() {
            tracing::warn!(
                "the volume holds files this spec does not name; fetching before using them"
            );
            return Ok(false);
        }
        self.status = status;
        self.known = known;
        self.has_set = true;
        Ok(true)
    }

    /// Fetches every object `settled` does not already answer (lent values
    /// kept or renewed this round).
    async fn fetch_round(
        &self,
        mut settled: BTreeMap<FileName, Result<Known, FetchError>>,
    ) -> (Vec<(FileName, Result<Known, FetchError>)>, usize) {
        let key = |o: &SecretObject| -> FetchKey {
            (
                o.source.fetched(),
                o.format,
                o.failover.as_ref().map(SecretRef::fetched),
            )
        };
        let mut unique: Vec<FetchKey> = self
            .spec
            .objects
            .iter()
            .filter(|o| !settled.contains_key(&o.file))
            .map(key)
            .collect();
        unique.sort_by_key(|(r, f, o)| (r.to_string(), format!("{f:?}"), format!("{o:?}")));
        unique.dedup();
        let hosts = &self.store_hosts;
        // The allowlist first: a refused host is never asked.
        let (allowed_keys, refused): (Vec<_>, Vec<_>) = unique
            .into_iter()
            .map(|k| {
                let check = allowed(hosts, &k.0);
                (k, check)
            })
            .partition(|(_, check)| check.is_ok());
        let mut results: HashMap<FetchKey, Result<Fetched, FetchError>> = refused
            .into_iter()
            .filter_map(|(k, check)| check.err().map(|e| (k, Err(e))))
            .collect();
        let keys: Vec<FetchKey> = allowed_keys.into_iter().map(|(k, _)| k).collect();
        let requests: Vec<Request> = keys.iter().map(|(r, f, _)| (r.clone(), *f)).collect();
        let mut fetches = requests.len();
        let answers = self.providers.fetch_all(&requests, self.concurrency).await;
        // A source that could not be reached is asked for at its failover.
        let mut failovers: Vec<(FetchKey, Request)> = Vec::new();
        for (k, answer) in keys.into_iter().zip(answers) {
            match (&answer, &k.2) {
                (Err(e), Some(failover)) if e.is_outage() && allowed(hosts, failover).is_ok() => {
                    tracing::warn!(source = %k.0, %failover, kind = e.label(), "the store cannot be reached; asking the failover");
                    failovers.push((k.clone(), (failover.clone(), k.1)));
                }
                _ => {}
            }
            results.insert(k, answer);
        }
        if !failovers.is_empty() {
            let requests: Vec<Request> = failovers.iter().map(|(_, r)| r.clone()).collect();
            fetches += requests.len();
            let answers = self.providers.fetch_all(&requests, self.concurrency).await;
            for ((k, _), answer) in failovers.into_iter().zip(answers) {
                // The primary's error stays when the failover fails too.
                if answer.is_ok() {
                    results.insert(k, answer);
                }
            }
        }
        let round = self
            .spec
            .objects
            .iter()
            .map(|o| {
                if let Some(result) = settled.remove(&o.file) {
                    return (o.file.clone(), result);
                }
                let result = match results.get(&key(o)) {
                    Some(Ok(fetched)) => {
                        transform::to_file_bytes(o, &fetched.value).map(|bytes| Known {
                            lease: fetched.lease.clone(),
                            ..Known::new(bytes, fetched.version.clone())
                        })
                    }
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(FetchError::Unsupported("not fetched".into())),
                };
                (o.file.clone(), result)
            })
            .collect();
        (round, fetches)
    }

    /// Lent values: kept until two thirds of their lease, then renewed
    /// (once per lease), and fetched anew when the store will not extend
    /// them. A renewal the store cannot answer now (an outage, throttling)
    /// keeps the value as a failure, retried with backoff.
    async fn settle_leases(&self) -> (BTreeMap<FileName, Result<Known, FetchError>>, usize) {
        let plan = plan::lease_plan(&self.spec, &self.known, SystemTime::now());
        let mut settled = BTreeMap::new();
        for file in plan.keep {
            if let Some(known) = self.known.get(&file) {
                settled.insert(file, Ok(known.clone()));
            }
        }
        let renewals = plan.renew.len();
        for (lease, files) in plan.renew {
            let Some(store) = files.first().and_then(|f| self.store_of(f)) else {
                continue;
            };
            match self.providers.renew(store, &lease).await {
                Ok(renewed) => {
                    tracing::info!(files = ?files.iter().map(FileName::as_str).collect::<Vec<_>>(), until = %humantime::format_rfc3339_seconds(renewed.until), renewable = renewed.renewable, "renewed a lease");
                    for file in files {
                        if let Some(known) = self.known.get(&file) {
                            let known = Known {
                                lease: Some(renewed.clone()),
                                ..known.clone()
                            };
                            settled.insert(file, Ok(known));
                        }
                    }
                }
                Err(e) if e.is_outage() || matches!(e, FetchError::Throttled { .. }) => {
                    for file in files {
                        settled.insert(file, Err(e.clone()));
                    }
                }
                Err(e) => {
                    // Gone or not renewable after all: new credentials now.
                    tracing::warn!(kind = e.label(), error = %e, "a lease cannot be renewed; fetching new credentials");
                }
            }
        }
        (settled, renewals)
    }

    fn store_of(&self, file: &FileName) -> Option<shared::Store> {
        self.spec
            .objects
            .iter()
            .find(|o| &o.file == file)
            .map(|o| o.source.store())
    }

    /// How long until a lent value needs a look (renew or replace).
    pub fn lease_wait(&self) -> Option<Duration> {
        self.lease_wait_except(&[])
    }

    fn lease_wait_except(&self, failing: &[&FileName]) -> Option<Duration> {
        crate::lease::next_wait(
            self.known
                .iter()
                .filter(|(file, _)| !failing.contains(file))
                .filter_map(|(_, k)| k.lease.as_ref()),
            SystemTime::now(),
        )
    }

    /// The sidecar stops: the stores configured to end their leases do.
    pub async fn release_leases(&self) {
        let mut by_store: BTreeMap<shared::Store, Vec<crate::lease::Lease>> = BTreeMap::new();
        for object in &self.spec.objects {
            let Some(lease) = self.known.get(&object.file).and_then(|k| k.lease.clone()) else {
                continue;
            };
            let leases = by_store.entry(object.source.store()).or_default();
            if lease.id.is_some() && !leases.iter().any(|l| l.id == lease.id) {
                leases.push(lease);
            }
        }
        for (store, leases) in by_store {
            self.providers.release(store, &leases).await;
        }
    }

    /// Fetch everything once, write the set if it is complete and changed.
    pub async fn round(&mut self) -> Result<RoundReport, EngineError> {
        let (settled, renewals) = self.settle_leases().await;
        let (round, fetches) = self.fetch_round(settled).await;
        let fetches = fetches + renewals;
        let merged = plan::merge(&self.spec, round, &self.known);
        let complete = merged.set.is_some();
        let wrote = match &merged.set {
            Some(set) => self.writer.write(set)?,
            None => false,
        };
        self.status
            .record(&self.spec, &merged, wrote, SystemTime::now());
        let Merged {
            known,
            changed,
            failures,
            ..
        } = merged;
        self.known = known;
        if let Err(e) = self.status.write(self.writer.dir()) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
        for (file, error) in &failures {
            let source = self.source_of(file);
            tracing::warn!(file = %file, %source, kind = error.label(), %error, "fetch failed; the file keeps its last good value");
        }
        if wrote {
            let versions: Vec<String> = changed
                .iter()
                .map(|f| {
                    format!(
                        "{f}@{}",
                        self.known.get(f).map(|k| k.version.as_str()).unwrap_or("")
                    )
                })
                .collect();
            tracing::info!(files = ?versions, "wrote a new set");
        }
        self.record_metrics(&failures, wrote);
        self.failed_rounds = if failures.is_empty() {
            0
        } else {
            self.failed_rounds + 1
        };
        let publish_error = match self.publisher.as_mut() {
            Some(publisher) => {
                let facts = RoundFacts {
                    first_set: wrote && !self.has_set,
                    wrote,
                    complete,
                    changed: &changed,
                    failures: &failures,
                    previously_failing: &self.failing,
                    known: &self.known,
                    mount_path: &self.spec.mount_path,
                };
                publisher.publish(&self.spec, &facts).await.err()
            }
            None => None,
        };
        if let Some(error) = &publish_error {
            tracing::warn!("{error}");
        }
        self.has_set |= wrote;
        self.failed_publishes = match publish_error {
            Some(_) => self.failed_publishes + 1,
            None => 0,
        };
        self.failing = failures.iter().map(|(f, _)| f.clone()).collect();
        Ok(RoundReport {
            wrote,
            complete,
            changed,
            failures,
            fetches,
            publish_error,
        })
    }

    fn record_metrics(&self, failures: &[(FileName, FetchError)], wrote: bool) {
        let Some(metrics) = &self.metrics else { return };
        use crate::metrics::{FileLabels, OutcomeLabels};
        for object in &self.spec.objects {
            let failure = failures.iter().find(|(f, _)| f == &object.file);
            let outcome = failure.map_or("ok", |(_, e)| e.label());
            metrics
                .fetches
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            metrics
                .failing
                .get_or_create(&FileLabels {
                    file: object.file.to_string(),
                })
                .set(i64::from(failure.is_some()));
            if let Some(lease) = self.known.get(&object.file).and_then(|k| k.lease.as_ref()) {
                let until = lease
                    .until
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default();
                metrics
                    .lease_expiry
                    .get_or_create(&FileLabels {
                        file: object.file.to_string(),
                    })
                    .set(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
            }
        }
        if wrote {
            metrics.writes.inc();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            metrics
                .last_write
                .set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        }
    }

    fn source_of(&self, file: &FileName) -> String {
        self.spec
            .objects
            .iter()
            .find(|o| &o.file == file)
            .map(|o| describe_source(&o.source))
            .unwrap_or_default()
    }

    /// The init container's job: rounds until every file has a value, backing
    /// off between them, or the deadline passes. Never writes a partial set.
    pub async fn init(&mut self, deadline: Duration) -> Result<RoundReport, EngineError> {
        // Elapsed time against the deadline: no `Instant` arithmetic, which
        // panics on overflow for a huge `--deadline`.
        let started = Instant::now();
        loop {
            let report = self.round().await?;
            if report.complete && report.publish_error.is_none() {
                return Ok(report);
            }
            if let Some(error) = report.publish_error.as_ref().filter(|e| e.permanent) {
                return Err(EngineError::Refused(text::bounded(
                    &format!("secret-injector: {error}"),
                    text::TERMINATION_LIMIT,
                )));
            }
            // Retrying cannot mend a store this build lacks, a value that can
            // never be written, or a policy that denies access: say so now.
            let permanent: Vec<(FileName, FetchError)> = report
                .failures
                .iter()
                .filter(|(_, e)| e.is_permanent())
                .cloned()
                .collect();
            if !permanent.is_empty() {
                return Err(EngineError::Refused(text::bounded(
                    &self.describe_failures(&permanent),
                    text::TERMINATION_LIMIT,
                )));
            }
            let delay = self.next_delay(&report);
            if started.elapsed().saturating_add(delay) >= deadline {
                let message = match &report.publish_error {
                    Some(error) if report.complete => format!("secret-injector: {error}"),
                    _ => self.describe_failures(&report.failures),
                };
                // The termination message: one line that kubelet keeps whole.
                return Err(EngineError::Deadline(text::bounded(
                    &message,
                    text::TERMINATION_LIMIT,
                )));
            }
            tokio::time::sleep(delay).await;
        }
    }

    pub fn next_delay(&self, report: &RoundReport) -> Duration {
        let unit = rand::random::<f64>();
        let delay = plan::next_delay(
            self.spec.rotation.interval(),
            &self.backoff,
            self.failed_rounds,
            &report.failures,
            unit,
        );
        // A lent value is renewed or replaced on its lease's time, unless
        // that just failed: then the backoff (and Retry-After) above rule.
        let failing: Vec<&FileName> = report.failures.iter().map(|(f, _)| f).collect();
        let delay = self
            .lease_wait_except(&failing)
            .map_or(delay, |wait| delay.min(wait));
        // A Secret the app waits for could not be synced: retry it soon
        // (unless retrying cannot help).
        if report.publish_error.as_ref().is_some_and(|e| !e.permanent) {
            delay.min(self.backoff.delay(self.failed_publishes, unit))
        } else {
            delay
        }
    }

    /// Rotation: poll, write what changed, until `shutdown` resolves.
    pub async fn run(
        &mut self,
        first_delay: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), EngineError> {
        tokio::pin!(shutdown);
        // A resumed lease may be due before the first poll.
        let mut delay = self
            .lease_wait()
            .map_or(first_delay, |wait| first_delay.min(wait));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(delay) => {}
            }
            let report = tokio::select! {
                _ = &mut shutdown => break,
                report = self.round() => report?,
            };
            delay = self.next_delay(&report);
        }
        // Bounded: kubelet's grace period is short and the app may be gone.
        if tokio::time::timeout(RELEASE_TIMEOUT, self.release_leases())
            .await
            .is_err()
        {
            tracing::warn!("releasing leases took longer than {RELEASE_TIMEOUT:?}; left to expire");
        }
        Ok(())
    }

    fn describe_failures(&self, failures: &[(FileName, FetchError)]) -> String {
        let parts: Vec<String> = failures
            .iter()
            .map(|(file, e)| format!("cannot fetch {file} from {}: {e}", self.source_of(file)))
            .collect();
        format!("secret-injector: {}", parts.join("; "))
    }
}

/// H1, again in the sidecar: a host the operator's list does not name is
/// never sent a request, whatever the spec says.
fn allowed(hosts: &StoreHosts, source: &SecretRef) -> Result<(), FetchError> {
    match source.named_host() {
        Some((host, port)) => hosts
            .check(&host, port)
            .map_err(|refused| FetchError::Forbidden(format!("{source}: {refused}").into())),
        None => Ok(()),
    }
}

/// `azure://kv/secrets/x (vault https://kv.vault.azure.net)`: the reference
/// and, for Azure, the vault URL it resolves to.
pub fn describe_source(source: &SecretRef) -> String {
    match source {
        SecretRef::Azure(r) => format!("{source} (vault {})", r.vault.url()),
        other => other.to_string(),
    }
}
