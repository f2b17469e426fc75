//! Test helpers, each once for every module of the binary: the real Kubernetes control plane started by
//! `scripts/testenv/cluster`, clients for it, namespaces that keep tests apart, and the waits ([`poll`],
//! [`eventually`], [`measure`], `Controller::wait_idle`) — a test waits for something it can observe, never for
//! a guessed time.
//!
//! - [`controller`]: the binary under test, with the manifests' RBAC; [`objects`]: the ServiceAccounts, secrets
//!   and events tests write and read, and the annotation keys; [`google`], [`azure`], [`moto`], [`tinyproxy`]:
//!   the stand-ins and the proxy, each started per test.
//!
//! One cluster serves every test of the binary. `scripts/test` starts it once and passes its directory in
//! `IPSP_TESTENV`; without that (a lone `cargo test --test it -- NAME`), the first test starts one that stops
//! itself when the test process exits. Tests that must restart the API server get a private cluster of their
//! own.

#![allow(dead_code)]

pub mod azure;
pub mod controller;
pub mod fault_proxy;
pub mod google;
pub mod moto;
pub mod objects;
pub mod registry;
pub mod tinyproxy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image_pull_secrets_provisioner::kube::config::{Auth, Connection};
use image_pull_secrets_provisioner::kube::Client;

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running control plane, as described by the `env.json` that `cluster up` writes.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub server: String,
    pub ca_file: PathBuf,
    pub admin_token: String,
    pub admin_kubeconfig: PathBuf,
    pub issuer: String,
    pub kubectl: PathBuf,
}

impl Cluster {
    pub fn load(dir: &Path) -> Cluster {
        let text = std::fs::read_to_string(dir.join("env.json"))
            .unwrap_or_else(|e| panic!("cannot read {}/env.json: {e}", dir.display()));
        let env: serde_json::Value = serde_json::from_str(&text).expect("env.json is JSON");
        let field = |name: &str| {
            env[name]
                .as_str()
                .unwrap_or_else(|| panic!("env.json lacks {name}"))
                .to_string()
        };
        Cluster {
            dir: dir.to_path_buf(),
            server: field("server"),
            ca_file: field("ca_file").into(),
            admin_token: field("admin_token"),
            admin_kubeconfig: field("admin_kubeconfig").into(),
            issuer: field("issuer"),
            kubectl: field("kubectl").into(),
        }
    }

    /// A client with cluster-admin rights, for setting up and inspecting tests.
    pub fn admin(&self) -> Client {
        self.client_with_token(&self.admin_token)
    }

    pub fn client_with_token(&self, token: &str) -> Client {
        let roots =
            image_pull_secrets_provisioner::transport::certificates_from_file(&self.ca_file)
                .expect("the cluster's CA file");
        let connection = Connection {
            server: self.server.clone(),
            roots,
            client_cert: None,
            auth: Auth::Token(image_pull_secrets_provisioner::cloud::Sensitive::new(token)),
            namespace: None,
            tls_server_name: None,
            insecure_skip_tls_verify: false,
            proxy: None,
        };
        Client::new(connection, Duration::from_secs(30)).expect("client")
    }

    /// Runs kubectl as admin; panics with its output if it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Applies a manifest given as text.
    pub fn apply(&self, manifest: &str) {
        let path = std::env::temp_dir().join(format!(
            "ipsp-apply-{}-{}.yaml",
            std::process::id(),
            unique()
        ));
        std::fs::write(&path, manifest).expect("write manifest");
        self.kubectl(&["apply", "-f", path.to_str().expect("utf-8 path")]);
        let _ = std::fs::remove_file(path);
    }

    /// Creates a namespace with a unique name starting with `prefix`.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}-{}", std::process::id(), unique());
        self.kubectl(&["create", "namespace", &name]);
        name
    }

    /// Writes a kubeconfig for `token` in the cluster's directory and returns its path.
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}-{}.kubeconfig", unique()));
        let ca = std::fs::read(&self.ca_file).expect("CA file");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: {name}\ncurrent-context: test\nusers:\n- name: {name}\n  user:\n    token: {token}\n",
            self.server,
            base64_encode(&ca)
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

/// The cluster shared by every test in this process.
pub fn cluster() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var_os("IPSP_TESTENV") {
        Some(dir) => Cluster::load(Path::new(&dir)),
        None => {
            let dir = std::env::temp_dir().join(format!("ipsp-cluster-{}", std::process::id()));
            start_cluster(&dir, &["--watch-pid", &std::process::id().to_string()]);
            Cluster::load(&dir)
        }
    })
}

fn start_cluster(dir: &Path, extra: &[&str]) {
    let script = project_root().join("scripts/testenv/cluster");
    let status = Command::new(&script)
        .arg("up")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("scripts/testenv/cluster runs");
    assert!(
        status.success(),
        "scripts/testenv/cluster up failed; see the logs in {}",
        dir.display()
    );
}

/// A control plane of a test's own (no controller manager), stopped when dropped.
pub struct PrivateCluster {
    pub cluster: Cluster,
}

impl PrivateCluster {
    /// `apiserver_args` are added to kube-apiserver's flags.
    pub fn start(name: &str, apiserver_args: &[&str]) -> PrivateCluster {
        PrivateCluster::start_with(name, &[], apiserver_args)
    }

    /// Like [`PrivateCluster::start`], with options of `cluster up` too (`--audit-log`, `--issuer URL`).
    pub fn start_with(name: &str, options: &[&str], apiserver_args: &[&str]) -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!(
            "ipsp-private-{name}-{}-{}",
            std::process::id(),
            unique()
        ));
        let mut extra = vec![
            "--no-controller-manager".to_string(),
            "--watch-pid".to_string(),
            std::process::id().to_string(),
        ];
        extra.extend(options.iter().map(|o| o.to_string()));
        for arg in apiserver_args {
            extra.push("--apiserver-arg".to_string());
            extra.push(arg.to_string());
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        start_cluster(&dir, &extra);
        PrivateCluster {
            cluster: Cluster::load(&dir),
        }
    }

    pub fn restart_apiserver(&self) {
        let status = Command::new(project_root().join("scripts/testenv/cluster"))
            .arg("restart-apiserver")
            .arg(&self.cluster.dir)
            .status()
            .expect("scripts/testenv/cluster runs");
        assert!(status.success(), "restarting kube-apiserver failed");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(project_root().join("scripts/testenv/cluster"))
            .arg("down")
            .arg(&self.cluster.dir)
            .status();
    }
}

/// Provider HTTP that retries as the controller does (3 attempts), with short delays: for the provider
/// clients the tests drive directly.
pub fn provider_http() -> image_pull_secrets_provisioner::cloud::http::ProviderHttp {
    use image_pull_secrets_provisioner::cloud::http::{ProviderHttp, RetryPolicy};
    let retry = RetryPolicy {
        attempts: 3,
        backoff: image_pull_secrets_provisioner::retry::Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(100),
            ..RetryPolicy::default().backoff
        },
        ..RetryPolicy::default()
    };
    ProviderHttp::new(None, Duration::from_secs(10), retry).expect("provider HTTP")
}

/// A tool built by scripts/testenv/build-tools (built once, cached): helm, promtool, registry, cosign,
/// cargo-auditable, cargo-cyclonedx, cargo-deny.
pub fn tool(name: &str) -> PathBuf {
    let output = Command::new(project_root().join("scripts/testenv/build-tools"))
        .arg(name)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("build-tools runs");
    assert!(output.status.success(), "build-tools {name} failed");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join(name)
}

/// A number unique within this process.
pub fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Calls `check` every `every` until it returns Some (that value) or `timeout` has passed (None): the one
/// loop behind every wait of the tests, so each waits for something observable and says what on failure.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub fn eventually<T>(timeout: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(timeout, Duration::from_millis(50), check)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// "Within a second", with room for a loaded test machine: what [`measure`]d reactions are held to.
pub const PROMPT: Duration = Duration::from_secs(2);

/// Polls every 10 ms until `check` holds; prints and returns how long that took (at most
/// [`objects::PATIENCE`], else it panics with the controller's log).
pub fn measure(
    what: &str,
    controller: &controller::Controller,
    mut check: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    let took = poll(objects::PATIENCE, Duration::from_millis(10), || {
        check().then(|| started.elapsed())
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not within {:?}\n{}",
            objects::PATIENCE,
            controller.logs()
        )
    });
    println!("{what}: {took:?}");
    took
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes the claims of a JWT without verifying it (tests compare them to what was asked for).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}
