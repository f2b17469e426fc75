//! Entra's and ACR's error answers turned into errors that say what failed and what to fix, naming the exact
//! issuer, subject and audience this ServiceAccount presents. Errors quote only the services' own text,
//! redacted and capped (see [`crate::cloud::redact`]).

use serde_json::Value;

use super::wire::Presented;
use super::{STEP_ACR, STEP_ENTRA};
use crate::cloud::http::HttpResponse;
use crate::cloud::redact::quote;
use crate::cloud::CloudError;
use crate::retry::Retry;

/// What an error about one principal may name.
pub(crate) struct Context<'a> {
    pub client_id: &'a str,
    pub tenant: &'a str,
    pub registry: &'a str,
    /// The authority host the request went to.
    pub authority: &'a str,
    pub presented: Presented,
}

/// An Entra error answer: `{"error":"invalid_client","error_description":"AADSTS70021: ...","error_codes":[70021],...}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct EntraError {
    pub error: Option<String>,
    pub code: Option<u64>,
    pub description: String,
}

impl EntraError {
    pub(crate) fn parse(body: &str) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
            return EntraError {
                description: body.to_string(),
                ..EntraError::default()
            };
        };
        let description = object
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let code = object
            .get("error_codes")
            .and_then(Value::as_array)
            .and_then(|codes| codes.first())
            .and_then(Value::as_u64)
            .or_else(|| aadsts_code(description));
        // Entra appends trace and correlation IDs and a timestamp to every description: useful to Microsoft
        // support, noise in an event, and they would push the useful part past the quote's cap.
        let description = description
            .split(" Trace ID:")
            .next()
            .unwrap_or_default()
            .to_string();
        EntraError {
            error: object
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string),
            code,
            description,
        }
    }
}

/// `AADSTS70021: ...` → 70021.
fn aadsts_code(description: &str) -> Option<u64> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The error of a failed Entra token request, with what to fix.
pub(crate) fn entra_error(
    response: &HttpResponse,
    context: &Context<'_>,
    secrets: &[&str],
) -> CloudError {
    let remote = EntraError::parse(&response.body);
    let mut message = format!(
        "application {} in tenant {}: HTTP {}",
        context.client_id, context.tenant, response.status
    );
    if let Some(error) = &remote.error {
        message.push(' ');
        message.push_str(&quote(error, secrets));
    }
    let quoted = quote(remote.description.trim_end_matches('.'), secrets);
    if !quoted.is_empty() {
        message.push_str(": ");
        message.push_str(&quoted);
    }
    if let Some(hint) = entra_hint(remote.code, response.status, context) {
        message.push_str("; ");
        message.push_str(&hint);
    }
    let mut error = CloudError::from_status(STEP_ENTRA, response, message);
    // Entra says `temporarily_unavailable` for overload whatever the status.
    if remote.error.as_deref() == Some("temporarily_unavailable") {
        error.retry = Retry::from_answer(true, response.retry_after);
    }
    error
}

fn entra_hint(code: Option<u64>, status: u16, context: &Context<'_>) -> Option<String> {
    let p = &context.presented;
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unreadable)".to_string());
    let federated = format!(
        "add a federated identity credential to application {} with issuer {}, subject {} and audience {} \
         (the values this ServiceAccount presents)",
        context.client_id,
        or_unknown(&p.issuer),
        or_unknown(&p.subject),
        or_unknown(&p.audience),
    );
    match code? {
        70021 | 700211 | 700212 | 700213 => Some(federated),
        700016 => Some(format!(
            "check the client ID annotation: application {} does not exist in tenant {} (for a managed \
             identity, use its client ID, and the tenant of its subscription)",
            context.client_id, context.tenant
        )),
        700024 | 700027 | 50027 => Some(
            "Entra did not accept the ServiceAccount token: check the clocks of the controller's node and of \
             the API server, and that Entra can fetch the cluster issuer's discovery document and keys"
                .to_string(),
        ),
        90002 => Some(format!(
            "check the tenant annotation; a tenant of another Azure cloud is not found at {}",
            context.authority
        )),
        70011 | 1002012 => Some(
            "Entra refused the ACR scope; check the authority host of this registry's cloud".to_string(),
        ),
        _ if status == 404 => Some(format!("check the authority host ({})", context.authority)),
        _ => None,
    }
}

/// The error of a refused ACR exchange, with what to fix.
pub(crate) fn acr_error(
    response: &HttpResponse,
    context: &Context<'_>,
    secrets: &[&str],
) -> CloudError {
    let parsed: Option<Value> = serde_json::from_str(&response.body).ok();
    let first = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .and_then(|errors| errors.first());
    let (code, text) = match first {
        Some(error) => (
            error
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string),
            error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        None => (None, response.body.clone()),
    };
    let mut message = format!("registry {}: HTTP {}", context.registry, response.status);
    if let Some(code) = &code {
        message.push(' ');
        message.push_str(&quote(code, secrets));
    }
    let quoted = quote(&text, secrets);
    if !quoted.is_empty() {
        message.push_str(": ");
        message.push_str(&quoted);
    }
    let hint = match response.status {
        401 | 403 => Some(format!(
            "check that application {} has the AcrPull role (or another role that allows pulling) on registry \
             {}, and that the registry belongs to tenant {}",
            context.client_id, context.registry, context.tenant
        )),
        404 => Some(format!(
            "check the registry host {} and the ACR endpoint override",
            context.registry
        )),
        _ => None,
    };
    if let Some(hint) = hint {
        message.push_str("; ");
        message.push_str(&hint);
    }
    CloudError::from_status(STEP_ACR, response, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context<'static> {
        Context {
            client_id: "11111111-2222-3333-4444-555555555555",
            tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47",
            registry: "myregistry.azurecr.io",
            authority: "https://login.microsoftonline.com",
            presented: Presented {
                issuer: Some("https://issuer.example".into()),
                subject: Some("system:serviceaccount:ns:sa".into()),
                audience: Some("api://AzureADTokenExchange".into()),
            },
        }
    }

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn no_matching_federated_credential_names_the_presented_values() {
        let body = r#"{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: 'https://issuer.example'. Assertion Subject: 'system:serviceaccount:ns:sa'. Assertion Audience: 'api://AzureADTokenExchange'. Trace ID: 0b4d Correlation ID: 5e1c Timestamp: 2026-11-30 04:00:00Z","error_codes":[70021],"timestamp":"2026-11-30 04:00:00Z","trace_id":"0b4d","correlation_id":"5e1c"}"#;
        let error = entra_error(&response(400, body), &context(), &[]);
        assert!(error.retry.is_permanent());
        assert_eq!(
            error.to_string(),
            "entra token request: application 11111111-2222-3333-4444-555555555555 in tenant \
             72f988bf-86f1-41af-91ab-2d7cd011db47: HTTP 400 invalid_request: AADSTS70021: No matching federated \
             identity record found for presented assertion. Assertion Issuer: 'https://issuer.example'. Assertion \
             Subject: 'system:serviceaccount:ns:sa'. Assertion Audience: 'api://AzureADTokenExchange'; add a \
             federated identity credential to application 11111111-2222-3333-4444-555555555555 with issuer \
             https://issuer.example, subject system:serviceaccount:ns:sa and audience api://AzureADTokenExchange \
             (the values this ServiceAccount presents)"
        );
    }

    #[test]
    fn codes_come_from_error_codes_or_the_description() {
        assert_eq!(
            EntraError::parse(r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found"}"#).code,
            Some(700016)
        );
        let unknown = entra_error(
            &response(
                400,
                r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.","error_codes":[700016]}"#,
            ),
            &context(),
            &[],
        );
        assert!(unknown.message.ends_with("check the client ID annotation: application 11111111-2222-3333-4444-555555555555 does not exist in tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 (for a managed identity, use its client ID, and the tenant of its subscription)"), "{unknown}");
        let busy = entra_error(
            &response(
                400,
                r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: The server is busy"}"#,
            ),
            &context(),
            &[],
        );
        assert!(!busy.retry.is_permanent());
        let down = entra_error(
            &response(503, "<html>Service Unavailable</html>"),
            &context(),
            &[],
        );
        assert!(!down.retry.is_permanent());
        assert!(
            down.message
                .ends_with("HTTP 503: <html>Service Unavailable</html>"),
            "{down}"
        );
    }

    #[test]
    fn acr_refusals_point_at_the_role_assignment_and_echoes_are_redacted() {
        let body =
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"token eyJsecret is not authorized"}]}"#;
        let error = acr_error(&response(401, body), &context(), &["eyJsecret"]);
        assert!(error.retry.is_permanent());
        assert_eq!(
            error.to_string(),
            "acr token exchange: registry myregistry.azurecr.io: HTTP 401 UNAUTHORIZED: token <redacted> is not \
             authorized; check that application 11111111-2222-3333-4444-555555555555 has the AcrPull role (or \
             another role that allows pulling) on registry myregistry.azurecr.io, and that the registry belongs \
             to tenant 72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
    }
}
