//! Claims of a JWT read without verifying its signature. Used only for what this process may trust without
//! proof: the expiry of a credential it was just handed over TLS, and the issuer, subject and audience of its
//! own ServiceAccount token to name them in an error. Nothing read here decides access.

use base64::Engine as _;
use serde_json::Value;

/// The payload of a compact JWT (`header.payload.signature`) as a JSON object, or `None` if it is not one.
pub(crate) fn unverified_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    match decode_segment(payload).ok()? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// Why a segment of a compact JWT could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentError {
    NotBase64url,
    NotJson,
}

/// One segment of a compact JWT (the header or the payload) decoded from base64url (padded or not) and parsed
/// as JSON.
pub(crate) fn decode_segment(segment: &str) -> Result<Value, SegmentError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(segment)
        .map_err(|_| SegmentError::NotBase64url)?;
    serde_json::from_slice(&bytes).map_err(|_| SegmentError::NotJson)
}

/// A numeric date claim (`exp`, `nbf`, `iat`) in seconds since the epoch.
pub(crate) fn numeric_date(claims: &serde_json::Map<String, Value>, name: &str) -> Option<i64> {
    match claims.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(payload: &str) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", engine.encode("{}"), engine.encode(payload))
    }

    #[test]
    fn reads_claims_of_well_formed_tokens_only() {
        let claims =
            unverified_claims(&token(r#"{"exp":1700000000,"nbf":1.5e9,"sub":"x"}"#)).unwrap();
        assert_eq!(numeric_date(&claims, "exp"), Some(1_700_000_000));
        assert_eq!(numeric_date(&claims, "nbf"), Some(1_500_000_000));
        assert_eq!(numeric_date(&claims, "sub"), None);
        assert_eq!(numeric_date(&claims, "iat"), None);
        for bad in [
            "opaque".to_string(),
            "a.b".to_string(),
            token("[1]"),
            token("not json"),
            format!("{}.extra", token("{}")),
        ] {
            assert!(unverified_claims(&bad).is_none(), "{bad}");
        }
    }
}
