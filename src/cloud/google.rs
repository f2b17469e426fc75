//! Google Artifact Registry credentials through workload identity federation: Google STS exchanges the
//! ServiceAccount token for a federated token, which IAM Credentials `generateAccessToken` turns into an access
//! token of a Google service account.
//!
//! The requests are the ones Google's own client library (google-auth) sends, field for field, because those
//! are the ones Google documents and keeps working: a form-encoded RFC 8693 token exchange without an
//! `Authorization` header, then a JSON call carrying the federated token as a Bearer token. The annotation
//! values are validated here too, since this module is the one that knows Google's naming rules.
//!
//! What must stay true: no token — the ServiceAccount token, the federated token or the resulting access
//! token — ever reaches an error, a log line or a `Debug` output. Errors quote only Google's own error text,
//! capped, with every token we sent scrubbed out of it, and say what the operator should check.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::http::{HttpResponse, ProviderHttp};
use super::{CloudError, RegistryCredentials, Sensitive};

/// The failing call named in errors about the token exchange.
pub(crate) const STEP_STS: &str = "sts token exchange";
/// The failing call named in errors about service account impersonation.
pub(crate) const STEP_IAM: &str = "iamcredentials generateAccessToken";

const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";
const DEFAULT_IAMCREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// What the federated token may do: only call IAM (to impersonate the service account).
const STS_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// What the registry credential may do: read, which is all pulling an image needs.
const REGISTRY_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform.read-only";
/// The Docker user name Artifact Registry expects with an OAuth access token as password.
const DOCKER_USERNAME: &str = "oauth2accesstoken";

/// The prefix that turns a provider's resource name into its full name, which is the STS audience.
const IAM_NAME_PREFIX: &str = "//iam.googleapis.com/";
const PROVIDER_SHAPE: &str =
    "projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER";
const EMAIL_SHAPE: &str = "NAME@PROJECT.iam.gserviceaccount.com";

/// Longest piece of a provider's error text quoted in our messages: enough for Google's sentences, short
/// enough for a Kubernetes event.
const MAX_QUOTED_CHARS: usize = 300;

/// One Google principal of a ServiceAccount: the workload identity provider that trusts the cluster and the
/// service account to impersonate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleTarget {
    /// The provider's resource name, normalised by [`parse_workload_identity_provider`] (`projects/...`).
    pub provider: String,
    pub service_account_email: String,
}

/// Where Google is reached and what is asked of it.
///
/// The endpoints can be overridden for Private Service Connect, restricted VIPs, other universe domains and
/// test servers (plain `http://127.0.0.1:PORT` works).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleConfig {
    /// Base URL of the Security Token Service; `/v1/token` is appended.
    pub sts_endpoint: String,
    /// Base URL of the IAM Service Account Credentials API; `/v1/projects/-/serviceAccounts/...` is appended.
    pub iamcredentials_endpoint: String,
    /// Requested lifetime of the registry access token; Google's default (one hour) when `None`.
    pub token_lifetime: Option<Duration>,
}

impl Default for GoogleConfig {
    fn default() -> Self {
        GoogleConfig {
            sts_endpoint: DEFAULT_STS_ENDPOINT.to_string(),
            iamcredentials_endpoint: DEFAULT_IAMCREDENTIALS_ENDPOINT.to_string(),
            token_lifetime: None,
        }
    }
}

/// Obtains Artifact Registry credentials from Google.
pub struct GoogleClient {
    config: GoogleConfig,
    http: ProviderHttp,
}

impl fmt::Debug for GoogleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoogleClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GoogleClient {
    pub fn new(config: GoogleConfig, http: ProviderHttp) -> Self {
        GoogleClient { config, http }
    }

    /// Exchanges a ServiceAccount token for registry credentials of `target`'s service account.
    ///
    /// Throttling, 5xx answers and transport failures are retried briefly per call; anything else fails at once.
    pub fn registry_credentials(
        &self,
        target: &GoogleTarget,
        subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        let federated = self
            .http
            .with_retries(|| self.exchange_token(target, subject_token))?;
        self.http
            .with_retries(|| self.generate_access_token(target, subject_token, &federated))
    }

    /// STS: ServiceAccount token in, federated access token out.
    fn exchange_token(
        &self,
        target: &GoogleTarget,
        subject_token: &Sensitive,
    ) -> Result<FederatedToken, CloudError> {
        let url = format!("{}/v1/token", base_url(&self.config.sts_endpoint));
        let body = build_token_exchange_body(&target.provider, subject_token);
        let response = self
            .http
            .post(
                STEP_STS,
                &url,
                &[],
                "application/x-www-form-urlencoded",
                body.as_bytes(),
            )
            .map_err(|e| with_context(e, &provider_context(&target.provider)))?;
        let token = parse_token_exchange_response(&response, &target.provider, &[subject_token])?;
        if let Some(lifetime) = token.expires_in {
            log::debug!(
                "{STEP_STS} for {}: federated token valid for {}s",
                target.provider,
                lifetime.as_secs()
            );
        }
        Ok(token)
    }

    /// IAM Credentials: federated token in, the service account's access token out.
    fn generate_access_token(
        &self,
        target: &GoogleTarget,
        subject_token: &Sensitive,
        federated: &FederatedToken,
    ) -> Result<RegistryCredentials, CloudError> {
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            base_url(&self.config.iamcredentials_endpoint),
            encode_path_segment(&target.service_account_email)
        );
        let body = build_generate_access_token_body(self.config.token_lifetime);
        let authorization = format!("Bearer {}", federated.access_token.expose());
        let response = self
            .http
            .post(
                STEP_IAM,
                &url,
                &[("Authorization", authorization.as_str())],
                "application/json",
                body.as_bytes(),
            )
            .map_err(|e| with_context(e, &email_context(&target.service_account_email)))?;
        let hints = IamHints {
            provider: &target.provider,
            subject: jwt_subject(subject_token.expose()),
            token_lifetime: self.config.token_lifetime,
        };
        parse_generate_access_token_response(
            &response,
            &target.service_account_email,
            &hints,
            &[subject_token, &federated.access_token],
        )
    }
}

/// Checks a `googlecloud-workload-identity-provider` value and returns its resource name (`projects/...`).
///
/// Accepts the resource name and the full name with the `//iam.googleapis.com/` prefix. The rules are
/// Google's: the project by number, `locations/global`, pool and provider IDs of 4 to 32 characters from
/// `[a-z0-9-]` that do not start with the reserved `gcp-`.
#[allow(
    dead_code,
    reason = "called by the annotation parser, which validates every principal"
)]
pub fn parse_workload_identity_provider(value: &str) -> Result<String, String> {
    let invalid = |why: String| {
        format!("invalid workload identity provider {value:?}: {why}; expected {PROVIDER_SHAPE}")
    };
    if value.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if value.starts_with("https://") || value.starts_with("http://") {
        return Err(invalid(
            "it is a URL (perhaps the provider's default audience), not the provider's name"
                .to_string(),
        ));
    }
    let name = value.strip_prefix(IAM_NAME_PREFIX).unwrap_or(value);
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() == 6 && segments[4] == "workloadIdentityPools" {
        return Err(invalid(
            "it names a workload identity pool, not one of its providers".to_string(),
        ));
    }
    if segments.len() != 8 {
        return Err(invalid(format!(
            "it has {} path segments instead of 8",
            segments.len()
        )));
    }
    for (index, keyword) in [
        (0, "projects"),
        (2, "locations"),
        (4, "workloadIdentityPools"),
        (6, "providers"),
    ] {
        if segments[index] != keyword {
            return Err(invalid(format!(
                "segment {} is {:?} where {keyword:?} belongs",
                index + 1,
                segments[index]
            )));
        }
    }
    let project = segments[1];
    if project.is_empty() || project.len() > 20 || !project.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "project {project:?} is not a project number: the provider names its project by number, not by ID"
        )));
    }
    if segments[3] != "global" {
        return Err(invalid(format!(
            "location {:?} is not \"global\", the only location of workload identity pools",
            segments[3]
        )));
    }
    check_federation_id("pool", segments[5]).map_err(invalid)?;
    check_federation_id("provider", segments[7]).map_err(invalid)?;
    Ok(name.to_string())
}

/// Google's rule for workload identity pool and provider IDs.
fn check_federation_id(kind: &str, id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if !(4..=32).contains(&length) {
        return Err(format!(
            "{kind} ID {id:?} is {length} characters long, but must be 4 to 32"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{kind} ID {id:?} contains {c:?}, but may contain only lower-case letters, digits and '-'"
        ));
    }
    if id.starts_with("gcp-") {
        return Err(format!(
            "{kind} ID {id:?} starts with \"gcp-\", a prefix Google reserves"
        ));
    }
    Ok(())
}

/// Checks a `googlecloud-service-account-email` item.
///
/// Service accounts live under `gserviceaccount.com` domains (`NAME@PROJECT.iam.gserviceaccount.com`,
/// `PROJECT@appspot.gserviceaccount.com`, `NUMBER-compute@developer.gserviceaccount.com`, service agents);
/// any other address of sane shape is let through too, and Google has the last word.
#[allow(
    dead_code,
    reason = "called by the annotation parser, which validates every principal"
)]
pub fn validate_service_account_email(value: &str) -> Result<(), String> {
    let invalid = |why: String| {
        format!("invalid service account email {value:?}: {why}; expected {EMAIL_SHAPE}")
    };
    if value.is_empty() {
        return Err(invalid("it is empty".to_string()));
    }
    if value.contains('/') {
        return Err(invalid(
            "it contains '/': give the email alone, not a resource name or URL".to_string(),
        ));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace".to_string()));
    }
    let (local, domain) = match value.split_once('@') {
        None => return Err(invalid("it has no '@'".to_string())),
        Some((_, domain)) if domain.contains('@') => {
            return Err(invalid("it has more than one '@'".to_string()))
        }
        Some(parts) => parts,
    };
    if local.is_empty() {
        return Err(invalid("the part before '@' is empty".to_string()));
    }
    if local.len() > 64 {
        return Err(invalid(
            "the part before '@' is longer than 64 characters".to_string(),
        ));
    }
    if let Some(c) = local
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
    {
        return Err(invalid(format!("the part before '@' contains {c:?}")));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(invalid(
            "the part before '@' has a '.' at its start, its end or next to another".to_string(),
        ));
    }
    check_domain(domain).map_err(invalid)?;
    if domain.to_ascii_lowercase().ends_with("gserviceaccount.com")
        && value.chars().any(|c| c.is_ascii_uppercase())
    {
        return Err(invalid(
            "it contains upper-case letters, but Google service account emails are lower case"
                .to_string(),
        ));
    }
    Ok(())
}

/// A DNS name of at least two labels, each 1 to 63 letters, digits or inner '-'.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("the domain after '@' is empty".to_string());
    }
    if domain.len() > 253 {
        return Err("the domain after '@' is longer than 253 characters".to_string());
    }
    if !domain.contains('.') {
        return Err(format!("the domain {domain:?} has no '.'"));
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "the domain {domain:?} has a label that is empty or longer than 63 characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("the domain {domain:?} contains {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "the domain {domain:?} has a label that starts or ends with '-'"
            ));
        }
    }
    Ok(())
}

/// The federated token STS returned, usable only to call IAM Credentials.
struct FederatedToken {
    access_token: Sensitive,
    expires_in: Option<Duration>,
}

/// The token-exchange form, with google-auth's fields, order and encoding (`urllib.parse.urlencode`).
fn build_token_exchange_body(provider: &str, subject_token: &Sensitive) -> String {
    let audience = format!("{IAM_NAME_PREFIX}{provider}");
    let fields = [
        ("grant_type", GRANT_TYPE_TOKEN_EXCHANGE),
        ("audience", audience.as_str()),
        ("scope", STS_SCOPE),
        ("requested_token_type", TOKEN_TYPE_ACCESS_TOKEN),
        ("subject_token", subject_token.expose()),
        ("subject_token_type", TOKEN_TYPE_JWT),
    ];
    fields
        .iter()
        .map(|(name, value)| format!("{}={}", form_encode(name), form_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The generateAccessToken request: the read-only scope and, when configured, the lifetime.
fn build_generate_access_token_body(lifetime: Option<Duration>) -> String {
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
fn parse_token_exchange_response(
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

/// What the operator may need to know to understand a generateAccessToken failure.
struct IamHints<'a> {
    provider: &'a str,
    /// The `sub` claim of the ServiceAccount token, e.g. `system:serviceaccount:NS:NAME`.
    subject: Option<String>,
    token_lifetime: Option<Duration>,
}

/// Reads generateAccessToken's answer into registry credentials.
fn parse_generate_access_token_response(
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
                quote(expire_time, secrets)
            ))
        })?
        .with_timezone(&Utc);
    Ok(RegistryCredentials {
        username: DOCKER_USERNAME.to_string(),
        password,
        expires_at,
    })
}

/// The error of a failed token exchange, with what to check.
fn sts_error(response: &HttpResponse, context: &str, secrets: &[&Sensitive]) -> CloudError {
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
    remote_failure(STEP_STS, response.status, context, &remote, hint)
}

/// The error of a failed generateAccessToken, with what to check.
fn iam_error(
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
    remote_failure(STEP_IAM, response.status, context, &remote, hint.as_deref())
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

/// The `sub` claim of a ServiceAccount token, read without verifying it: it only fills in an error hint.
///
/// Only a value shaped like a Kubernetes ServiceAccount subject is returned, so nothing else of the token can
/// end up in a message.
fn jwt_subject(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(payload)
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let subject = claims.get("sub")?.as_str()?;
    let rest = subject.strip_prefix("system:serviceaccount:")?;
    let sane = rest.len() <= 320
        && rest.split(':').count() == 2
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'));
    sane.then(|| subject.to_string())
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
            code: code.map(|c| quote(&c, secrets)),
            message: quote(&message, secrets),
        }
    }
}

fn remote_failure(
    step: &'static str,
    status: u16,
    context: &str,
    remote: &RemoteError,
    hint: Option<&str>,
) -> CloudError {
    let mut message = format!("{context}: HTTP {status}");
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
    if is_retryable_status(status) {
        CloudError::retryable(step, message)
    } else {
        CloudError::permanent(step, message)
    }
}

/// Throttling and server-side failures may pass; a 4xx answer will be the same next time.
fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status)
}

/// Remote text made fit to quote: every token we sent removed, control characters flattened, length capped.
fn quote(text: &str, secrets: &[&Sensitive]) -> String {
    let mut scrubbed = text.to_string();
    for secret in secrets {
        if !secret.expose().is_empty() {
            scrubbed = scrubbed.replace(secret.expose(), "<redacted>");
        }
    }
    let flat: String = scrubbed
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= MAX_QUOTED_CHARS {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_QUOTED_CHARS).collect();
        cut.push('…');
        cut
    }
}

fn provider_context(provider: &str) -> String {
    format!("provider {provider}")
}

fn email_context(email: &str) -> String {
    format!("service account {email}")
}

/// Puts the principal in front of an error that [`ProviderHttp`] produced (transport failures).
fn with_context(error: CloudError, context: &str) -> CloudError {
    CloudError {
        message: format!("{context}: {}", error.message),
        ..error
    }
}

/// An endpoint without trailing slashes, so that paths can be appended.
fn base_url(endpoint: &str) -> &str {
    endpoint.trim_end_matches('/')
}

/// `application/x-www-form-urlencoded` as Python's `quote_plus` does it.
fn form_encode(value: &str) -> String {
    percent_encode(value, |b| matches!(b, b'_' | b'.' | b'-' | b'~'), true)
}

/// A URL path segment; '@' stays as it is, as Google's clients send it.
fn encode_path_segment(value: &str) -> String {
    percent_encode(
        value,
        |b| matches!(b, b'_' | b'.' | b'-' | b'~' | b'@'),
        false,
    )
}

fn percent_encode(value: &str, keep: impl Fn(u8) -> bool, space_as_plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || keep(b) {
            out.push(char::from(b));
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::http::RetryPolicy;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Instant;

    const PROVIDER: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc";
    const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";
    const STS_TOKEN: &str = "sts-federated-secret-0123456789";
    const ACCESS_TOKEN: &str = "ya29.access-secret-abcdef";

    /// A ServiceAccount token as the apiserver would issue it; only the payload matters here.
    fn subject_token() -> Sensitive {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(r#"{"alg":"RS256","kid":"k1"}"#);
        let payload = engine.encode(
            r#"{"aud":["https://example.test"],"sub":"system:serviceaccount:build:puller","exp":4102444800}"#,
        );
        Sensitive::new(format!("{header}.{payload}.c2lnbmF0dXJlLXNlY3JldA"))
    }

    fn target() -> GoogleTarget {
        GoogleTarget {
            provider: PROVIDER.to_string(),
            service_account_email: EMAIL.to_string(),
        }
    }

    #[test]
    fn parses_good_provider_names() {
        let cases = [
            (PROVIDER, PROVIDER),
            (&format!("//iam.googleapis.com/{PROVIDER}") as &str, PROVIDER),
            (
                "projects/1/locations/global/workloadIdentityPools/abcd/providers/0000",
                "projects/1/locations/global/workloadIdentityPools/abcd/providers/0000",
            ),
            (
                "projects/42/locations/global/workloadIdentityPools/a-very-long-pool-name-of-32-char/providers/p-32-characters-long-provider-x",
                "projects/42/locations/global/workloadIdentityPools/a-very-long-pool-name-of-32-char/providers/p-32-characters-long-provider-x",
            ),
            (
                "projects/7/locations/global/workloadIdentityPools/pool-/providers/-gcp",
                "projects/7/locations/global/workloadIdentityPools/pool-/providers/-gcp",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_workload_identity_provider(input).as_deref(),
                Ok(want),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_malformed_provider_names_precisely() {
        let p = "projects/123/locations/global/workloadIdentityPools";
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("projects/123/locations/global/workloadIdentityPools/pool", "names a workload identity pool, not one of its providers"),
            (&format!("{PROVIDER}/"), "9 path segments"),
            ("projects/123/locations/global", "4 path segments instead of 8"),
            ("https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov", "is a URL"),
            ("//iam.googleapis.com//projects/123/locations/global/workloadIdentityPools/pool/providers/prov", "9 path segments"),
            ("project/123/locations/global/workloadIdentityPools/pool/providers/prov", "segment 1 is \"project\" where \"projects\" belongs"),
            ("projects/123/location/global/workloadIdentityPools/pool/providers/prov", "segment 3 is \"location\""),
            ("projects/123/locations/global/workloadidentitypools/pool/providers/prov", "segment 5 is \"workloadidentitypools\""),
            ("projects/123/locations/global/workloadIdentityPools/pool/provider/prov", "segment 7 is \"provider\""),
            ("projects/my-project/locations/global/workloadIdentityPools/pool/providers/prov", "project \"my-project\" is not a project number"),
            ("projects//locations/global/workloadIdentityPools/pool/providers/prov", "project \"\" is not a project number"),
            ("projects/123/locations/us-east1/workloadIdentityPools/pool/providers/prov", "location \"us-east1\" is not \"global\""),
            (&format!("{p}/abc/providers/prov"), "pool ID \"abc\" is 3 characters long, but must be 4 to 32"),
            (&format!("{p}/{}/providers/prov", "a".repeat(33)), "is 33 characters long"),
            (&format!("{p}/Pool/providers/prov"), "pool ID \"Pool\" contains 'P'"),
            (&format!("{p}/my_pool/providers/prov"), "contains '_'"),
            (&format!("{p}/gcp-pool/providers/prov"), "pool ID \"gcp-pool\" starts with \"gcp-\""),
            (&format!("{p}/pool/providers/gcp-prov"), "provider ID \"gcp-prov\" starts with \"gcp-\""),
            (&format!("{p}/pool/providers/"), "provider ID \"\" is 0 characters long"),
            (&format!("{p}/pool/providers/prov ider"), "provider ID \"prov ider\" contains ' '"),
        ];
        for (input, want) in cases {
            let err = parse_workload_identity_provider(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err}");
            assert!(
                err.starts_with("invalid workload identity provider \""),
                "{err}"
            );
            assert!(
                err.ends_with(&format!("expected {PROVIDER_SHAPE}")),
                "{err}"
            );
        }
    }

    #[test]
    fn accepts_service_account_emails() {
        for email in [
            EMAIL,
            "my-project@appspot.gserviceaccount.com",
            "123456789012-compute@developer.gserviceaccount.com",
            "service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com",
            "robot@example.com",
            "first.last+ci@Example.org",
        ] {
            assert_eq!(validate_service_account_email(email), Ok(()), "{email}");
        }
    }

    #[test]
    fn rejects_malformed_emails_precisely() {
        let cases = [
            ("", "it is empty"),
            ("puller", "it has no '@'"),
            ("a@b@example.com", "more than one '@'"),
            (
                "@my-project.iam.gserviceaccount.com",
                "the part before '@' is empty",
            ),
            ("puller@", "the domain after '@' is empty"),
            ("puller@localhost", "the domain \"localhost\" has no '.'"),
            ("pull er@example.com", "whitespace"),
            (" puller@example.com", "whitespace"),
            (
                "projects/-/serviceAccounts/puller@p.iam.gserviceaccount.com",
                "not a resource name",
            ),
            ("pull!er@example.com", "the part before '@' contains '!'"),
            (".puller@example.com", "a '.' at its start"),
            ("pu..ller@example.com", "next to another"),
            ("puller@exa_mple.com", "contains '_'"),
            ("puller@-example.com", "starts or ends with '-'"),
            ("puller@example..com", "empty or longer than 63"),
            ("Puller@my-project.iam.gserviceaccount.com", "lower case"),
        ];
        let long_local = format!("{}@example.com", "a".repeat(65));
        let cases = cases
            .iter()
            .map(|(v, w)| (v.to_string(), *w))
            .chain([(long_local, "longer than 64 characters")]);
        for (input, want) in cases {
            let err = validate_service_account_email(&input).expect_err(&input);
            assert!(err.contains(want), "{input}: {err}");
            assert!(err.starts_with("invalid service account email \""), "{err}");
            assert!(err.ends_with(&format!("expected {EMAIL_SHAPE}")), "{err}");
        }
    }

    #[test]
    fn form_encoding_matches_pythons_urlencode() {
        assert_eq!(form_encode("a b/c:d~e_f.g-h"), "a+b%2Fc%3Ad~e_f.g-h");
        assert_eq!(form_encode("é="), "%C3%A9%3D");
        assert_eq!(encode_path_segment("a.b+c@d-e.com"), "a.b%2Bc@d-e.com");
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

    // --- A scripted HTTP server on 127.0.0.1, to pin the wire format and to produce faults on demand. ---

    #[derive(Debug)]
    struct Recorded {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    struct ScriptedServer {
        url: String,
        stop: Arc<AtomicBool>,
        thread: JoinHandle<Vec<Recorded>>,
    }

    impl ScriptedServer {
        /// Answers connections in order with `responses`, one request per connection, for at most 20 seconds.
        fn start(responses: Vec<(u16, String)>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            listener.set_nonblocking(true).expect("non-blocking");
            let url = format!("http://{}", listener.local_addr().expect("local addr"));
            let stop = Arc::new(AtomicBool::new(false));
            let stop_flag = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut recorded = Vec::new();
                let mut responses = responses.into_iter();
                while !stop_flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (status, body) = responses
                                .next()
                                .unwrap_or((500, "unscripted request".to_string()));
                            recorded.push(answer(stream, status, &body));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                recorded
            });
            ScriptedServer { url, stop, thread }
        }

        fn finish(self) -> Vec<Recorded> {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.join().expect("server thread")
        }
    }

    fn answer(mut stream: TcpStream, status: u16, body: &str) -> Recorded {
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let header_end = loop {
            let n = stream.read(&mut buf).expect("read request");
            assert!(n > 0, "connection closed before the request ended");
            data.extend_from_slice(&buf[..n]);
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
        };
        let head = String::from_utf8_lossy(&data[..header_end]).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("content-length"))
            .expect("requests carry a Content-Length");
        let mut body_bytes = data[header_end + 4..].to_vec();
        while body_bytes.len() < length {
            let n = stream.read(&mut buf).expect("read body");
            assert!(n > 0, "connection closed before the body ended");
            body_bytes.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(response.as_bytes())
            .expect("write response");
        let mut parts = request_line.split(' ');
        Recorded {
            method: parts.next().unwrap_or_default().to_string(),
            path: parts.next().unwrap_or_default().to_string(),
            headers,
            body: String::from_utf8(body_bytes).expect("utf-8 body"),
        }
    }

    fn client(url: &str, token_lifetime: Option<Duration>) -> GoogleClient {
        let http = ProviderHttp::new(
            None,
            Duration::from_secs(5),
            RetryPolicy {
                attempts: 3,
                first_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
        )
        .expect("http client");
        GoogleClient::new(
            GoogleConfig {
                // A trailing slash, as operators write it, must not double the slash in the path.
                sts_endpoint: format!("{url}/"),
                iamcredentials_endpoint: url.to_string(),
                token_lifetime,
            },
            http,
        )
    }

    fn sts_ok(expires_in: &str) -> (u16, String) {
        (
            200,
            format!(
                r#"{{"access_token":"{STS_TOKEN}","issued_token_type":"{TOKEN_TYPE_ACCESS_TOKEN}","token_type":"Bearer","expires_in":{expires_in}}}"#
            ),
        )
    }

    fn iam_ok() -> (u16, String) {
        (
            200,
            format!(
                r#"{{"accessToken":"{ACCESS_TOKEN}","expireTime":"2030-05-06T07:08:09.123456Z"}}"#
            ),
        )
    }

    /// Asserts that no token reaches the text of an error, in either of its renderings.
    fn assert_no_token(error: &CloudError) {
        let subject = subject_token();
        for text in [error.to_string(), format!("{error:?}")] {
            for secret in [
                subject.expose(),
                STS_TOKEN,
                ACCESS_TOKEN,
                "c2lnbmF0dXJlLXNlY3JldA",
            ] {
                assert!(!text.contains(secret), "token in error: {text}");
            }
        }
    }

    #[test]
    fn sends_exactly_what_google_auth_sends() {
        let server = ScriptedServer::start(vec![sts_ok("3599"), iam_ok()]);
        let google = client(&server.url, None);
        let credentials = google
            .registry_credentials(&target(), &subject_token())
            .expect("credentials");
        let requests = server.finish();
        assert_eq!(requests.len(), 2);

        let sts = &requests[0];
        assert_eq!(
            (sts.method.as_str(), sts.path.as_str()),
            ("POST", "/v1/token")
        );
        assert_eq!(
            sts.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(sts.header("authorization"), None);
        let want_form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
             &audience=%2F%2Fiam.googleapis.com%2Fprojects%2F123456789012%2Flocations%2Fglobal%2FworkloadIdentityPools%2Fcluster-pool%2Fproviders%2Fkube-oidc\
             &scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fiam\
             &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
             &subject_token={}\
             &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt",
            subject_token().expose()
        );
        assert_eq!(sts.body, want_form);

        let iam = &requests[1];
        assert_eq!(iam.method, "POST");
        assert_eq!(
            iam.path,
            "/v1/projects/-/serviceAccounts/puller@my-project.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(iam.header("content-type"), Some("application/json"));
        assert_eq!(
            iam.header("authorization"),
            Some(format!("Bearer {STS_TOKEN}").as_str())
        );
        let body: Value = serde_json::from_str(&iam.body).expect("json body");
        assert_eq!(
            body,
            serde_json::json!({"scope": ["https://www.googleapis.com/auth/cloud-platform.read-only"]})
        );

        assert_eq!(credentials.username, "oauth2accesstoken");
        assert_eq!(credentials.password.expose(), ACCESS_TOKEN);
        assert_eq!(
            credentials.expires_at.to_rfc3339(),
            "2030-05-06T07:08:09.123456+00:00"
        );
        let debug = format!("{credentials:?} {google:?}");
        assert!(
            !debug.contains(ACCESS_TOKEN) && !debug.contains(STS_TOKEN),
            "{debug}"
        );
    }

    #[test]
    fn asks_for_the_configured_lifetime_and_reads_expires_in_as_string() {
        let server = ScriptedServer::start(vec![sts_ok("\"3599\""), iam_ok()]);
        let credentials = client(&server.url, Some(Duration::from_secs(1800)))
            .registry_credentials(&target(), &subject_token())
            .expect("credentials");
        let requests = server.finish();
        let body: Value = serde_json::from_str(&requests[1].body).expect("json body");
        assert_eq!(
            body,
            serde_json::json!({
                "scope": ["https://www.googleapis.com/auth/cloud-platform.read-only"],
                "lifetime": "1800s",
            })
        );
        assert_eq!(credentials.password.expose(), ACCESS_TOKEN);
    }

    #[test]
    fn retries_unavailable_then_succeeds() {
        let unavailable = (
            503,
            r#"{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}"#
                .to_string(),
        );
        let server = ScriptedServer::start(vec![
            unavailable.clone(),
            sts_ok("3600"),
            unavailable,
            iam_ok(),
        ]);
        let credentials = client(&server.url, None)
            .registry_credentials(&target(), &subject_token())
            .expect("credentials after retries");
        let paths: Vec<String> = server.finish().into_iter().map(|r| r.path).collect();
        assert_eq!(paths[0], "/v1/token");
        assert_eq!(paths[1], "/v1/token");
        assert_eq!(paths.len(), 4);
        assert_eq!(credentials.password.expose(), ACCESS_TOKEN);
    }

    #[test]
    fn gives_up_after_the_retry_budget_with_a_retryable_error() {
        let unavailable = (503, "<html>upstream connect error</html>".to_string());
        let server =
            ScriptedServer::start(vec![unavailable.clone(), unavailable.clone(), unavailable]);
        let err = client(&server.url, None)
            .registry_credentials(&target(), &subject_token())
            .expect_err("503 three times");
        assert_eq!(server.finish().len(), 3);
        assert!(err.retryable);
        assert_eq!(err.step, STEP_STS);
        assert!(
            err.to_string().contains(&format!(
                "sts token exchange: provider {PROVIDER}: HTTP 503: <html>upstream connect error</html>"
            )),
            "{err}"
        );
    }

    #[test]
    fn permission_denied_is_not_retried_and_says_what_to_check() {
        let denied = (
            403,
            r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#
                .to_string(),
        );
        let server = ScriptedServer::start(vec![sts_ok("3600"), denied, iam_ok()]);
        let err = client(&server.url, None)
            .registry_credentials(&target(), &subject_token())
            .expect_err("403");
        assert_eq!(server.finish().len(), 2, "a 403 must not be retried");
        assert!(!err.retryable);
        assert_eq!(err.step, STEP_IAM);
        let text = err.to_string();
        for want in [
            "iamcredentials generateAccessToken: service account puller@my-project.iam.gserviceaccount.com: HTTP 403 PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied",
            "roles/iam.workloadIdentityUser to principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/subject/system:serviceaccount:build:puller",
            "iamcredentials.googleapis.com) is enabled",
        ] {
            assert!(text.contains(want), "{text}");
        }
        assert_no_token(&err);
    }

    #[test]
    fn sts_rejections_name_the_provider_and_what_to_check() {
        let cases = [
            (
                400,
                r#"{"error":"invalid_grant","error_description":"The audience in ID Token [https://x] does not match the expected audience."}"#,
                "HTTP 400 invalid_grant: The audience in ID Token",
                "allowed audiences include",
            ),
            (
                400,
                r#"{"error":"unauthorized_client","error_description":"The given credential is rejected by the attribute condition."}"#,
                "HTTP 400 unauthorized_client",
                "attribute condition admits",
            ),
            (
                400,
                r#"{"error":"invalid_target","error_description":"The target service indicated by the \"audience\" parameters is invalid."}"#,
                "HTTP 400 invalid_target",
                "pool and provider exist and are enabled",
            ),
            (
                404,
                "Not Found",
                "HTTP 404: Not Found",
                "check the configured STS endpoint",
            ),
        ];
        for (status, body, want, hint) in cases {
            let server = ScriptedServer::start(vec![(status, body.to_string()), sts_ok("1")]);
            let err = client(&server.url, None)
                .registry_credentials(&target(), &subject_token())
                .expect_err(body);
            assert_eq!(server.finish().len(), 1, "{body}: not retried");
            assert!(!err.retryable);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("sts token exchange: provider {PROVIDER}: ")),
                "{text}"
            );
            assert!(text.contains(want) && text.contains(hint), "{text}");
            assert_no_token(&err);
        }
    }

    #[test]
    fn no_token_reaches_an_error_even_when_echoed() {
        let subject = subject_token();
        let echo_subject = serde_json::json!({
            "error": "invalid_request",
            "error_description": format!("bad subject_token {}", subject.expose()),
        })
        .to_string();
        let server = ScriptedServer::start(vec![(400, echo_subject)]);
        let err = client(&server.url, None)
            .registry_credentials(&target(), &subject)
            .expect_err("400");
        server.finish();
        assert!(
            err.to_string().contains("bad subject_token <redacted>"),
            "{err}"
        );
        assert_no_token(&err);

        let echo_bearer = format!(
            r#"{{"error":{{"code":401,"message":"Request had invalid authentication credentials: {STS_TOKEN}","status":"UNAUTHENTICATED"}}}}"#
        );
        let long = format!(
            r#"{{"error":{{"code":400,"message":"{}{STS_TOKEN}","status":"INVALID_ARGUMENT"}}}}"#,
            "x".repeat(400)
        );
        for (status, body) in [(401, echo_bearer), (400, long)] {
            let server = ScriptedServer::start(vec![sts_ok("3600"), (status, body)]);
            let err = client(&server.url, None)
                .registry_credentials(&target(), &subject)
                .expect_err("iam failure");
            server.finish();
            assert_no_token(&err);
            assert!(
                err.message.chars().count() < MAX_QUOTED_CHARS + 400,
                "{err}"
            );
        }
    }

    #[test]
    fn unreachable_endpoint_is_retryable_and_names_the_provider() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let err = client(&format!("http://127.0.0.1:{port}"), None)
            .registry_credentials(&target(), &subject_token())
            .expect_err("nothing listens");
        assert!(err.retryable);
        assert!(
            err.to_string().starts_with(&format!(
                "sts token exchange: provider {PROVIDER}: cannot reach"
            )),
            "{err}"
        );
        assert_no_token(&err);
    }
}
