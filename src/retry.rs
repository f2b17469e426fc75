//! When to try a failed call again: the retry class every error carries up to the worker loop, the
//! `Retry-After` header servers use to say so themselves, and the one exponential [`Backoff`] every retry
//! loop uses (the work queue per key, the watches' reconnects, provider calls within an exchange, and
//! ServiceAccounts whose provider keeps returning expired credentials).
//!
//! What must stay true: a server's `Retry-After` is never shortened (the next attempt comes no sooner than it
//! asked); a failure nobody can fix by waiting (forbidden, invalid, access denied) backs off long; a
//! transient one (timeouts, 5xx, conflicts) is retried soon; a backoff doubles from its first delay to its
//! ceiling, never below its first delay, and its caller starts it again after a success. Pure: no I/O, the
//! clock, the attempt and the random draw are passed in ([`Backoff::delay`] alone draws its own).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::jitter;

/// The longest `Retry-After` honoured; a larger value (or a date far ahead) is cut to this so that a
/// misconfigured proxy cannot park a ServiceAccount for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How a failure should be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Waiting may help (timeouts, connection errors, 5xx, conflicts): retry soon, backing off.
    Transient,
    /// Only a person can fix it (forbidden, invalid, access denied, misconfiguration): back off long.
    Permanent,
    /// The server said when to come back (`Retry-After`): not sooner than this.
    After(Duration),
}

impl Retry {
    /// The class of several failures reported together: a server's `Retry-After` is honoured (the longest
    /// one), else a transient failure makes the whole retry soon, else it is permanent.
    pub(crate) fn combine(self, other: Retry) -> Retry {
        match (self, other) {
            (Retry::After(a), Retry::After(b)) => Retry::After(a.max(b)),
            (Retry::After(a), _) | (_, Retry::After(a)) => Retry::After(a),
            (Retry::Transient, _) | (_, Retry::Transient) => Retry::Transient,
            (Retry::Permanent, Retry::Permanent) => Retry::Permanent,
        }
    }

    /// The class of an answer that may (`retryable`) or may not pass by waiting: the server's `Retry-After`
    /// counts only where waiting may help.
    pub(crate) fn from_answer(retryable: bool, retry_after: Option<Duration>) -> Retry {
        match (retryable, retry_after) {
            (false, _) => Retry::Permanent,
            (true, Some(after)) => Retry::After(after),
            (true, None) => Retry::Transient,
        }
    }

    /// Whether only a person can fix it (waiting will not help).
    pub fn is_permanent(self) -> bool {
        self == Retry::Permanent
    }

    /// The class of a list of failures; `Transient` for none.
    pub(crate) fn combine_all(classes: impl IntoIterator<Item = Retry>) -> Retry {
        classes
            .into_iter()
            .reduce(Retry::combine)
            .unwrap_or(Retry::Transient)
    }
}

/// How a [`Backoff`]'s delays are spread so that many callers failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// Stretched by a random factor in `1..1+fraction`: the ceiling may be passed by that fraction.
    Stretch(f64),
    /// Stretched as [`Jitter::Stretch`], then cut back to the ceiling, which thus holds exactly.
    StretchWithinMax(f64),
}

/// Exponential backoff: `first * 2^(attempt-1)`, at most `max` (but never below `first`, which stays a
/// floor even under a smaller ceiling), spread by its [`Jitter`].
///
/// The policy alone: the caller counts the attempts (failures in a row) and starts from zero again after a
/// success. Attempt 0 and attempt 1 both wait `first`; the doubling stops at 2^20, far past any ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// From `first` doubling up to `max`, without jitter.
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            jitter: Jitter::None,
        }
    }

    /// The same backoff spread by `jitter`.
    pub(crate) const fn with_jitter(self, jitter: Jitter) -> Self {
        Backoff { jitter, ..self }
    }

    /// The delay before attempt `attempt + 1` after `attempt` failures in a row, without jitter.
    pub(crate) fn base(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        self.first
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(self.first)
    }

    /// [`Backoff::base`] with its jitter applied for a random draw `unit` in `0..1`.
    pub(crate) fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base(attempt);
        match self.jitter {
            Jitter::None => base,
            Jitter::Stretch(fraction) => jitter::stretch_with(base, fraction, unit),
            Jitter::StretchWithinMax(fraction) => {
                jitter::stretch_with(base, fraction, unit).min(self.max.max(self.first))
            }
        }
    }

    /// [`Backoff::delay_with`] for a fresh random draw.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        match self.jitter {
            Jitter::None => self.base(attempt),
            _ => self.delay_with(attempt, jitter::unit()),
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to `now`.
/// `None` for anything else; a date in the past is zero; the result is at most [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A number too long for u64 is still "a long time".
        Duration::from_secs(
            value
                .parse::<u64>()
                .unwrap_or(u64::MAX)
                .min(MAX_RETRY_AFTER.as_secs()),
        )
    } else {
        let at = DateTime::parse_from_rfc2822(value)
            .ok()?
            .with_timezone(&Utc);
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 4, 0, 0).unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 04:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Mon, 30 Nov 2026 03:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn a_backoff_doubles_from_first_to_its_ceiling() {
        let secs = Duration::from_secs;
        let backoff = Backoff::new(secs(1), secs(8));
        let delays: Vec<Duration> = (1..=6).map(|attempt| backoff.base(attempt)).collect();
        assert_eq!(
            delays,
            [secs(1), secs(2), secs(4), secs(8), secs(8), secs(8)]
        );
        assert_eq!(backoff.base(0), secs(1), "no failure yet: the first delay");
        assert_eq!(backoff.base(u32::MAX), secs(8));
        assert_eq!(backoff.delay(5), secs(8), "no jitter: exactly the base");
        assert_eq!(
            Backoff::new(Duration::from_micros(1), secs(3600)).base(40),
            Duration::from_micros(1 << 20),
            "the doubling stops at 2^20"
        );
    }

    #[test]
    fn expired_credentials_back_off_from_the_floor_to_the_ceiling() {
        let floor = Duration::from_secs(60);
        let max = Duration::from_secs(4 * 3600);
        let expired_backoff = |floor, count, max| Backoff::new(floor, max).delay(count);
        assert_eq!(expired_backoff(floor, 0, max), floor);
        assert_eq!(expired_backoff(floor, 1, max), floor);
        assert_eq!(expired_backoff(floor, 2, max), Duration::from_secs(120));
        assert_eq!(expired_backoff(floor, 5, max), Duration::from_secs(960));
        assert_eq!(expired_backoff(floor, 9, max), max);
        assert_eq!(expired_backoff(floor, 1000, max), max);
        assert_eq!(
            expired_backoff(Duration::from_secs(10), 3, Duration::from_secs(1)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn jitter_only_lengthens_and_within_max_keeps_the_ceiling() {
        let secs = Duration::from_secs;
        let backoff = Backoff::new(secs(1), secs(8));
        let stretch = backoff.with_jitter(Jitter::Stretch(0.5));
        assert_eq!(stretch.delay_with(1, 0.0), secs(1));
        assert_eq!(stretch.delay_with(1, 0.5), Duration::from_millis(1250));
        assert_eq!(
            stretch.delay_with(9, 0.5),
            secs(10),
            "past the ceiling by the jitter"
        );
        let within = backoff.with_jitter(Jitter::StretchWithinMax(0.5));
        assert_eq!(within.delay_with(1, 0.5), Duration::from_millis(1250));
        assert_eq!(within.delay_with(9, 0.5), secs(8));
        assert_eq!(backoff.delay_with(3, 0.9), secs(4), "no jitter");
        for attempt in 0..30 {
            let delay = stretch.delay(attempt);
            let base = stretch.base(attempt);
            assert!(
                delay >= base && delay <= base.mul_f64(1.5),
                "{attempt}: {delay:?}"
            );
            assert!(within.delay(attempt) <= secs(8));
        }
    }

    #[test]
    fn combined_failures_honour_the_server_then_retry_soon() {
        let after = |s| Retry::After(Duration::from_secs(s));
        assert_eq!(Retry::Permanent.combine(Retry::Transient), Retry::Transient);
        assert_eq!(Retry::Permanent.combine(Retry::Permanent), Retry::Permanent);
        assert_eq!(Retry::Transient.combine(after(3)), after(3));
        assert_eq!(after(3).combine(after(5)), after(5));
        assert_eq!(Retry::combine_all([]), Retry::Transient);
        assert_eq!(
            Retry::from_answer(false, Some(Duration::from_secs(3))),
            Retry::Permanent
        );
        assert_eq!(
            Retry::from_answer(true, Some(Duration::from_secs(3))),
            after(3)
        );
        assert_eq!(Retry::from_answer(true, None), Retry::Transient);
        assert!(Retry::Permanent.is_permanent() && !after(3).is_permanent());
        assert_eq!(
            Retry::combine_all([Retry::Permanent, after(2), Retry::Transient]),
            after(2)
        );
    }
}
