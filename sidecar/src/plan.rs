//! The sidecar's decisions, as pure functions: when to poll next, how long to
//! back off, and what set to write from a round of fetches.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use shared::{FileMode, FileName, InjectionSpec};

use crate::{
    lease::{Lease, Step},
    providers::FetchError,
    secret::SecretBytes,
    writer::{FileEntry, FileSet},
};

/// The longest the sidecar ever waits between rounds. A longer interval (or
/// a store's Retry-After) is clamped to it, so no arithmetic on a delay can
/// overflow and no timer is armed for centuries.
pub const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `delay × factor`, clamped to `[0, MAX_DELAY]`, for any `Duration` and any
/// factor (`Duration::mul_f64` panics on overflow; this never does).
fn scaled(delay: Duration, factor: f64) -> Duration {
    let factor = if factor.is_finite() {
        factor.max(0.0)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(delay.min(MAX_DELAY).as_secs_f64() * factor)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// A jitter sample in [0, 1]; anything else (NaN, infinities) is the middle.
fn unit_sample(unit: f64) -> f64 {
    if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// The rotation interval, spread ±10% so pods started together do not poll
/// the store in lockstep. `unit` is a uniform sample in [0, 1).
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    scaled(interval, 0.9 + 0.2 * unit_sample(unit))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based): doubling from `initial`,
    /// capped at `max`, with ±20% jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        scaled(exp.min(self.max), 0.8 + 0.4 * unit_sample(unit))
    }
}

/// When to fetch again after a round.
pub fn next_delay(
    interval: Option<Duration>,
    backoff: &Backoff,
    consecutive_failed_rounds: u32,
    failures: &[(FileName, FetchError)],
    unit: f64,
) -> Duration {
    let regular = interval.map(|i| jittered(i, unit));
    if failures.is_empty() {
        return regular.unwrap_or(backoff.max).min(MAX_DELAY);
    }
    let mut delay = backoff.delay(consecutive_failed_rounds.max(1), unit);
    // Retrying sooner than the interval, but never later.
    if let Some(regular) = regular {
        delay = delay.min(regular);
    }
    // The store said when: honour it.
    if let Some(after) = failures.iter().filter_map(|(_, e)| e.retry_after()).max() {
        delay = delay.max(after);
    }
    delay.min(MAX_DELAY)
}

/// What was last fetched successfully for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub bytes: SecretBytes,
    pub version: String,
    /// The store lent it: kept, renewed and replaced by its lease.
    pub lease: Option<Lease>,
}

impl Known {
    pub fn new(bytes: SecretBytes, version: impl Into<String>) -> Self {
        Self {
            bytes,
            version: version.into(),
            lease: None,
        }
    }

    /// The same file content: a renewed lease is not a change.
    fn same(&self, other: &Self) -> bool {
        self.bytes == other.bytes && self.version == other.version
    }
}

/// What a round does with the values the store lent (leases).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Files whose lent value stays as it is this round.
    pub keep: Vec<FileName>,
    /// Leases to renew, each once however many files share it, with their
    /// files. Every other file is fetched: it has no lease, has never been
    /// fetched, or its lease is to be replaced.
    pub renew: Vec<(Lease, Vec<FileName>)>,
}

pub fn lease_plan(
    spec: &InjectionSpec,
    known: &BTreeMap<FileName, Known>,
    now: SystemTime,
) -> LeasePlan {
    let mut plan = LeasePlan::default();
    for object in &spec.objects {
        let Some(lease) = known.get(&object.file).and_then(|k| k.lease.as_ref()) else {
            continue;
        };
        match lease.step(now) {
            Step::Keep(_) => plan.keep.push(object.file.clone()),
            Step::Renew => match plan.renew.iter_mut().find(|(l, _)| l.id == lease.id) {
                Some((_, files)) => files.push(object.file.clone()),
                None => plan.renew.push((lease.clone(), vec![object.file.clone()])),
            },
            Step::Replace => {}
        }
    }
    plan
}

/// The outcome of merging a round into what was known.
#[derive(Debug, Default)]
pub struct Merged {
    /// The complete set to write, or `None` while some file has never had a value.
    pub set: Option<FileSet>,
    pub known: BTreeMap<FileName, Known>,
    /// Files whose value or version differs from before.
    pub changed: Vec<FileName>,
    pub failures: Vec<(FileName, FetchError)>,
}

/// Fresh values where the fetch worked; the last good value where it failed,
/// so one failing object never blocks the others nor empties its file.
pub fn merge(
    spec: &InjectionSpec,
    round: Vec<(FileName, Result<Known, FetchError>)>,
    previous: &BTreeMap<FileName, Known>,
) -> Merged {
    let mut merged = Merged::default();
    for (file, result) in round {
        match result {
            Ok(fresh) => {
                if !previous.get(&file).is_some_and(|p| p.same(&fresh)) {
                    merged.changed.push(file.clone());
                }
                merged.known.insert(file, fresh);
            }
            Err(e) => {
                if let Some(old) = previous.get(&file) {
                    merged.known.insert(file.clone(), old.clone());
                }
                merged.failures.push((file, e));
            }
        }
    }
    let complete = spec
        .objects
        .iter()
        .all(|o| merged.known.contains_key(&o.file));
    if complete {
        merged.set = Some(
            spec.objects
                .iter()
                .filter_map(|o| {
                    let known = merged.known.get(&o.file)?;
                    let mode = o.file_permission.unwrap_or(spec.file_permission);
                    Some((o.file.clone(), entry(known, mode)))
                })
                .collect(),
        );
    }
    merged
}

fn entry(known: &Known, mode: FileMode) -> FileEntry {
    FileEntry {
        data: known.bytes.clone(),
        mode: mode.bits(),
    }
}

#[cfg(test)]
mod tests {
    use shared::{Rotation, SecretObject};

    use super::*;

    fn file(name: &str) -> FileName {
        FileName::new(name).unwrap()
    }

    fn spec(files: &[&str]) -> InjectionSpec {
        InjectionSpec::new(
            files
                .iter()
                .map(|f| {
                    SecretObject::new(
                        file(f),
                        format!("azure://kv-one/secrets/{f}").parse().unwrap(),
                    )
                })
                .collect(),
            "/mnt/secrets-store".into(),
            Rotation::Every(Duration::from_secs(60)),
            None,
            FileMode::DEFAULT,
            shared::Identities::default(),
        )
        .unwrap()
    }

    fn known(value: &str, version: &str) -> Known {
        Known::new(SecretBytes::from(value.to_owned()), version)
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(100);
        assert_eq!(jittered(i, 0.0), Duration::from_secs(90));
        assert_eq!(jittered(i, 0.5), Duration::from_secs(100));
        assert!(jittered(i, 0.999_999) <= Duration::from_secs(110));
    }

    /// L1: no interval, backoff or Retry-After panics, however large.
    #[test]
    fn l1_extreme_durations_never_panic_and_stay_bounded() {
        let extremes = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_secs(1),
            MAX_DELAY,
            MAX_DELAY + Duration::from_secs(1),
            Duration::from_secs(u64::MAX / 2),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        let units = [0.0, 0.5, 0.999_999, 1.0, -1.0, 2.0, f64::NAN, f64::INFINITY];
        for &d in &extremes {
            for &unit in &units {
                assert!(jittered(d, unit) <= MAX_DELAY, "{d:?} {unit}");
                for initial in extremes {
                    let backoff = Backoff { initial, max: d };
                    for attempt in [0, 1, 2, 31, 32, u32::MAX] {
                        assert!(backoff.delay(attempt, unit) <= MAX_DELAY);
                    }
                    let throttled = [(
                        file("a"),
                        FetchError::Throttled {
                            retry_after: Some(initial),
                            detail: Default::default(),
                        },
                    )];
                    for failures in [&throttled[..], &[]] {
                        let delay = next_delay(Some(d), &backoff, u32::MAX, failures, unit);
                        assert!(delay <= MAX_DELAY);
                    }
                }
            }
        }
        assert_eq!(jittered(Duration::MAX, 0.5), MAX_DELAY);
        assert_eq!(jittered(Duration::ZERO, 0.5), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.5), Duration::from_millis(500));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(1));
        assert_eq!(b.delay(4, 0.5), Duration::from_secs(4));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(30));
        assert!(b.delay(3, 0.0) >= Duration::from_millis(1600));
        assert!(b.delay(3, 0.999) <= Duration::from_millis(2400));
    }

    #[test]
    fn next_delay_backs_off_below_the_interval_and_honours_retry_after() {
        let b = Backoff::default();
        let interval = Some(Duration::from_secs(60));
        assert_eq!(
            next_delay(interval, &b, 0, &[], 0.5),
            Duration::from_secs(60)
        );
        let down = vec![(file("a"), FetchError::Unavailable("503".into()))];
        assert_eq!(
            next_delay(interval, &b, 1, &down, 0.5),
            Duration::from_millis(500)
        );
        assert_eq!(
            next_delay(interval, &b, 10, &down, 0.5),
            Duration::from_secs(30)
        );
        let short = Some(Duration::from_secs(10));
        assert_eq!(
            next_delay(short, &b, 10, &down, 0.5),
            Duration::from_secs(10)
        );
        let throttled = vec![(
            file("a"),
            FetchError::Throttled {
                retry_after: Some(Duration::from_secs(7)),
                detail: Default::default(),
            },
        )];
        assert_eq!(
            next_delay(interval, &b, 1, &throttled, 0.5),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn leased_values_are_kept_renewed_once_per_lease_or_fetched() {
        use crate::lease::Lease;
        let t0 = SystemTime::UNIX_EPOCH;
        let spec = spec(&["user", "pass", "cert", "plain"]);
        let db = Lease::granted(
            Some("db/1".into()),
            true,
            Duration::from_secs(120),
            t0,
            None,
        );
        let cert = Lease::granted(None, false, Duration::from_secs(3600), t0, None);
        let lent = |value: &str, lease: &Lease| Known {
            lease: Some(lease.clone()),
            ..known(value, "v")
        };
        let known = BTreeMap::from([
            (file("user"), lent("u", &db)),
            (file("pass"), lent("p", &db)),
            (file("cert"), lent("c", &cert)),
            (file("plain"), known("x", "1")),
        ]);
        let early = lease_plan(&spec, &known, t0 + Duration::from_secs(10));
        // In the spec's order (by file).
        assert_eq!(early.keep, [file("cert"), file("pass"), file("user")]);
        assert!(early.renew.is_empty());
        let later = lease_plan(&spec, &known, t0 + Duration::from_secs(90));
        assert_eq!(later.keep, [file("cert")]);
        assert_eq!(
            later.renew,
            [(db.clone(), vec![file("pass"), file("user")])]
        );
        // The certificate at two thirds of its validity: fetched, not kept.
        let late = lease_plan(&spec, &known, t0 + Duration::from_secs(2400));
        assert!(late.keep.is_empty(), "{late:?}");
        // A renewed lease is not a change; a new one with a new value is.
        let renewed = Known {
            lease: Some(db.renewed(Duration::from_secs(120), t0 + Duration::from_secs(90), None)),
            ..known[&file("user")].clone()
        };
        let merged = merge(&spec, vec![(file("user"), Ok(renewed))], &known);
        assert!(merged.changed.is_empty());
    }

    #[test]
    fn a_complete_round_is_a_set_and_reports_changes() {
        let spec = spec(&["a", "b"]);
        let previous =
            BTreeMap::from([(file("a"), known("1", "v1")), (file("b"), known("2", "v1"))]);
        let merged = merge(
            &spec,
            vec![
                (file("a"), Ok(known("1", "v1"))),
                (file("b"), Ok(known("3", "v2"))),
            ],
            &previous,
        );
        assert_eq!(merged.changed, vec![file("b")]);
        let set = merged.set.unwrap();
        assert_eq!(set[&file("b")].data.expose(), b"3");
        assert_eq!(set[&file("b")].mode, 0o644);
    }

    #[test]
    fn a_failing_object_keeps_its_last_good_value_and_others_update() {
        let spec = spec(&["a", "b"]);
        let previous =
            BTreeMap::from([(file("a"), known("1", "v1")), (file("b"), known("2", "v1"))]);
        let merged = merge(
            &spec,
            vec![
                (file("a"), Err(FetchError::Forbidden("denied".into()))),
                (file("b"), Ok(known("3", "v2"))),
            ],
            &previous,
        );
        let set = merged.set.unwrap();
        assert_eq!(set[&file("a")].data.expose(), b"1");
        assert_eq!(set[&file("b")].data.expose(), b"3");
        assert_eq!(merged.failures.len(), 1);
        assert_eq!(merged.changed, vec![file("b")]);
    }

    #[test]
    fn no_partial_set_before_every_file_has_a_value() {
        let spec = spec(&["a", "b"]);
        let merged = merge(
            &spec,
            vec![
                (file("a"), Ok(known("1", "v1"))),
                (file("b"), Err(FetchError::NotFound("b".into()))),
            ],
            &BTreeMap::new(),
        );
        assert!(merged.set.is_none());
        assert_eq!(merged.known.len(), 1);
    }

    #[test]
    fn per_object_mode_overrides_the_spec() {
        let mut spec = spec(&["a"]);
        spec.objects[0].file_permission = Some("0400".parse().unwrap());
        let merged = merge(
            &spec,
            vec![(file("a"), Ok(known("1", "v1")))],
            &BTreeMap::new(),
        );
        assert_eq!(merged.set.unwrap()[&file("a")].mode, 0o400);
    }
}
