//! Where the API server is and how to authenticate to it: in-cluster or from a kubeconfig file.
//!
//! In a pod, the ServiceAccount mount gives a CA, a token that the kubelet rotates, and the namespace. Outside,
//! a kubeconfig (from `--kubeconfig` or `KUBECONFIG`) gives the same through its current context, read as
//! kubectl reads it: files of a `KUBECONFIG` list are merged with the first file winning per name, paths are
//! relative to the file that names them, and only the entries the current context uses must be valid — a
//! broken entry of another context does not matter. Users may authenticate with a token, a token file, a
//! client certificate or an exec credential plugin; `auth-provider` (removed from kubectl) and basic
//! authentication are refused with what to do instead. `insecure-skip-tls-verify` is honoured as kubectl
//! honours it, with a loud warning at every start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PrivateKey};

use super::exec::{ExecPlugin, API_VERSIONS};
use super::yaml;
use crate::cloud::Sensitive;
use crate::proxy::{ProxyConfig, ProxyUrl};
use crate::transport;

/// The ServiceAccount mount every pod gets.
pub(crate) const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long an exec credential plugin may run before it is stopped.
const EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// The cluster extension whose content client-go hands to exec plugins as `spec.cluster.config`.
const EXEC_EXTENSION: &str = "client.authentication.k8s.io/exec";

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
    /// The name the server's certificate is checked against (and sent as SNI) instead of the host of
    /// `server` (kubeconfig `tls-server-name`).
    pub tls_server_name: Option<String>,
    /// Accept any server certificate (kubeconfig `insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
    /// The forward proxy to the API server: the kubeconfig's `proxy-url`, else what `HTTPS_PROXY` and
    /// `NO_PROXY` say for `server`.
    pub proxy: Option<ProxyUrl>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("tls_server_name", &self.tls_server_name)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field("proxy", &self.proxy)
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
    /// A credential plugin, run when its credential expires or the server refuses it.
    Exec(ExecPlugin),
}

impl Connection {
    /// The configuration of a controller running in a pod.
    pub(crate) fn in_cluster() -> Result<Connection, String> {
        let mut connection =
            Self::in_cluster_from(Path::new(IN_CLUSTER_DIR), |name| std::env::var(name).ok())?;
        connection.proxy = ProxyConfig::from_env()?
            .proxy_for(&connection.server)
            .cloned();
        Ok(connection)
    }

    /// In a pod, [`Connection::in_cluster`]; elsewhere `~/.kube/config` when it exists — the order of
    /// controller-runtime's `GetConfig`, which the original controller uses.
    pub(crate) fn in_cluster_or_home() -> Result<Connection, String> {
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty());
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".kube").join("config"))
            .filter(|p| p.exists());
        match home {
            Some(path) if !in_pod => Self::from_kubeconfig(&[path]),
            _ => Self::in_cluster(),
        }
    }

    fn in_cluster_from(
        dir: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Connection, String> {
        let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty());
        let (Some(host), Some(port)) = (host, port) else {
            return Err("not running in a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not \
                        set): pass --kubeconfig, set KUBECONFIG or create ~/.kube/config"
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
            tls_server_name: None,
            insecure_skip_tls_verify: false,
            proxy: None,
        })
    }

    /// The configuration of the current context of the kubeconfig files `paths` (`--kubeconfig`: one file,
    /// which must exist), merged as kubectl merges them: the first file to set a value wins.
    pub fn from_kubeconfig(paths: &[PathBuf]) -> Result<Connection, String> {
        Self::from_kubeconfig_with(paths, &ProxyConfig::from_env()?)
    }

    /// Like [`Connection::from_kubeconfig`], with `proxies` in place of the environment's proxy settings
    /// (which the kubeconfig's `proxy-url` overrides).
    pub fn from_kubeconfig_with(
        paths: &[PathBuf],
        proxies: &ProxyConfig,
    ) -> Result<Connection, String> {
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| read_error(path, e))?;
            files.push(KubeconfigFile::parse(path, &text)?);
        }
        let mut connection = resolve(&files)?;
        if connection.proxy.is_none() {
            connection.proxy = proxies.proxy_for(&connection.server).cloned();
        }
        Ok(connection)
    }

    /// Like [`Connection::from_kubeconfig`] for the files of `KUBECONFIG`, of which kubectl skips those that
    /// do not exist.
    pub(crate) fn from_kubeconfig_list(paths: &[PathBuf]) -> Result<Connection, String> {
        let existing: Vec<PathBuf> = paths.iter().filter(|p| p.exists()).cloned().collect();
        if existing.is_empty() {
            return Err(format!(
                "none of the KUBECONFIG files exists: {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Self::from_kubeconfig(&existing)
    }
}

/// One kubeconfig file: its named entries kept as loose JSON, so that only the ones used are checked.
struct KubeconfigFile {
    path: PathBuf,
    /// The directory relative paths in this file are resolved against.
    base: PathBuf,
    current_context: Option<String>,
    clusters: Vec<(String, Value)>,
    users: Vec<(String, Value)>,
    contexts: Vec<(String, Value)>,
}

impl KubeconfigFile {
    fn parse(path: &Path, text: &str) -> Result<KubeconfigFile, String> {
        let document =
            yaml::parse(text).map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
        let Value::Object(mut top) = document else {
            return Err(format!(
                "kubeconfig {}: is not a mapping of clusters, users and contexts",
                path.display()
            ));
        };
        let current_context = match top.remove("current-context") {
            Some(Value::String(name)) if !name.is_empty() => Some(name),
            _ => None,
        };
        let mut named = |list: &str, field: &str| -> Vec<(String, Value)> {
            let Some(Value::Array(items)) = top.remove(list) else {
                return Vec::new();
            };
            items
                .into_iter()
                .filter_map(|item| {
                    let Value::Object(mut item) = item else {
                        return None;
                    };
                    let Some(Value::String(name)) = item.remove("name") else {
                        return None;
                    };
                    Some((name, item.remove(field).unwrap_or(Value::Null)))
                })
                .collect()
        };
        Ok(KubeconfigFile {
            clusters: named("clusters", "cluster"),
            users: named("users", "user"),
            contexts: named("contexts", "context"),
            path: path.to_path_buf(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            current_context,
        })
    }
}

/// The entry `name` of a list, from the first file that has it, decoded; `what` names it in errors.
fn find<'a, T: serde::de::DeserializeOwned>(
    files: &'a [KubeconfigFile],
    what: &str,
    name: &str,
    list: impl Fn(&'a KubeconfigFile) -> &'a [(String, Value)],
) -> Result<Option<(T, &'a KubeconfigFile)>, String> {
    for file in files {
        if let Some((_, value)) = list(file).iter().find(|(n, _)| n == name) {
            let value = match value {
                Value::Null => Value::Object(serde_json::Map::new()),
                other => other.clone(),
            };
            let entry = serde_json::from_value(value)
                .map_err(|e| format!("kubeconfig {}: {what} {name:?}: {e}", file.path.display()))?;
            return Ok(Some((entry, file)));
        }
    }
    Ok(None)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: Option<bool>,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
    #[serde(default)]
    extensions: Option<Vec<NamedExtension>>,
}

#[derive(Debug, Deserialize)]
struct NamedExtension {
    name: String,
    #[serde(default)]
    extension: Value,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    exec: Option<ExecEntry>,
    auth_provider: Option<Value>,
    username: Option<String>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecEntry {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<ExecEnv>>,
    install_hint: Option<String>,
    #[serde(default)]
    provide_cluster_info: bool,
    interactive_mode: Option<String>,
}

#[derive(Deserialize)]
struct ExecEnv {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

fn resolve(files: &[KubeconfigFile]) -> Result<Connection, String> {
    let context_name = files
        .iter()
        .find_map(|f| f.current_context.clone())
        .ok_or("kubeconfig has no current-context: run `kubectl config use-context NAME`")?;
    let (context, _) = find::<ContextEntry>(files, "context", &context_name, |f| &f.contexts)?
        .ok_or_else(|| format!("kubeconfig: context {context_name:?} not found"))?;
    let cluster_name = context.cluster.as_deref().unwrap_or_default();
    let (cluster, cluster_file) =
        find::<ClusterEntry>(files, "cluster", cluster_name, |f| &f.clusters)?.ok_or_else(
            || {
                format!(
                    "kubeconfig: cluster {cluster_name:?} of context {context_name:?} not found"
                )
            },
        )?;
    let server = cluster
        .server
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("kubeconfig: cluster {cluster_name:?} has no server"))?
        .trim_end_matches('/')
        .to_string();
    let insecure = cluster.insecure_skip_tls_verify == Some(true);
    let ca_pem = pem_source(
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
        &cluster_file.base,
        "certificate-authority",
    )?;
    if insecure && ca_pem.is_some() {
        // kubectl refuses this combination too: a CA that is never checked is a mistake.
        return Err(format!(
            "kubeconfig: cluster {cluster_name:?} sets both a certificate authority and insecure-skip-tls-verify: \
             remove insecure-skip-tls-verify"
        ));
    }
    let roots = match &ca_pem {
        Some(pem) => transport::certificates_from_pem(pem, "certificate-authority")
            .map_err(|e| format!("kubeconfig: cluster {cluster_name:?}: {e}"))?,
        None => Vec::new(),
    };
    let tls_server_name = cluster.tls_server_name.clone().filter(|n| !n.is_empty());
    let proxy = match cluster.proxy_url.as_deref().filter(|p| !p.is_empty()) {
        Some(url) => Some(ProxyUrl::parse(
            url,
            &format!("kubeconfig: cluster {cluster_name:?}: proxy-url"),
        )?),
        None => None,
    };

    let user_name = context.user.as_deref().unwrap_or_default();
    let (user, user_base) = match find::<UserEntry>(files, "user", user_name, |f| &f.users)? {
        Some((user, file)) => (user, file.base.as_path()),
        None if user_name.is_empty() => (UserEntry::default(), Path::new("")),
        None => {
            return Err(format!(
                "kubeconfig: user {user_name:?} of context {context_name:?} not found"
            ))
        }
    };
    if user.auth_provider.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} uses an auth-provider, which kubectl no longer supports: \
             switch the user to its exec credential plugin (gke-gcloud-auth-plugin for GKE, kubelogin for AKS, \
             `aws eks get-token` for EKS) and run this again"
        ));
    }
    if user.username.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} uses basic authentication, which Kubernetes no longer supports: \
             use a token or client certificate"
        ));
    }
    if user.impersonate.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} impersonates another user (as), which this controller does not do: \
             give it the credentials of the identity it should act as"
        ));
    }
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
    // As in client-go, a token in the kubeconfig is sent as it is and the exec plugin is not run.
    let auth = match (&user.token, &user.token_file, user.exec) {
        (Some(token), _, _) if !token.is_empty() => Auth::Token(Sensitive::new(token.clone())),
        (_, Some(file), _) if !file.is_empty() => Auth::TokenFile(user_base.join(file)),
        (_, _, Some(exec)) => {
            let cluster_info = exec
                .provide_cluster_info
                .then(|| exec_cluster_info(&server, &cluster, ca_pem.as_deref(), insecure));
            Auth::Exec(exec_plugin(user_name, exec, user_base, cluster_info)?)
        }
        _ => Auth::None,
    };
    if matches!(auth, Auth::Exec(_)) && client_cert.is_some() {
        return Err(format!(
            "kubeconfig: user {user_name:?} has both a client certificate and an exec plugin: keep one"
        ));
    }
    if insecure {
        log::warn!(
            "INSECURE: kubeconfig cluster {cluster_name:?} sets insecure-skip-tls-verify: the API server's \
             certificate is NOT checked, so anyone on the network path can read and change everything this \
             controller sends, including the credentials it provisions; give the cluster's CA as \
             certificate-authority-data instead"
        );
    }
    Ok(Connection {
        server,
        roots,
        client_cert,
        auth,
        namespace: context.namespace.clone().filter(|n| !n.is_empty()),
        tls_server_name,
        insecure_skip_tls_verify: insecure,
        proxy,
    })
}

/// The plugin of an `exec` entry, checked as client-go checks it.
fn exec_plugin(
    user: &str,
    exec: ExecEntry,
    base: &Path,
    cluster: Option<Value>,
) -> Result<ExecPlugin, String> {
    let what = format!("kubeconfig: user {user:?}: exec");
    if exec.command.is_empty() {
        return Err(format!("{what}: command is missing"));
    }
    if !API_VERSIONS.contains(&exec.api_version.as_str()) {
        return Err(format!(
            "{what}: apiVersion {:?} is not supported: use {} or {}",
            exec.api_version, API_VERSIONS[0], API_VERSIONS[1]
        ));
    }
    match exec.interactive_mode.as_deref().unwrap_or_default() {
        "" if exec.api_version == API_VERSIONS[0] => {
            return Err(format!(
                "{what}: interactiveMode must be set for {}: set it to Never",
                API_VERSIONS[0]
            ))
        }
        "" | "Never" | "IfAvailable" => {}
        "Always" => {
            return Err(format!(
                "{what}: interactiveMode Always needs a terminal, which a controller does not have: use a plugin \
                 configuration that works without one (interactiveMode: Never)"
            ))
        }
        other => return Err(format!("{what}: unknown interactiveMode {other:?}")),
    }
    let mut env = Vec::new();
    for item in exec.env.unwrap_or_default() {
        if item.name.is_empty() {
            return Err(format!("{what}: an env entry has no name"));
        }
        env.push((item.name, item.value));
    }
    // kubectl resolves a command given as a relative path against the kubeconfig's directory, and looks a
    // bare name up in PATH.
    let command = PathBuf::from(&exec.command);
    let command = if command.is_relative() && exec.command.contains('/') {
        base.join(command)
    } else {
        command
    };
    Ok(ExecPlugin {
        user: user.to_string(),
        api_version: exec.api_version,
        command,
        args: exec.args.unwrap_or_default(),
        env,
        install_hint: exec.install_hint,
        cluster,
        timeout: EXEC_TIMEOUT,
    })
}

/// The `spec.cluster` of `KUBERNETES_EXEC_INFO` (client-go's `clientauthentication.Cluster`).
fn exec_cluster_info(
    server: &str,
    cluster: &ClusterEntry,
    ca_pem: Option<&[u8]>,
    insecure: bool,
) -> Value {
    let mut info = serde_json::json!({"server": server});
    if let Some(name) = cluster.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
        info["tls-server-name"] = name.into();
    }
    if insecure {
        info["insecure-skip-tls-verify"] = true.into();
    }
    if let Some(pem) = ca_pem {
        info["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(pem).into();
    }
    if let Some(url) = cluster.proxy_url.as_deref().filter(|p| !p.is_empty()) {
        info["proxy-url"] = url.into();
    }
    if let Some(config) = cluster
        .extensions
        .iter()
        .flatten()
        .find(|e| e.name == EXEC_EXTENSION)
    {
        info["config"] = config.extension.clone();
    }
    info
}

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
    // Some tools wrap long base64 values; the line breaks are not part of the data.
    let compact: String = data.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("kubeconfig: {field} is not valid base64: {e}"))
}

fn read_error(path: &Path, error: std::io::Error) -> String {
    format!("cannot read {}: {error}", path.display())
}

/// A client certificate chain and its key, checked to belong together before any connection is made.
pub(crate) fn client_certificate(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientCert, String> {
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
    fn refused_kubeconfigs_say_what_to_do() {
        let dir = temp_dir("bad");
        let base =
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://h:1\n";
        let user = |body: &str| {
            format!("contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{body}")
        };
        let cases = [
            (user("    auth-provider:\n      name: gcp\n"), "kubeconfig: user \"u\" uses an auth-provider, which kubectl no longer supports: switch the user to its exec credential plugin"),
            (user("    exec:\n      command: aws\n"), "kubeconfig: user \"u\": exec: apiVersion \"\" is not supported: use client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1"),
            (user("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n"), "kubeconfig: user \"u\": exec: interactiveMode must be set for client.authentication.k8s.io/v1: set it to Never"),
            (user("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: aws\n      interactiveMode: Always\n"), "kubeconfig: user \"u\": exec: interactiveMode Always needs a terminal"),
            (user("    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"), "kubeconfig: user \"u\": exec: command is missing"),
            (user("    username: admin\n    password: x\n"), "uses basic authentication"),
            (user("    client-certificate-data: eA==\n"), "kubeconfig: user \"u\" gives a client certificate or key but not both"),
            (user("    token: t\n    as: someone\n"), "impersonates another user"),
            (user("    exec: [a]\n"), "kubeconfig "),
            ("contexts:\n- name: other\n  context:\n    cluster: k\n".to_string(), "kubeconfig: context \"c\" not found"),
            ("    proxy-url: socks5://p:1080\ncontexts:\n- name: c\n  context:\n    cluster: k\n".to_string(), "kubeconfig: cluster \"k\": proxy-url: socks5 proxies are not supported"),
            (format!("    insecure-skip-tls-verify: true\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n", base64::engine::general_purpose::STANDARD.encode(CA)), "sets both a certificate authority and insecure-skip-tls-verify"),
        ];
        for (i, (rest, want)) in cases.iter().enumerate() {
            let path = write(&dir, &format!("c{i}"), &format!("{base}{rest}"));
            let err = Connection::from_kubeconfig(&[path]).unwrap_err();
            assert!(err.contains(want), "case {i}: {err}");
        }
    }

    fn fixture(name: &str) -> Connection {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubeconfig")
            .join(name);
        Connection::from_kubeconfig(&[path]).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn exec(connection: &Connection) -> &ExecPlugin {
        match &connection.auth {
            Auth::Exec(plugin) => plugin,
            other => panic!("not an exec plugin: {other:?}"),
        }
    }

    #[test]
    fn aws_eks_update_kubeconfig() {
        let connection = fixture("eks.yaml");
        assert_eq!(
            connection.server,
            "https://0123456789ABCDEF0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com"
        );
        assert_eq!(connection.roots.len(), 1);
        let plugin = exec(&connection);
        assert_eq!(plugin.command, Path::new("aws"));
        assert_eq!(plugin.api_version, API_VERSIONS[1]);
        assert_eq!(
            plugin.args,
            [
                "--region",
                "eu-west-1",
                "eks",
                "get-token",
                "--cluster-name",
                "prod",
                "--output",
                "json"
            ]
        );
        assert_eq!(
            plugin.env,
            [("AWS_PROFILE".to_string(), "platform".to_string())]
        );
        assert!(plugin.cluster.is_none() && plugin.install_hint.is_none());
    }

    #[test]
    fn gcloud_get_credentials_with_its_wrapped_install_hint() {
        let connection = fixture("gke.yaml");
        assert_eq!(connection.server, "https://34.77.120.15");
        let plugin = exec(&connection);
        assert_eq!(plugin.command, Path::new("gke-gcloud-auth-plugin"));
        assert_eq!(
            plugin.install_hint.as_deref(),
            Some("Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin")
        );
        let cluster = plugin.cluster.as_ref().expect("provideClusterInfo");
        assert_eq!(cluster["server"], "https://34.77.120.15");
        assert_eq!(
            cluster["certificate-authority-data"],
            base64::engine::general_purpose::STANDARD.encode(CA)
        );
    }

    #[test]
    fn az_aks_get_credentials_converted_by_kubelogin() {
        let connection = fixture("aks-kubelogin.yaml");
        assert_eq!(
            connection.server,
            "https://prod-dns-4f1b2c3d.hcp.westeurope.azmk8s.io:443"
        );
        let plugin = exec(&connection);
        assert_eq!(plugin.command, Path::new("kubelogin"));
        assert_eq!(
            plugin.args,
            [
                "get-token",
                "--login",
                "workloadidentity",
                "--server-id",
                "6dae42f8-4368-4678-94ff-3960e28e3630"
            ]
        );
        assert!(plugin.env.is_empty() && plugin.cluster.is_none());
        assert_eq!(
            plugin.install_hint.as_deref(),
            Some("\nkubelogin is not installed which is required to connect to AAD enabled cluster.\n\nTo learn more, please go to https://aka.ms/aks/kubelogin\n")
        );
    }

    #[test]
    fn kind_and_k3s_client_certificates() {
        for name in ["kind.yaml", "k3s.yaml"] {
            let connection = fixture(name);
            assert!(
                connection.server.starts_with("https://127.0.0.1:"),
                "{name}"
            );
            assert!(connection.client_cert.is_some(), "{name}");
            assert!(matches!(connection.auth, Auth::None), "{name}");
            assert_eq!(connection.roots.len(), 1, "{name}");
        }
    }

    #[test]
    fn rancher_backslash_continued_ca() {
        let connection = fixture("rancher.yaml");
        assert_eq!(
            connection.server,
            "https://rancher.acme.example/k8s/clusters/c-m-7xk2p9qd"
        );
        assert_eq!(connection.roots.len(), 1);
        assert!(
            matches!(connection.auth, Auth::Token(ref t) if t.expose().starts_with("kubeconfig-user-8bq4w:"))
        );
    }

    #[test]
    fn oc_login_with_insecure_skip_tls_verify() {
        let connection = fixture("openshift.yaml");
        assert_eq!(connection.server, "https://api.ocp.acme.example:6443");
        assert!(connection.insecure_skip_tls_verify);
        assert!(connection.roots.is_empty());
        assert_eq!(connection.namespace.as_deref(), Some("builds"));
        assert!(matches!(connection.auth, Auth::Token(ref t) if t.expose().starts_with("sha256~")));
    }

    #[test]
    fn kubectl_config_with_tls_server_name_proxy_and_exec_and_broken_other_contexts() {
        let connection = fixture("kubectl-config.yaml");
        assert_eq!(connection.server, "https://10.0.0.1:6443");
        assert_eq!(
            connection.tls_server_name.as_deref(),
            Some("kubernetes.default.svc")
        );
        assert_eq!(
            connection
                .proxy
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("http://proxy.corp.example:3128")
        );
        assert_eq!(connection.namespace.as_deref(), Some("platform"));
        assert_eq!(connection.roots.len(), 1);
        let plugin = exec(&connection);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubeconfig");
        assert_eq!(plugin.command, dir.join("./bin/corp-login"));
        assert_eq!(plugin.api_version, API_VERSIONS[0]);
        let cluster = plugin.cluster.as_ref().expect("provideClusterInfo");
        assert_eq!(cluster["tls-server-name"], "kubernetes.default.svc");
        assert_eq!(cluster["proxy-url"], "http://proxy.corp.example:3128");
    }

    #[test]
    fn merged_lists_skip_missing_files_and_keep_the_first_entry_per_name() {
        let dir = temp_dir("list");
        let first = write(
            &dir,
            "a",
            "users:\n- name: ops\n  user:\n    token: from-the-first-file\n",
        );
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kubeconfig/kubectl-config.yaml");
        let connection =
            Connection::from_kubeconfig_list(&[dir.join("missing"), first, fixture]).unwrap();
        assert!(
            matches!(connection.auth, Auth::Token(ref t) if t.expose() == "from-the-first-file")
        );
        let err = Connection::from_kubeconfig_list(&[dir.join("missing")]).unwrap_err();
        assert!(
            err.starts_with("none of the KUBECONFIG files exists"),
            "{err}"
        );
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
