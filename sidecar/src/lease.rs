//! What a store lends rather than gives: a dynamic secret's lease, a
//! certificate's validity. Pure decisions on them: keep the value until two
//! thirds of its term, then renew it while the store allows, and replace it
//! (new credentials, written as a new set) while a third of its term is
//! left for the app to switch.

use std::time::{Duration, SystemTime};

/// The shortest wait before acting on a lease again: a store answering a
/// one-second TTL must not make the sidecar spin.
pub const MIN_WAIT: Duration = Duration::from_secs(1);

/// The shortest life of a lent value before it is replaced (the operator's
/// shortest rotation interval by default): a pod asking `ttl=1s` of PKI
/// must not make every replica issue a certificate every second.
pub const MIN_REISSUE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The store's id to renew or revoke it (`database/creds/app/<id>`);
    /// `None`: it can only be replaced (a certificate without a lease).
    pub id: Option<String>,
    /// The store may extend it. Cleared once a renewal grants less than
    /// asked: the lease has reached its max TTL.
    pub renewable: bool,
    /// When the store granted it (renewals keep it).
    pub issued: SystemTime,
    /// The current term: from its grant or last renewal to its end.
    pub since: SystemTime,
    pub until: SystemTime,
    /// It ends no later than this whatever a renewal grants: the end of the
    /// credential that made it (a Vault lease dies with its token).
    pub bound: Option<SystemTime>,
}

/// What to do with a leased value now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Keep the value; look again at this time.
    Keep(SystemTime),
    /// Ask the store to extend the lease.
    Renew,
    /// Fetch a new value (new credentials, a new certificate).
    Replace,
}

impl Lease {
    /// A term of `ttl` from `now`, within `bound`.
    pub fn granted(
        id: Option<String>,
        renewable: bool,
        ttl: Duration,
        now: SystemTime,
        bound: Option<SystemTime>,
    ) -> Self {
        let until = now.checked_add(ttl).unwrap_or(now);
        Self {
            id,
            renewable,
            issued: now,
            since: now,
            until: bound.map_or(until, |b| until.min(b)),
            bound,
        }
    }

    /// The term's length, which a renewal asks for again.
    pub fn term(&self) -> Duration {
        self.until.duration_since(self.since).unwrap_or_default()
    }

    /// Two thirds into the term, at least [`MIN_WAIT`] after it began and
    /// [`MIN_REISSUE`] after the value was issued.
    pub fn act_at(&self) -> SystemTime {
        let wait = (self.term() * 2 / 3).max(MIN_WAIT);
        let at = self.since.checked_add(wait).unwrap_or(self.until);
        let earliest = self.issued.checked_add(MIN_REISSUE).unwrap_or(at);
        at.max(earliest)
    }

    pub fn step(&self, now: SystemTime) -> Step {
        let act_at = self.act_at();
        if now < act_at {
            Step::Keep(act_at)
        } else if self.renewable && self.id.is_some() && now < self.until {
            Step::Renew
        } else {
            Step::Replace
        }
    }

    /// The lease after a renewal that granted `ttl` at `now` (having asked
    /// for [`Lease::term`] again): a grant shorter than asked, or one cut
    /// by the bound, means the lease cannot be extended further, so the
    /// next step is its replacement.
    pub fn renewed(&self, ttl: Duration, now: SystemTime, bound: Option<SystemTime>) -> Self {
        let bound = match (self.bound, bound) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let asked = self.term();
        let next = Self::granted(self.id.clone(), self.renewable, ttl, now, bound);
        // A second of slack: stores round TTLs to seconds.
        let full = next.term() + Duration::from_secs(1) >= asked;
        Self {
            renewable: self.renewable && full,
            issued: self.issued,
            ..next
        }
    }
}

/// When the earliest of these leases needs a look, from `now`.
pub fn next_wait<'a>(
    leases: impl IntoIterator<Item = &'a Lease>,
    now: SystemTime,
) -> Option<Duration> {
    leases
        .into_iter()
        .map(|l| match l.step(now) {
            Step::Keep(at) => at.duration_since(now).unwrap_or_default(),
            Step::Renew | Step::Replace => Duration::ZERO,
        })
        .min()
        .map(|w| w.max(MIN_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn db(ttl: u64) -> Lease {
        Lease::granted(
            Some("database/creds/app/x".into()),
            true,
            Duration::from_secs(ttl),
            T0,
            None,
        )
    }

    #[test]
    fn kept_until_two_thirds_then_renewed() {
        let lease = db(120);
        assert_eq!(lease.step(at(0)), Step::Keep(at(80)));
        assert_eq!(lease.step(at(79)), Step::Keep(at(80)));
        assert_eq!(lease.step(at(80)), Step::Renew);
        assert_eq!(lease.step(at(119)), Step::Renew);
        // Past its end: nothing to renew, only to replace.
        assert_eq!(lease.step(at(120)), Step::Replace);
    }

    #[test]
    fn renewed_in_full_until_the_max_ttl_caps_it_then_replaced() {
        // default_ttl 2m, max_ttl 5m (from the grant at 0): renewals ask
        // for 120 s; at 80 s and 160 s Vault grants it, at 240 s only the
        // 60 s left before the cap.
        let lease = db(120);
        let once = lease.renewed(Duration::from_secs(120), at(80), None);
        assert!(once.renewable);
        assert_eq!((once.since, once.until), (at(80), at(200)));
        assert_eq!(once.step(at(160)), Step::Renew);
        let twice = once.renewed(Duration::from_secs(120), at(160), None);
        assert!(twice.renewable);
        assert_eq!(twice.step(at(240)), Step::Renew);
        let capped = twice.renewed(Duration::from_secs(60), at(240), None);
        assert!(!capped.renewable, "granted less than asked: the max TTL");
        assert_eq!(capped.until, at(300));
        // Two thirds of the capped term: a third (20 s) left to switch.
        assert_eq!(capped.step(at(279)), Step::Keep(at(280)));
        assert_eq!(capped.step(at(280)), Step::Replace);
    }

    #[test]
    fn a_grant_rounded_a_second_short_is_still_full() {
        let once = db(120).renewed(Duration::from_secs(119), at(80), None);
        assert!(once.renewable);
    }

    #[test]
    fn a_certificate_is_replaced_at_two_thirds_of_its_validity() {
        let cert = Lease::granted(None, false, Duration::from_secs(3600), T0, None);
        assert_eq!(cert.step(at(2399)), Step::Keep(at(2400)));
        assert_eq!(cert.step(at(2400)), Step::Replace);
    }

    #[test]
    fn a_lease_never_outlives_the_token_that_made_it() {
        let lease = Lease::granted(
            Some("l".into()),
            true,
            Duration::from_secs(3600),
            T0,
            Some(at(600)),
        );
        assert_eq!(lease.until, at(600));
        assert_eq!(lease.step(at(400)), Step::Renew);
        // The token was not extended: the renewal is cut by the bound.
        let cut = lease.renewed(Duration::from_secs(3600), at(400), None);
        assert_eq!(cut.until, at(600));
        assert!(!cut.renewable);
        // The token was extended (renew-self): so is the bound.
        let moved = lease.renewed(Duration::from_secs(3600), at(400), Some(at(4000)));
        assert_eq!(moved.until, at(4000));
    }

    #[test]
    fn tiny_and_past_terms_never_spin() {
        let tiny = Lease::granted(Some("l".into()), true, Duration::ZERO, T0, None);
        // Replaced no sooner than MIN_REISSUE after it was issued.
        assert_eq!(tiny.act_at(), at(5));
        assert_eq!(next_wait([&tiny], at(5)), Some(MIN_WAIT));
        // A renewal capped to a short last term still leaves time to switch.
        let capped = db(9)
            .renewed(Duration::from_secs(9), at(6), None)
            .renewed(Duration::from_secs(9), at(12), None)
            .renewed(Duration::from_secs(3), at(18), None);
        assert!(!capped.renewable);
        assert_eq!(capped.step(at(20)), Step::Replace);
        assert!(capped.act_at() < capped.until);
        assert_eq!(
            next_wait([&db(120), &db(30)], at(0)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(next_wait(std::iter::empty(), at(0)), None);
    }
}
