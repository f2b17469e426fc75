//! The plain HTTPS client `check` uses where the controller has no call of its own: the issuer's OIDC
//! discovery and the registry's v2 API. It trusts what provider calls trust (public roots plus
//! `--provider-ca-bundle`) and goes through the same proxy settings, because it stands in for the cloud and
//! for the kubelet reaching those URLs. Nothing here logs a header or a body.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::transport;

/// Answers larger than this are cut off: discovery documents, JWKS and manifests are far smaller.
const MAX_BODY_BYTES: u64 = 4 << 20;

/// A response: status, the headers `check` reads, and the body.
#[derive(Debug, Clone)]
pub(crate) struct WebResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl WebResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking client with one timeout per call.
pub(crate) struct Web {
    agent: ureq::Agent,
}

/// Headers kept from a response; the rest (cookies above all) are never held.
const KEPT_HEADERS: &[&str] = &[
    "www-authenticate",
    "content-type",
    "docker-content-digest",
    "docker-distribution-api-version",
    "location",
];

impl Web {
    pub(crate) fn new(extra_ca_bundle: Option<&Path>, timeout: Duration) -> Result<Web, String> {
        let mut roots = transport::public_roots();
        if let Some(path) = extra_ca_bundle {
            roots.extend(transport::certificates_from_file(path)?);
        }
        let config = transport::agent_config(&roots, None)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .build();
        Ok(Web {
            agent: transport::agent(config),
        })
    }

    /// Sends `method` to `url` with `headers`; any status is an answer, only transport failures are errors.
    pub(crate) fn call(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<WebResponse, String> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let request = builder
            .body(())
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let response = self
            .agent
            .run(request)
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut body = String::new();
        if method != "HEAD" {
            response
                .into_body()
                .into_reader()
                .take(MAX_BODY_BYTES)
                .read_to_string(&mut body)
                .map_err(|e| format!("reading the answer of {url}: {e}"))?;
        }
        Ok(WebResponse {
            status,
            headers,
            body,
        })
    }
}
