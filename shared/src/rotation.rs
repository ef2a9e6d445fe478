//! The rotation interval: how often the sidecar re-polls the store.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// Shorter intervals would hammer the store (and its rate limits) for no gain.
pub const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(5);
/// The longest interval any operator may allow (30 days): far beyond any
/// token's lifetime, and small enough that timers and jitter never overflow.
pub const MAX_ROTATION_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rotation {
    /// Fetch once, at start; no sidecar keeps polling.
    Once,
    Every(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not an interval: use a number with units h, m, s (30s, 1m, 1h30m), at least {}s and at most {}h, or 0 to fetch once",
    MIN_ROTATION_INTERVAL.as_secs(),
    MAX_ROTATION_INTERVAL.as_secs() / 3600
)]
pub struct RotationError {
    pub value: String,
}

impl Rotation {
    pub fn interval(self) -> Option<Duration> {
        match self {
            Self::Once => None,
            Self::Every(d) => Some(d),
        }
    }
}

impl FromStr for Rotation {
    type Err = RotationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RotationError {
            value: s.to_owned(),
        };
        match parse_duration(s).ok_or_else(err)? {
            d if d.is_zero() => Ok(Self::Once),
            d if d < MIN_ROTATION_INTERVAL || d > MAX_ROTATION_INTERVAL => Err(err()),
            d => Ok(Self::Every(d)),
        }
    }
}

/// Go-style durations in whole seconds: `0`, `90s`, `2m`, `1h30m`. Units come
/// in decreasing order, once each.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit_rank = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (seconds, rank) = match c {
            'h' => (3600, 3),
            'm' => (60, 2),
            's' => (1, 1),
            _ => return None,
        };
        if digits.is_empty() || (last_unit_rank != 0 && rank >= last_unit_rank) {
            return None;
        }
        last_unit_rank = rank;
        let n: u64 = digits.parse().ok()?;
        total = n.checked_mul(seconds).and_then(|v| total.checked_add(v))?;
        digits.clear();
    }
    if !digits.is_empty() || last_unit_rank == 0 {
        return None;
    }
    Some(Duration::from_secs(total))
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self {
            Self::Once => return f.write_str("0"),
            Self::Every(d) => d.as_secs(),
        };
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Rotation {
    type Error = RotationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Rotation> for String {
    fn from(value: Rotation) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("30s", 30)]
    #[case("1m", 60)]
    #[case("2m", 120)]
    #[case("90s", 90)]
    #[case("1h30m", 5400)]
    #[case("1h0m5s", 3605)]
    fn parses(#[case] text: &str, #[case] secs: u64) {
        assert_eq!(
            text.parse::<Rotation>(),
            Ok(Rotation::Every(Duration::from_secs(secs)))
        );
    }

    #[rstest]
    #[case("0")]
    #[case("0s")]
    #[case("0m")]
    fn zero_means_once(#[case] text: &str) {
        assert_eq!(text.parse::<Rotation>(), Ok(Rotation::Once));
    }

    #[rstest]
    #[case("")]
    #[case("30")]
    #[case("1d")]
    #[case("m")]
    #[case("30m1h")]
    #[case("1m1m")]
    #[case("-1m")]
    #[case("1.5m")]
    #[case("2s")]
    #[case("99999999999999999999h")]
    // L1: admitted before, then the sidecar's jitter panicked.
    #[case("5000000000000000h")]
    #[case("721h")]
    fn rejects(#[case] text: &str) {
        let err = text.parse::<Rotation>().unwrap_err();
        assert!(err.to_string().contains("1h30m"), "{err}");
    }

    #[test]
    fn the_ceiling_is_accepted() {
        assert_eq!(
            "720h".parse::<Rotation>(),
            Ok(Rotation::Every(MAX_ROTATION_INTERVAL))
        );
    }

    #[test]
    fn displays_canonically() {
        assert_eq!("90s".parse::<Rotation>().unwrap().to_string(), "1m30s");
        assert_eq!(Rotation::Once.to_string(), "0");
    }
}
