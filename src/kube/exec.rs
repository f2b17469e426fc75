//! Client-go credential plugins (`users[].user.exec` in a kubeconfig): run the command, read the
//! `ExecCredential` it prints.
//!
//! This is how EKS (`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`) and AKS (`kubelogin`) kubeconfigs
//! authenticate. As in client-go: the plugin gets the process environment plus the kubeconfig's `env`, and
//! `KUBERNETES_EXEC_INFO` holding an `ExecCredential` whose `spec.interactive` is false (a controller has no
//! terminal; `interactiveMode: Always` is refused) and, with `provideClusterInfo`, the cluster. Its standard
//! error goes to ours, standard input is closed. It must answer with the same `apiVersion` (`v1` or
//! `v1beta1`), a token and/or a client certificate and key, and optionally `expirationTimestamp`; the caller
//! caches the credential until then and runs the plugin again on a 401. A missing command is reported with
//! the kubeconfig's `installHint`. Unlike client-go, a plugin that hangs is killed after a timeout.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::cloud::Sensitive;

/// The two `client.authentication.k8s.io` versions client-go still accepts.
pub(crate) const API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1",
    "client.authentication.k8s.io/v1beta1",
];
/// The variable through which the plugin learns what is asked of it.
pub(crate) const EXEC_INFO_ENV: &str = "KUBERNETES_EXEC_INFO";
/// A plugin's answer larger than this is refused; a credential is a few KiB.
const MAX_OUTPUT_BYTES: u64 = 1 << 20;

/// A credential plugin as configured in the kubeconfig.
#[derive(Clone)]
pub struct ExecPlugin {
    /// The kubeconfig user, for errors.
    pub user: String,
    pub api_version: String,
    pub command: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub install_hint: Option<String>,
    /// The `spec.cluster` handed to the plugin when the kubeconfig sets `provideClusterInfo`.
    pub cluster: Option<serde_json::Value>,
    /// How long the plugin may run.
    pub timeout: Duration,
}

impl std::fmt::Debug for ExecPlugin {
    // The environment may hold secrets (client secrets of kubelogin, for one): name the command only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecPlugin")
            .field("user", &self.user)
            .field("api_version", &self.api_version)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// What a plugin returned.
#[derive(Clone, Debug)]
pub(crate) struct ExecCredential {
    pub token: Option<Sensitive>,
    /// PEM certificate chain and key, both or neither.
    pub client_cert: Option<(Vec<u8>, Sensitive)>,
    /// When to run the plugin again; `None` means when the server answers 401.
    pub expires_at: Option<DateTime<Utc>>,
}

impl ExecPlugin {
    /// Runs the plugin once and reads its credential.
    pub(crate) fn run(&self) -> Result<ExecCredential, String> {
        let what = format!(
            "exec plugin {} of kubeconfig user {:?}",
            self.command.display(),
            self.user
        );
        let mut spec = serde_json::json!({"interactive": false});
        if let Some(cluster) = &self.cluster {
            spec["cluster"] = cluster.clone();
        }
        let info = serde_json::json!({
            "apiVersion": self.api_version,
            "kind": "ExecCredential",
            "spec": spec,
        });
        let mut child = Command::new(&self.command)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(EXEC_INFO_ENV, info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    let mut message = format!("{what}: executable not found");
                    if let Some(hint) = self
                        .install_hint
                        .as_deref()
                        .filter(|h| !h.trim().is_empty())
                    {
                        message.push_str(": ");
                        message.push_str(hint.trim());
                    }
                    message
                }
                _ => format!("{what}: cannot start it: {e}"),
            })?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("{what}: no output pipe"))?;
        // Read in a thread, so that a plugin writing more than a pipe holds cannot block its own exit.
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let read = (&mut stdout).take(MAX_OUTPUT_BYTES).read_to_end(&mut out);
            read.map(|_| out)
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{what}: gave no answer within {}s and was stopped",
                        self.timeout.as_secs()
                    ));
                }
                Err(e) => return Err(format!("{what}: {e}")),
            }
        };
        let output = reader
            .join()
            .map_err(|_| format!("{what}: reading its output failed"))?
            .map_err(|e| format!("{what}: reading its output: {e}"))?;
        if !status.success() {
            return Err(match status.code() {
                Some(code) => format!("{what}: failed with exit code {code}"),
                None => format!("{what}: was killed ({status})"),
            });
        }
        parse_credential(&output, &self.api_version).map_err(|e| format!("{what}: {e}"))
    }
}

/// Reads the `ExecCredential` a plugin printed; `api_version` is the one the kubeconfig asked for.
pub(crate) fn parse_credential(output: &[u8], api_version: &str) -> Result<ExecCredential, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Credential {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        status: Option<Status>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        #[serde(default)]
        token: String,
        #[serde(default)]
        client_certificate_data: String,
        #[serde(default)]
        client_key_data: String,
        expiration_timestamp: Option<String>,
    }
    // Never quote the output: it holds the credential.
    let credential: Credential = serde_json::from_slice(output).map_err(|e| {
        format!(
            "its output is not an ExecCredential (JSON error at line {} column {})",
            e.line(),
            e.column()
        )
    })?;
    if credential.kind != "ExecCredential" {
        return Err(format!(
            "its output is a {:?}, not an ExecCredential",
            credential.kind
        ));
    }
    if credential.api_version != api_version {
        return Err(format!(
            "the kubeconfig asks for {api_version}, the plugin answered with {:?}",
            credential.api_version
        ));
    }
    let status = credential
        .status
        .ok_or("its ExecCredential has no status")?;
    if status.token.is_empty()
        && status.client_certificate_data.is_empty()
        && status.client_key_data.is_empty()
    {
        return Err("its ExecCredential holds neither a token nor a client certificate".into());
    }
    if status.client_certificate_data.is_empty() != status.client_key_data.is_empty() {
        return Err("its ExecCredential holds a client certificate or key but not both".into());
    }
    let expires_at = status
        .expiration_timestamp
        .filter(|t| !t.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("its expirationTimestamp {t:?} is not RFC 3339: {e}"))
        })
        .transpose()?;
    Ok(ExecCredential {
        token: Some(status.token)
            .filter(|t| !t.is_empty())
            .map(Sensitive::new),
        client_cert: Some(status.client_certificate_data)
            .filter(|c| !c.is_empty())
            .map(|cert| (cert.into_bytes(), Sensitive::new(status.client_key_data))),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "client.authentication.k8s.io/v1";

    #[test]
    fn reads_token_expiry_and_certificates() {
        let out = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{},"status":{"token":"k8s-aws-v1.abc","expirationTimestamp":"2026-11-30T05:00:00Z"}}"#;
        let credential = parse_credential(out, V1).unwrap();
        assert_eq!(credential.token.unwrap().expose(), "k8s-aws-v1.abc");
        assert_eq!(
            credential.expires_at.unwrap().to_rfc3339(),
            "2026-11-30T05:00:00+00:00"
        );
        let out = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"clientCertificateData":"CERT","clientKeyData":"KEY"}}"#;
        let credential = parse_credential(out, API_VERSIONS[1]).unwrap();
        assert!(credential.token.is_none() && credential.expires_at.is_none());
        let (cert, key) = credential.client_cert.unwrap();
        assert_eq!((cert.as_slice(), key.expose()), (&b"CERT"[..], "KEY"));
    }

    #[test]
    fn refuses_what_client_go_refuses_without_quoting_the_secret() {
        let cases: &[(&str, &str)] = &[
            (r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"secret"}}"#,
             "the kubeconfig asks for client.authentication.k8s.io/v1, the plugin answered with \"client.authentication.k8s.io/v1beta1\""),
            (r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1"}"#, "its ExecCredential has no status"),
            (r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}}"#,
             "its ExecCredential holds neither a token nor a client certificate"),
            (r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientKeyData":"secret"}}"#,
             "its ExecCredential holds a client certificate or key but not both"),
            (r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"secret","expirationTimestamp":"soon"}}"#,
             "its expirationTimestamp \"soon\" is not RFC 3339: premature end of input"),
            (r#"{"kind":"Status","apiVersion":"client.authentication.k8s.io/v1"}"#, "its output is a \"Status\", not an ExecCredential"),
            ("token: secret", "its output is not an ExecCredential (JSON error at line 1 column 2)"),
        ];
        for (out, want) in cases {
            let err = parse_credential(out.as_bytes(), V1).unwrap_err();
            assert_eq!(&err, want);
            assert!(!err.contains("secret"));
        }
    }
}
