//! AWS error answers: the code and message from either error shape, whether trying again may help, and
//! what the operator should check.
//!
//! What must stay true: an error message names the role and quotes at most [`redact::MAX_QUOTE`] characters of what
//! AWS said, on one line, with every secret of the exchange replaced by `<redacted>` — even if a proxy or a
//! misbehaving server echoes the request back.

use crate::cloud::http::HttpResponse;
use crate::cloud::redact;
use crate::cloud::CloudError;
use crate::retry::Retry;

use super::xml;

/// The two AWS calls of an exchange; each has its own advice for the same error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    AssumeRoleWithWebIdentity,
    GetAuthorizationToken,
}

impl Call {
    /// The step name in [`CloudError`].
    pub(crate) fn step(self) -> &'static str {
        match self {
            Call::AssumeRoleWithWebIdentity => "sts AssumeRoleWithWebIdentity",
            Call::GetAuthorizationToken => "ecr GetAuthorizationToken",
        }
    }
}

/// The code and message of an AWS error answer, as far as they could be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RemoteError {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Reads an error body: JSON (`{"__type": "...#Code", "message": "..."}`) or XML (`<ErrorResponse><Error>`
/// from AWS query APIs, `<Response><Errors><Error>` from EC2-style APIs and moto).
pub(crate) fn parse_error_body(body: &str) -> RemoteError {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        parse_json_error(trimmed)
    } else if trimmed.starts_with('<') {
        parse_xml_error(trimmed)
    } else {
        RemoteError::default()
    }
}

fn parse_json_error(body: &str) -> RemoteError {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(body)
    else {
        return RemoteError::default();
    };
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| object.get(*name).and_then(|v| v.as_str()))
            .map(str::to_string)
    };
    RemoteError {
        code: field(&["__type", "code", "Code"]).map(|code| normalize_code(&code)),
        message: field(&["message", "Message", "errorMessage"]),
    }
}

fn parse_xml_error(body: &str) -> RemoteError {
    let Ok(root) = xml::parse(body) else {
        return RemoteError::default();
    };
    let Some(error) = root.find(&|e| e.name == "Error" && e.child("Code").is_some()) else {
        return RemoteError::default();
    };
    RemoteError {
        code: error.text_at(&["Code"]).map(normalize_code),
        message: error.text_at(&["Message"]).map(str::to_string),
    }
}

/// `com.amazonaws.ecr#AccessDeniedException` and `AccessDeniedException:http://…` become
/// `AccessDeniedException`, as AWS SDKs read them.
pub(crate) fn normalize_code(code: &str) -> String {
    let code = code.rsplit_once('#').map_or(code, |(_, c)| c);
    let code = code.split_once(':').map_or(code, |(c, _)| c);
    code.trim().to_string()
}

/// Codes that mean "too many requests right now".
const THROTTLING_CODES: [&str; 12] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Codes that mean "something on AWS's side failed; it may work in a moment".
const TRANSIENT_CODES: [&str; 11] = [
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServerException",
    // STS could not reach the cluster's OIDC discovery endpoint.
    "IDPCommunicationError",
];

/// Whether the same call may succeed if simply tried again: throttling, timeouts and server-side failures.
/// Everything else (bad token, missing permission, bad signature) needs a person and is not retried here.
pub(crate) fn is_retryable(status: u16, code: Option<&str>) -> bool {
    let code_says =
        code.is_some_and(|c| THROTTLING_CODES.contains(&c) || TRANSIENT_CODES.contains(&c));
    code_says || status == 408 || status == 429 || status >= 500
}

/// What the operator should check for a non-retryable error, where we know.
pub(crate) fn hint(call: Call, code: &str) -> Option<&'static str> {
    const CLOCK: &str =
        "check the clock of the controller's node: signatures and session tokens are only \
                         valid for a few minutes around the time they were made";
    match (call, code) {
        (Call::AssumeRoleWithWebIdentity, "AccessDenied" | "IDPRejectedClaim") => Some(
            "check the role's trust policy: it must allow sts:AssumeRoleWithWebIdentity for the cluster's OIDC \
             provider, with aud equal to the audience annotation and sub equal to \
             system:serviceaccount:NAMESPACE:NAME of this ServiceAccount",
        ),
        (Call::AssumeRoleWithWebIdentity, "InvalidIdentityToken") => Some(
            "check that the cluster's service account issuer is registered as an IAM OIDC identity provider, \
             that AWS can fetch its discovery document and keys, and that the provider's audiences include the \
             audience annotation",
        ),
        (Call::AssumeRoleWithWebIdentity, "ExpiredToken" | "ExpiredTokenException") => Some(
            "the ServiceAccount token had expired when STS checked it; check the clocks of the controller's node \
             and of the API server",
        ),
        (Call::AssumeRoleWithWebIdentity, "RegionDisabledException") => Some(
            "STS is not activated in this region for the role's account: activate it in the IAM account \
             settings, or point the STS endpoint at an active region",
        ),
        (Call::AssumeRoleWithWebIdentity, "ValidationError") => Some(
            "check the role ARN and that the STS session duration is within the role's maximum session duration",
        ),
        (Call::GetAuthorizationToken, "AccessDeniedException" | "AccessDenied") => Some(
            "allow ecr:GetAuthorizationToken for the role, for example with the \
             AmazonEC2ContainerRegistryReadOnly managed policy",
        ),
        (
            Call::GetAuthorizationToken,
            "UnrecognizedClientException" | "InvalidClientTokenId",
        ) => Some(
            "ECR did not accept the temporary credentials from STS; check that the STS and ECR endpoints are in \
             the registry's partition and that STS is activated in its region",
        ),
        (
            _,
            "SignatureDoesNotMatch" | "InvalidSignatureException" | "IncompleteSignature" | "IncompleteSignatureException",
        ) => Some(
            "check the clock of the controller's node, and that no proxy changes the request on its way to AWS",
        ),
        (
            _,
            "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "RequestTimeTooSkewed",
        ) => Some(CLOCK),
        _ => None,
    }
}

/// Turns a non-success answer into the error for `call`, naming `role_arn`.
///
/// `secrets` are the values of this exchange that must never appear in an error (token, keys, signature);
/// they are replaced wherever a remote message or body happens to contain them.
pub(crate) fn from_response(
    call: Call,
    role_arn: &str,
    response: &HttpResponse,
    secrets: &[&str],
) -> CloudError {
    let remote = parse_error_body(&response.body);
    let retryable = is_retryable(response.status, remote.code.as_deref());
    let mut message = format!("for {role_arn}: ");
    match (&remote.code, &remote.message) {
        (Some(code), Some(text)) => {
            message.push_str(&format!("{code}: {}", quote(text, secrets)));
        }
        (Some(code), None) => message.push_str(&format!("{code} (HTTP {})", response.status)),
        (None, _) => message.push_str(&format!(
            "HTTP {}: {}",
            response.status,
            quote(&response.body, secrets)
        )),
    }
    if let Some(hint) = remote
        .code
        .as_deref()
        .filter(|_| !retryable)
        .and_then(|code| hint(call, code))
    {
        message.push_str("; ");
        message.push_str(hint);
    }
    CloudError {
        step: call.step(),
        message,
        retry: Retry::from_answer(retryable, response.retry_after),
    }
}

/// Remote text made safe to put in an error (see [`redact::quote`]); an empty body says so.
pub(crate) fn quote(text: &str, secrets: &[&str]) -> String {
    let quoted = redact::quote(text, secrets);
    if quoted.is_empty() {
        "(empty body)".to_string()
    } else {
        quoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::redact::MAX_QUOTE;

    #[test]
    fn reads_every_error_shape() {
        let cases = [
            (
                r#"{"__type":"AccessDeniedException","message":"User is not authorized"}"#,
                Some("AccessDeniedException"),
                Some("User is not authorized"),
            ),
            (
                r#"{"__type":"com.amazonaws.ecr#ThrottlingException","Message":"Rate exceeded"}"#,
                Some("ThrottlingException"),
                Some("Rate exceeded"),
            ),
            (
                r#"{"__type":"UnrecognizedClientException:http://internal.amazon.com/coral/","message":"bad token"}"#,
                Some("UnrecognizedClientException"),
                Some("bad token"),
            ),
            (
                r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found</Message></Error><RequestId>x</RequestId></ErrorResponse>"#,
                Some("InvalidIdentityToken"),
                Some("No OpenIDConnect provider found"),
            ),
            (
                "<?xml version=\"1.0\"?>\n<Response><Errors><Error><Code>AccessDenied</Code><Message>denied</Message></Error></Errors><RequestID>y</RequestID></Response>",
                Some("AccessDenied"),
                Some("denied"),
            ),
            ("<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>", Some("Throttling"), None),
            ("<html><body>Bad Gateway</body></html>", None, None),
            ("<html><body>unclosed", None, None),
            ("Service Unavailable", None, None),
            ("", None, None),
            ("{not json", None, None),
            ("[1,2]", None, None),
        ];
        for (body, code, message) in cases {
            let remote = parse_error_body(body);
            assert_eq!(remote.code.as_deref(), code, "{body}");
            assert_eq!(remote.message.as_deref(), message, "{body}");
        }
    }

    #[test]
    fn classification() {
        let cases = [
            (400, Some("Throttling"), true),
            (400, Some("ThrottlingException"), true),
            (400, Some("TooManyRequestsException"), true),
            (503, Some("RequestLimitExceeded"), true),
            (400, Some("IDPCommunicationError"), true),
            (429, None, true),
            (503, None, true),
            (500, Some("InternalFailure"), true),
            (502, None, true),
            (408, None, true),
            (400, Some("InvalidIdentityToken"), false),
            (403, Some("AccessDenied"), false),
            (400, Some("AccessDeniedException"), false),
            (400, Some("ExpiredToken"), false),
            (400, Some("IDPRejectedClaim"), false),
            (403, Some("InvalidClientTokenId"), false),
            (403, Some("SignatureDoesNotMatch"), false),
            (400, Some("ValidationError"), false),
            (404, None, false),
            (400, None, false),
        ];
        for (status, code, retryable) in cases {
            assert_eq!(is_retryable(status, code), retryable, "{status} {code:?}");
        }
    }

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            body: body.to_string(),
            ..Default::default()
        }
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/pull";

    #[test]
    fn messages_name_the_role_quote_aws_and_advise() {
        let sts = Call::AssumeRoleWithWebIdentity;
        let ecr = Call::GetAuthorizationToken;
        let cases = [
            (
                sts,
                response(403, "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>"),
                "sts AssumeRoleWithWebIdentity: for arn:aws:iam::123456789012:role/pull: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity; check the role's trust policy",
                false,
            ),
            (
                sts,
                response(400, "<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found in your account for https://oidc.example</Message></Error></ErrorResponse>"),
                "InvalidIdentityToken: No OpenIDConnect provider found in your account for https://oidc.example; check that the cluster's service account issuer is registered",
                false,
            ),
            (
                sts,
                response(400, "<ErrorResponse><Error><Code>ExpiredTokenException</Code><Message>Token expired: current date/time 1 must be before the expiration date/time 0</Message></Error></ErrorResponse>"),
                "the ServiceAccount token had expired when STS checked it",
                false,
            ),
            (
                ecr,
                response(400, r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/pull/default.puller is not authorized to perform: ecr:GetAuthorizationToken"}"#),
                "ecr GetAuthorizationToken: for arn:aws:iam::123456789012:role/pull: AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/pull/default.puller is not authorized to perform: ecr:GetAuthorizationToken; allow ecr:GetAuthorizationToken for the role",
                false,
            ),
            (
                ecr,
                response(403, r#"{"__type":"InvalidSignatureException","message":"Signature expired"}"#),
                "InvalidSignatureException: Signature expired; check the clock of the controller's node",
                false,
            ),
            (
                ecr,
                response(400, r#"{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}"#),
                "ExpiredTokenException: The security token included in the request is expired; check the clock",
                false,
            ),
            (
                ecr,
                response(400, r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#),
                "for arn:aws:iam::123456789012:role/pull: ThrottlingException: Rate exceeded",
                true,
            ),
            (
                ecr,
                response(503, "<html>\n<body>Service\tUnavailable</body>\n</html>"),
                "for arn:aws:iam::123456789012:role/pull: HTTP 503: <html> <body>Service Unavailable</body> </html>",
                true,
            ),
            (sts, response(500, ""), "HTTP 500: (empty body)", true),
            (
                sts,
                response(400, "<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>"),
                "for arn:aws:iam::123456789012:role/pull: Throttling (HTTP 400)",
                true,
            ),
        ];
        for (call, response, expected, retryable) in cases {
            let error = from_response(call, ROLE, &response, &[]);
            let text = error.to_string();
            assert!(text.contains(expected), "{text}");
            assert_eq!(!error.retry.is_permanent(), retryable, "{text}");
            assert_eq!(error.step, call.step());
            if retryable {
                assert!(
                    !text.contains("; check") && !text.contains("; allow"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn quotes_are_redacted_single_line_and_capped() {
        let secret = "WEB-IDENTITY-TOKEN-SECRET";
        let echoed = format!("Action=AssumeRoleWithWebIdentity&WebIdentityToken={secret}\r\nmore");
        let quoted = quote(&echoed, &[secret]);
        assert_eq!(
            quoted,
            "Action=AssumeRoleWithWebIdentity&WebIdentityToken=<redacted> more"
        );

        let long = "é".repeat(1000);
        let quoted = quote(&long, &[]);
        assert_eq!(quoted.chars().count(), MAX_QUOTE + 1);
        assert!(quoted.ends_with('…'));

        assert_eq!(quote(" \r\n", &[""]), "(empty body)");
    }
}
