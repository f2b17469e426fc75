//! The wire format of Google's two calls, as google-auth sends and reads them: the STS token-exchange form,
//! the generateAccessToken JSON, and the answers of both. Pure; only field values are read from answers,
//! never echoed, so a malformed answer cannot leak a token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::error::{email_context, iam_error, provider_context, sts_error, IamHints};
use super::names::IAM_NAME_PREFIX;
use super::STEP_IAM;
use super::STEP_STS;
use crate::cloud::http::HttpResponse;
use crate::cloud::redact::quote;
use crate::cloud::{CloudError, RegistryCredentials, Sensitive};
use crate::percent;

const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// What the federated token may do: only call IAM (to impersonate the service account).
const STS_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// What the registry credential may do: read, which is all pulling an image needs.
const REGISTRY_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// The Docker user name Artifact Registry expects with an OAuth access token as password.
pub(super) const DOCKER_USERNAME: &str = "oauth2accesstoken";

/// The federated token STS returned, usable only to call IAM Credentials.
pub(super) struct FederatedToken {
    pub(super) access_token: Sensitive,
    pub(super) expires_in: Option<Duration>,
}

/// The token-exchange form, with google-auth's fields, order and encoding (`urllib.parse.urlencode`).
pub(super) fn build_token_exchange_body(provider: &str, subject_token: &Sensitive) -> String {
    let audience = format!("{IAM_NAME_PREFIX}{provider}");
    let fields = [
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("audience", audience.as_str()),
        ("scope", STS_SCOPE),
        ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ("subject_token", subject_token.expose()),
        ("subject_token_type", TOKEN_TYPE_JWT),
    ];
    percent::form(&fields)
}

/// The generateAccessToken request: the read-only scope and, when configured, the lifetime.
pub(super) fn build_generate_access_token_body(lifetime: Option<Duration>) -> String {
    let mut body = serde_json::Map::new();
    body.insert("scope".to_string(), Value::from(vec![REGISTRY_SCOPE]));
    if let Some(lifetime) = lifetime {
        body.insert(
            "lifetime".to_string(),
            Value::from(format!("{}s", lifetime.as_secs())),
        );
    }
    Value::Object(body).to_string()
}

/// Reads STS's answer. Only field values are read, never echoed, so a malformed answer cannot leak a token.
pub(super) fn parse_token_exchange_response(
    response: &HttpResponse,
    provider: &str,
    secrets: &[&Sensitive],
) -> Result<FederatedToken, CloudError> {
    let context = provider_context(provider);
    if response.status != 200 {
        return Err(sts_error(response, &context, secrets));
    }
    let malformed = |why: &str| {
        CloudError::permanent(
            STEP_STS,
            format!("{context}: the answer is not what Google STS sends: {why}"),
        )
    };
    let body: Value =
        serde_json::from_str(&response.body).map_err(|_| malformed("the body is not JSON"))?;
    let access_token = match body.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => Sensitive::new(token.clone()),
        _ => return Err(malformed("it has no access_token")),
    };
    if let Some(token_type) = body.get("token_type") {
        if !token_type
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err(malformed("its token_type is not Bearer"));
        }
    }
    let expires_in = match body.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            parse_seconds(value)
                .ok_or_else(|| malformed("its expires_in is not a number of seconds"))?,
        ),
    };
    Ok(FederatedToken {
        access_token,
        expires_in,
    })
}

/// `expires_in` as Google sends it (a number) or as some token services do (a string).
fn parse_seconds(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Reads generateAccessToken's answer into registry credentials.
pub(super) fn parse_generate_access_token_response(
    response: &HttpResponse,
    email: &str,
    hints: &IamHints<'_>,
    secrets: &[&Sensitive],
) -> Result<RegistryCredentials, CloudError> {
    let context = email_context(email);
    if response.status != 200 {
        return Err(iam_error(response, &context, hints, secrets));
    }
    let malformed = |why: String| {
        CloudError::permanent(
            STEP_IAM,
            format!("{context}: the answer is not what IAM Credentials sends: {why}"),
        )
    };
    let body: Value = serde_json::from_str(&response.body)
        .map_err(|_| malformed("the body is not JSON".to_string()))?;
    let password = match body.get("accessToken") {
        Some(Value::String(token)) if !token.is_empty() => Sensitive::new(token.clone()),
        _ => return Err(malformed("it has no accessToken".to_string())),
    };
    let expire_time = body
        .get("expireTime")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("it has no expireTime".to_string()))?;
    let expires_at = DateTime::parse_from_rfc3339(expire_time)
        .map_err(|e| {
            malformed(format!(
                "its expireTime {:?} is not an RFC 3339 time: {e}",
                quote(
                    expire_time,
                    &secrets.iter().map(|s| s.expose()).collect::<Vec<_>>()
                )
            ))
        })?
        .with_timezone(&Utc);
    Ok(RegistryCredentials {
        username: DOCKER_USERNAME.to_string(),
        password,
        expires_at,
    })
}

/// The `sub` claim of a ServiceAccount token, read without verifying it: it only fills in an error hint.
///
/// Only a value shaped like a Kubernetes ServiceAccount subject is returned, so nothing else of the token can
/// end up in a message.
pub(super) fn jwt_subject(token: &str) -> Option<String> {
    let claims = crate::cloud::jwt::unverified_claims(token)?;
    let subject = claims.get("sub")?.as_str()?;
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let sane = rest.len() <= 320
        && rest.split(':').count() == 2
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'));
    sane.then(|| subject.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const PROVIDER: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc";
    const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";

    fn subject_token() -> Sensitive {
        super::super::tests::subject_token()
    }

    #[test]
    fn parses_expires_in_as_number_or_string() {
        let cases = [
            (
                r#"{"access_token":"t","expires_in":3599}"#,
                Some(Some(3599)),
            ),
            (
                r#"{"access_token":"t","expires_in":"3599"}"#,
                Some(Some(3599)),
            ),
            (
                r#"{"access_token":"t","expires_in":3599.5,"token_type":"Bearer"}"#,
                Some(Some(3599)),
            ),
            (r#"{"access_token":"t","token_type":"bearer"}"#, Some(None)),
            (r#"{"access_token":"t","expires_in":"soon"}"#, None),
            (r#"{"access_token":"t","expires_in":-1}"#, None),
            (r#"{"access_token":"t","expires_in":1e300}"#, None),
            (r#"{"access_token":"t","token_type":"MAC"}"#, None),
            (r#"{"access_token":"","expires_in":1}"#, None),
            (r#"{"expires_in":1}"#, None),
            ("not json", None),
        ];
        for (body, want) in cases {
            let response = HttpResponse {
                status: 200,
                body: body.to_string(),
                ..Default::default()
            };
            let got = parse_token_exchange_response(&response, PROVIDER, &[])
                .ok()
                .map(|t| t.expires_in.map(|d| d.as_secs()));
            assert_eq!(got, want, "{body}");
        }
    }

    #[test]
    fn parses_expire_time_with_and_without_fraction() {
        let cases = [
            ("2030-01-02T03:04:05Z", Some("2030-01-02T03:04:05+00:00")),
            (
                "2030-01-02T03:04:05.123456789Z",
                Some("2030-01-02T03:04:05.123456789+00:00"),
            ),
            (
                "2030-01-02T04:04:05+01:00",
                Some("2030-01-02T03:04:05+00:00"),
            ),
            ("2030-01-02 03:04", None),
            ("", None),
        ];
        let hints = IamHints {
            provider: PROVIDER,
            subject: None,
            token_lifetime: None,
        };
        for (expire_time, want) in cases {
            let response = HttpResponse {
                status: 200,
                body: serde_json::json!({"accessToken": "ya29.x", "expireTime": expire_time})
                    .to_string(),
                ..Default::default()
            };
            let got = parse_generate_access_token_response(&response, EMAIL, &hints, &[])
                .ok()
                .map(|c| c.expires_at.to_rfc3339());
            assert_eq!(got.as_deref(), want, "{expire_time}");
        }
    }

    #[test]
    fn reads_the_subject_only_when_it_is_a_service_account() {
        assert_eq!(
            jwt_subject(subject_token().expose()).as_deref(),
            Some("system:serviceaccount:build:puller")
        );
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for payload in [
            r#"{"sub":"alice"}"#,
            r#"{"sub":"system:serviceaccount:a:b:c"}"#,
            r#"{"sub":"system:serviceaccount:ns:Name"}"#,
            r#"{"aud":"x"}"#,
        ] {
            let token = format!("e30.{}.sig", engine.encode(payload));
            assert_eq!(jwt_subject(&token), None, "{payload}");
        }
        assert_eq!(jwt_subject("opaque"), None);
    }
}
