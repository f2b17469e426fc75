//! Clock skew: whether AWS refused a signature because this node's clock is off, and by how much. AWS accepts
//! signatures made within five minutes of its own clock; AWS SDKs correct their signing clock from the `Date`
//! of such a refusal and try once more, and so does this controller. Pure.

use chrono::{DateTime, Utc};

/// Differences smaller than this are not skew: AWS accepts five minutes, and a refusal for another reason
/// must not move the clock.
pub(crate) const MIN_SKEW: chrono::Duration = chrono::Duration::minutes(4);

/// Codes with which AWS refuses a signature whose time is off (and, for some, other faults: the `Date`
/// decides).
const SKEW_CODES: [&str; 6] = [
    "RequestTimeTooSkewed",
    "RequestExpired",
    "RequestInTheFuture",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
];

/// How far the signing time was from AWS's (`signed_at - server_time`), when the refusal is a skew error and
/// the server's `Date` shows a skew of at least [`MIN_SKEW`].
pub(crate) fn detect(
    code: Option<&str>,
    server_time: Option<DateTime<Utc>>,
    signed_at: DateTime<Utc>,
) -> Option<chrono::Duration> {
    let code = code?;
    if !SKEW_CODES.contains(&code) {
        return None;
    }
    let skew = signed_at - server_time?;
    (skew.abs() >= MIN_SKEW).then_some(skew)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_skew_codes_with_a_far_date_are_skew() {
        let server: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        let ahead = server + chrono::Duration::minutes(20);
        let behind = server - chrono::Duration::minutes(20);
        assert_eq!(
            detect(Some("InvalidSignatureException"), Some(server), ahead),
            Some(chrono::Duration::minutes(20))
        );
        assert_eq!(
            detect(Some("SignatureDoesNotMatch"), Some(server), behind),
            Some(chrono::Duration::minutes(-20))
        );
        assert_eq!(
            detect(
                Some("RequestTimeTooSkewed"),
                Some(server),
                server + chrono::Duration::minutes(3)
            ),
            None
        );
        assert_eq!(
            detect(Some("AccessDeniedException"), Some(server), ahead),
            None
        );
        assert_eq!(detect(Some("SignatureDoesNotMatch"), None, ahead), None);
        assert_eq!(detect(None, Some(server), ahead), None);
    }
}
