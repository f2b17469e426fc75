//! When to try a failed call again: the retry class every error carries up to the worker loop, and the
//! `Retry-After` header servers use to say so themselves.
//!
//! What must stay true: a server's `Retry-After` is never shortened (the next attempt comes no sooner than it
//! asked); a failure nobody can fix by waiting (forbidden, invalid, access denied) backs off long; a
//! transient one (timeouts, 5xx, conflicts) is retried soon. Pure: no I/O, the clock is passed in.

use std::time::Duration;

use chrono::{DateTime, Utc};

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
    pub fn combine(self, other: Retry) -> Retry {
        match (self, other) {
            (Retry::After(a), Retry::After(b)) => Retry::After(a.max(b)),
            (Retry::After(a), _) | (_, Retry::After(a)) => Retry::After(a),
            (Retry::Transient, _) | (_, Retry::Transient) => Retry::Transient,
            (Retry::Permanent, Retry::Permanent) => Retry::Permanent,
        }
    }

    /// The class of a list of failures; `Transient` for none.
    pub fn combine_all(classes: impl IntoIterator<Item = Retry>) -> Retry {
        classes
            .into_iter()
            .reduce(Retry::combine)
            .unwrap_or(Retry::Transient)
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to `now`.
/// `None` for anything else; a date in the past is zero; the result is at most [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
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
    fn combined_failures_honour_the_server_then_retry_soon() {
        let after = |s| Retry::After(Duration::from_secs(s));
        assert_eq!(Retry::Permanent.combine(Retry::Transient), Retry::Transient);
        assert_eq!(Retry::Permanent.combine(Retry::Permanent), Retry::Permanent);
        assert_eq!(Retry::Transient.combine(after(3)), after(3));
        assert_eq!(after(3).combine(after(5)), after(5));
        assert_eq!(Retry::combine_all([]), Retry::Transient);
        assert_eq!(
            Retry::combine_all([Retry::Permanent, after(2), Retry::Transient]),
            after(2)
        );
    }
}
