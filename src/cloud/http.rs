//! The HTTPS client every provider call goes through: timeouts, proxy, trusted roots, body caps and retries.
//!
//! Provider TLS trusts the public web roots compiled into the binary (so a `scratch` image needs no CA files)
//! plus, optionally, an extra PEM bundle for TLS-intercepting proxies and private endpoints. `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` choose a proxy per request URL with Go's rules ([`crate::proxy`]), as for the
//! API server. Nothing here logs a body or a header value.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use super::CloudError;
use crate::proxy::{ProxyConfig, ProxyUrl};
use crate::{jitter, transport};

/// Responses larger than this are cut off: no provider answer we read comes close.
const MAX_BODY_BYTES: u64 = 1 << 20;

/// A provider's answer: status and body, whatever the status.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// An HTTP client for provider calls.
#[derive(Clone)]
pub struct ProviderHttp {
    agent: ureq::Agent,
    retry: RetryPolicy,
    proxy: ProxyConfig,
}

/// How often and how patiently a retryable failure is tried again within one exchange.
///
/// Kept short on purpose: the work queue backs off across attempts, so this only smooths over blips.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl ProviderHttp {
    /// Builds the client. `extra_ca_bundle` is a PEM file whose certificates are trusted in addition to the
    /// compiled-in public roots.
    pub fn new(
        extra_ca_bundle: Option<&Path>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, String> {
        let mut roots = transport::public_roots();
        if let Some(path) = extra_ca_bundle {
            roots.extend(
                transport::certificates_from_file(path).map_err(|e| format!("CA bundle: {e}"))?,
            );
        }
        let config = transport::agent_config(&roots, None)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            // Chosen per request instead: ureq's own NO_PROXY matching is not Go's.
            .proxy(None)
            .build();
        Ok(ProviderHttp {
            agent: config.new_agent(),
            retry,
            proxy: ProxyConfig::from_env()?,
        })
    }

    /// The same client with proxy settings other than the environment's.
    pub fn with_proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }

    /// POSTs a body and reads the answer. Transport failures become retryable errors of `step`.
    pub fn post(
        &self,
        step: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> Result<HttpResponse, CloudError> {
        let mut request = self
            .agent
            .post(url)
            .config()
            .proxy(self.proxy.proxy_for(url).map(ProxyUrl::ureq))
            .build()
            .header("Content-Type", content_type);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send(body)
            .map_err(|e| transport_error(step, url, &e))?;
        let status = response.status().as_u16();
        let mut body = String::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_BODY_BYTES)
            .read_to_string(&mut body)
            .map_err(|e| {
                CloudError::retryable(step, format!("reading the response from {url}: {e}"))
            })?;
        Ok(HttpResponse { status, body })
    }

    /// Runs `call` until it succeeds, fails permanently, or the retry policy is used up.
    pub fn with_retries<T>(
        &self,
        mut call: impl FnMut() -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let mut delay = self.retry.first_delay;
        let mut attempt = 1;
        loop {
            match call() {
                Err(e) if e.retryable && attempt < self.retry.attempts => {
                    log::debug!(
                        "{e}; retrying (attempt {attempt} of {})",
                        self.retry.attempts
                    );
                    std::thread::sleep(jitter::stretch(delay, 0.5));
                    delay = (delay * 2).min(self.retry.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn transport_error(step: &'static str, url: &str, error: &ureq::Error) -> CloudError {
    CloudError::retryable(step, format!("cannot reach {url}: {error}"))
}
