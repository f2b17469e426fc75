//! Step 5: can these credentials pull the image? Speaks the registry's v2 protocol as a container runtime
//! does — `GET /v2/`, the `WWW-Authenticate` challenge, Basic or Bearer token authentication — and `HEAD`s
//! the manifest. No layer is downloaded.
//!
//! Image references and challenges are parsed by pure functions; [`pull_test`] does the I/O. The password
//! is only ever put into an `Authorization` header.

use base64::Engine as _;
use serde_json::Value;

use super::web::{Web, WebResponse};
use crate::cloud::RegistryCredentials;

/// What a runtime asks for when it resolves a tag: every manifest and index format in use.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// An image reference split as Docker splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    /// Host and optional port, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com`.
    pub registry: String,
    /// Repository path, e.g. `team/app`.
    pub repository: String,
    /// Tag or `sha256:...` digest.
    pub reference: String,
}

/// Parses `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`; without a host, Docker Hub.
pub(crate) fn parse_image(image: &str) -> Result<ImageRef, String> {
    let image = image.trim();
    if image.is_empty() || image.contains("://") || image.chars().any(char::is_whitespace) {
        return Err(format!(
            "{image:?} is not an image reference such as registry.example.com/team/app:1.0"
        ));
    }
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (name, digest.to_string()),
        None => {
            let last_slash = image.rfind('/').map_or(0, |i| i + 1);
            match image[last_slash..].rfind(':') {
                Some(i) => (
                    &image[..last_slash + i],
                    image[last_slash + i + 1..].to_string(),
                ),
                None => (image, "latest".to_string()),
            }
        }
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ if !name.contains('/') => ("docker.io".to_string(), format!("library/{name}")),
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if repository.is_empty() || reference.is_empty() {
        return Err(format!("{image:?} lacks a repository or a tag"));
    }
    Ok(ImageRef {
        registry,
        repository,
        reference,
    })
}

/// How the registry asks to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let mut realm = None;
            let mut service = None;
            for (key, value) in auth_params(params) {
                match key.to_ascii_lowercase().as_str() {
                    "realm" => realm = Some(value),
                    "service" => service = Some(value),
                    _ => {}
                }
            }
            Some(Challenge::Bearer {
                realm: realm?,
                service,
            })
        }
        _ => None,
    }
}

/// `key="value", key=value` pairs; commas inside quotes do not split.
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        pairs.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    pairs
}

/// What the registry said about the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PullOutcome {
    Pullable {
        digest: Option<String>,
        media_type: Option<String>,
    },
    /// 401: the registry does not accept these credentials.
    Refused(String),
    /// 403: accepted, but not allowed to pull this repository.
    Denied(String),
    /// 404: no such repository or tag.
    NotFound(String),
    /// Anything else, or the registry was not reached.
    Other(String),
}

/// Where a registry's v2 API is served: the host itself, except for Docker Hub, whose API lives elsewhere.
pub(crate) fn api_base(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" => "https://registry-1.docker.io".to_string(),
        host => format!("https://{host}"),
    }
}

/// Asks the registry whether `credentials` can pull `image`.
pub(crate) fn pull_test(
    web: &Web,
    image: &ImageRef,
    credentials: &RegistryCredentials,
) -> PullOutcome {
    let base = api_base(&image.registry);
    let ping = match web.call("GET", &format!("{base}/v2/"), &[]) {
        Ok(response) => response,
        Err(why) => return PullOutcome::Other(why),
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose()
        ))
    );
    let authorization = match ping.status {
        200 => basic,
        401 => match ping.header("www-authenticate").and_then(parse_challenge) {
            Some(Challenge::Basic) => basic,
            Some(Challenge::Bearer { realm, service }) => {
                match bearer_token(web, &realm, service.as_deref(), image, &basic) {
                    Ok(token) => format!("Bearer {token}"),
                    Err(outcome) => return outcome,
                }
            }
            None => {
                return PullOutcome::Other(format!(
                    "GET {base}/v2/ answered 401 without a usable WWW-Authenticate challenge"
                ))
            }
        },
        status => {
            return PullOutcome::Other(format!(
                "GET {base}/v2/ answered HTTP {status}; is {} a registry?",
                image.registry
            ))
        }
    };
    let url = format!(
        "{base}/v2/{}/manifests/{}",
        image.repository, image.reference
    );
    let headers = [
        ("Accept", MANIFEST_ACCEPT.to_string()),
        ("Authorization", authorization),
    ];
    let head = match web.call("HEAD", &url, &headers) {
        Ok(response) => response,
        Err(why) => return PullOutcome::Other(why),
    };
    if head.status == 200 {
        return PullOutcome::Pullable {
            digest: head.header("docker-content-digest").map(str::to_string),
            media_type: head.header("content-type").map(str::to_string),
        };
    }
    // HEAD answers have no body: ask again with GET for the registry's own words.
    let answer = web
        .call("GET", &url, &headers)
        .map(|r| registry_answer(&r))
        .unwrap_or_else(|_| format!("HTTP {}", head.status));
    match head.status {
        401 => PullOutcome::Refused(answer),
        403 => PullOutcome::Denied(answer),
        404 => PullOutcome::NotFound(answer),
        _ => PullOutcome::Other(answer),
    }
}

/// Gets a token from the realm with Basic credentials, as `docker login` does for token-auth registries.
fn bearer_token(
    web: &Web,
    realm: &str,
    service: Option<&str>,
    image: &ImageRef,
    basic: &str,
) -> Result<String, PullOutcome> {
    let mut url = format!(
        "{realm}{}scope={}",
        if realm.contains('?') { '&' } else { '?' },
        crate::percent::encode(&format!("repository:{}:pull", image.repository), b"")
    );
    if let Some(service) = service {
        url.push_str(&format!(
            "&service={}",
            crate::percent::encode(service, b"")
        ));
    }
    let response = web
        .call("GET", &url, &[("Authorization", basic.to_string())])
        .map_err(PullOutcome::Other)?;
    match response.status {
        200 => {}
        401 => {
            return Err(PullOutcome::Refused(format!(
                "token service {realm}: {}",
                registry_answer(&response)
            )))
        }
        403 => {
            return Err(PullOutcome::Denied(format!(
                "token service {realm}: {}",
                registry_answer(&response)
            )))
        }
        _ => {
            return Err(PullOutcome::Other(format!(
                "token service {realm}: {}",
                registry_answer(&response)
            )))
        }
    }
    let body: Value = serde_json::from_str(&response.body)
        .map_err(|_| PullOutcome::Other(format!("token service {realm} did not answer JSON")))?;
    body.get("token")
        .or_else(|| body.get("access_token"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| PullOutcome::Other(format!("token service {realm} answered no token")))
}

/// `HTTP 404 MANIFEST_UNKNOWN: manifest unknown`, from the registry's error body when it has one.
pub(crate) fn registry_answer(response: &WebResponse) -> String {
    let errors: Vec<String> = serde_json::from_str::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            format!("{}: {}", text("code"), text("message"))
        })
        .collect();
    if errors.is_empty() {
        let body: String = response.body.chars().take(200).collect();
        format!("HTTP {} {}", response.status, body.trim())
            .trim()
            .to_string()
    } else {
        format!("HTTP {} {}", response.status, errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(registry: &str, repository: &str, reference: &str) -> ImageRef {
        ImageRef {
            registry: registry.into(),
            repository: repository.into(),
            reference: reference.into(),
        }
    }

    #[test]
    fn image_references_split_as_docker_splits_them() {
        let cases = [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0",
                image(
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                    "team/app",
                    "1.0",
                ),
            ),
            (
                "localhost:5000/app",
                image("localhost:5000", "app", "latest"),
            ),
            (
                "127.0.0.1:5000/a/b@sha256:abc",
                image("127.0.0.1:5000", "a/b", "sha256:abc"),
            ),
            (
                "europe-docker.pkg.dev/p/r/img:v2",
                image("europe-docker.pkg.dev", "p/r/img", "v2"),
            ),
            ("busybox", image("docker.io", "library/busybox", "latest")),
            ("team/app:3", image("docker.io", "team/app", "3")),
        ];
        for (text, want) in cases {
            assert_eq!(parse_image(text).unwrap(), want, "{text}");
        }
        for bad in ["", "https://x/y", "a b", "reg.io/app:"] {
            assert!(parse_image(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_hub_is_served_elsewhere() {
        assert_eq!(api_base("docker.io"), "https://registry-1.docker.io");
        assert_eq!(api_base("127.0.0.1:5000"), "https://127.0.0.1:5000");
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge("Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a:pull,push\""),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=https://t.example/x"),
            Some(Challenge::Bearer {
                realm: "https://t.example/x".into(),
                service: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn registry_errors_are_quoted_by_code() {
        let response = WebResponse {
            status: 404,
            headers: vec![],
            body: r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#.into(),
        };
        assert_eq!(
            registry_answer(&response),
            "HTTP 404 MANIFEST_UNKNOWN: manifest unknown"
        );
        let response = WebResponse {
            status: 502,
            headers: vec![],
            body: String::new(),
        };
        assert_eq!(registry_answer(&response), "HTTP 502");
    }
}
