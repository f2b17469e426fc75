//! What every HTTPS client of this process shares — the Kubernetes client and the provider client alike:
//! trusted roots, PEM reading, the TLS configuration and the agent settings.
//!
//! Public roots are compiled in (so a `scratch` image needs no CA files); rustls with ring does the TLS, with
//! verification always on; each pooled connection gets small buffers, because ureq's defaults (128 KiB each
//! way) would make idle connections the largest thing in the process.
//!
//! What must stay true: once a request to a host has timed out, no connection to that host opened before it
//! is taken from the pool again ([`RetireOnTimeout`]). A network that silences flows without FIN or RST (a
//! load balancer or NAT that forgot them) silences every flow of that path at once, and the pool's own probe
//! cannot tell a silent connection from an idle one, so a retry on a pooled connection would wait out its
//! whole timeout again. Connections to other hosts are not touched: a host that never answers (a registry a
//! tenant named) costs the other hosts' connections nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ureq::config::ConfigBuilder;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::typestate::AgentScope;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector,
    Transport,
};

use crate::resolver::ReusingResolver;
use crate::tcp::TcpConnector;

/// Read and write buffer of each pooled connection; answers stream through it.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;
/// Idle connections kept, per host and in all. A connection exists only because that many requests ran at
/// once, so keeping it costs nothing more than it already did; ureq's defaults (3 per host, 10 in all) closed
/// the connections of all but three workers after each request, and each next request paid a new TCP and TLS
/// handshake (the API server and each provider host see one request per worker at a time).
const MAX_IDLE_CONNECTIONS: usize = 64;

/// Mozilla's public roots, compiled in.
pub(crate) fn public_roots() -> Vec<Certificate<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

/// Every certificate in a PEM blob (other items, such as keys, are skipped); `source` names it in errors.
pub(crate) fn certificates_from_pem(
    pem: &[u8],
    source: &str,
) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{source} is not valid PEM: {e}")),
        }
    }
    if certs.is_empty() {
        return Err(format!("{source} holds no certificate"));
    }
    Ok(certs)
}

/// Every certificate in a PEM file.
pub fn certificates_from_file(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    certificates_from_pem(&pem, &path.display().to_string())
}

/// Agent settings for a client that trusts `roots` and presents `client_cert`: errors come back as
/// responses (callers need the bodies), no redirects, small buffers, ring as crypto provider.
pub fn agent_config(
    roots: &[Certificate<'static>],
    client_cert: Option<ClientCert>,
) -> ConfigBuilder<AgentScope> {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(roots))
        .client_cert(client_cert)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .input_buffer_size(CONNECTION_BUFFER_BYTES)
        .output_buffer_size(CONNECTION_BUFFER_BYTES)
        .max_idle_connections(MAX_IDLE_CONNECTIONS)
        .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
        .user_agent(concat!(
            "image-pull-secrets-provisioner/",
            env!("CARGO_PKG_VERSION")
        ))
        .tls_config(tls)
}

/// An agent with `config`: our TCP connections ([`crate::tcp`]), ureq's proxy tunnel and TLS, retired after
/// a timeout, and our resolver (see [`crate::resolver`]).
pub(crate) fn agent(config: ureq::config::Config) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ().chain(ConnectProxyConnector::default())
            .chain(TcpConnector)
            .chain(RustlsConnector::default())
            .chain(RetireOnTimeout::default()),
        ReusingResolver::default(),
    )
}

/// The last link of every connector chain: marks each new connection with its host's timeout count, and
/// retires from the pool every connection to a host opened before that host's latest timeout. After a
/// timeout the next request to that host opens a new connection (new flows pass where old ones went silent);
/// the cost is one handshake per connection that was in fact still good.
#[derive(Debug, Default, Clone)]
pub(crate) struct RetireOnTimeout {
    /// Timeouts so far by `host:port`; past [`MAX_TRACKED_HOSTS`] further hosts share one count.
    hosts: Arc<Mutex<HashMap<Box<str>, Arc<AtomicU64>>>>,
    shared: Arc<AtomicU64>,
}

/// Hosts counted apart: far more than the API server and the provider endpoints, so only a flood of names
/// shares a count (and then only costs handshakes).
const MAX_TRACKED_HOSTS: usize = 1024;

impl RetireOnTimeout {
    /// The timeout count of `authority` (`host:port`).
    fn counter(&self, authority: &str) -> Arc<AtomicU64> {
        let mut hosts = crate::sync::lock(&self.hosts);
        if let Some(counter) = hosts.get(authority) {
            return counter.clone();
        }
        if hosts.len() >= MAX_TRACKED_HOSTS {
            return self.shared.clone();
        }
        let counter = Arc::new(AtomicU64::new(0));
        hosts.insert(authority.into(), counter.clone());
        counter
    }
}

impl<In: Transport> Connector<In> for RetireOnTimeout {
    type Out = Retiring<In>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let authority = details.uri.authority().map_or("", |a| a.as_str());
        let timeouts = self.counter(authority);
        Ok(chained.map(|inner| Retiring {
            inner,
            opened_after: timeouts.load(Ordering::Relaxed),
            timeouts,
        }))
    }
}

/// A connection that counts its timeouts into its host's and is no longer open once any connection to that
/// host timed out after it was opened.
#[derive(Debug)]
pub(crate) struct Retiring<T> {
    inner: T,
    opened_after: u64,
    timeouts: Arc<AtomicU64>,
}

impl<T> Retiring<T> {
    fn noting_timeout<R>(&self, result: Result<R, ureq::Error>) -> Result<R, ureq::Error> {
        if let Err(ureq::Error::Timeout(_)) = &result {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

impl<T: Transport> Transport for Retiring<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let result = self.inner.transmit_output(amount, timeout);
        self.noting_timeout(result)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let result = self.inner.await_input(timeout);
        self.noting_timeout(result)
    }

    fn is_open(&mut self) -> bool {
        self.opened_after == self.timeouts.load(Ordering::Relaxed) && self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Answers "ok" to every request on connections after the first two; those two answer their first
    /// request (after a pause, so two requests at once open both) and then go silent without closing.
    fn server_whose_first_connections_go_silent() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let number = count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, number < 2));
            }
        });
        (url, accepted)
    }

    fn serve(stream: TcpStream, goes_silent: bool) {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        for request in 0.. {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            if goes_silent && request > 0 {
                // Silent, not closed: what a load balancer that forgot the flow looks like.
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            if goes_silent {
                std::thread::sleep(Duration::from_millis(300));
            }
            let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn get(agent: &ureq::Agent, url: &str) -> Result<String, ureq::Error> {
        agent.get(url).call()?.body_mut().read_to_string()
    }

    /// Answers "ok" to every request; counts its connections.
    fn healthy_server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || serve(stream, false));
            }
        });
        (url, accepted)
    }

    #[test]
    fn after_a_timeout_no_connection_to_that_host_opened_before_it_is_reused() {
        let (url, accepted) = server_whose_first_connections_go_silent();
        let (other, other_accepted) = healthy_server();
        let config = agent_config(&[], None)
            .timeout_global(Some(Duration::from_millis(700)))
            .build();
        let agent = agent(config);
        assert_eq!(get(&agent, &other).expect("another host"), "ok");
        // Two requests at once: two connections, both pooled afterwards.
        let (first, second) = std::thread::scope(|scope| {
            let first = scope.spawn(|| get(&agent, &url));
            let second = scope.spawn(|| get(&agent, &url));
            (
                first.join().expect("thread"),
                second.join().expect("thread"),
            )
        });
        assert_eq!(first.expect("first request"), "ok");
        assert_eq!(second.expect("second request"), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Both pooled connections are silent now: the next request times out on one of them ...
        assert!(matches!(get(&agent, &url), Err(ureq::Error::Timeout(_))));
        // ... and the one after goes to a new connection instead of the other silent one.
        assert_eq!(get(&agent, &url).expect("request after the timeout"), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // The new connection is pooled and reused as usual.
        assert_eq!(
            get(&agent, &url).expect("request on the new connection"),
            "ok"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // Another host's pooled connection was not retired by this host's timeout.
        assert_eq!(get(&agent, &other).expect("another host"), "ok");
        assert_eq!(other_accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pem_blobs_yield_their_certificates_or_say_what_is_wrong() {
        let ca = include_bytes!("../tests/fixtures/kubeconfig/ca.crt");
        assert_eq!(certificates_from_pem(ca, "ca.crt").unwrap().len(), 1);
        assert_eq!(
            certificates_from_pem(b"", "empty").unwrap_err(),
            "empty holds no certificate"
        );
        assert!(!public_roots().is_empty());
    }
}
