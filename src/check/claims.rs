//! The claims of a ServiceAccount token that federation depends on, read without verifying the signature
//! (the cloud verifies it; `check` only shows what the cloud will see). Pure.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cloud::jwt::{self, SegmentError};

/// What the cloud matches a token against: issuer, subject, audiences, expiry, and the signing key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
}

/// Reads the header and payload of a JWT. The error never quotes the token.
pub(crate) fn decode(token: &str) -> Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a JWT (three dot-separated parts)".to_string());
    };
    let header = json_part(header, "header")?;
    let payload = json_part(payload, "payload")?;
    let text =
        |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let audiences = match payload.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Claims {
        issuer: text(&payload, "iss").unwrap_or_default(),
        subject: text(&payload, "sub").unwrap_or_default(),
        audiences,
        expires_at: payload
            .get("exp")
            .and_then(Value::as_i64)
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0)),
        key_id: text(&header, "kid"),
        algorithm: text(&header, "alg"),
    })
}

fn json_part(part: &str, what: &str) -> Result<Value, String> {
    jwt::decode_segment(part).map_err(|e| match e {
        SegmentError::NotBase64url => format!("the token's {what} is not base64url"),
        SegmentError::NotJson => format!("the token's {what} is not JSON"),
    })
}

/// The subject Kubernetes puts in the tokens of ServiceAccount `namespace/name`.
pub(crate) fn service_account_subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn encode(value: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
    }

    #[test]
    fn reads_the_claims_federation_uses() {
        let token = format!(
            "{}.{}.c2ln",
            encode(r#"{"alg":"RS256","kid":"k-1"}"#),
            encode(
                r#"{"iss":"https://issuer.example","sub":"system:serviceaccount:ns:sa","aud":["a","b"],"exp":1900000000}"#
            )
        );
        let claims = decode(&token).unwrap();
        assert_eq!(claims.issuer, "https://issuer.example");
        assert_eq!(claims.subject, service_account_subject("ns", "sa"));
        assert_eq!(claims.audiences, vec!["a", "b"]);
        assert_eq!(claims.key_id.as_deref(), Some("k-1"));
        assert_eq!(claims.algorithm.as_deref(), Some("RS256"));
        assert_eq!(
            claims.expires_at.unwrap().to_rfc3339(),
            "2030-03-17T17:46:40+00:00"
        );
    }

    #[test]
    fn a_single_audience_string_counts() {
        let token = format!("{}.{}.x", encode("{}"), encode(r#"{"aud":"one"}"#));
        assert_eq!(decode(&token).unwrap().audiences, vec!["one"]);
    }

    #[test]
    fn garbage_is_refused_without_quoting_it() {
        for bad in ["secret-token-value", "a.b", "!!.!!.!!", "e30.bm90anNvbg.x"] {
            let error = decode(bad).unwrap_err();
            assert!(!error.contains(bad), "{error}");
        }
    }
}
