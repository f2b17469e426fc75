//! Kubeconfigs against the real API server: the file kubectl writes; exec credential plugins (a plugin script
//! hands out real ServiceAccount tokens of the test cluster; the test counts its runs while the credential is
//! valid, after it expires and after the server stops accepting it (401), and checks what the plugin was
//! given); and the TLS options (`tls-server-name` decides which name the certificate is checked against,
//! `insecure-skip-tls-verify` connects without a CA at all).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use image_pull_secrets_provisioner::kube::types::{ObjectMeta, Secret};
use image_pull_secrets_provisioner::kube::{Client, Connection};

use crate::support::{cluster, eventually, unique};

/// Prints an ExecCredential from the files in `$PLUGIN_DIR` (`credential.json` as it is, else one made of
/// `token` and `expires`), and records each run and what it was given.
const PLUGIN: &str = r#"#!/bin/sh
set -eu
echo "$*" >>"$PLUGIN_DIR/runs"
printf '%s' "$KUBERNETES_EXEC_INFO" >"$PLUGIN_DIR/exec-info.json"
if [ -f "$PLUGIN_DIR/credential.json" ]; then exec cat "$PLUGIN_DIR/credential.json"; fi
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' \
  "$(cat "$PLUGIN_DIR/token")" "$(cat "$PLUGIN_DIR/expires")"
"#;

struct Plugin {
    dir: PathBuf,
}

impl Plugin {
    fn new() -> Plugin {
        let dir =
            std::env::temp_dir().join(format!("ipsp-exec-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("plugin dir");
        let script = dir.join("plugin.sh");
        std::fs::write(&script, PLUGIN).expect("plugin script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Plugin { dir }
    }

    fn hand_out(&self, token: &str, valid_for: Duration) {
        let expires = Utc::now() + chrono::Duration::from_std(valid_for).expect("duration");
        std::fs::write(self.dir.join("token"), token).expect("token");
        std::fs::write(
            self.dir.join("expires"),
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .expect("expires");
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.dir.join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// A kubeconfig whose user runs `command` (the script, relative to the kubeconfig, unless given).
    fn kubeconfig(&self, command: &str, install_hint: &str) -> PathBuf {
        let cluster = cluster();
        let path = self.dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\n    extensions:\n    - name: client.authentication.k8s.io/exec\n      extension:\n        audience: test\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: plugin\ncurrent-context: test\nusers:\n- name: plugin\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {command}\n      args:\n      - get-token\n      - --for=test\n      env:\n      - name: PLUGIN_DIR\n        value: {}\n      installHint: {install_hint}\n      interactiveMode: Never\n      provideClusterInfo: true\n",
                cluster.server,
                cluster.ca_file.display(),
                self.dir.display()
            ),
        )
        .expect("kubeconfig");
        path
    }
}

/// Who the API server says the client is.
fn whoami(client: &Client) -> Result<String, String> {
    let review =
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let body = image_pull_secrets_provisioner::kube::client::Body::json(&review)
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = client
        .call_json(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            &[],
            Some(body),
        )
        .map_err(|e| e.to_string())?;
    answer["status"]["userInfo"]["username"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no username in {answer}"))
}

/// A token of `service_account` that stops working when `secret` is deleted.
fn token_bound_to(
    admin: &Client,
    namespace: &str,
    service_account: &str,
    secret: &Secret,
) -> String {
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": 3600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Secret", "name": secret.metadata.name, "uid": secret.metadata.uid},
        },
    });
    let body = image_pull_secrets_provisioner::kube::client::Body::json(&request).expect("body");
    let answer: serde_json::Value = admin
        .call_json(
            "POST",
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"),
            &[],
            Some(body),
        )
        .expect("TokenRequest");
    answer["status"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

#[test]
fn exec_plugin_runs_once_while_valid_and_again_after_expiry_and_after_401() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("exec");
    cluster.kubectl(&["create", "serviceaccount", "plugin-user", "-n", &ns]);
    let secret: Secret = admin
        .create(
            Some(&ns),
            &Secret {
                metadata: ObjectMeta {
                    name: "anchor".into(),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .expect("anchor secret");
    let revocable = token_bound_to(&admin, &ns, "plugin-user", &secret);
    let expected_user = format!("system:serviceaccount:{ns}:plugin-user");

    let plugin = Plugin::new();
    // A short validity that a loaded machine still serves three requests in.
    plugin.hand_out(&revocable, Duration::from_secs(15));
    let connection = Connection::from_kubeconfig(&[plugin.kubeconfig("./plugin.sh", "not used")])
        .expect("kubeconfig");
    let client = Client::new(connection, Duration::from_secs(20)).expect("client");
    assert_eq!(
        plugin.runs(),
        0,
        "the plugin runs when a request needs it, not before"
    );
    for _ in 0..3 {
        assert_eq!(whoami(&client).unwrap(), expected_user);
    }
    assert_eq!(plugin.runs(), 1, "one run while the credential is valid");

    // What the plugin was given: its args, env, and with provideClusterInfo the cluster.
    assert_eq!(
        std::fs::read_to_string(plugin.dir.join("runs"))
            .unwrap()
            .lines()
            .next(),
        Some("get-token --for=test")
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plugin.dir.join("exec-info.json")).unwrap())
            .unwrap();
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], cluster.server.as_str());
    assert_eq!(info["spec"]["cluster"]["config"]["audience"], "test");
    let ca = std::fs::read(&cluster.ca_file).unwrap();
    assert_eq!(
        info["spec"]["cluster"]["certificate-authority-data"],
        crate::support::base64_encode(&ca).as_str()
    );

    // After the expirationTimestamp: run again, once.
    plugin.hand_out(&revocable, Duration::from_secs(3600));
    eventually(Duration::from_secs(30), "the credential's expiry", || {
        // Paces the requests: each one is a chance for the client to run the plugin too often.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(whoami(&client).unwrap(), expected_user);
        (plugin.runs() == 2).then_some(())
    });
    whoami(&client).unwrap();
    assert_eq!(plugin.runs(), 2, "one run after expiry");

    // Revoke the cached token (delete the object it is bound to): the server answers 401, the plugin runs
    // again and its new token serves the same request.
    let fresh = admin
        .create_token(&ns, "plugin-user", &[], Duration::from_secs(3600))
        .expect("a fresh token");
    plugin.hand_out(fresh.token.expose(), Duration::from_secs(3600));
    admin
        .delete::<Secret>(Some(&ns), "anchor", None)
        .expect("delete the anchor");
    eventually(
        Duration::from_secs(60),
        "the 401 to the revoked token",
        || {
            assert_eq!(whoami(&client).unwrap(), expected_user);
            (plugin.runs() == 3).then_some(())
        },
    );
    for _ in 0..3 {
        assert_eq!(whoami(&client).unwrap(), expected_user);
    }
    assert_eq!(plugin.runs(), 3, "one run after the 401");
}

#[test]
fn a_missing_plugin_names_its_install_hint() {
    let plugin = Plugin::new();
    let missing = plugin.dir.join("not-installed-auth-plugin");
    let kubeconfig = plugin.kubeconfig(
        missing.to_str().unwrap(),
        "Install not-installed-auth-plugin for use with kubectl by following\n        https://example.com/install",
    );
    let connection = Connection::from_kubeconfig(&[kubeconfig]).expect("kubeconfig");
    let client = Client::new(connection, Duration::from_secs(20)).expect("client");
    let error = whoami(&client).unwrap_err();
    assert_eq!(
        error,
        format!(
            "cannot reach the Kubernetes API: exec plugin {} of kubeconfig user \"plugin\": executable not found: \
             Install not-installed-auth-plugin for use with kubectl by following https://example.com/install",
            missing.display()
        )
    );
    assert!(!Path::new(&plugin.dir.join("runs")).exists());
}

#[test]
fn a_client_certificate_from_the_plugin_is_presented() {
    let cluster = cluster();
    let plugin = Plugin::new();
    // A client certificate signed by the cluster's client CA, for a user of its own name.
    let key = plugin.dir.join("client.key");
    let csr = plugin.dir.join("client.csr");
    let cert = plugin.dir.join("client.crt");
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &path(&key),
        "-out",
        &path(&csr),
        "-subj",
        "/CN=exec-cert-user",
    ]);
    let ca_key = cluster.dir.join("ca.key");
    // Extensions make it an X.509 v3 certificate, the only version TLS libraries accept.
    let ext = plugin.dir.join("client.ext");
    std::fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &path(&cluster.ca_file),
        "-CAkey",
        &path(&ca_key),
        "-set_serial",
        &unique().to_string(),
        "-days",
        "1",
        "-extfile",
        &path(&ext),
        "-out",
        &path(&cert),
    ]);
    let credential = serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "clientCertificateData": std::fs::read_to_string(&cert).unwrap(),
            "clientKeyData": std::fs::read_to_string(&key).unwrap(),
        },
    });
    std::fs::write(plugin.dir.join("credential.json"), credential.to_string()).unwrap();
    let connection = Connection::from_kubeconfig(&[plugin.kubeconfig("./plugin.sh", "not used")])
        .expect("kubeconfig");
    let client = Client::new(connection, Duration::from_secs(20)).expect("client");
    for _ in 0..3 {
        assert_eq!(whoami(&client).unwrap(), "exec-cert-user");
    }
    assert_eq!(
        plugin.runs(),
        1,
        "a credential without expiry is kept until a 401"
    );
}

#[test]
fn the_kubeconfig_kubectl_writes_is_understood() {
    let cluster = cluster();
    let connection = image_pull_secrets_provisioner::kube::Connection::from_kubeconfig(
        std::slice::from_ref(&cluster.admin_kubeconfig),
    )
    .unwrap();
    let client = Client::new(connection, Duration::from_secs(10)).unwrap();
    let ns = cluster.namespace("kubeconfig");
    let sa: ServiceAccount = eventually(
        Duration::from_secs(30),
        "the default ServiceAccount",
        || client.get(Some(&ns), "default").ok(),
    );
    assert_eq!(sa.metadata.namespace, ns);
}

// ---------------------------------------------------------------------------------------------------------
// TLS options

fn kubeconfig(cluster_fields: &str) -> PathBuf {
    let cluster = cluster();
    let path = std::env::temp_dir().join(format!(
        "ipsp-tls-{}-{}.kubeconfig",
        std::process::id(),
        unique()
    ));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n{cluster_fields}contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\nusers:\n- name: admin\n  user:\n    token: {}\n",
            cluster.server, cluster.admin_token
        ),
    )
    .expect("write kubeconfig");
    path
}

fn version(path: PathBuf) -> Result<serde_json::Value, String> {
    let connection = Connection::from_kubeconfig(&[path])?;
    let client = Client::new(connection, Duration::from_secs(20))?;
    client
        .call_json("GET", "/version", &[], None)
        .map_err(|e| e.to_string())
}

#[test]
fn tls_server_name_is_the_name_checked() {
    let ca = format!(
        "    certificate-authority: {}\n",
        cluster().ca_file.display()
    );
    // The certificate names kubernetes.default.svc (and 127.0.0.1, the host of the URL).
    version(kubeconfig(&format!(
        "{ca}    tls-server-name: kubernetes.default.svc\n"
    )))
    .expect("a name it carries");
    let error = version(kubeconfig(&format!(
        "{ca}    tls-server-name: other.example\n"
    )))
    .unwrap_err();
    assert!(
        error.ends_with(
            "invalid peer certificate: certificate not valid for name \"other.example\"; certificate is only valid \
             for IpAddress(127.0.0.1), DnsName(\"localhost\") or DnsName(\"kubernetes.default.svc\")"
        ),
        "{error}"
    );
}

#[test]
fn insecure_skip_tls_verify_connects_without_a_ca() {
    version(kubeconfig("    insecure-skip-tls-verify: true\n")).expect("no CA, no check");
    // Without it and without the CA, the public roots do not trust the test CA.
    let error = version(kubeconfig("")).unwrap_err();
    assert!(error.contains("UnknownIssuer"), "{error}");
}
