//! The HTTPS agent to one API server: its CA (or the public roots), the client certificate, the kubeconfig's
//! `tls-server-name` and `insecure-skip-tls-verify`, and the proxy.
//!
//! ureq checks a server's certificate against the host of the URL. `tls-server-name` asks for another name
//! (clusters reached through a tunnel or an IP whose certificate names only the cluster's DNS name), so with
//! it the TLS step of ureq's connector chain is replaced by one that sends and checks that name; everything
//! else — TCP, the proxy's CONNECT, the pool — stays ureq's.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};
use ureq::tls::{Certificate, ClientCert, TlsConfig};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, Transport, TransportAdapter,
};

use super::config::Connection;
use crate::proxy::ProxyUrl;
use crate::resolver::ReusingResolver;
use crate::tcp::TcpConnector;
use crate::transport::{self, RetireOnTimeout};

/// What an agent to the API server is built from; kept to build it again when an exec plugin hands out a
/// new client certificate.
#[derive(Clone)]
pub(crate) struct AgentRecipe {
    roots: Vec<Certificate<'static>>,
    tls_server_name: Option<ServerName<'static>>,
    insecure: bool,
    proxy: Option<ProxyUrl>,
}

impl AgentRecipe {
    pub(crate) fn new(connection: &Connection) -> Result<AgentRecipe, String> {
        let roots = if connection.roots.is_empty() {
            transport::public_roots()
        } else {
            connection.roots.clone()
        };
        let tls_server_name =
            match &connection.tls_server_name {
                Some(_) if connection.insecure_skip_tls_verify => return Err(
                    "tls-server-name and insecure-skip-tls-verify together check nothing: remove \
                            insecure-skip-tls-verify and give the cluster's CA"
                        .to_string(),
                ),
                Some(name) => Some(
                    ServerName::try_from(name.clone())
                        .map_err(|e| format!("tls-server-name {name:?} is not a host name: {e}"))?,
                ),
                None => None,
            };
        Ok(AgentRecipe {
            roots,
            tls_server_name,
            insecure: connection.insecure_skip_tls_verify,
            proxy: connection.proxy.clone(),
        })
    }

    /// An agent presenting `client_cert`.
    pub(crate) fn build(&self, client_cert: Option<&ClientCert>) -> Result<ureq::Agent, String> {
        let config = transport::agent_config(&self.roots, client_cert.cloned())
            .timeout_connect(Some(Duration::from_secs(10)))
            .proxy(self.proxy.as_ref().map(ProxyUrl::ureq));
        let config = if self.insecure {
            config.tls_config(
                TlsConfig::builder()
                    .disable_verification(true)
                    .client_cert(client_cert.cloned())
                    .unversioned_rustls_crypto_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .build(),
            )
        } else {
            config
        };
        let config = config.build();
        let Some(name) = &self.tls_server_name else {
            return Ok(transport::agent(config));
        };
        let tls = ServerNameTls {
            config: Arc::new(rustls_config(&self.roots, client_cert)?),
            name: name.clone(),
        };
        let connector = ()
            .chain(ConnectProxyConnector::default())
            .chain(TcpConnector)
            .chain(tls)
            // Only reached for a TLS hop that is not the API server's own, such as an https:// proxy.
            .chain(RustlsConnector::default())
            .chain(RetireOnTimeout::default());
        Ok(ureq::Agent::with_parts(
            config,
            connector,
            ReusingResolver::default(),
        ))
    }
}

fn rustls_config(
    roots: &[Certificate<'static>],
    client_cert: Option<&ClientCert>,
) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(roots.iter().map(|c| CertificateDer::from(c.der().to_vec())));
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(store);
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some(cert) => {
            let chain = cert
                .certs()
                .iter()
                .map(|c| CertificateDer::from(c.der().to_vec()))
                .collect();
            let key = PrivateKeyDer::try_from(cert.private_key().der().to_vec())
                .map_err(|e| format!("client key is not usable: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key do not belong together: {e}"))
        }
    }
}

/// TLS to the API server with the name of `tls-server-name`.
struct ServerNameTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for ServerNameTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerNameTls")
            .field("name", &self.name)
            .finish()
    }
}

impl<In: Transport> Connector<In> for ServerNameTls {
    type Out = Either<In, ServerNameTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        // The proxy connection of an https:// proxy is set up through the same chain; it has a URI of its own.
        let to_proxy = details
            .config
            .proxy()
            .is_some_and(|p| details.uri.host() == Some(p.host()));
        if !details.needs_tls() || transport.is_tls() || to_proxy {
            return Ok(Some(Either::A(transport)));
        }
        let mut connection = ClientConnection::new(self.config.clone(), self.name.clone())?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        socket.set_timeout(details.timeout);
        connection.complete_io(&mut socket)?;
        Ok(Some(Either::B(ServerNameTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned::new(connection, socket),
        })))
    }
}

struct ServerNameTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for ServerNameTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerNameTransport")
    }
}

impl Transport for ServerNameTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        use std::io::Write;
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        use std::io::Read;
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
