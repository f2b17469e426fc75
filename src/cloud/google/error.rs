//! Google's error answers turned into errors that say what failed and what the operator should check.
//! Errors quote only Google's own text, redacted and capped (see [`crate::cloud::redact`]).

use std::time::Duration;

use serde_json::Value;

use super::{STEP_IAM, STEP_STS};
use crate::cloud::http::HttpResponse;
use crate::cloud::redact::quote;
use crate::cloud::{CloudError, Sensitive};

/// What the operator may need to know to understand a generateAccessToken failure.
pub(super) struct IamHints<'a> {
    pub(super) provider: &'a str,
    /// The `sub` claim of the ServiceAccount token, e.g. `system:serviceaccount:NS:NAME`.
    pub(super) subject: Option<String>,
    pub(super) token_lifetime: Option<Duration>,
}

/// The error of a failed token exchange, with what to check.
pub(super) fn sts_error(
    response: &HttpResponse,
    context: &str,
    secrets: &[&Sensitive],
) -> CloudError {
    let remote = RemoteError::from_body(&response.body, secrets);
    let hint = match remote.code.as_deref() {
        Some("invalid_target") => Some(
            "check that the workload identity pool and provider exist and are enabled, and that the \
             annotation names the project by number",
        ),
        Some("invalid_grant" | "unauthorized_client" | "access_denied") => Some(
            "check that the provider's allowed audiences include the ServiceAccount's audience annotation, \
             that its attribute condition admits this ServiceAccount, and that its issuer is the cluster's \
             service-account issuer with a JWKS Google can fetch (or one uploaded to the provider)",
        ),
        _ if response.status == 404 => Some("check the configured STS endpoint"),
        _ => None,
    };
    remote_failure(STEP_STS, response, context, &remote, hint)
}

/// The error of a failed generateAccessToken, with what to check.
pub(super) fn iam_error(
    response: &HttpResponse,
    context: &str,
    hints: &IamHints<'_>,
    secrets: &[&Sensitive],
) -> CloudError {
    let remote = RemoteError::from_body(&response.body, secrets);
    let hint = match response.status {
        403 => Some(format!(
            "check that the service account exists, that it grants roles/iam.workloadIdentityUser to {} \
             (or to a principalSet that contains it), and that the IAM Service Account Credentials API \
             (iamcredentials.googleapis.com) is enabled",
            federated_principal(hints.provider, hints.subject.as_deref())
        )),
        404 => Some("check that the service account exists".to_string()),
        401 => Some(
            "IAM Credentials did not accept the federated token from STS; check that both endpoints \
             belong to the same Google universe"
                .to_string(),
        ),
        400 if hints.token_lifetime.is_some_and(|l| l.as_secs() > 3600) => Some(
            "check the configured token lifetime: more than 3600s needs the organization policy \
             constraints/iam.allowServiceAccountCredentialLifetimeExtension"
                .to_string(),
        ),
        _ => None,
    };
    remote_failure(STEP_IAM, response, context, &remote, hint.as_deref())
}

/// `principal://...` of the federated identity, as it must appear in the service account's IAM policy.
fn federated_principal(provider: &str, subject: Option<&str>) -> String {
    let segments: Vec<&str> = provider.split('/').collect();
    let (project, pool) = match segments.as_slice() {
        ["projects", project, "locations", "global", "workloadIdentityPools", pool, "providers", _] => {
            (*project, *pool)
        }
        _ => ("NUMBER", "POOL"),
    };
    format!(
        "principal://iam.googleapis.com/projects/{project}/locations/global/workloadIdentityPools/{pool}/subject/{}",
        subject.unwrap_or("system:serviceaccount:NAMESPACE:NAME")
    )
}

/// An error answer in either of Google's shapes: OAuth (`{"error":"code","error_description":"..."}`, STS)
/// or Google API (`{"error":{"code":403,"message":"...","status":"PERMISSION_DENIED"}}`, IAM and front ends).
struct RemoteError {
    code: Option<String>,
    /// Google's explanation, or an excerpt of a body that is not JSON (a proxy's page); scrubbed and capped.
    message: String,
}

impl RemoteError {
    fn from_body(body: &str, secrets: &[&Sensitive]) -> Self {
        let secrets: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let (code, message) = match parsed.as_ref().and_then(|v| v.get("error")) {
            Some(Value::String(code)) => (
                Some(code.clone()),
                parsed
                    .as_ref()
                    .and_then(|v| v.get("error_description"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            Some(Value::Object(error)) => (
                error
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => (None, body.to_string()),
        };
        RemoteError {
            code: code.map(|c| quote(&c, &secrets)),
            message: quote(&message, &secrets),
        }
    }
}

fn remote_failure(
    step: &'static str,
    response: &HttpResponse,
    context: &str,
    remote: &RemoteError,
    hint: Option<&str>,
) -> CloudError {
    let mut message = format!("{context}: HTTP {}", response.status);
    if let Some(code) = &remote.code {
        message.push(' ');
        message.push_str(code);
    }
    // Google ends its sentences with a period; ours continues after it.
    let remote_message = remote.message.trim_end_matches('.');
    if !remote_message.is_empty() {
        message.push_str(": ");
        message.push_str(remote_message);
    }
    if let Some(hint) = hint {
        message.push_str("; ");
        message.push_str(hint);
    }
    CloudError::from_status(step, response, message)
}

pub(super) fn provider_context(provider: &str) -> String {
    format!("provider {provider}")
}

pub(super) fn email_context(email: &str) -> String {
    format!("service account {email}")
}

/// Puts the principal in front of an error that [`ProviderHttp`] produced (transport failures).
pub(super) fn with_context(error: CloudError, context: &str) -> CloudError {
    CloudError {
        message: format!("{context}: {}", error.message),
        ..error
    }
}
