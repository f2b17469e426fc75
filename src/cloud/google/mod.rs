//! Google Artifact Registry credentials through workload identity federation: Google STS exchanges the
//! ServiceAccount token for a federated token, which IAM Credentials `generateAccessToken` turns into an access
//! token of a Google service account.
//!
//! The requests are the ones Google's own client library (google-auth) sends, field for field, because those
//! are the ones Google documents and keeps working: a form-encoded RFC 8693 token exchange without an
//! `Authorization` header, then a JSON call carrying the federated token as a Bearer token. The annotation
//! values are validated here too (`names`), since this module is the one that knows Google's naming rules; the
//! wire format is in `wire`, the error answers and what to check in `error`.
//!
//! What must stay true: no token — the ServiceAccount token, the federated token or the resulting access
//! token — ever reaches an error, a log line or a `Debug` output. Errors quote only Google's own error text,
//! capped, with every token we sent scrubbed out of it, and say what the operator should check.

use std::fmt;
use std::time::Duration;

mod error;
mod names;
mod wire;

use super::http::ProviderHttp;
use super::{CloudError, RegistryCredentials, Sensitive};
use crate::percent;
use error::IamHints;
use error::{email_context, provider_context, with_context};
use wire::{
    build_generate_access_token_body, build_token_exchange_body, jwt_subject,
    parse_generate_access_token_response, parse_token_exchange_response, FederatedToken,
};

pub use names::{parse_workload_identity_provider, validate_service_account_email};

/// The failing call named in errors about the token exchange.
pub(crate) const STEP_STS: &str = "sts token exchange";
/// The failing call named in errors about service account impersonation.
pub(crate) const STEP_IAM: &str = "iamcredentials generateAccessToken";

const DEFAULT_STS_ENDPOINT: &str = "https://sts.googleapis.com";
const DEFAULT_IAMCREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

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
            percent::encode(&target.service_account_email, b"@")
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

/// An endpoint without trailing slashes, so that paths can be appended.
fn base_url(endpoint: &str) -> &str {
    endpoint.trim_end_matches('/')
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cloud::http::RetryPolicy;
    use crate::cloud::redact::MAX_QUOTE as MAX_QUOTED_CHARS;
    use crate::cloud::scripted::ScriptedServer;
    use crate::retry::Backoff;
    use base64::Engine as _;
    use serde_json::Value;
    use std::net::TcpListener;
    use wire::TOKEN_TYPE_ACCESS_TOKEN;

    const PROVIDER: &str =
        "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc";
    const EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";
    const STS_TOKEN: &str = "sts-federated-secret-0123456789";
    const ACCESS_TOKEN: &str = "ya29.access-secret-abcdef";

    /// A ServiceAccount token as the apiserver would issue it; only the payload matters here.
    pub(super) fn subject_token() -> Sensitive {
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

    fn client(url: &str, token_lifetime: Option<Duration>) -> GoogleClient {
        let http = ProviderHttp::new(
            None,
            Duration::from_secs(5),
            RetryPolicy {
                attempts: 3,
                backoff: Backoff {
                    first: Duration::from_millis(1),
                    max: Duration::from_millis(5),
                    ..RetryPolicy::default().backoff
                },
                ..RetryPolicy::default()
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
        assert!(!err.retry.is_permanent());
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
        assert!(err.retry.is_permanent());
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
            assert!(err.retry.is_permanent());
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
        assert!(!err.retry.is_permanent());
        assert!(
            err.to_string().starts_with(&format!(
                "sts token exchange: provider {PROVIDER}: cannot reach"
            )),
            "{err}"
        );
        assert_no_token(&err);
    }
}
