//! The swap from the original controller: our binary started with the original's Deployment arguments (its
//! `--zap-*` logging flags and the metrics address behind kube-rbac-proxy) runs and provisions; it and an
//! instance with our defaults, both in the original's namespace, never lead at the same time (they elect through
//! the same Lease, `b1b11bb0.preferred.jp`); and a ServiceAccount manifest that lists its secret's
//! deterministic name up front is served with that entry kept exactly once.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use support::controller::{controller_kubeconfig, Controller, CONTROLLER_NAMESPACE};
use support::google::GoogleFake;
use support::{cluster, eventually, unique, Cluster};

const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";
const AUDIENCE: &str = "compat-aud";

/// The original's container arguments: config/manager/manager.yaml plus config/default's kube-rbac-proxy patch,
/// with the logging flags an operator of the original sets. The probe address is the one change: tests bind
/// loopback only.
const ORIGINAL_ARGS: &[&str] = &[
    "--health-probe-bind-address=127.0.0.1:0",
    "--metrics-bind-address=127.0.0.1:8080",
    "--leader-elect",
    "--zap-log-level=debug",
    "--zap-encoder=json",
    "--zap-devel=false",
    "--zap-stacktrace-level=error",
    "--zap-time-encoding=iso8601",
];

/// The controller's kubeconfig with the original's namespace as the context's, as in a pod of that namespace:
/// the Lease is then looked up there without any flag.
fn kubeconfig_in_original_namespace() -> PathBuf {
    let text = std::fs::read_to_string(controller_kubeconfig()).unwrap();
    let with_namespace = text.replacen(
        "    cluster: test\n",
        &format!("    cluster: test\n    namespace: {CONTROLLER_NAMESPACE}\n"),
        1,
    );
    assert_ne!(text, with_namespace, "the kubeconfig layout changed");
    let path = cluster().dir.join(format!(
        "compat-{}-{}.kubeconfig",
        std::process::id(),
        unique()
    ));
    std::fs::write(&path, with_namespace).unwrap();
    path
}

/// A controller process started with exactly `args` (plus the kubeconfig, its namespace and the stand-in).
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(name: &str, kubeconfig: &Path, ns: &str, google: &str, args: &[&str]) -> Process {
        let log = std::env::temp_dir().join(format!(
            "ipsp-compat-{name}-{}-{}.log",
            std::process::id(),
            unique()
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"))
            .args(args)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["--namespace", ns])
            .args(["--google-sts-endpoint", google])
            .args(["--google-iamcredentials-endpoint", google])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("controller starts");
        Process { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address serving /metrics, from the start-up log.
    fn metrics_address(&self) -> String {
        eventually(Duration::from_secs(30), "the metrics endpoint", || {
            self.logs().lines().find_map(|line| {
                // "Metrics endpoints", or "All endpoints" when metrics and probes share an address.
                if !line.contains("serving Metrics") && !line.contains("serving All") {
                    return None;
                }
                let rest = line.split("endpoints on http://").nth(1)?;
                let address = rest.split(['"', ' ', '}']).next()?.to_string();
                Some(address)
            })
        })
    }

    /// SIGTERM, then wait: the leader releases the Lease on the way out.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether /metrics at `address` says this replica leads; `None` while it cannot be read.
fn is_leader(address: &str) -> Option<bool> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let body = agent
        .get(&format!("http://{address}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    body.lines().find_map(|line| {
        line.strip_prefix("image_pull_secrets_provisioner_leader ")
            .map(|v| v.trim() == "1")
    })
}

fn annotate(cluster: &Cluster, ns: &str, sa: &str) {
    cluster.kubectl(&[
        "-n",
        ns,
        "annotate",
        "--overwrite",
        "serviceaccount",
        sa,
        "imagepullsecrets.preferred.jp/registry=europe-docker.pkg.dev",
        &format!("imagepullsecrets.preferred.jp/audience={AUDIENCE}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
    ]);
}

fn attached(cluster: &Cluster, ns: &str, sa: &str) -> Vec<String> {
    let sa: ServiceAccount = cluster.admin().get(Some(ns), sa).unwrap();
    sa.image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

fn fake() -> GoogleFake {
    GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, "*")
        .start()
}

#[test]
fn the_originals_arguments_provision_and_never_lead_together_with_ours() {
    let cluster = cluster();
    let ns = cluster.namespace("compat");
    let fake = fake();
    let kubeconfig = kubeconfig_in_original_namespace();

    // The original's arguments: starts, maps the zap flags, serves /metrics on 127.0.0.1:8080, leads.
    let mut original = Process::start("original", &kubeconfig, &ns, &fake.endpoint, ORIGINAL_ARGS);
    assert_eq!(original.metrics_address(), "127.0.0.1:8080");
    eventually(
        Duration::from_secs(40),
        "the original-args instance to lead",
        || is_leader("127.0.0.1:8080").filter(|l| *l),
    );
    let logs = original.logs();
    assert!(
        logs.lines().any(|l| l.starts_with('{')
            && l.contains("--zap-log-level=debug taken as --log-level debug")),
        "JSON log with the zap notice expected:\n{logs}"
    );
    assert!(
        logs.contains("--zap-time-encoding=iso8601 ignored"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(
            "campaigning for lease {CONTROLLER_NAMESPACE}/b1b11bb0.preferred.jp"
        )),
        "{logs}"
    );
    cluster.kubectl(&["-n", &ns, "create", "serviceaccount", "first"]);
    annotate(cluster, &ns, "first");
    eventually(Duration::from_secs(60), "first's secret attached", || {
        attached(cluster, &ns, "first")
            .contains(&"imagepullsecret-first".to_string())
            .then_some(())
    });
    assert!(
        original.logs().contains("provisioned secret for"),
        "{}",
        original.logs()
    );

    // Ours with its defaults (but loopback addresses), in the same namespace, on the same Lease.
    let ours = Process::start(
        "ours",
        &kubeconfig,
        &ns,
        &fake.endpoint,
        &[
            "--leader-elect",
            "--metrics-bind-address=127.0.0.1:0",
            "--health-probe-bind-address=127.0.0.1:0",
        ],
    );
    let ours_address = ours.metrics_address();
    assert!(ours.logs().contains(&format!(
        "campaigning for lease {CONTROLLER_NAMESPACE}/b1b11bb0.preferred.jp"
    )));

    // A sampler watches both /metrics endpoints for the rest of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let ours_address = ours_address.clone();
        std::thread::spawn(move || {
            let mut samples = 0;
            let mut both = 0;
            while !stop.load(Ordering::Relaxed) {
                let a = is_leader("127.0.0.1:8080").unwrap_or(false);
                let b = is_leader(&ours_address).unwrap_or(false);
                samples += 1;
                if a && b {
                    both += 1;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (samples, both)
        })
    };
    // Longer than a lease duration: ours stays standby while the original-args instance renews.
    std::thread::sleep(Duration::from_secs(17));
    assert_eq!(is_leader(&ours_address), Some(false));
    assert_eq!(is_leader("127.0.0.1:8080"), Some(true));

    // The original-args instance goes (a rollout step): ours takes over and provisions.
    original.terminate();
    eventually(Duration::from_secs(40), "ours to take over", || {
        is_leader(&ours_address).filter(|l| *l)
    });
    cluster.kubectl(&["-n", &ns, "create", "serviceaccount", "second"]);
    annotate(cluster, &ns, "second");
    eventually(Duration::from_secs(60), "second's secret attached", || {
        attached(cluster, &ns, "second")
            .contains(&"imagepullsecret-second".to_string())
            .then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let (samples, both) = sampler.join().unwrap();
    assert!(samples > 20, "only {samples} samples");
    assert_eq!(both, 0, "both led at once in {both} of {samples} samples");
    drop(ours);
}

/// The README's way around the pod-before-secret race: the ServiceAccount manifest names the secret the
/// controller will create. The API server serves it as written; the controller keeps that entry exactly once
/// (no duplicate, not removed) through provisioning, a refresh, and a re-apply of the manifest.
#[test]
fn a_service_account_that_lists_its_secret_up_front_keeps_exactly_that_entry() {
    let cluster = cluster();
    let ns = cluster.namespace("prelisted");
    let manifest = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: {ns}\n  annotations:\n    imagepullsecrets.preferred.jp/registry: europe-docker.pkg.dev\n    imagepullsecrets.preferred.jp/audience: {AUDIENCE}\n    imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider: {PROVIDER}\n    imagepullsecrets.preferred.jp/googlecloud-service-account-email: {EMAIL}\nimagePullSecrets:\n  - name: other-registry\n  - name: imagepullsecret-app\n"
    );
    cluster.apply(&manifest);
    // Served as written, before any controller runs.
    assert_eq!(
        attached(cluster, &ns, "app"),
        ["other-registry", "imagepullsecret-app"]
    );
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, "*")
        .arg("--token-lifetime")
        .arg("20")
        .start();
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .args(&["--min-refresh-interval", "2s"])
        .start();
    let admin = cluster.admin();
    let first: image_pull_secrets_provisioner::kube::types::Secret =
        eventually(Duration::from_secs(60), "the secret", || {
            admin.get(Some(&ns), "imagepullsecret-app").ok()
        });
    // A refresh (20 s tokens): the secret is rewritten, the list stays as it was.
    eventually(Duration::from_secs(60), "a refresh", || {
        let s: image_pull_secrets_provisioner::kube::types::Secret =
            admin.get(Some(&ns), "imagepullsecret-app").ok()?;
        (s.metadata.resource_version != first.metadata.resource_version).then_some(())
    });
    assert_eq!(
        attached(cluster, &ns, "app"),
        ["other-registry", "imagepullsecret-app"]
    );
    // Re-applying the manifest (a GitOps sync) changes nothing either.
    cluster.apply(&manifest);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        attached(cluster, &ns, "app"),
        ["other-registry", "imagepullsecret-app"]
    );
    let logs = controller.logs();
    assert!(logs.contains("provisioned secret for"), "{logs}");
}
