//! The HTTPS client every provider call goes through: timeouts, proxy, trusted roots, body caps, an overall
//! rate limit, retries that honour `Retry-After`, and the per-request duration metric.
//!
//! Provider TLS trusts the public web roots compiled into the binary (so a `scratch` image needs no CA files)
//! plus, optionally, an extra PEM bundle for TLS-intercepting proxies and private endpoints. `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` choose a proxy per request URL with Go's rules ([`crate::proxy`]), as for the
//! API server. Nothing here logs a body or a header value.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::CloudError;
use crate::proxy::{ProxyConfig, ProxyUrl};
use crate::rate::TokenBucket;
use crate::retry::{parse_retry_after, Backoff, Jitter, Retry};
use crate::{metrics, transport};

/// Responses larger than this are cut off: no provider answer we read comes close.
const MAX_BODY_BYTES: u64 = 1 << 20;

/// A provider's answer: status and body, whatever the status, and the headers a retry decision needs.
#[derive(Debug, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    /// `Retry-After`, as seconds or an HTTP date, turned into a wait from now.
    pub retry_after: Option<Duration>,
    /// The server's `Date`, which tells how far this node's clock is off.
    pub date: Option<DateTime<Utc>>,
}

/// An HTTP client for provider calls. Clones share the connection pool and the rate limit.
#[derive(Clone)]
pub struct ProviderHttp {
    agent: ureq::Agent,
    retry: RetryPolicy,
    proxy: ProxyConfig,
    limiter: Arc<TokenBucket>,
    /// The provider label of the request-duration metric.
    provider: &'static str,
    /// Called before each request: a reconcile of many principals against a provider that times out runs
    /// far longer than a worker's liveness allowance, and this tells the health checker it is still moving.
    progress: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// How often and how patiently a retryable failure is tried again within one exchange.
///
/// Kept short on purpose: the work queue backs off across attempts, so this only smooths over blips.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// The wait before the next attempt after each failure (the first waits `first`).
    pub backoff: Backoff,
    /// The longest `Retry-After` waited for within an exchange; a longer one ends the exchange with an error
    /// that carries it, so the caller can schedule the next attempt instead of holding a worker.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(2))
                .with_jitter(Jitter::Stretch(0.5)),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// The overall limit on provider requests of this process, so that a backlog (a restart, the end of an
/// outage) does not send thousands of exchanges to STS in the same second.
pub(crate) use crate::rate::RateLimit;

/// The providers' limit: the defaults of `--provider-rate` and `--provider-burst`.
impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 300.0,
            burst: 100,
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
            agent: transport::agent(config),
            retry,
            proxy: ProxyConfig::from_env()?,
            limiter: Arc::new(TokenBucket::new(RateLimit::default())),
            provider: "unknown",
            progress: None,
        })
    }

    /// The same client with proxy settings other than the environment's.
    pub fn with_proxy(mut self, proxy: ProxyConfig) -> Self {
        self.proxy = proxy;
        self
    }

    /// The same client under an overall request rate limit shared by every clone made from the result.
    pub(crate) fn with_rate_limit(self, limit: RateLimit) -> Self {
        ProviderHttp {
            limiter: Arc::new(TokenBucket::new(limit)),
            ..self
        }
    }

    /// The same client, calling `progress` before each request (after waiting for the rate limit), e.g. a
    /// heartbeat of the calling thread.
    pub(crate) fn with_progress(self, progress: impl Fn() + Send + Sync + 'static) -> Self {
        ProviderHttp {
            progress: Some(Arc::new(progress)),
            ..self
        }
    }

    /// The same client (pool and rate limit shared) whose requests are timed under `provider`'s label.
    pub(crate) fn for_provider(&self, provider: &'static str) -> Self {
        ProviderHttp {
            provider,
            ..self.clone()
        }
    }

    /// POSTs a body and reads the answer. Transport failures become retryable errors of `step`. Waits for
    /// the rate limit first; the duration metric covers the request alone, not that wait.
    pub fn post(
        &self,
        step: &'static str,
        url: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &[u8],
    ) -> Result<HttpResponse, CloudError> {
        self.limiter.acquire();
        if let Some(progress) = &self.progress {
            progress();
        }
        let started = std::time::Instant::now();
        let result = self.send(step, url, headers, content_type, body);
        let elapsed = started.elapsed();
        metrics::metrics().observe_provider_request(self.provider, elapsed.as_secs_f64());
        // Wire traffic at trace level: the URL (which holds no credential) and the outcome, never a body.
        match &result {
            Ok(response) => log::trace!(
                "{step}: POST {url} -> {} ({} bytes) in {} ms",
                response.status,
                response.body.len(),
                elapsed.as_millis()
            ),
            Err(error) => log::trace!("{step}: POST {url} -> {error}"),
        }
        result
    }

    fn send(
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
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let now = Utc::now();
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
        let date = header("date").and_then(|v| parse_http_date(&v));
        let mut text = String::new();
        response
            .into_body()
            .into_reader()
            .take(MAX_BODY_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| {
                CloudError::retryable(step, format!("reading the response from {url}: {e}"))
            })?;
        Ok(HttpResponse {
            status,
            body: text,
            retry_after,
            date,
        })
    }

    /// Runs `call` until it succeeds, fails permanently, or the retry policy is used up. A `Retry-After`
    /// longer than the backoff is waited for, up to [`RetryPolicy::max_retry_after`]; a longer one ends the
    /// exchange with the error, which carries it.
    pub(crate) fn with_retries<T>(
        &self,
        mut call: impl FnMut() -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let mut attempt = 1;
        loop {
            match call() {
                Err(e) if !e.retry.is_permanent() && attempt < self.retry.attempts => {
                    let backoff = self.retry.backoff.delay(attempt);
                    let wait = match e.retry {
                        Retry::After(after) if after > self.retry.max_retry_after => return Err(e),
                        Retry::After(after) => after.max(backoff),
                        _ => backoff,
                    };
                    log::debug!(
                        "{e}; retrying in {wait:?} (attempt {attempt} of {})",
                        self.retry.attempts
                    );
                    std::thread::sleep(wait);
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

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form servers may send.
pub(crate) fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::scripted::{Reply, ScriptedServer};

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Mon, 30 Nov 2026 10:00:07 GMT"),
            Some("2026-11-30T10:00:07Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    fn client(max_retry_after: Duration) -> ProviderHttp {
        ProviderHttp::new(
            None,
            Duration::from_secs(5),
            RetryPolicy {
                attempts: 3,
                backoff: Backoff {
                    first: Duration::from_millis(1),
                    max: Duration::from_millis(5),
                    ..RetryPolicy::default().backoff
                },
                max_retry_after,
            },
        )
        .unwrap()
    }

    fn call(http: &ProviderHttp, url: &str) -> Result<HttpResponse, CloudError> {
        http.with_retries(|| {
            let response = http.post("test call", url, &[], "text/plain", b"x")?;
            if response.status == 200 {
                Ok(response)
            } else {
                Err(CloudError::from_status("test call", &response, "refused"))
            }
        })
    }

    #[test]
    fn the_next_attempt_waits_for_retry_after() {
        let server = ScriptedServer::start(vec![
            Reply::new(429, "slow down").header("Retry-After", "3"),
            Reply::new(200, "ok").header("Date", "Mon, 30 Nov 2026 10:00:00 GMT"),
        ]);
        let response = call(&client(Duration::from_secs(10)), &server.url).unwrap();
        assert_eq!(response.date, Some("2026-11-30T10:00:00Z".parse().unwrap()));
        let requests = server.finish();
        assert_eq!(requests.len(), 2);
        let waited = requests[1].at - requests[0].at;
        assert!(waited >= Duration::from_secs(3), "{waited:?}");
    }

    #[test]
    fn a_retry_after_beyond_the_cap_ends_the_exchange_and_is_carried() {
        let server = ScriptedServer::start(vec![
            Reply::new(503, "maintenance").header("Retry-After", "120"),
            Reply::new(200, "ok"),
        ]);
        let error = call(&client(Duration::from_secs(10)), &server.url).unwrap_err();
        assert_eq!(server.finish().len(), 1);
        assert_eq!(error.retry, Retry::After(Duration::from_secs(120)));
    }

    #[test]
    fn progress_is_reported_before_every_request_and_retry() {
        let server = ScriptedServer::start(vec![
            Reply::new(503, "busy"),
            Reply::new(503, "busy"),
            Reply::new(200, "ok"),
        ]);
        let reported = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reported.clone();
        let http = client(Duration::from_secs(10)).with_progress(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        call(&http.for_provider("google"), &server.url).unwrap();
        assert_eq!(server.finish().len(), 3);
        assert_eq!(reported.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn requests_beyond_the_burst_wait_for_the_rate() {
        let server = ScriptedServer::start(vec![
            Reply::new(200, "a"),
            Reply::new(200, "b"),
            Reply::new(200, "c"),
            Reply::new(200, "d"),
        ]);
        let http = client(Duration::from_secs(10)).with_rate_limit(RateLimit {
            per_second: 4.0,
            burst: 2,
        });
        let clone = http.for_provider("aws");
        for _ in 0..2 {
            call(&http, &server.url).unwrap();
            call(&clone, &server.url).unwrap();
        }
        let requests = server.finish();
        // Two at once, then one every 250 ms, whichever clone sends them.
        let spread = requests[3].at - requests[0].at;
        assert!(spread >= Duration::from_millis(450), "{spread:?}");
    }
}
