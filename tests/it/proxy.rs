//! Proxy selection against a real forward proxy (tinyproxy): with `HTTPS_PROXY`/`HTTP_PROXY` pointing at it,
//! each `NO_PROXY` of a table decides whether a request to the real API server, and to a provider (moto),
//! goes through the proxy — and tinyproxy's own request log is the proof.
//!
//! The expected column is Go's documented behaviour (`golang.org/x/net/http/httpproxy`), written out by hand.
//! Go never proxies `localhost` or loopback IPs, so the servers are reached by another name that resolves to
//! 127.0.0.1 ([`loopback_name`]); the API server's certificate does not carry that name, so the kubeconfig
//! names the one it does carry in `tls-server-name` — which this test thereby checks too.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::controller::{
    controller_kubeconfig, service_account_token, Controller, CONTROLLER_NAMESPACE,
    CONTROLLER_SERVICE_ACCOUNT,
};
use crate::support::moto::{moto, PULLER_ROLE, REGISTRY};
use crate::support::tinyproxy::{loopback_name, Tinyproxy};
use crate::support::{cluster, eventually, unique};
use image_pull_secrets_provisioner::cloud::http::{ProviderHttp, RetryPolicy};
use image_pull_secrets_provisioner::kube::types::{ObjectMeta, ServiceAccount};
use image_pull_secrets_provisioner::kube::{Client, Connection};
use image_pull_secrets_provisioner::proxy::ProxyConfig;
use image_pull_secrets_provisioner::retry::Backoff;

/// A `NO_PROXY` value, the host the request is sent to, and whether Go sends it through the proxy.
struct Row {
    no_proxy: String,
    host: String,
    proxied: bool,
}

/// The table, for a server reached as `name:port`. 23 patterns.
fn table(name: &str, port: u16) -> Vec<Row> {
    let row = |no_proxy: &str, host: &str, proxied: bool| Row {
        no_proxy: no_proxy.to_string(),
        host: host.to_string(),
        proxied,
    };
    let upper = name.to_ascii_uppercase();
    let tail = &name[1..];
    vec![
        row("", name, true),
        row(name, name, false),
        row(&format!("{name}:{port}"), name, false),
        row(&format!("{name}:1"), name, true),
        row(&format!("{name}:443"), name, true),
        row(&format!(".{name}"), name, true),
        row(&format!("*.{name}"), name, true),
        row("*", name, false),
        row(&upper, name, false),
        row(&format!(" , {name} , "), name, false),
        row("other.example", name, true),
        row(&format!("other.example,{name}"), name, false),
        row("127.0.0.1", name, true),
        row("127.0.0.0/8", name, true),
        row("::1", name, true),
        row("[::1]", name, true),
        row(&format!("sub.{name}"), name, true),
        row(tail, name, true),
        row(&format!("*{name}"), name, true),
        row(",,", name, true),
        row("", "localhost", false),
        row("", "127.0.0.1", false),
        row("other.example", "127.0.0.1", false),
    ]
}

/// The proxy variables as the environment would hold them; odd rows use the lower-case spelling.
fn proxies(proxy: &str, no_proxy: &str, lower: bool) -> ProxyConfig {
    let (https, http, no) = if lower {
        ("https_proxy", "http_proxy", "no_proxy")
    } else {
        ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
    };
    let proxy = proxy.to_string();
    let no_proxy = no_proxy.to_string();
    ProxyConfig::from_lookup(move |var| {
        if var == https || var == http {
            Some(proxy.clone())
        } else if var == no {
            Some(no_proxy.clone())
        } else {
            None
        }
    })
    .expect("proxy settings")
}

fn server_port(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a port in the URL")
}

/// A kubeconfig for the test cluster reached as `host`, checked against a name on its certificate.
fn kubeconfig(host: &str, port: u16, proxy_url: Option<&str>) -> PathBuf {
    kubeconfig_for(host, port, proxy_url, &cluster().admin_token)
}

fn kubeconfig_for(host: &str, port: u16, proxy_url: Option<&str>, token: &str) -> PathBuf {
    let cluster = cluster();
    let path = std::env::temp_dir().join(format!(
        "ipsp-proxy-{}-{}.kubeconfig",
        std::process::id(),
        unique()
    ));
    let proxy = proxy_url
        .map(|p| format!("    proxy-url: {p}\n"))
        .unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://{host}:{port}\n    certificate-authority: {}\n    tls-server-name: kubernetes.default.svc\n{proxy}contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\ncurrent-context: test\nusers:\n- name: admin\n  user:\n    token: {}\n",
            cluster.ca_file.display(),
            token
        ),
    )
    .expect("write kubeconfig");
    path
}

/// Waits until the proxy log shows `expected` CONNECTs to `host:port`, then checks that it stays there.
fn assert_connects(proxy: &Tinyproxy, host: &str, port: u16, expected: usize, what: &str) {
    eventually(Duration::from_secs(10), what, || {
        (proxy.connects(host, port) >= expected).then_some(())
    });
    assert_eq!(
        proxy.connects(host, port),
        expected,
        "{what}: proxy log:\n{}",
        proxy.log()
    );
}

#[test]
fn no_proxy_decides_which_api_server_requests_reach_the_proxy() {
    let proxy = Tinyproxy::start();
    let name = loopback_name();
    let port = server_port(&cluster().server);
    let rows = table(&name, port);
    assert!(rows.len() >= 20);
    for (i, row) in rows.iter().enumerate() {
        let what = format!(
            "row {i}: NO_PROXY={:?}, API server at {}:{port}",
            row.no_proxy, row.host
        );
        let before = proxy.connects(&row.host, port);
        let connection = Connection::from_kubeconfig_with(
            &[kubeconfig(&row.host, port, None)],
            &proxies(&proxy.url, &row.no_proxy, i % 2 == 1),
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let client = Client::new(connection, Duration::from_secs(20)).expect("client");
        let version: serde_json::Value = client
            .call_json("GET", "/version", &[], None)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(version["gitVersion"].is_string(), "{what}: {version}");
        assert_connects(
            &proxy,
            &row.host,
            port,
            before + usize::from(row.proxied),
            &what,
        );
    }

    // The kubeconfig's proxy-url is used whatever NO_PROXY says.
    let before = proxy.connects(&name, port);
    let connection = Connection::from_kubeconfig_with(
        &[kubeconfig(&name, port, Some(&proxy.url))],
        &proxies("http://127.0.0.1:9", "*", false),
    )
    .expect("kubeconfig with proxy-url");
    let client = Client::new(connection, Duration::from_secs(20)).expect("client");
    let _: serde_json::Value = client
        .call_json("GET", "/version", &[], None)
        .expect("through proxy-url");
    assert_connects(&proxy, &name, port, before + 1, "proxy-url with NO_PROXY=*");
}

#[test]
fn no_proxy_decides_which_provider_requests_reach_the_proxy() {
    let proxy = Tinyproxy::start();
    let name = loopback_name();
    let moto = moto();
    let retry = RetryPolicy {
        attempts: 1,
        backoff: Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(10),
            ..RetryPolicy::default().backoff
        },
        ..RetryPolicy::default()
    };
    let rows = table(&name, moto.port);
    for (i, row) in rows.iter().enumerate() {
        let what = format!(
            "row {i}: NO_PROXY={:?}, provider at http://{}:{}",
            row.no_proxy, row.host, moto.port
        );
        let before = proxy.connects(&row.host, moto.port);
        let http = ProviderHttp::new(None, Duration::from_secs(20), retry)
            .expect("provider HTTP")
            .with_proxy(proxies(&proxy.url, &row.no_proxy, i % 2 == 1));
        let response = http
            .post(
                "sts",
                &format!("http://{}:{}/", row.host, moto.port),
                &[],
                "application/x-www-form-urlencoded",
                b"Action=GetCallerIdentity&Version=2011-06-15",
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // moto answered (whatever it thinks of an unsigned call): the request arrived, by either path.
        assert!(response.status >= 200, "{what}");
        assert_connects(
            &proxy,
            &row.host,
            moto.port,
            before + usize::from(row.proxied),
            &what,
        );
    }

    // An http:// endpoint uses HTTP_PROXY only: with just HTTPS_PROXY set it is reached directly.
    let only_https =
        ProxyConfig::from_lookup(|var| (var == "HTTPS_PROXY").then(|| proxy.url.clone()))
            .expect("proxy settings");
    let before = proxy.connects(&name, moto.port);
    let http = ProviderHttp::new(None, Duration::from_secs(20), retry)
        .expect("provider HTTP")
        .with_proxy(only_https);
    http.post(
        "sts",
        &format!("http://{name}:{}/", moto.port),
        &[],
        "application/x-www-form-urlencoded",
        b"Action=GetCallerIdentity&Version=2011-06-15",
    )
    .expect("direct");
    assert_connects(
        &proxy,
        &name,
        moto.port,
        before,
        "http:// with only HTTPS_PROXY",
    );
}

/// The controller binary itself, configured only through its environment (lower- and upper-case spellings
/// mixed), sends its API server and provider (moto's STS and ECR) requests through the proxy — or, with the
/// host in `no_proxy`, past it — and provisions the secret either way.
#[test]
fn the_controller_binary_follows_the_proxy_environment() {
    let cluster = cluster();
    let admin = cluster.admin();
    let proxy = Tinyproxy::start();
    let name = loopback_name();
    let port = server_port(&cluster.server);
    let moto = moto();
    controller_kubeconfig();
    let token = service_account_token(cluster, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT);
    let kubeconfig = kubeconfig_for(&name, port, None, &token);

    for (no_proxy, proxied) in [("other.example", true), (name.as_str(), false)] {
        let ns = cluster.namespace("proxy-env");
        let (api_before, moto_before) = (
            proxy.connects(&name, port),
            proxy.connects(&name, moto.port),
        );
        let controller = Controller::builder(&ns)
            .kubeconfig(&kubeconfig)
            .aws(&format!("http://{name}:{}", moto.port))
            .env("https_proxy", &proxy.url)
            .env("HTTP_PROXY", &proxy.url)
            .env("no_proxy", no_proxy)
            .start();
        let annotations = [
            ("registry", REGISTRY),
            ("audience", "ipsp-test"),
            ("aws-role-arn", PULLER_ROLE),
        ]
        .into_iter()
        .map(|(k, v)| (format!("imagepullsecrets.preferred.jp/{k}"), v.to_string()))
        .collect();
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: "app".into(),
                namespace: ns.clone(),
                annotations,
                ..Default::default()
            },
            ..Default::default()
        };
        admin.create(Some(&ns), &sa).expect("ServiceAccount");
        eventually(Duration::from_secs(60), "the secret provisioned", || {
            let sa: ServiceAccount = admin.get(Some(&ns), "app").ok()?;
            sa.image_pull_secrets.filter(|s| !s.is_empty()).map(|_| ())
        });
        let what = format!(
            "controller with no_proxy={no_proxy:?}:\n{}",
            controller.logs()
        );
        if proxied {
            assert!(
                proxy.connects(&name, port) > api_before,
                "{what}\nproxy log:\n{}",
                proxy.log()
            );
            assert!(
                proxy.connects(&name, moto.port) > moto_before,
                "{what}\nproxy log:\n{}",
                proxy.log()
            );
        } else {
            assert_eq!(proxy.connects(&name, port), api_before, "{what}");
            assert_eq!(proxy.connects(&name, moto.port), moto_before, "{what}");
        }
        controller.terminate(Duration::from_secs(30));
    }
}
