//! Where the API server is and how to authenticate to it: in-cluster or from a kubeconfig file.
//!
//! In a pod, the ServiceAccount mount gives a CA, a token that the kubelet rotates, and the namespace. Outside,
//! a kubeconfig (from `--kubeconfig` or `KUBECONFIG`) gives the same through its current context. TLS is always
//! verified against the cluster's CA; there is deliberately no way to switch verification off.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;
use ureq::tls::{Certificate, ClientCert, PrivateKey};

use super::yaml;
use crate::cloud::Sensitive;
use crate::transport;

/// The ServiceAccount mount every pod gets.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach and authenticate to one API server.
#[derive(Clone)]
pub struct Connection {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    /// The CAs the server's certificate must chain to. Empty means the compiled-in public roots.
    pub roots: Vec<Certificate<'static>>,
    pub client_cert: Option<ClientCert>,
    pub auth: Auth,
    /// The namespace of the context, or the pod's own namespace in-cluster.
    pub namespace: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// The bearer credential sent with each request.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Token(Sensitive),
    /// A token file that is re-read as it rotates (projected ServiceAccount tokens are replaced hourly).
    TokenFile(PathBuf),
}

impl Connection {
    /// The configuration of a controller running in a pod.
    pub fn in_cluster() -> Result<Connection, String> {
        Self::in_cluster_from(Path::new(IN_CLUSTER_DIR), |name| std::env::var(name).ok())
    }

    fn in_cluster_from(
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Connection, String> {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err("not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not \
                        set): pass --kubeconfig or set KUBECONFIG"
                .to_string());
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let ca_path = dir.join("ca.crt");
        let roots = transport::certificates_from_file(&ca_path)?;
        let token_path = dir.join("token");
        std::fs::metadata(&token_path).map_err(|e| read_error(&token_path, e))?;
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_string());
        Ok(Connection {
            server: format!("https://{host}:{port}"),
            roots,
            client_cert: None,
            auth: Auth::TokenFile(token_path),
            namespace: namespace.filter(|n| !n.is_empty()),
        })
    }

    /// The configuration of a kubeconfig's current context. `paths` is `--kubeconfig`, or the
    /// colon-separated `KUBECONFIG`, whose files are merged as kubectl does: the first file to set a
    /// value wins.
    pub fn from_kubeconfig(paths: &[PathBuf]) -> Result<Connection, String> {
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| read_error(path, e))?;
            let value =
                yaml::parse(&text).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            let config: Kubeconfig = serde_json::from_value(value)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            files.push((config, base));
        }
        resolve(&files)
    }
}

#[derive(Debug, Default, Deserialize)]
struct Kubeconfig {
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Option<Vec<Named<ClusterEntry>>>,
    #[serde(default)]
    users: Option<Vec<Named<UserEntry>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<ContextEntry>>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    #[serde(default = "Option::default")]
    value: Option<T>,
}

#[derive(Debug, Default, Deserialize)]
struct ClusterEntry {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
    username: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

fn find<'a, T>(
    files: &'a [(Kubeconfig, PathBuf)],
    name: &str,
    list: impl Fn(&'a Kubeconfig) -> &'a Option<Vec<Named<T>>>,
) -> Option<(&'a T, &'a Path)> {
    files.iter().find_map(|(config, base)| {
        list(config)
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|entry| entry.name == name)
            .and_then(|entry| entry.value.as_ref())
            .map(|value| (value, base.as_path()))
    })
}

fn resolve(files: &[(Kubeconfig, PathBuf)]) -> Result<Connection, String> {
    let context_name = files
        .iter()
        .find_map(|(c, _)| c.current_context.clone().filter(|s| !s.is_empty()))
        .ok_or("kubeconfig has no current-context: run `kubectl config use-context NAME`")?;
    let (context, _) = find(files, &context_name, |c| &c.contexts)
        .ok_or_else(|| format!("kubeconfig: context {context_name:?} not found"))?;
    let cluster_name = context.cluster.as_deref().unwrap_or_default();
    let (cluster, cluster_base) = find(files, cluster_name, |c| &c.clusters).ok_or_else(|| {
        format!("kubeconfig: cluster {cluster_name:?} of context {context_name:?} not found")
    })?;
    if cluster.insecure_skip_tls_verify == Some(true) {
        return Err(format!(
            "kubeconfig: cluster {cluster_name:?} sets insecure-skip-tls-verify, which this controller refuses: \
             give the cluster's CA as certificate-authority or certificate-authority-data"
        ));
    }
    let server = cluster
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("kubeconfig: cluster {cluster_name:?} has no server"))?
        .trim_end_matches('/')
        .to_string();
    let roots = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) if !data.is_empty() => {
            let pem = decode_base64(data, "certificate-authority-data")?;
            transport::certificates_from_pem(&pem, "certificate-authority-data")?
        }
        (_, Some(file)) if !file.is_empty() => {
            let path = cluster_base.join(file);
            transport::certificates_from_file(&path)?
        }
        _ => Vec::new(),
    };

    let user_name = context.user.as_deref().unwrap_or_default();
    let (user, user_base) = match find(files, user_name, |c| &c.users) {
        Some(found) => found,
        None if user_name.is_empty() => (&EMPTY_USER, Path::new("")),
        None => {
            return Err(format!(
                "kubeconfig: user {user_name:?} of context {context_name:?} not found"
            ))
        }
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} uses an exec or auth-provider credential plugin, which this controller \
             does not support: use a kubeconfig with a token, token file or client certificate, or run it in-cluster"
        ));
    }
    if user.username.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} uses basic authentication, which Kubernetes no longer supports: \
             use a token or client certificate"
        ));
    }
    let auth = match (&user.token, &user.token_file) {
        (Some(token), _) if !token.is_empty() => Auth::Token(Sensitive::new(token.clone())),
        (_, Some(file)) if !file.is_empty() => Auth::TokenFile(user_base.join(file)),
        _ => Auth::None,
    };
    let cert_pem = pem_source(
        &user.client_certificate_data,
        &user.client_certificate,
        user_base,
        "client-certificate",
    )?;
    let key_pem = pem_source(
        &user.client_key_data,
        &user.client_key,
        user_base,
        "client-key",
    )?;
    let client_cert = match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => Some(client_certificate(&cert, &key)?),
        (None, None) => None,
        _ => {
            return Err(format!(
                "kubeconfig: user {user_name:?} gives a client certificate or key but not both"
            ))
        }
    };
    Ok(Connection {
        server,
        roots,
        client_cert,
        auth,
        namespace: context.namespace.clone(),
    })
}

static EMPTY_USER: UserEntry = UserEntry {
    token: None,
    token_file: None,
    client_certificate: None,
    client_certificate_data: None,
    client_key: None,
    client_key_data: None,
    exec: None,
    auth_provider: None,
    username: None,
};

fn pem_source(
    data: &Option<String>,
    file: &Option<String>,
    base: &Path,
    what: &str,
) -> Result<Option<Vec<u8>>, String> {
    match (data, file) {
        (Some(data), _) if !data.is_empty() => {
            decode_base64(data, &format!("{what}-data")).map(Some)
        }
        (_, Some(file)) if !file.is_empty() => {
            let path = base.join(file);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| read_error(&path, e))
        }
        _ => Ok(None),
    }
}

fn decode_base64(data: &str, field: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("kubeconfig: {field} is not valid base64: {e}"))
}

fn read_error(path: &Path, error: std::io::Error) -> String {
    format!("cannot read {}: {error}", path.display())
}

/// A client certificate chain and its key, checked to belong together before any connection is made.
fn client_certificate(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientCert, String> {
    let chain = transport::certificates_from_pem(cert_pem, "client certificate")?;
    let key = PrivateKey::from_pem(key_pem)
        .map_err(|e| format!("client key is not a valid PEM private key: {e}"))?;
    // The TLS stack asserts that key and certificate match when it builds a connection; check it here so
    // that a mismatched kubeconfig is a clear start-up error rather than a failure on the first request.
    let der_chain = chain
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
        .collect();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.der().to_vec())
        .map_err(|e| format!("client key is not usable: {e}"))?;
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_client_auth_cert(der_chain, der_key)
    .map_err(|e| format!("client certificate and key do not belong together: {e}"))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ipsp-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const CA: &str = include_str!("../../tests/fixtures/kubeconfig/ca.crt");

    #[test]
    fn kubeconfig_with_token_file_and_ca_file_relative_to_the_kubeconfig() {
        let dir = temp_dir("token");
        write(&dir, "ca.crt", CA);
        let path = write(
            &dir,
            "config",
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443/\n    certificate-authority: ca.crt\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: team\nusers:\n- name: u\n  user:\n    tokenFile: token\n",
        );
        let connection = Connection::from_kubeconfig(&[path]).unwrap();
        assert_eq!(connection.server, "https://127.0.0.1:6443");
        assert_eq!(connection.roots.len(), 1);
        assert_eq!(connection.namespace.as_deref(), Some("team"));
        assert!(matches!(connection.auth, Auth::TokenFile(ref p) if p == &dir.join("token")));
    }

    #[test]
    fn merged_kubeconfigs_take_the_first_value() {
        let dir = temp_dir("merge");
        let first = write(
            &dir,
            "a",
            "current-context: c\nusers:\n- name: u\n  user:\n    token: first\n",
        );
        let second = write(
            &dir,
            "b",
            &format!(
                "current-context: other\nclusters:\n- name: k\n  cluster:\n    server: https://h:1\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context: {{cluster: k, user: u}}\nusers:\n- name: u\n  user:\n    token: second\n",
                base64::engine::general_purpose::STANDARD.encode(CA)
            ),
        );
        let connection = Connection::from_kubeconfig(&[first, second]).unwrap();
        assert!(matches!(connection.auth, Auth::Token(ref t) if t.expose() == "first"));
        assert_eq!(connection.server, "https://h:1");
    }

    #[test]
    fn unsupported_kubeconfigs_say_what_to_do() {
        let dir = temp_dir("bad");
        let base =
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://h:1\n";
        let cases = [
            ("contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    exec:\n      command: aws\n", "does not support"),
            ("    insecure-skip-tls-verify: true\ncontexts:\n- name: c\n  context:\n    cluster: k\n", "insecure-skip-tls-verify"),
            ("contexts:\n- name: other\n  context:\n    cluster: k\n", "context \"c\" not found"),
            ("contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    client-certificate-data: eA==\n", "not both"),
        ];
        for (i, (rest, want)) in cases.iter().enumerate() {
            let path = write(&dir, &format!("c{i}"), &format!("{base}{rest}"));
            let err = Connection::from_kubeconfig(&[path]).unwrap_err();
            assert!(err.contains(want), "case {i}: {err}");
        }
    }

    #[test]
    fn in_cluster_reads_the_service_account_mount() {
        let dir = temp_dir("incluster");
        write(&dir, "ca.crt", CA);
        write(&dir, "token", "t");
        write(&dir, "namespace", "ipsp-system\n");
        let env = |name: &str| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.0.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let connection = Connection::in_cluster_from(&dir, env).unwrap();
        assert_eq!(connection.server, "https://10.0.0.1:443");
        assert_eq!(connection.namespace.as_deref(), Some("ipsp-system"));
        let err = Connection::in_cluster_from(&dir, |_| None).unwrap_err();
        assert!(err.contains("--kubeconfig"), "{err}");
    }
}
