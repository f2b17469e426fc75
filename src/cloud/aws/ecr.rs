//! ECR `GetAuthorizationToken`: the JSON 1.1 request and its answer, as pure functions.
//!
//! The answer's token is base64 of `USER:PASSWORD` (the user is `AWS`); `expiresAt` is epoch seconds,
//! usually with a fraction. Stand-ins differ in small ways, so a number given as a string, or an RFC 3339
//! time, is accepted too. Errors never quote the answer: it holds the password.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::sts::parse_timestamp;
use crate::cloud::{RegistryCredentials, Sensitive};

/// The JSON 1.1 protocol's content type.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The operation, named in the `X-Amz-Target` header.
pub(crate) const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// The request body: no registry IDs, so the token is for the caller's own registry.
pub(crate) const BODY: &[u8] = b"{}";

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "authorizationData", default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
struct AuthorizationData {
    #[serde(rename = "authorizationToken")]
    authorization_token: Option<String>,
    #[serde(rename = "expiresAt")]
    expires_at: Option<serde_json::Value>,
}

/// Reads the registry credentials out of a successful answer.
pub(crate) fn parse_response(body: &str) -> Result<RegistryCredentials, String> {
    // serde_json's error text can quote input; report only where it failed.
    let answer: Answer = serde_json::from_str(body).map_err(|e| {
        format!(
            "the answer is not the expected JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let data = answer
        .authorization_data
        .into_iter()
        .next()
        .ok_or("the answer has no authorizationData")?;
    let token = data
        .authorization_token
        .ok_or("the answer has no authorizationToken")?;
    let (username, password) = decode_token(&token)?;
    let expires_at = parse_expires_at(
        data.expires_at
            .as_ref()
            .ok_or("the answer has no expiresAt")?,
    )?;
    Ok(RegistryCredentials {
        username,
        password,
        expires_at,
    })
}

/// Splits base64(`USER:PASSWORD`) at the first `:`.
fn decode_token(token: &str) -> Result<(String, Sensitive), String> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| "authorizationToken is not valid base64".to_string())?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| "authorizationToken does not decode to text".to_string())?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or("authorizationToken does not decode to USER:PASSWORD")?;
    if username.is_empty() || password.is_empty() {
        return Err("authorizationToken decodes to an empty user or password".to_string());
    }
    Ok((username.to_string(), Sensitive::new(password)))
}

/// Epoch seconds (number or numeric string, fraction allowed) or an RFC 3339 string.
fn parse_expires_at(value: &serde_json::Value) -> Result<DateTime<Utc>, String> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.trim().parse::<f64>() {
            Ok(seconds) => Some(seconds),
            Err(_) => return parse_timestamp(s.trim()).map_err(|_| bad_expiry(value)),
        },
        _ => None,
    };
    seconds
        .and_then(epoch_seconds_to_time)
        .ok_or_else(|| bad_expiry(value))
}

fn bad_expiry(value: &serde_json::Value) -> String {
    format!("expiresAt {value} is not a time")
}

fn epoch_seconds_to_time(seconds: f64) -> Option<DateTime<Utc>> {
    // Year 10000 and later (or NaN, infinities, negative times) are nonsense from a registry.
    if !seconds.is_finite() || !(0.0..253_402_300_800.0).contains(&seconds) {
        return None;
    }
    // Microseconds, rounded: an f64 near 1.7e9 is only precise to about 0.2 µs, and ECR gives milliseconds.
    DateTime::from_timestamp_micros((seconds * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn answer(token: &str, expires_at: &str) -> String {
        format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{expires_at},"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}}]}}"#
        )
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn reads_token_and_expiry() {
        let at = |secs: i64, millis: i64| {
            Utc.timestamp_opt(secs, 0).unwrap() + chrono::Duration::milliseconds(millis)
        };
        let cases = [
            ("1700000000.123", at(1_700_000_000, 123)),
            ("1700000000", at(1_700_000_000, 0)),
            ("1.7000000005E9", at(1_700_000_000, 500)),
            (r#""1700000000.25""#, at(1_700_000_000, 250)),
            (r#""2023-11-14T22:13:20Z""#, at(1_700_000_000, 0)),
            (r#""2023-11-14T22:13:20.5+00:00""#, at(1_700_000_000, 500)),
        ];
        for (expires_at, expected) in cases {
            let body = answer(&b64("AWS:pass:with:colons"), expires_at);
            let credentials = parse_response(&body).unwrap_or_else(|e| panic!("{expires_at}: {e}"));
            assert_eq!(credentials.username, "AWS");
            assert_eq!(credentials.password.expose(), "pass:with:colons");
            assert_eq!(credentials.expires_at, expected, "{expires_at}");
        }
    }

    /// What moto answers: its own account's token and a fixed 2015 expiry.
    #[test]
    fn reads_moto_answer() {
        let body = r#"{"authorizationData": [{"authorizationToken": "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu", "expiresAt": 1420070400.0, "proxyEndpoint": "https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}"#;
        let credentials = parse_response(body).unwrap();
        assert_eq!(credentials.username, "AWS");
        assert_eq!(credentials.password.expose(), "123456789012-auth-token");
        assert_eq!(
            credentials.expires_at,
            Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn bad_answers_are_errors_that_quote_nothing_secret() {
        let secret = "PASSWORD-MARKER";
        let cases = [
            (
                answer("!!not base64!!", "1"),
                "authorizationToken is not valid base64",
            ),
            (
                answer(&b64(&format!("AWS{secret}")), "1"),
                "does not decode to USER:PASSWORD",
            ),
            (
                answer(&b64(&format!(":{secret}")), "1"),
                "empty user or password",
            ),
            (answer(&b64("AWS:"), "1"), "empty user or password"),
            (
                answer(
                    &base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', b'x']),
                    "1",
                ),
                "does not decode to text",
            ),
            (
                r#"{"authorizationData":[]}"#.to_string(),
                "the answer has no authorizationData",
            ),
            ("{}".to_string(), "the answer has no authorizationData"),
            (
                r#"{"authorizationData":[{"expiresAt":1}]}"#.to_string(),
                "no authorizationToken",
            ),
            (
                format!(
                    r#"{{"authorizationData":[{{"authorizationToken":"{}"}}]}}"#,
                    b64("AWS:x")
                ),
                "no expiresAt",
            ),
            (
                answer(&b64(&format!("AWS:{secret}")), r#""soon""#),
                "expiresAt \"soon\" is not a time",
            ),
            (
                answer(&b64(&format!("AWS:{secret}")), "-1"),
                "expiresAt -1 is not a time",
            ),
            (
                answer(&b64(&format!("AWS:{secret}")), "1e300"),
                "is not a time",
            ),
            (
                answer(&b64(&format!("AWS:{secret}")), "null"),
                "the answer has no expiresAt",
            ),
            (
                answer(&b64(&format!("AWS:{secret}")), "[1]"),
                "expiresAt [1] is not a time",
            ),
            (
                format!(r#"{{"authorizationData":[{{"authorizationToken":"{secret}""#),
                "is not the expected JSON (line 1",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_response(&body).unwrap_err();
            assert!(error.contains(expected), "{body}: {error}");
            assert!(!error.contains(secret), "{error}");
        }
    }
}
