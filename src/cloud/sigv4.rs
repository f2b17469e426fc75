//! AWS Signature Version 4 (Authorization header form) as pure functions: no clock, no I/O, no SDK.
//!
//! The controller signs exactly one kind of call (ECR `GetAuthorizationToken`), so a full AWS SDK would be
//! dead weight. What must stay true: every step of the algorithm is a separate function whose output can be
//! compared with AWS's own signing test suite (`tests/it/sigv4.rs` walks all of its header-signing cases),
//! and nothing here prints a secret key or session token — [`Credentials`] keeps them in [`Sensitive`], and
//! [`Signed`] and [`Request`] have hand-written `Debug` impls that show names, never values.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Sensitive;

/// The algorithm name that opens the string to sign and the `Authorization` header.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers the signer writes itself; copies supplied by the caller are dropped so they cannot disagree.
const SIGNER_OWNED_HEADERS: [&str; 4] = [
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// The key pair (and, for temporary credentials, the session token) that signs a request.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Sensitive,
    pub session_token: Option<Sensitive>,
}

/// The parts of an HTTP request that the signature covers.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method, upper case (`GET`, `POST`).
    pub method: &'a str,
    /// The `Host` header as it goes on the wire: host, plus `:port` when the port is not the scheme's default.
    pub host: &'a str,
    /// The path as it goes on the wire (already percent-encoded where needed).
    pub path: &'a str,
    /// Query parameters, decoded; the signer encodes them.
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign besides `host` and the ones the signer adds. Repeated names are allowed.
    pub headers: &'a [(&'a str, &'a str)],
    /// The exact body bytes that will be sent.
    pub body: &'a [u8],
}

impl fmt::Debug for Request<'_> {
    // Header values and the body may carry secrets (a form-encoded token, say): show their shape only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("query_parameters", &self.query.len())
            .field("header_names", &header_names)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Variations of the algorithm that differ between services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Remove `.` and `..` segments and collapse empty segments (`//`) before signing. Every service but S3.
    pub normalize_path: bool,
    /// Percent-encode the already encoded path once more (`%` becomes `%25`). Every service but S3.
    pub double_encode_path: bool,
    /// Add and sign `x-amz-content-sha256` with the payload hash. S3 needs it; other services ignore it.
    pub content_sha256_header: bool,
    /// Sign `x-amz-security-token`. A few services expect it sent but left out of the signature.
    pub sign_session_token: bool,
}

impl Default for Settings {
    /// What ECR, STS and almost every other non-S3 service expect.
    fn default() -> Self {
        Settings {
            normalize_path: true,
            double_encode_path: true,
            content_sha256_header: false,
            sign_session_token: true,
        }
    }
}

/// Who signs, for which region and service, at what time.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub service: &'a str,
    pub time: DateTime<Utc>,
    pub settings: Settings,
}

/// The canonical form of a request (step 1 of the algorithm).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CanonicalRequest {
    /// The full text that is hashed into the string to sign. Holds the session token when it is signed.
    pub text: String,
    /// Lower-case names of the signed headers, sorted, joined with `;`.
    pub signed_headers: String,
}

impl fmt::Debug for CanonicalRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalRequest")
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

/// The result of signing: the headers to add to the request, and the intermediate values for tests.
pub struct Signed {
    canonical_request: CanonicalRequest,
    string_to_sign: String,
    signature: String,
    headers: Vec<(&'static str, String)>,
}

impl Signed {
    /// The headers to send in addition to the request's own: `X-Amz-Date`, `Authorization`, and
    /// `X-Amz-Security-Token` / `X-Amz-Content-Sha256` when they apply.
    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }

    /// Intermediate value (step 1). Contains the session token when it is signed: never log it.
    pub fn canonical_request(&self) -> &str {
        &self.canonical_request.text
    }

    /// Intermediate value (step 2).
    pub fn string_to_sign(&self) -> &str {
        &self.string_to_sign
    }

    /// The hex signature (step 3).
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The `Authorization` header value (step 4).
    pub fn authorization(&self) -> &str {
        self.header("Authorization").unwrap_or_default()
    }

    /// The value of one of the added headers, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Signed {
    // The header values include the session token and the signature: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Signed")
            .field("signed_headers", &self.canonical_request.signed_headers)
            .field("added_headers", &names)
            .finish_non_exhaustive()
    }
}

/// Signs `request`: all four steps of the algorithm.
pub fn sign(request: &Request<'_>, params: &Params<'_>) -> Signed {
    let canonical = canonical_request(request, params);
    let string_to_sign =
        string_to_sign(params.time, params.region, params.service, &canonical.text);
    let key = signing_key(
        &params.credentials.secret_access_key,
        params.time,
        params.region,
        params.service,
    );
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = authorization_header(
        &params.credentials.access_key_id,
        &credential_scope(params.time, params.region, params.service),
        &canonical.signed_headers,
        &signature,
    );

    let mut headers = vec![
        ("X-Amz-Date", amz_date(params.time)),
        ("Authorization", authorization),
    ];
    if let Some(token) = &params.credentials.session_token {
        headers.push(("X-Amz-Security-Token", token.expose().to_string()));
    }
    if params.settings.content_sha256_header {
        headers.push(("X-Amz-Content-Sha256", payload_hash(request.body)));
    }
    Signed {
        canonical_request: canonical,
        string_to_sign,
        signature,
        headers,
    }
}

/// Step 1: the canonical request — method, URI, query, headers, signed header names, payload hash.
pub(crate) fn canonical_request(request: &Request<'_>, params: &Params<'_>) -> CanonicalRequest {
    let headers = headers_to_sign(request, params);
    let (canonical_headers, signed_headers) = canonical_headers(&headers);
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path, params.settings),
        canonical_query(request.query),
        canonical_headers,
        signed_headers,
        payload_hash(request.body),
    );
    CanonicalRequest {
        text,
        signed_headers,
    }
}

/// The caller's headers without the signer-owned ones, plus `host`, `x-amz-date` and the optional ones.
fn headers_to_sign<'a>(request: &Request<'a>, params: &Params<'a>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            name != "host" && !SIGNER_OWNED_HEADERS.contains(&name.as_str())
        })
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    headers.push(("host".to_string(), request.host.to_string()));
    headers.push(("x-amz-date".to_string(), amz_date(params.time)));
    if let Some(token) = &params.credentials.session_token {
        if params.settings.sign_session_token {
            headers.push((
                "x-amz-security-token".to_string(),
                token.expose().to_string(),
            ));
        }
    }
    if params.settings.content_sha256_header {
        headers.push((
            "x-amz-content-sha256".to_string(),
            payload_hash(request.body),
        ));
    }
    headers
}

/// The canonical URI: the path, normalised and encoded as `settings` say; `/` when empty.
pub(crate) fn canonical_uri(path: &str, settings: Settings) -> String {
    let path = if settings.normalize_path {
        normalize_path(path)
    } else if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    };
    if settings.double_encode_path {
        uri_encode(&path, false)
    } else {
        path
    }
}

/// Removes `.` and `..` segments (RFC 3986 section 5.2.4) and empty segments, keeping a trailing slash.
pub(crate) fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    // A path that ends in a directory (`/a/`, `/a/.`, `/a/b/..`) still names a directory afterwards.
    let ends_in_directory = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    let mut normalized = format!("/{}", segments.join("/"));
    if ends_in_directory && !segments.is_empty() {
        normalized.push('/');
    }
    normalized
}

/// The canonical query string: each key and value encoded, sorted by encoded key then encoded value.
pub(crate) fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(key, value)| (uri_encode(key, true), uri_encode(value, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical headers block (one `name:value\n` per name) and the signed header list.
///
/// Names are lower-cased and sorted; values trimmed with inner whitespace runs folded to one space
/// (which also unfolds obsolete multi-line values); repeated names are joined with `,` in their original order.
pub(crate) fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = fold_whitespace(value);
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    grouped.sort_by(|a, b| a.0.cmp(&b.0));
    let block: String = grouped
        .iter()
        .map(|(name, values)| format!("{name}:{}\n", values.join(",")))
        .collect();
    let signed = grouped
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

fn fold_whitespace(value: &str) -> String {
    value.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hex SHA-256 of the body, the last line of the canonical request.
pub(crate) fn payload_hash(body: &[u8]) -> String {
    hex(&Sha256::digest(body))
}

/// Step 2: the string to sign.
pub(crate) fn string_to_sign(
    time: DateTime<Utc>,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        amz_date(time),
        credential_scope(time, region, service),
        hex(&Sha256::digest(canonical_request.as_bytes())),
    )
}

/// `DATE/REGION/SERVICE/aws4_request`: what the signature is valid for.
pub(crate) fn credential_scope(time: DateTime<Utc>, region: &str, service: &str) -> String {
    format!("{}/{region}/{service}/aws4_request", date_stamp(time))
}

/// Step 3a: the signing key, derived from the secret through the date, region and service.
pub(crate) fn signing_key(
    secret_access_key: &Sensitive,
    time: DateTime<Utc>,
    region: &str,
    service: &str,
) -> [u8; 32] {
    let secret = format!("AWS4{}", secret_access_key.expose());
    let date_key = hmac_sha256(secret.as_bytes(), date_stamp(time).as_bytes());
    let region_key = hmac_sha256(&date_key, region.as_bytes());
    let service_key = hmac_sha256(&region_key, service.as_bytes());
    hmac_sha256(&service_key, b"aws4_request")
}

/// Step 4: the `Authorization` header value.
pub(crate) fn authorization_header(
    access_key_id: &str,
    credential_scope: &str,
    signed_headers: &str,
    signature: &str,
) -> String {
    format!(
        "{ALGORITHM} Credential={access_key_id}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
}

/// The `X-Amz-Date` value: basic ISO 8601, UTC, second precision.
pub(crate) fn amz_date(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

fn date_stamp(time: DateTime<Utc>) -> String {
    time.format("%Y%m%d").to_string()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters (and `/` unless `encode_slash`), as
/// SigV4's canonical request wants it.
pub fn uri_encode(value: &str, encode_slash: bool) -> String {
    crate::percent::encode(value, if encode_slash { b"" } else { b"/" })
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn example_credentials(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "AKIDEXAMPLE".to_string(),
            secret_access_key: Sensitive::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            session_token: token.map(Sensitive::new),
        }
    }

    fn example_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 8, 30, 12, 36, 0).unwrap()
    }

    /// The ECR vector from the shared test data: a JSON 1.1 POST with a session token.
    #[test]
    fn ecr_get_authorization_token_reference_vector() {
        let credentials = example_credentials(Some("tok"));
        let request = Request {
            method: "POST",
            host: "api.ecr.us-east-1.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[
                ("Content-Type", "application/x-amz-json-1.1"),
                (
                    "X-Amz-Target",
                    "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
                ),
            ],
            body: b"{}",
        };
        let params = Params {
            credentials: &credentials,
            region: "us-east-1",
            service: "ecr",
            time: example_time(),
            settings: Settings::default(),
        };
        let signed = sign(&request, &params);
        assert_eq!(
            signed.canonical_request(),
            "POST\n/\n\n\
             content-type:application/x-amz-json-1.1\n\
             host:api.ecr.us-east-1.amazonaws.com\n\
             x-amz-date:20150830T123600Z\n\
             x-amz-security-token:tok\n\
             x-amz-target:AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken\n\n\
             content-type;host;x-amz-date;x-amz-security-token;x-amz-target\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(
            signed.string_to_sign(),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/ecr/aws4_request\n\
             7a382ad245a43b9516a3dde52f885384349fa3f4240a7e1fcd97f833b9baffa5"
        );
        assert_eq!(
            signed.authorization(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=cc2d0e6bf6051246ec0c52816227f8468aec62139261ed97d39694da8ac26474"
        );
        assert_eq!(signed.header("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(signed.header("X-Amz-Security-Token"), Some("tok"));
        assert_eq!(signed.header("x-amz-content-sha256"), None);
    }

    #[test]
    fn normalize_path_table() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/./", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/b/..", "/a/"),
            ("/../a", "/a"),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/foo%2F.%2Fbar", "/foo%2F.%2Fbar"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_path(input), expected, "normalize_path({input:?})");
        }
    }

    #[test]
    fn canonical_uri_encodes_per_settings() {
        let double = Settings::default();
        let single = Settings {
            normalize_path: false,
            double_encode_path: false,
            ..Settings::default()
        };
        let cases = [
            ("/example space/", double, "/example%20space/"),
            ("/ሴ", double, "/%E1%88%B4"),
            ("/a%3Db", double, "/a%253Db"),
            ("/@x/", double, "/%40x/"),
            ("/-._~AZaz09", double, "/-._~AZaz09"),
            ("/a%3Db/./", single, "/a%3Db/./"),
            ("", single, "/"),
        ];
        for (path, settings, expected) in cases {
            assert_eq!(canonical_uri(path, settings), expected, "{path:?}");
        }
    }

    #[test]
    fn canonical_query_sorts_encoded_pairs() {
        assert_eq!(canonical_query(&[]), "");
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "z"), ("a", "y"), ("c d", "e/f+g")]),
            "a=y&a=z&b=2&c%20d=e%2Ff%2Bg"
        );
        // Sorting happens on the encoded form: `%` sorts before letters.
        assert_eq!(
            canonical_query(&[("Param", "1"), ("ሴ", "2")]),
            "%E1%88%B4=2&Param=1"
        );
        assert_eq!(canonical_query(&[("flag", "")]), "flag=");
    }

    #[test]
    fn canonical_headers_lowercase_fold_sort_and_join() {
        let headers: Vec<(String, String)> = [
            ("My-Header1", "  a   b\t c  "),
            ("X-B", "2"),
            ("my-header1", "second"),
            ("A", "x\n   continued"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let (block, signed) = canonical_headers(&headers);
        assert_eq!(block, "a:x continued\nmy-header1:a b c,second\nx-b:2\n");
        assert_eq!(signed, "a;my-header1;x-b");
    }

    #[test]
    fn caller_cannot_override_signer_owned_headers() {
        let credentials = example_credentials(None);
        let request = Request {
            method: "GET",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[
                ("X-Amz-Date", "19990101T000000Z"),
                ("Authorization", "forged"),
                ("Host", "evil.example"),
            ],
            body: b"",
        };
        let params = Params {
            credentials: &credentials,
            region: "us-east-1",
            service: "service",
            time: example_time(),
            settings: Settings::default(),
        };
        let canonical = canonical_request(&request, &params);
        assert_eq!(canonical.signed_headers, "host;x-amz-date");
        assert!(canonical.text.contains("host:example.amazonaws.com\n"));
        assert!(canonical.text.contains("x-amz-date:20150830T123600Z\n"));
        assert!(!canonical.text.contains("forged"));
    }

    #[test]
    fn session_token_can_be_sent_unsigned() {
        let credentials = example_credentials(Some("token-value"));
        let request = Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[],
            body: b"",
        };
        let settings = Settings {
            sign_session_token: false,
            ..Settings::default()
        };
        let params = Params {
            credentials: &credentials,
            region: "us-east-1",
            service: "service",
            time: example_time(),
            settings,
        };
        let signed = sign(&request, &params);
        assert!(!signed.canonical_request().contains("token-value"));
        assert_eq!(signed.header("X-Amz-Security-Token"), Some("token-value"));
    }

    #[test]
    fn content_sha256_header_is_signed_and_added() {
        let credentials = example_credentials(None);
        let request = Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/",
            query: &[],
            headers: &[],
            body: b"Param1=value1",
        };
        let settings = Settings {
            content_sha256_header: true,
            ..Settings::default()
        };
        let params = Params {
            credentials: &credentials,
            region: "us-east-1",
            service: "service",
            time: example_time(),
            settings,
        };
        let signed = sign(&request, &params);
        let hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        assert_eq!(signed.header("x-amz-content-sha256"), Some(hash));
        assert!(signed
            .canonical_request()
            .contains(&format!("x-amz-content-sha256:{hash}\n")));
    }

    #[test]
    fn signing_key_matches_aws_documentation_example() {
        // From AWS's "Examples of how to derive a signing key" (iam, us-east-1, 20120215).
        let time = Utc.with_ymd_and_hms(2012, 2, 15, 0, 0, 0).unwrap();
        let key = signing_key(
            &Sensitive::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
            time,
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".to_string(),
            secret_access_key: Sensitive::new("SECRET-KEY-MARKER"),
            session_token: Some(Sensitive::new("SESSION-TOKEN-MARKER")),
        };
        let request = Request {
            method: "POST",
            host: "example.amazonaws.com",
            path: "/",
            query: &[("q", "QUERY-MARKER")],
            headers: &[("X-Custom", "HEADER-MARKER")],
            body: b"BODY-MARKER",
        };
        let params = Params {
            credentials: &credentials,
            region: "us-east-1",
            service: "service",
            time: example_time(),
            settings: Settings::default(),
        };
        let signed = sign(&request, &params);
        let printed = format!(
            "{credentials:?} {request:?} {params:?} {signed:?} {:?}",
            canonical_request(&request, &params)
        );
        for marker in [
            "SECRET-KEY-MARKER",
            "SESSION-TOKEN-MARKER",
            "QUERY-MARKER",
            "HEADER-MARKER",
            "BODY-MARKER",
            signed.signature(),
        ] {
            assert!(!printed.contains(marker), "{marker} leaked: {printed}");
        }
    }
}
