//! The controller binary under test, running as the ServiceAccount that `manifests/` creates and with exactly
//! the RBAC that `manifests/` grants — so a missing or excess permission shows up in tests.
//!
//! Each test runs its own controller restricted to its own namespace (`--namespace`), so tests on the shared
//! cluster never see each other's objects. The process is killed when the [`Controller`] is dropped and, by
//! a watchdog, when the test process exits however it ends.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{cluster, eventually, poll, project_root, unique, Cluster};

/// How long a controller must stay quiet to count as idle ([`Controller::wait_idle`]): longer than a watch
/// event takes to reach the queue and a reconcile to begin logging.
pub const QUIET: Duration = Duration::from_secs(1);

/// The namespace and name of the controller's own ServiceAccount in `manifests/`.
pub const CONTROLLER_NAMESPACE: &str = "image-pull-secrets-provisioner-system";
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "image-pull-secrets-provisioner";

/// Applies a file of `manifests/` (namespace, ServiceAccount, RBAC; never the Deployment).
pub fn apply_manifest(cluster: &Cluster, file: &str) {
    let path = project_root().join("manifests").join(file);
    cluster.kubectl(&["apply", "-f", path.to_str().expect("utf-8 path")]);
}

/// A kubeconfig that authenticates as the manifests' ServiceAccount, with the manifests' RBAC applied.
pub fn controller_kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        let cluster = cluster();
        for file in [
            "namespace.yaml",
            "serviceaccount.yaml",
            "rbac.yaml",
            "leader-election-rbac.yaml",
        ] {
            apply_manifest(cluster, file);
        }
        let token =
            service_account_token(cluster, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT);
        cluster.kubeconfig_for_token("controller", &token)
    })
}

/// A long-lived token of a ServiceAccount, for authenticating a test process as it.
pub fn service_account_token(cluster: &Cluster, namespace: &str, name: &str) -> String {
    let admin = cluster.admin();
    eventually(
        Duration::from_secs(30),
        "the ServiceAccount to exist",
        || {
            admin
                .get::<image_pull_secrets_provisioner::kube::types::ServiceAccount>(
                    Some(namespace),
                    name,
                )
                .ok()
        },
    );
    let issued = admin
        .create_token(
            namespace,
            name,
            &[cluster.server.as_str()],
            Duration::from_secs(24 * 3600),
        )
        .expect("token for the controller's ServiceAccount");
    issued.token.expose().to_string()
}

/// How to start a controller.
#[derive(Debug, Clone)]
pub struct ControllerBuilder {
    kubeconfig: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl ControllerBuilder {
    /// Any flag, e.g. `.arg("--disable-pod-eviction")`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Replaces the default `--log-level debug` (the flag may be given only once).
    pub fn log_level(mut self, level: &str) -> Self {
        if let Some(i) = self.args.iter().position(|a| a == "--log-level") {
            self.args[i + 1] = level.to_string();
        }
        self
    }

    /// Authenticate with another kubeconfig (another identity, other RBAC).
    pub fn kubeconfig(mut self, path: &Path) -> Self {
        self.kubeconfig = path.to_path_buf();
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Points both Google endpoints at a stand-in.
    pub fn google(self, endpoint: &str) -> Self {
        self.args(&[
            "--google-sts-endpoint",
            endpoint,
            "--google-iamcredentials-endpoint",
            endpoint,
        ])
    }

    /// Points the AWS endpoints at moto.
    pub fn aws(self, endpoint: &str) -> Self {
        self.args(&[
            "--aws-sts-endpoint",
            endpoint,
            "--aws-ecr-endpoint",
            endpoint,
        ])
    }

    pub fn start(self) -> Controller {
        let dir = std::env::temp_dir().join(format!(
            "ipsp-controller-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).expect("controller directory");
        let log_path = dir.join("controller.log");
        // IPSP_CONTROLLER_BIN runs another build of the binary, e.g. the static one the image ships (bench).
        let binary = std::env::var_os("IPSP_CONTROLLER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner")));
        let mut command = Command::new(binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "--metrics-bind-address",
                "127.0.0.1:0",
                "--health-probe-bind-address",
                "127.0.0.1:0",
            ])
            .args(&self.args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(File::create(dir.join("stdout")).expect("stdout file"))
            .stderr(File::create(&log_path).expect("log file"));
        for (name, value) in &self.env {
            command.env(name, value);
        }
        let child = command.spawn().expect("controller binary starts");
        watch_parent(child.id());
        Controller {
            child: Mutex::new(child),
            log_path,
            dir,
        }
    }
}

/// Kills process `pid` once this test process is gone, however it ended.
fn watch_parent(pid: u32) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null",
        std::process::id()
    );
    let _ = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A running controller process.
pub struct Controller {
    child: Mutex<Child>,
    pub log_path: PathBuf,
    pub dir: PathBuf,
}

impl Controller {
    /// A controller restricted to `namespace`, as the manifests' ServiceAccount, at debug level.
    pub fn builder(namespace: &str) -> ControllerBuilder {
        ControllerBuilder {
            kubeconfig: controller_kubeconfig().to_path_buf(),
            args: vec![
                "--namespace".into(),
                namespace.into(),
                "--log-level".into(),
                "debug".into(),
            ],
            env: Vec::new(),
        }
    }

    /// Everything the controller has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The address of its HTTP endpoints (metrics, healthz, readyz), from its start-up log line.
    pub fn http_address(&self) -> String {
        eventually(
            Duration::from_secs(30),
            "the controller's HTTP endpoints",
            || {
                self.logs().lines().find_map(|line| {
                    line.split("endpoints on http://").nth(1).map(|rest| {
                        // The address ends where the text line's space or the JSON line's quote begins.
                        rest.split(|c: char| c.is_whitespace() || c == '"')
                            .next()
                            .unwrap_or("")
                            .to_string()
                    })
                })
            },
        )
    }

    /// GETs `path` from its HTTP endpoints: status and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.http_address());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        (
            status,
            response.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Waits until the controller has gone idle: for [`QUIET`] in a row its work queue holds no ready key
    /// (`workqueue_depth`), no event waits to be written (`events_queued`), and it logs nothing about work.
    /// Tests call it before asserting that nothing else happened, instead of sleeping for a guess.
    pub fn wait_idle(&self) {
        self.wait_idle_for(QUIET, Duration::from_secs(90));
    }

    /// [`Controller::wait_idle`] with another quiet period and deadline (the benchmark's floods need both longer).
    pub fn wait_idle_for(&self, quiet: Duration, timeout: Duration) {
        let mut idle_since: Option<(Instant, usize)> = None;
        eventually(timeout, "the controller to go idle", || {
            let (_, metrics) = self.http_get("/metrics");
            let gauge = |name: &str| {
                metrics
                    .lines()
                    .find(|l| l.split_whitespace().next() == Some(name))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            let depth = gauge("image_pull_secrets_provisioner_workqueue_depth")
                + gauge("image_pull_secrets_provisioner_events_queued");
            let work = self.work_lines();
            match idle_since {
                Some((since, lines)) if depth == 0.0 && lines == work => {
                    return (since.elapsed() >= quiet).then_some(());
                }
                _ if depth == 0.0 => idle_since = Some((Instant::now(), work)),
                _ => idle_since = None,
            }
            None
        });
    }

    /// How many lines of its log are about work: the HTTP thread (our own scrapes) and the leader elector log
    /// on their own schedule, so they do not count.
    fn work_lines(&self) -> usize {
        self.logs()
            .lines()
            .filter(|l| !l.contains("provisioner::http") && !l.contains("runtime::leader"))
            .count()
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        self.wait(timeout)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn wait(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        poll(timeout, Duration::from_millis(50), || {
            self.child.lock().unwrap().try_wait().ok().flatten()
        })
    }

    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- controller log ({}) ---\n{}",
                self.log_path.display(),
                std::fs::read_to_string(&self.log_path).unwrap_or_default()
            );
        }
    }
}
