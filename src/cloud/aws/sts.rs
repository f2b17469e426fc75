//! STS `AssumeRoleWithWebIdentity`: the form-encoded request and the XML answer, as pure functions.
//!
//! The call is unsigned: the ServiceAccount token is the credential. The request body therefore holds a
//! secret and must never be logged or quoted; the answer holds three more (key, secret, session token).

use chrono::{DateTime, NaiveDateTime, Utc};

use super::xml;
use crate::cloud::sigv4::{self, Credentials};
use crate::cloud::Sensitive;

/// The form content type STS expects.
pub(crate) const CONTENT_TYPE: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// The STS API version this request format belongs to.
const VERSION: &str = "2011-06-15";

/// Temporary credentials for the role.
#[derive(Debug, Clone)]
pub(crate) struct TemporaryCredentials {
    pub credentials: Credentials,
    pub expires_at: DateTime<Utc>,
}

/// The form body. It contains the ServiceAccount token: never log it.
pub(crate) fn request_body(
    role_arn: &str,
    session_name: &str,
    web_identity_token: &Sensitive,
    duration_seconds: u32,
) -> Sensitive {
    let duration = duration_seconds.to_string();
    let fields = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", VERSION),
        ("RoleArn", role_arn),
        ("RoleSessionName", session_name),
        ("WebIdentityToken", web_identity_token.expose()),
        ("DurationSeconds", duration.as_str()),
    ];
    let body = fields
        .iter()
        .map(|(name, value)| format!("{name}={}", sigv4::uri_encode(value, true)))
        .collect::<Vec<_>>()
        .join("&");
    Sensitive::new(body)
}

/// Reads the credentials out of a successful answer. Errors never quote the answer: it holds secrets.
pub(crate) fn parse_response(body: &str) -> Result<TemporaryCredentials, String> {
    let root = xml::parse(body).map_err(|why| format!("the answer is not XML: {why}"))?;
    if root.name != "AssumeRoleWithWebIdentityResponse" {
        return Err(format!(
            "expected <AssumeRoleWithWebIdentityResponse>, got <{}>",
            root.name
        ));
    }
    let field = |name: &str| {
        root.text_at(&["AssumeRoleWithWebIdentityResult", "Credentials", name])
            .ok_or_else(|| format!("the answer has no Credentials/{name}"))
    };
    let access_key_id = field("AccessKeyId")?.to_string();
    let secret_access_key = Sensitive::new(field("SecretAccessKey")?);
    let session_token = Sensitive::new(field("SessionToken")?);
    let expires_at = parse_timestamp(field("Expiration")?)?;
    Ok(TemporaryCredentials {
        credentials: Credentials {
            access_key_id,
            secret_access_key,
            session_token: Some(session_token),
        },
        expires_at,
    })
}

/// RFC 3339 with or without fractional seconds; a missing offset is read as UTC (some stand-ins omit it).
pub(crate) fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc())
        })
        .map_err(|_| format!("Expiration \"{text}\" is not an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn response(credentials: &str) -> String {
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <AssumeRoleWithWebIdentityResult><Credentials>{credentials}</Credentials>\
             </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )
    }

    #[test]
    fn body_is_form_encoded() {
        let body = request_body(
            "arn:aws:iam::123456789012:role/path/pull",
            "default.puller",
            &Sensitive::new("eyJhbGciOi.x+y/z="),
            900,
        );
        assert_eq!(
            body.expose(),
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15\
             &RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2Fpull\
             &RoleSessionName=default.puller&WebIdentityToken=eyJhbGciOi.x%2By%2Fz%3D&DurationSeconds=900"
        );
        assert_eq!(format!("{body:?}"), "<redacted>");
    }

    /// Real STS: second precision, `Z`.
    #[test]
    fn reads_real_sts_answer() {
        let body = "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
            <AssumeRoleWithWebIdentityResult>\n\
            <SubjectFromWebIdentityToken>system:serviceaccount:default:puller</SubjectFromWebIdentityToken>\n\
            <Audience>sts.amazonaws.com</Audience>\n\
            <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/pull/default.puller</Arn>\
            <AssumedRoleId>AROA:default.puller</AssumedRoleId></AssumedRoleUser>\n\
            <Credentials>\n\
              <SessionToken>FwoGZXIvYXdzEXAMPLE</SessionToken>\n\
              <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>\n\
              <Expiration>2014-10-24T23:00:23Z</Expiration>\n\
              <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>\n\
            </Credentials>\n\
            <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.example</Provider>\n\
            </AssumeRoleWithWebIdentityResult>\n\
            <ResponseMetadata><RequestId>ad4156e9</RequestId></ResponseMetadata>\n\
            </AssumeRoleWithWebIdentityResponse>";
        let parsed = parse_response(body).unwrap();
        assert_eq!(parsed.credentials.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_eq!(
            parsed.credentials.secret_access_key.expose(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
        );
        assert_eq!(
            parsed
                .credentials
                .session_token
                .as_ref()
                .map(Sensitive::expose),
            Some("FwoGZXIvYXdzEXAMPLE")
        );
        assert_eq!(
            parsed.expires_at,
            Utc.with_ymd_and_hms(2014, 10, 24, 23, 0, 23).unwrap()
        );
        let printed = format!("{parsed:?}");
        assert!(
            !printed.contains("EXAMPLEKEY") && !printed.contains("FwoGZXIv"),
            "{printed}"
        );
    }

    /// moto: microseconds, values on their own lines.
    #[test]
    fn reads_moto_answer() {
        let body = response(
            "\n      <SessionToken>FQoGZXIvYXdzEBYaDHoZ</SessionToken>\n\
             <SecretAccessKey>aJ+Nh2/g5Z3yQdCuRqx</SecretAccessKey>\n\
             <Expiration>2024-05-01T12:34:56.123456Z</Expiration>\n\
             <AccessKeyId>ASIAQWERTYUIOPASDFGH</AccessKeyId>\n    ",
        );
        let parsed = parse_response(&body).unwrap();
        assert_eq!(parsed.credentials.access_key_id, "ASIAQWERTYUIOPASDFGH");
        assert_eq!(
            parsed.expires_at,
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 34, 56).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
    }

    #[test]
    fn escaped_lookalikes_are_not_credentials() {
        let body = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
            <Provider>&lt;Credentials&gt;&lt;SecretAccessKey&gt;fake&lt;/SecretAccessKey&gt;&lt;/Credentials&gt;</Provider>\
            <!-- <Credentials><SecretAccessKey>fake</SecretAccessKey></Credentials> -->\
            </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(
            parse_response(body).unwrap_err(),
            "the answer has no Credentials/AccessKeyId"
        );
    }

    #[test]
    fn cdata_values_are_read() {
        let body = response(
            "<AccessKeyId><![CDATA[ASIA1]]></AccessKeyId><SecretAccessKey><![CDATA[s<&>]]></SecretAccessKey>\
             <SessionToken>t&amp;t</SessionToken><Expiration>2024-05-01T12:34:56+02:00</Expiration>",
        );
        let parsed = parse_response(&body).unwrap();
        assert_eq!(parsed.credentials.secret_access_key.expose(), "s<&>");
        assert_eq!(
            parsed
                .credentials
                .session_token
                .as_ref()
                .map(Sensitive::expose),
            Some("t&t")
        );
        assert_eq!(
            parsed.expires_at,
            Utc.with_ymd_and_hms(2024, 5, 1, 10, 34, 56).unwrap()
        );
    }

    #[test]
    fn incomplete_answers_are_errors_that_quote_nothing_secret() {
        let complete = "<AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>SECRET-MARKER</SecretAccessKey>\
                        <SessionToken>TOKEN-MARKER</SessionToken><Expiration>2024-05-01T12:34:56Z</Expiration>";
        let cases = [
            (
                "not xml at all SECRET-MARKER".to_string(),
                "the answer is not XML: no root element",
            ),
            (
                "<Other/>".to_string(),
                "expected <AssumeRoleWithWebIdentityResponse>, got <Other>",
            ),
            (
                response(&complete.replace("<AccessKeyId>ASIA1</AccessKeyId>", "")),
                "no Credentials/AccessKeyId",
            ),
            (
                response(&complete.replace("SECRET-MARKER", "")),
                "no Credentials/SecretAccessKey",
            ),
            (
                response(&complete.replace("<SessionToken>TOKEN-MARKER</SessionToken>", "")),
                "no Credentials/SessionToken",
            ),
            (
                response(&complete.replace("2024-05-01T12:34:56Z", "tomorrow")),
                "Expiration \"tomorrow\" is not an RFC 3339 time",
            ),
        ];
        for (body, expected) in cases {
            let error = parse_response(&body).unwrap_err();
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("SECRET-MARKER") && !error.contains("TOKEN-MARKER"),
                "{error}"
            );
        }
    }

    #[test]
    fn timestamps() {
        let utc = |s: &str| parse_timestamp(s).unwrap();
        let base = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        assert_eq!(utc("2024-05-01T12:00:00Z"), base);
        assert_eq!(utc("2024-05-01T12:00:00.000Z"), base);
        assert_eq!(
            utc("2024-05-01T12:00:00.5Z"),
            base + chrono::Duration::milliseconds(500)
        );
        assert_eq!(
            utc("2024-05-01T12:00:00.123456789Z"),
            base + chrono::Duration::nanoseconds(123_456_789)
        );
        assert_eq!(
            utc("2024-05-01T12:00:00.250000"),
            base + chrono::Duration::milliseconds(250)
        );
        assert_eq!(utc("2024-05-01T14:00:00+02:00"), base);
        assert!(parse_timestamp("2024-05-01").is_err());
        assert!(parse_timestamp("").is_err());
    }
}
