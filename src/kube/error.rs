//! Errors of Kubernetes API calls: a server's `Status` becomes a typed reason that keeps the server's message.

use std::fmt;
use std::time::Duration;

use crate::retry::{Retry, MAX_RETRY_AFTER};

/// Why the API server refused a request, from the HTTP status and the `Status.reason` it sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    NotFound,
    Conflict,
    AlreadyExists,
    Forbidden,
    Unauthorized,
    TooManyRequests,
    /// The resourceVersion asked for is too old (compacted): list again.
    Gone,
    Invalid,
    Other,
}

impl Reason {
    fn from_status(code: u16, reason: &str) -> Reason {
        match (reason, code) {
            ("AlreadyExists", _) => Reason::AlreadyExists,
            ("Conflict", _) | (_, 409) => Reason::Conflict,
            ("NotFound", _) | (_, 404) => Reason::NotFound,
            ("Forbidden", _) | (_, 403) => Reason::Forbidden,
            ("Unauthorized", _) | (_, 401) => Reason::Unauthorized,
            ("TooManyRequests", _) | (_, 429) => Reason::TooManyRequests,
            ("Expired", _) | ("Gone", _) | (_, 410) => Reason::Gone,
            ("Invalid", _) | (_, 422) => Reason::Invalid,
            _ => Reason::Other,
        }
    }
}

/// A failed Kubernetes API call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status; `message` is the server's own text.
    Api {
        reason: Reason,
        code: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The server could not be reached, or the connection broke or timed out.
    Transport(String),
    /// A watch received no byte, not even a bookmark, within its idle deadline: its connection went silent
    /// without FIN or RST.
    Silent(Duration),
    /// The server answered something this client could not decode.
    Decode(String),
}

impl Error {
    /// Builds the error for a non-2xx response from its body, which is normally a `Status` object.
    pub(crate) fn from_response(code: u16, body: &str, retry_after: Option<Duration>) -> Error {
        #[derive(serde::Deserialize)]
        struct Status {
            #[serde(default)]
            message: String,
            #[serde(default)]
            reason: String,
            #[serde(default)]
            details: Option<Details>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Details {
            #[serde(default)]
            retry_after_seconds: u64,
        }
        let (reason, message, details_retry_after) = match serde_json::from_str::<Status>(body) {
            Ok(status) => {
                let seconds = status.details.map_or(0, |d| d.retry_after_seconds);
                (status.reason, status.message, seconds)
            }
            Err(_) => (String::new(), body.chars().take(300).collect(), 0),
        };
        // The apiserver sends both the header and `details.retryAfterSeconds`; a proxy may send only one.
        let retry_after = retry_after.or_else(|| {
            (details_retry_after > 0)
                .then(|| Duration::from_secs(details_retry_after).min(MAX_RETRY_AFTER))
        });
        let message = if message.is_empty() {
            format!("HTTP {code}")
        } else {
            message
        };
        Error::Api {
            reason: Reason::from_status(code, &reason),
            code,
            message,
            retry_after,
        }
    }

    /// Builds the error carried by a watch `ERROR` event.
    pub(crate) fn from_status_object(status: &serde_json::Value) -> Error {
        let code = status.get("code").and_then(|c| c.as_u64()).unwrap_or(500) as u16;
        let reason = status.get("reason").and_then(|r| r.as_str()).unwrap_or("");
        let message = status
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or("watch error")
            .to_string();
        Error::Api {
            reason: Reason::from_status(code, reason),
            code,
            message,
            retry_after: None,
        }
    }

    pub(crate) fn reason(&self) -> Option<Reason> {
        match self {
            Error::Api { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    pub fn is(&self, reason: Reason) -> bool {
        self.reason() == Some(reason)
    }

    /// Whether the same call may succeed later without anyone changing anything.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Silent(_) => true,
            Error::Decode(_) => false,
            Error::Api { reason, code, .. } => {
                matches!(reason, Reason::TooManyRequests | Reason::Conflict) || *code >= 500
            }
        }
    }
}

impl Error {
    /// How the worker should retry after this error: as the server asked (`Retry-After`), soon for what
    /// may pass by itself, long for what a person must fix (forbidden, invalid, undecodable).
    pub(crate) fn retry(&self) -> Retry {
        match self {
            Error::Api {
                retry_after: Some(delay),
                ..
            } => Retry::After(*delay),
            _ if self.is_transient() => Retry::Transient,
            // 404 and 410 are answered by reading again, which the next attempt does at once.
            Error::Api {
                reason: Reason::NotFound | Reason::Gone,
                ..
            } => Retry::Transient,
            _ => Retry::Permanent,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api { message, .. } => f.write_str(message),
            Error::Transport(message) => write!(f, "cannot reach the Kubernetes API: {message}"),
            Error::Silent(deadline) => write!(
                f,
                "no byte from the Kubernetes API for {}s, not even a bookmark: the connection went silent",
                deadline.as_secs()
            ),
            Error::Decode(message) => {
                write!(f, "unexpected answer from the Kubernetes API: {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bodies_become_typed_reasons_with_the_servers_message() {
        let cases = [
            (
                404,
                r#"{"kind":"Status","reason":"NotFound","message":"secrets \"x\" not found","code":404}"#,
                Reason::NotFound,
            ),
            (
                409,
                r#"{"reason":"Conflict","message":"the object has been modified"}"#,
                Reason::Conflict,
            ),
            (
                409,
                r#"{"reason":"AlreadyExists","message":"secrets \"x\" already exists"}"#,
                Reason::AlreadyExists,
            ),
            (
                403,
                r#"{"reason":"Forbidden","message":"cannot get"}"#,
                Reason::Forbidden,
            ),
            (
                401,
                r#"{"reason":"Unauthorized","message":"Unauthorized"}"#,
                Reason::Unauthorized,
            ),
            (
                429,
                r#"{"reason":"TooManyRequests","message":"disruption budget"}"#,
                Reason::TooManyRequests,
            ),
            (
                410,
                r#"{"reason":"Expired","message":"too old resource version"}"#,
                Reason::Gone,
            ),
            (
                422,
                r#"{"reason":"Invalid","message":"bad name"}"#,
                Reason::Invalid,
            ),
            (
                500,
                r#"{"reason":"InternalError","message":"boom"}"#,
                Reason::Other,
            ),
            (503, "not json at all", Reason::Other),
        ];
        for (code, body, want) in cases {
            let err = Error::from_response(code, body, None);
            assert_eq!(err.reason(), Some(want), "{code} {body}");
        }
        let err = Error::from_response(
            404,
            r#"{"reason":"NotFound","message":"secrets \"x\" not found"}"#,
            None,
        );
        assert_eq!(err.to_string(), "secrets \"x\" not found");
        assert_eq!(Error::from_response(502, "", None).to_string(), "HTTP 502");
    }

    #[test]
    fn retry_classes_follow_the_server() {
        let throttled = Error::from_response(
            429,
            r#"{"kind":"Status","reason":"TooManyRequests","message":"slow down","details":{"retryAfterSeconds":3},"code":429}"#,
            None,
        );
        assert_eq!(throttled.retry(), Retry::After(Duration::from_secs(3)));
        let header = Error::from_response(429, "{}", Some(Duration::from_secs(7)));
        assert_eq!(header.retry(), Retry::After(Duration::from_secs(7)));
        let huge = Error::from_response(429, r#"{"details":{"retryAfterSeconds":999999}}"#, None);
        assert_eq!(huge.retry(), Retry::After(MAX_RETRY_AFTER));
        assert_eq!(
            Error::from_response(429, "{}", None).retry(),
            Retry::Transient
        );
        assert_eq!(
            Error::from_response(503, "{}", None).retry(),
            Retry::Transient
        );
        assert_eq!(Error::Transport("reset".into()).retry(), Retry::Transient);
        assert_eq!(
            Error::from_response(404, "{}", None).retry(),
            Retry::Transient
        );
        assert_eq!(
            Error::from_response(403, "{}", None).retry(),
            Retry::Permanent
        );
        assert_eq!(
            Error::from_response(422, "{}", None).retry(),
            Retry::Permanent
        );
        assert_eq!(Error::Decode("x".into()).retry(), Retry::Permanent);
    }

    #[test]
    fn transient_errors_are_the_ones_worth_retrying() {
        assert!(Error::Transport("reset".into()).is_transient());
        assert!(Error::from_response(429, "{}", None).is_transient());
        assert!(Error::from_response(503, "{}", None).is_transient());
        assert!(!Error::from_response(403, "{}", None).is_transient());
        assert!(!Error::from_response(422, "{}", None).is_transient());
    }
}
