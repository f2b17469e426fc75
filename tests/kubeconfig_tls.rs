//! The kubeconfig's TLS options against the real API server: `tls-server-name` decides which name its
//! certificate is checked against, and `insecure-skip-tls-verify` connects without a CA at all.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use image_pull_secrets_provisioner::kube::{Client, Connection};
use support::{cluster, unique};

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
