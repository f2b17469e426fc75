//! What every HTTPS client of this process shares — the Kubernetes client and the provider client alike:
//! trusted roots, PEM reading, the TLS configuration and the agent settings.
//!
//! Public roots are compiled in (so a `scratch` image needs no CA files); rustls with ring does the TLS, with
//! verification always on; each pooled connection gets small buffers, because ureq's defaults (128 KiB each
//! way) would make idle connections the largest thing in the process.

use std::path::Path;
use std::sync::Arc;

use ureq::config::ConfigBuilder;
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::typestate::AgentScope;

use crate::resolver::ReusingResolver;

/// Read and write buffer of each pooled connection; answers stream through it.
const CONNECTION_BUFFER_BYTES: usize = 16 * 1024;
/// Idle connections kept, per host and in all. A connection exists only because that many requests ran at
/// once, so keeping it costs nothing more than it already did; ureq's defaults (3 per host, 10 in all) closed
/// the connections of all but three workers after each request, and each next request paid a new TCP and TLS
/// handshake (the API server and each provider host see one request per worker at a time).
const MAX_IDLE_CONNECTIONS: usize = 64;

/// Mozilla's public roots, compiled in.
pub fn public_roots() -> Vec<Certificate<'static>> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect()
}

/// Every certificate in a PEM blob (other items, such as keys, are skipped); `source` names it in errors.
pub fn certificates_from_pem(
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

/// An agent with `config`, ureq's connectors and our resolver (see [`crate::resolver`]).
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        ReusingResolver::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
