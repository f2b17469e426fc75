//! The swap from the original controller: our binary started with the original's Deployment arguments (its
//! `--zap-*` logging flags and the metrics address behind kube-rbac-proxy) runs and provisions; it and an
//! instance with our defaults, both in the original's namespace, never lead at the same time (they elect through
//! the same Lease, `b1b11bb0.preferred.jp`); and a ServiceAccount manifest that lists its secret's
//! deterministic name up front is served with that entry kept exactly once; and the original's secrets are
//! adopted as they are and refreshed when due.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use image_pull_secrets_provisioner::kube::types::{
    ObjectMeta, OwnerReference, Secret, ServiceAccount,
};
use serde_json::json;

use crate::support::controller::{controller_kubeconfig, Controller, CONTROLLER_NAMESPACE};
use crate::support::google::{
    google_config, google_fake, member, GoogleFake, EMAIL, PROVIDER, REGISTRY,
};
use crate::support::objects::{
    annotations, create_sa, docker_config, events_about, get_sa, get_secret, pull_secret_names,
    refs, time_annotation, wait_log, EXPIRES_AT, LABEL, OBTAINED_AT, PATIENCE, PRINCIPAL,
};
use crate::support::{cluster, eventually, poll, unique, Cluster};

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
        let exited = poll(Duration::from_secs(30), Duration::from_millis(50), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_some() {
            return;
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

fn annotate_with_kubectl(cluster: &Cluster, ns: &str, sa: &str) {
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

#[test]
fn the_originals_arguments_provision_and_never_lead_together_with_ours() {
    let cluster = cluster();
    let ns = cluster.namespace("compat");
    let fake = google_fake(AUDIENCE, &["*"]);
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
    annotate_with_kubectl(cluster, &ns, "first");
    eventually(Duration::from_secs(60), "first's secret attached", || {
        pull_secret_names(&get_sa(&cluster.admin(), &ns, "first"))
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
                // The sampler's pace.
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
    annotate_with_kubectl(cluster, &ns, "second");
    eventually(Duration::from_secs(60), "second's secret attached", || {
        pull_secret_names(&get_sa(&cluster.admin(), &ns, "second"))
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
        pull_secret_names(&get_sa(&cluster.admin(), &ns, "app")),
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
        pull_secret_names(&get_sa(&cluster.admin(), &ns, "app")),
        ["other-registry", "imagepullsecret-app"]
    );
    // Re-applying the manifest (a GitOps sync) changes nothing either.
    cluster.apply(&manifest);
    controller.wait_idle();
    assert_eq!(
        pull_secret_names(&get_sa(&cluster.admin(), &ns, "app")),
        ["other-registry", "imagepullsecret-app"]
    );
    let logs = controller.logs();
    assert!(logs.contains("provisioned secret for"), "{logs}");
}

// ---------------------------------------------------------------------------------------------------------
// Adopting the original controller's secrets

// ---------------------------------------------------------------------------------------------------------
// Taking over from the original controller (issue 5, item 4)

/// A secret exactly as the original Go controller wrote it for ServiceAccount `sa`: label, controller
/// ownerReference, principal and expires-at (RFC 3339, no obtained-at), and a dockerconfigjson without `auth`.
fn original_controllers_secret(sa: &ServiceAccount, expires_at: DateTime<Utc>) -> Secret {
    let name = &sa.metadata.name;
    let config = json!({"auths": {REGISTRY: {"username": "oauth2accesstoken", "password": "ya29.from-the-original"}}});
    Secret {
        metadata: ObjectMeta {
            name: format!("imagepullsecret-{name}"),
            namespace: sa.metadata.namespace.clone(),
            labels: [(LABEL.to_string(), name.clone())].into(),
            annotations: [
                (PRINCIPAL.to_string(), EMAIL.to_string()),
                (
                    EXPIRES_AT.to_string(),
                    expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
            ]
            .into(),
            owner_references: vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                name: name.clone(),
                uid: sa.metadata.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            ..Default::default()
        },
        type_: "kubernetes.io/dockerconfigjson".into(),
        data: [(
            ".dockerconfigjson".to_string(),
            crate::support::base64_encode(config.to_string().as_bytes()),
        )]
        .into(),
        ..Default::default()
    }
}

/// The delay of the first "next run in Some(…)" the controller logged for `ns/name`.
fn first_requeue(logs: &str, ns: &str, name: &str) -> Option<Duration> {
    logs.lines()
        .filter(|l| l.contains(&format!("{ns}/{name}: reconciled in")))
        .find_map(|l| l.split("next run in Some(").nth(1))
        .and_then(|rest| rest.split("s)").next())
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

#[test]
fn secrets_of_the_original_controller_are_adopted_as_they_are_and_refreshed_when_due() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("takeover");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .allow(EMAIL, &member(&ns, "late"))
        .start();

    // `app`'s credential has 50 minutes left: with Google's usual hour assumed, it is due with a quarter (15
    // minutes) left, in 35 minutes. `late`'s has 10 minutes left: due now. Both attached, after a user's entry.
    let mut before = BTreeMap::new();
    for (name, left) in [("app", 50 * 60), ("late", 10 * 60)] {
        let sa = create_sa(
            &admin,
            &ns,
            name,
            annotations(&google_config(AUDIENCE, EMAIL)),
            &["users-own"],
        );
        let expires_at = Utc::now() + chrono::Duration::seconds(left);
        let secret: Secret = admin
            .create(Some(&ns), &original_controllers_secret(&sa, expires_at))
            .unwrap();
        let mut attached = get_sa(&admin, &ns, name);
        attached.image_pull_secrets = Some(refs(&["users-own", &secret.metadata.name]));
        let attached: ServiceAccount = admin.replace(Some(&ns), name, &attached).unwrap();
        before.insert(name, (attached, secret, expires_at));
    }
    let started_at = Utc::now();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();

    // `late` is refreshed at once, in place: same secret, same ownerReference, now with obtained-at.
    let (_, late_before, late_expiry) = &before["late"];
    let refreshed = eventually(PATIENCE, "the due secret to be refreshed", || {
        get_secret(&admin, &ns, "imagepullsecret-late")
            .filter(|s| s.metadata.annotations.contains_key(OBTAINED_AT))
    });
    assert_eq!(refreshed.metadata.uid, late_before.metadata.uid);
    assert_eq!(
        refreshed.metadata.owner_references,
        late_before.metadata.owner_references
    );
    assert!(time_annotation(&refreshed, EXPIRES_AT) > *late_expiry);
    assert!(docker_config(&refreshed)["auths"][REGISTRY]["auth"].is_string());
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "late")),
        vec!["users-own", "imagepullsecret-late"]
    );

    // `app` is adopted as it is: no token, no exchange, no write to the secret or the ServiceAccount ...
    wait_log(
        &controller,
        &format!("{ns}/app: secret imagepullsecret-app is fresh until"),
    );
    wait_log(&controller, &format!("{ns}/app: reconciled in"));
    let logs = controller.logs();
    assert!(
        !logs.contains(&format!("{ns}/app: secret imagepullsecret-app is due")),
        "{logs}"
    );
    let (sa_before, app_before, _) = &before["app"];
    let now = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    assert_eq!(
        now.metadata.resource_version,
        app_before.metadata.resource_version
    );
    assert_eq!(
        get_sa(&admin, &ns, "app").metadata.resource_version,
        sa_before.metadata.resource_version
    );
    assert_eq!(
        fake.count("iam_calls"),
        1,
        "only `late` was exchanged: {}",
        fake.log()
    );
    assert!(events_about(&admin, &ns, "app").is_empty());

    // ... and its refresh is scheduled for when it is due: 35 minutes, brought forward by at most 10%.
    let delay =
        first_requeue(&logs, &ns, "app").unwrap_or_else(|| panic!("no requeue logged:\n{logs}"));
    let due_in = (original_due_at(app_before) - started_at).to_std().unwrap();
    println!("adopted secret due in {due_in:?}; refresh scheduled in {delay:?}");
    assert!(
        delay <= due_in && delay >= due_in.mul_f64(0.9).saturating_sub(Duration::from_secs(60)),
        "{delay:?}"
    );
}

/// When a secret of the original controller is due: a quarter of Google's usual hour before it expires.
fn original_due_at(secret: &Secret) -> DateTime<Utc> {
    time_annotation(secret, EXPIRES_AT) - chrono::Duration::minutes(15)
}
