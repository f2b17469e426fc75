//! Amazon ECR credentials through identity federation, with no static AWS keys anywhere.
//!
//! A ServiceAccount token goes to STS `AssumeRoleWithWebIdentity` (unsigned: the token is the credential) at
//! the registry region's STS endpoint; the temporary credentials that come back sign (SigV4, service `ecr`)
//! an ECR `GetAuthorizationToken` call, whose token is the Docker username and password.
//!
//! Everything that can be decided without the network is a pure function in a submodule: the registry host
//! (`host`), role ARNs and session names (`role`), endpoints (`endpoint`), the STS and ECR wire formats
//! (`sts`, `ecr`, `xml`) and error answers (`error`). [`AwsClient`] only strings them together around
//! two HTTP calls. Tokens, keys, passwords and signatures never reach an error message or a `Debug` output.

mod ecr;
mod endpoint;
mod error;
mod host;
mod role;
mod skew;
mod sts;
mod xml;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::http::{HttpResponse, ProviderHttp};
use super::sigv4::{self, Credentials};
use super::{CloudError, RegistryCredentials, Sensitive};
use crate::sync::lock;
use endpoint::Endpoint;
use error::Call;
use sts::TemporaryCredentials;

pub use endpoint::validate_endpoint_override;
pub use host::{parse_registry_host, EcrRegistry, REGION_ANNOTATION};
pub use role::{check_role_partition, role_session_name, validate_role_arn};

/// STS's shortest session, and this controller's default: each session signs one ECR call, at once.
pub const DEFAULT_SESSION_DURATION_SECONDS: u32 = 900;

/// One AWS principal of a ServiceAccount: the role to assume and the registry to get credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsTarget {
    pub role_arn: String,
    pub registry: EcrRegistry,
    /// The STS role session name, from [`role_session_name`].
    pub session_name: String,
}

/// Endpoint overrides and session length, from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    /// Replaces the regional STS endpoint; `{region}` is replaced by the registry's region.
    pub sts_endpoint: Option<String>,
    /// Replaces the regional ECR API endpoint; `{region}` is replaced by the registry's region.
    pub ecr_endpoint: Option<String>,
    /// `DurationSeconds` of the STS session.
    pub session_duration_seconds: u32,
}

impl Default for AwsConfig {
    fn default() -> Self {
        AwsConfig {
            sts_endpoint: None,
            ecr_endpoint: None,
            session_duration_seconds: DEFAULT_SESSION_DURATION_SECONDS,
        }
    }
}

/// This node's clock, as the signer reads it.
pub(crate) type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Exchanges ServiceAccount tokens for ECR credentials.
pub struct AwsClient {
    config: AwsConfig,
    http: ProviderHttp,
    clock: Clock,
    /// What to add to `clock` to get AWS's time: learnt from the `Date` of an answer that refused a signature
    /// as too old or too new, as AWS SDKs do, so a node with a wrong clock still signs acceptably.
    clock_correction: Mutex<chrono::Duration>,
}

impl AwsClient {
    pub fn new(config: AwsConfig, http: ProviderHttp) -> Self {
        AwsClient {
            config,
            http,
            clock: Arc::new(Utc::now),
            clock_correction: Mutex::new(chrono::Duration::zero()),
        }
    }

    /// The same client reading another clock (a node whose clock is off, in tests).
    pub fn with_clock(self, clock: Clock) -> Self {
        AwsClient { clock, ..self }
    }

    /// The time signatures are made at: this node's clock, corrected by what AWS told us.
    fn signing_time(&self) -> DateTime<Utc> {
        (self.clock)() + *lock(&self.clock_correction)
    }

    /// Assumes `target.role_arn` with `subject_token`, then asks ECR for a registry token with the session.
    pub fn registry_credentials(
        &self,
        target: &AwsTarget,
        subject_token: &Sensitive,
    ) -> Result<RegistryCredentials, CloudError> {
        check_role_partition(&target.role_arn, &target.registry)
            .map_err(|why| CloudError::permanent(Call::AssumeRoleWithWebIdentity.step(), why))?;
        let (session, sts_time) = self.assume_role(target, subject_token)?;
        // STS's own clock says whether the session is current; this node's only when STS sent no Date.
        let now = sts_time.unwrap_or_else(|| self.signing_time());
        check_session_unexpired(&target.role_arn, &session, now)?;
        self.authorization_token(target, &session.credentials)
    }

    fn assume_role(
        &self,
        target: &AwsTarget,
        subject_token: &Sensitive,
    ) -> Result<(TemporaryCredentials, Option<DateTime<Utc>>), CloudError> {
        let call = Call::AssumeRoleWithWebIdentity;
        let url = endpoint::sts_endpoint_url(self.config.sts_endpoint.as_deref(), &target.registry);
        let endpoint = parse_endpoint(call, &target.role_arn, &url)?;
        let body = sts::request_body(
            &target.role_arn,
            &target.session_name,
            subject_token,
            self.config.session_duration_seconds,
        );
        let form_encoded_token = sigv4::uri_encode(subject_token.expose(), true);
        let secrets = [subject_token.expose(), form_encoded_token.as_str()];
        let response = self.http.with_retries(|| {
            self.post(
                call,
                &target.role_arn,
                &endpoint,
                &[],
                sts::CONTENT_TYPE,
                body.expose().as_bytes(),
                &secrets,
            )
            .map_err(|(error, _)| error)
        })?;
        let session = sts::parse_response(&response.body)
            .map_err(|why| unexpected_answer(call, &target.role_arn, &endpoint, &why))?;
        Ok((session, response.date))
    }

    fn authorization_token(
        &self,
        target: &AwsTarget,
        credentials: &Credentials,
    ) -> Result<RegistryCredentials, CloudError> {
        let call = Call::GetAuthorizationToken;
        let url = endpoint::ecr_endpoint_url(self.config.ecr_endpoint.as_deref(), &target.registry);
        let endpoint = parse_endpoint(call, &target.role_arn, &url)?;
        let response = self.http.with_retries(|| {
            // Signed afresh for every attempt: a retry may come seconds later, or with a corrected clock.
            let signed_at = self.signing_time();
            let signed =
                sign_ecr_request(&endpoint, &target.registry.region, credentials, signed_at);
            let mut headers = vec![("X-Amz-Target", ecr::TARGET)];
            headers.extend(signed.headers().iter().map(|(n, v)| (*n, v.as_str())));
            let session_token = credentials
                .session_token
                .as_ref()
                .map_or("", Sensitive::expose);
            let secrets = [
                credentials.secret_access_key.expose(),
                session_token,
                signed.signature(),
            ];
            let response = self.post(
                call,
                &target.role_arn,
                &endpoint,
                &headers,
                ecr::CONTENT_TYPE,
                ecr::BODY,
                &secrets,
            );
            self.correct_clock(call, &target.role_arn, signed_at, response)
        })?;
        ecr::parse_response(&response.body)
            .map_err(|why| unexpected_answer(call, &target.role_arn, &endpoint, &why))
    }

    /// Learns AWS's time from an answer that refused the signature for its time, and turns that refusal into a
    /// retryable error so the call is signed again at once with the corrected clock. Only a correction of
    /// more than [`skew::MIN_SKEW`] counts, so a second refusal after correcting is final.
    fn correct_clock(
        &self,
        call: Call,
        role_arn: &str,
        signed_at: DateTime<Utc>,
        result: Result<HttpResponse, (CloudError, Option<HttpResponse>)>,
    ) -> Result<HttpResponse, CloudError> {
        let (error, response) = match result {
            Ok(response) => return Ok(response),
            Err(failure) => failure,
        };
        let code = response
            .as_ref()
            .and_then(|r| error::parse_error_body(&r.body).code);
        let server_time = response.as_ref().and_then(|r| r.date);
        let Some(skew) = skew::detect(code.as_deref(), server_time, signed_at) else {
            return Err(error);
        };
        if let Some(server_time) = server_time {
            // Set from AWS's time, not adjusted by the skew: workers that hit the same refusal agree.
            *lock(&self.clock_correction) = server_time - (self.clock)();
        }
        log::warn!(
            "{} for {role_arn}: AWS refused a signature made {}s away from its clock; signing with AWS's time",
            call.step(),
            skew.num_seconds()
        );
        Err(CloudError::retryable(
            call.step(),
            format!("for {role_arn}: signature refused for clock skew; retrying with AWS's time"),
        ))
    }

    /// One POST. Transport failures and non-2xx answers become errors of `call` that name the role.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &self,
        call: Call,
        role_arn: &str,
        endpoint: &Endpoint,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
        secrets: &[&str],
    ) -> Result<HttpResponse, (CloudError, Option<HttpResponse>)> {
        let response = self
            .http
            .post(call.step(), &endpoint.url, headers, content_type, body)
            .map_err(|e| {
                let error = CloudError {
                    message: format!("for {role_arn}: {}", e.message),
                    ..e
                };
                (error, None)
            })?;
        if (200..300).contains(&response.status) {
            Ok(response)
        } else {
            let error = error::from_response(call, role_arn, &response, secrets);
            Err((error, Some(response)))
        }
    }
}

/// The signed headers for a `GetAuthorizationToken` call to `endpoint` at `time`.
fn sign_ecr_request(
    endpoint: &Endpoint,
    region: &str,
    credentials: &Credentials,
    time: DateTime<Utc>,
) -> sigv4::Signed {
    let request = sigv4::Request {
        method: "POST",
        host: &endpoint.host,
        path: &endpoint.path,
        query: &[],
        headers: &[
            ("Content-Type", ecr::CONTENT_TYPE),
            ("X-Amz-Target", ecr::TARGET),
        ],
        body: ecr::BODY,
    };
    let params = sigv4::Params {
        credentials,
        region,
        service: "ecr",
        time,
        settings: sigv4::Settings::default(),
    };
    sigv4::sign(&request, &params)
}

/// A session that STS says has already expired means this node's clock is ahead: say so now, rather than
/// let ECR answer with a puzzling signature error.
fn check_session_unexpired(
    role_arn: &str,
    session: &TemporaryCredentials,
    now: DateTime<Utc>,
) -> Result<(), CloudError> {
    if session.expires_at > now {
        return Ok(());
    }
    Err(CloudError::permanent(
        Call::AssumeRoleWithWebIdentity.step(),
        format!(
            "for {role_arn}: STS returned a session that expires at {}, which is already past on this node ({}); \
             check the clock of the controller's node",
            session.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
    ))
}

fn parse_endpoint(call: Call, role_arn: &str, url: &str) -> Result<Endpoint, CloudError> {
    Endpoint::parse(url)
        .map_err(|why| CloudError::permanent(call.step(), format!("for {role_arn}: {why}")))
}

fn unexpected_answer(call: Call, role_arn: &str, endpoint: &Endpoint, why: &str) -> CloudError {
    CloudError::permanent(
        call.step(),
        format!(
            "for {role_arn}: unexpected answer from {}: {why}",
            endpoint.url
        ),
    )
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;
    use crate::cloud::http::RetryPolicy;
    use crate::cloud::scripted::{Reply, ScriptedServer};
    use crate::retry::Backoff;

    const ROLE: &str = "arn:aws:iam::123456789012:role/pull";
    const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.WEB+IDENTITY/TOKEN=MARKER";
    const ACCESS_KEY_ID: &str = "ASIATESTACCESSKEY";
    const SECRET_KEY: &str = "SECRET-ACCESS-KEY-MARKER";
    const SESSION_TOKEN: &str = "SESSION-TOKEN-MARKER";

    fn sts_success() -> (u16, String) {
        let body = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials>\
             <SessionToken>{SESSION_TOKEN}</SessionToken><SecretAccessKey>{SECRET_KEY}</SecretAccessKey>\
             <Expiration>2030-01-01T00:15:00.123456Z</Expiration><AccessKeyId>{ACCESS_KEY_ID}</AccessKeyId>\
             </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        );
        (200, body)
    }

    fn ecr_success() -> (u16, String) {
        // base64("AWS:ecr-password")
        let body = r#"{"authorizationData":[{"authorizationToken":"QVdTOmVjci1wYXNzd29yZA==","expiresAt":1893499200.5,"proxyEndpoint":"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}]}"#;
        (200, body.to_string())
    }

    fn client(sts: &str, ecr: &str) -> AwsClient {
        let retry = RetryPolicy {
            attempts: 3,
            backoff: Backoff {
                first: Duration::from_millis(1),
                max: Duration::from_millis(5),
                ..RetryPolicy::default().backoff
            },
            ..RetryPolicy::default()
        };
        let http = ProviderHttp::new(None, Duration::from_secs(5), retry).unwrap();
        let config = AwsConfig {
            sts_endpoint: Some(sts.to_string()),
            ecr_endpoint: Some(ecr.to_string()),
            ..AwsConfig::default()
        };
        AwsClient::new(config, http)
    }

    fn target() -> AwsTarget {
        AwsTarget {
            role_arn: ROLE.to_string(),
            registry: parse_registry_host(REGISTRY, None).unwrap(),
            session_name: role_session_name("default", "puller"),
        }
    }

    fn token() -> Sensitive {
        Sensitive::new(WEB_IDENTITY_TOKEN)
    }

    /// No secret of the exchange, in any encoding, and no signature in what an error shows.
    fn assert_no_secrets(text: &str) {
        let encoded_token = sigv4::uri_encode(WEB_IDENTITY_TOKEN, true);
        for secret in [
            WEB_IDENTITY_TOKEN,
            encoded_token.as_str(),
            "TOKEN=MARKER",
            "TOKEN%3DMARKER",
            SECRET_KEY,
            SESSION_TOKEN,
            "ecr-password",
            "Signature=",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    fn form_fields(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (name.to_string(), percent_decode(value))
            })
            .collect()
    }

    fn percent_decode(value: &str) -> String {
        let bytes = value.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exchange_sends_the_exact_sts_form_and_a_signed_ecr_request() {
        let server = ScriptedServer::start(vec![sts_success(), ecr_success()]);
        let base = server.url.clone();
        let client = client(&base, &format!("{base}/{{region}}/ecr"));
        let credentials = client.registry_credentials(&target(), &token()).unwrap();
        let received = server.finish();
        assert_eq!(received.len(), 2);

        assert_eq!(credentials.username, "AWS");
        assert_eq!(credentials.password.expose(), "ecr-password");
        assert_eq!(credentials.expires_at.timestamp_millis(), 1_893_499_200_500);

        let sts = &received[0];
        assert_eq!(sts.request_line, "POST / HTTP/1.1");
        assert_eq!(sts.header("content-type"), Some(sts::CONTENT_TYPE));
        assert_eq!(sts.header("authorization"), None, "STS call is unsigned");
        let expected_fields = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", ROLE),
            ("RoleSessionName", "default.puller"),
            ("WebIdentityToken", WEB_IDENTITY_TOKEN),
            ("DurationSeconds", "900"),
        ];
        let fields = form_fields(&sts.body);
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(fields, expected_fields);

        let ecr = &received[1];
        assert_eq!(ecr.request_line, "POST /eu-west-1/ecr HTTP/1.1");
        assert_eq!(ecr.body, "{}");
        assert_eq!(ecr.header("content-type"), Some(ecr::CONTENT_TYPE));
        assert_eq!(ecr.header("x-amz-target"), Some(ecr::TARGET));
        assert_eq!(ecr.header("x-amz-security-token"), Some(SESSION_TOKEN));
        let date = ecr.header("x-amz-date").unwrap();
        let authorization = ecr.header("authorization").unwrap();
        let prefix = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{}/eu-west-1/ecr/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=",
            &date[..8]
        );
        assert!(authorization.starts_with(&prefix), "{authorization}");

        // The server can verify the signature with the Host header it actually received.
        let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        let host = ecr.header("host").unwrap();
        assert_eq!(host, base.trim_start_matches("http://"));
        let endpoint = Endpoint {
            url: String::new(),
            host: host.to_string(),
            path: "/eu-west-1/ecr".to_string(),
        };
        let session = Credentials {
            access_key_id: ACCESS_KEY_ID.to_string(),
            secret_access_key: Sensitive::new(SECRET_KEY),
            session_token: Some(Sensitive::new(SESSION_TOKEN)),
        };
        let expected = sign_ecr_request(&endpoint, "eu-west-1", &session, time);
        assert_eq!(authorization, expected.authorization());
    }

    #[test]
    fn unavailable_and_throttled_calls_are_retried() {
        let server = ScriptedServer::start(vec![
            (503, "Service Unavailable".to_string()),
            sts_success(),
            (
                400,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
            ),
            (
                500,
                "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"
                    .to_string(),
            ),
            ecr_success(),
        ]);
        let base = server.url.clone();
        let client = client(&base, &base);
        let credentials = client.registry_credentials(&target(), &token()).unwrap();
        assert_eq!(credentials.password.expose(), "ecr-password");
        let received = server.finish();
        assert_eq!(received.len(), 5);
        // Each ECR attempt is signed anew and carries the session token.
        assert!(received[2..]
            .iter()
            .all(|r| r.header("x-amz-security-token") == Some(SESSION_TOKEN)));
    }

    #[test]
    fn sts_access_denied_is_not_retried_and_tells_what_to_check() {
        // A proxy that echoes the request must not leak the token into the error.
        let echo = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
             <Message>Not authorized to perform sts:AssumeRoleWithWebIdentity (got WebIdentityToken={})</Message>\
             </Error></ErrorResponse>",
            sigv4::uri_encode(WEB_IDENTITY_TOKEN, true)
        );
        let server = ScriptedServer::start(vec![(403, echo), sts_success()]);
        let base = server.url.clone();
        let client = client(&base, &base);
        let error = client
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 1, "not retried");
        assert_eq!(error.step, "sts AssumeRoleWithWebIdentity");
        assert!(error.retry.is_permanent());
        let text = error.to_string();
        assert!(
            text.starts_with(
                "sts AssumeRoleWithWebIdentity: for arn:aws:iam::123456789012:role/pull: AccessDenied: \
                 Not authorized to perform sts:AssumeRoleWithWebIdentity (got WebIdentityToken=<redacted>); \
                 check the role's trust policy"
            ),
            "{text}"
        );
        assert_no_secrets(&text);
        assert_no_secrets(&format!("{error:?}"));
    }

    #[test]
    fn ecr_access_denied_is_not_retried_and_leaks_nothing() {
        let echo = format!(
            r#"{{"__type":"com.amazonaws.ecr#AccessDeniedException","message":"denied for {SESSION_TOKEN} {SECRET_KEY}"}}"#
        );
        let server = ScriptedServer::start(vec![sts_success(), (400, echo), ecr_success()]);
        let base = server.url.clone();
        let client = client(&base, &base);
        let error = client
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 2, "not retried");
        assert_eq!(error.step, "ecr GetAuthorizationToken");
        assert!(error.retry.is_permanent());
        let text = error.to_string();
        assert!(
            text.contains("for arn:aws:iam::123456789012:role/pull: AccessDeniedException: denied for <redacted> <redacted>; allow ecr:GetAuthorizationToken"),
            "{text}"
        );
        assert_no_secrets(&text);
        assert_no_secrets(&format!("{error:?}"));
    }

    #[test]
    fn moto_style_xml_error_from_ecr() {
        let moto = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Errors><Error>\
                    <Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message>\
                    </Error></Errors></ErrorResponse>";
        let server = ScriptedServer::start(vec![sts_success(), (403, moto.to_string())]);
        let base = server.url.clone();
        let error = client(&base, &base)
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 2);
        assert!(error.retry.is_permanent());
        assert!(
            error.message.contains("InvalidClientTokenId: The security token included in the request is invalid.; ECR did not accept"),
            "{error}"
        );
    }

    #[test]
    fn persistent_unavailability_gives_up_retryable() {
        let unavailable = || (503, "<html>down</html>".to_string());
        let server = ScriptedServer::start(vec![
            unavailable(),
            unavailable(),
            unavailable(),
            sts_success(),
        ]);
        let base = server.url.clone();
        let error = client(&base, &base)
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 3, "three attempts, no more");
        assert!(!error.retry.is_permanent());
        assert_eq!(
            error.to_string(),
            "sts AssumeRoleWithWebIdentity: for arn:aws:iam::123456789012:role/pull: HTTP 503: <html>down</html>"
        );
    }

    #[test]
    fn malformed_success_answers_quote_nothing() {
        let truncated = format!(
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
             <SecretAccessKey>{SECRET_KEY}</SecretAccessKey><SessionToken>{SESSION_TOKEN}</SessionToken>"
        );
        let server = ScriptedServer::start(vec![(200, truncated)]);
        let base = server.url.clone();
        let error = client(&base, &base)
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 1);
        assert!(error.retry.is_permanent());
        assert!(
            error
                .message
                .contains("unexpected answer from http://127.0.0.1:"),
            "{error}"
        );
        assert!(
            error
                .message
                .contains("the answer is not XML: unexpected end of document"),
            "{error}"
        );
        assert_no_secrets(&error.to_string());
    }

    #[test]
    fn unreachable_endpoint_is_retryable_and_names_the_role() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let error = client(&base, &base)
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert!(!error.retry.is_permanent(), "{error}");
        assert!(
            error.to_string().starts_with(&format!(
                "sts AssumeRoleWithWebIdentity: for {ROLE}: cannot reach {base}"
            )),
            "{error}"
        );
        assert_no_secrets(&error.to_string());
    }

    #[test]
    fn configuration_errors_are_permanent_and_make_no_call() {
        let cases = [
            (
                client("sts.example", "https://ecr.example"),
                target(),
                "sts AssumeRoleWithWebIdentity: for arn:aws:iam::123456789012:role/pull: endpoint \"sts.example\" must start with https://",
            ),
            (
                client("https://sts.example", "https://ecr.example"),
                AwsTarget {
                    role_arn: "arn:aws-cn:iam::123456789012:role/pull".to_string(),
                    ..target()
                },
                "is in partition aws-cn, but the registry is in aws (eu-west-1)",
            ),
            (
                client("https://sts.example", "https://ecr.example"),
                AwsTarget {
                    role_arn: "arn:aws:iam::123:role/pull".to_string(),
                    ..target()
                },
                "account ID \"123\" must be 12 digits",
            ),
        ];
        for (client, target, expected) in cases {
            let error = client.registry_credentials(&target, &token()).unwrap_err();
            assert!(error.retry.is_permanent());
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn an_already_expired_session_points_at_the_clock() {
        let session = TemporaryCredentials {
            credentials: Credentials {
                access_key_id: ACCESS_KEY_ID.to_string(),
                secret_access_key: Sensitive::new(SECRET_KEY),
                session_token: Some(Sensitive::new(SESSION_TOKEN)),
            },
            expires_at: "2030-01-01T00:15:00Z".parse().unwrap(),
        };
        let before: DateTime<Utc> = "2030-01-01T00:14:59Z".parse().unwrap();
        assert_eq!(check_session_unexpired(ROLE, &session, before), Ok(()));
        let after: DateTime<Utc> = "2030-01-01T00:15:00Z".parse().unwrap();
        let error = check_session_unexpired(ROLE, &session, after).unwrap_err();
        assert_eq!(
            error.to_string(),
            "sts AssumeRoleWithWebIdentity: for arn:aws:iam::123456789012:role/pull: STS returned a session \
             that expires at 2030-01-01T00:15:00Z, which is already past on this node (2030-01-01T00:15:00Z); \
             check the clock of the controller's node"
        );
        assert!(error.retry.is_permanent());
        assert_no_secrets(&format!("{error:?} {session:?}"));
    }

    #[test]
    fn a_signature_refused_for_clock_skew_is_made_again_with_aws_time_once() {
        let now = Utc::now();
        let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let expired = r#"{"__type":"InvalidSignatureException","message":"Signature expired: 20261130T042000Z is now earlier than 20261130T040000Z (20261130T040500Z - 5 min.)"}"#;
        let server = ScriptedServer::start(vec![
            Reply::from(sts_success()),
            Reply::new(400, expired).header("Date", &date),
            Reply::from(ecr_success()),
        ]);
        let base = server.url.clone();
        let ahead: Clock = Arc::new(|| Utc::now() + chrono::Duration::minutes(20));
        let client = client(&base, &base).with_clock(ahead);
        client.registry_credentials(&target(), &token()).unwrap();
        let received = server.finish();
        assert_eq!(received.len(), 3, "one extra ECR request");
        let signed_at = |r: &crate::cloud::scripted::Recorded| {
            chrono::NaiveDateTime::parse_from_str(r.header("x-amz-date").unwrap(), "%Y%m%dT%H%M%SZ")
                .unwrap()
                .and_utc()
        };
        assert!((signed_at(&received[1]) - now).num_minutes() >= 19);
        assert!((signed_at(&received[2]) - now).num_seconds().abs() < 60);

        // A refusal for another reason, or without a Date that shows skew, is final.
        let server = ScriptedServer::start(vec![
            Reply::from(sts_success()),
            Reply::new(400, expired).header("Date", &date),
            Reply::from(ecr_success()),
        ]);
        let base = server.url.clone();
        let error = self::client(&base, &base)
            .registry_credentials(&target(), &token())
            .unwrap_err();
        assert_eq!(server.finish().len(), 2);
        assert!(error.retry.is_permanent());
        assert!(
            error
                .message
                .contains("InvalidSignatureException: Signature expired"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_of_configuration_and_targets_is_safe() {
        let printed = format!("{:?} {:?} {:?}", AwsConfig::default(), target(), token());
        assert_no_secrets(&printed);
        assert!(
            printed.contains("session_duration_seconds: 900"),
            "{printed}"
        );
    }
}
