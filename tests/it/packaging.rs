//! The ways clusters install the controller, checked with the real tools: the Helm chart with the real `helm`
//! (lint, template, schema, install into the test cluster, and the chart's ServiceAccount and RBAC running the
//! controller), and the kustomize manifests with kubectl's built-in kustomize. The chart and the manifests are
//! two copies of the same objects; these tests keep them equal where they must be (RBAC, alerts, dashboard).
//!
//! helm comes from `scripts/testenv/build-tools` (built from the Go module proxy and cached); YAML is read with
//! the test venv's PyYAML.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::controller::{service_account_token, Controller};
use crate::support::google::GoogleFake;
use crate::support::google::EMAIL;
use crate::support::google::PROVIDER;
use crate::support::{cluster, eventually, project_root, tool, unique};
use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use serde_json::{json, Value};

const CHART: &str = "manifests/helm/image-pull-secrets-provisioner";

fn helm(args: &[&str]) -> Output {
    Command::new(tool("helm"))
        .args(args)
        .current_dir(project_root())
        // No user configuration or cache of the machine leaks in.
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("ipsp-helm/config"),
        )
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("ipsp-helm/cache"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("ipsp-helm/data"),
        )
        .output()
        .expect("helm runs")
}

fn helm_ok(args: &[&str]) -> String {
    let output = helm(args);
    assert!(
        output.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every document of a YAML stream, as JSON (empty documents dropped).
fn yaml_docs(text: &str) -> Vec<Value> {
    let venv = std::env::var("IPSP_VENV").unwrap_or_else(|_| {
        let out = Command::new(project_root().join("scripts/testenv/venv"))
            .output()
            .expect("venv script runs");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    });
    let mut child = Command::new(Path::new(&venv).join("bin/python"))
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "not YAML:\n{text}");
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

fn file_docs(path: &str) -> Vec<Value> {
    yaml_docs(&std::fs::read_to_string(project_root().join(path)).unwrap())
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} among {:?}", kinds(docs)))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn container(docs: &[Value]) -> &Value {
    &find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The controller's own flag parser takes `args` as a run configuration.
fn accepted(args: Vec<String>) {
    let parsed = image_pull_secrets_provisioner::config::parse(
        args.iter().map(std::ffi::OsString::from).collect(),
    );
    match parsed {
        Ok(image_pull_secrets_provisioner::config::Command::Run(_)) => {}
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn helm_lint_strict_passes() {
    let out = helm_ok(&["lint", "--strict", CHART]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn helm_template_with_default_values() {
    let docs = yaml_docs(&helm_ok(&[
        "template",
        "image-pull-secrets-provisioner",
        CHART,
        "-n",
        "image-pull-secrets-provisioner-system",
    ]));
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["name"]
                .as_str()
                .unwrap()
                .trim_end_matches("-metrics")
                .trim_end_matches("-leader-election"),
            "image-pull-secrets-provisioner",
            "{doc}"
        );
    }
    assert_eq!(
        args(&docs),
        [
            "--leader-elect",
            "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline=10s",
            "--leader-election-retry-period=2s",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--log-level=info",
            "--log-format=json",
            "--workers=8",
            "--provider-timeout=30s",
            "--aws-session-duration=15m",
        ]
    );
    assert_eq!(
        container(&docs)["image"],
        "image-pull-secrets-provisioner:0.1.0"
    );
    assert!(container(&docs).get("env").is_none());
    let deployment = find(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let spread = &deployment["spec"]["template"]["spec"]["topologySpreadConstraints"];
    assert_eq!(spread[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread[1]["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        find(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    // Every argument the chart passes is one the binary accepts.
    accepted(args(&docs));
}

#[test]
fn helm_template_with_non_default_values() {
    let docs = yaml_docs(&helm_ok(&[
        "template",
        "ipsp",
        CHART,
        "-n",
        "controllers",
        "-f",
        "tests/fixtures/helm/non-default.yaml",
    ]));
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    assert_eq!(
        args(&docs),
        [
            "--leader-elect",
            "--leader-election-id=my-lease",
            "--leader-election-lease-duration=30s",
            "--leader-election-renew-deadline=20s",
            "--leader-election-retry-period=4s",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--log-level=debug",
            "--log-format=text",
            "--workers=4",
            "--namespace=team-a",
            "--disable-pod-eviction",
            "--min-refresh-interval=30s",
            "--service-account-token-expiration=1h",
            "--max-principals-per-service-account=5",
            "--provider-timeout=10s",
            "--aws-session-duration=1h",
            "--aws-sts-endpoint=https://sts.{region}.amazonaws.com",
            "--google-sts-endpoint=https://sts.p.googleapis.com",
            "--google-token-lifetime=30m",
            "--azure-authority-host=https://login.microsoftonline.us",
            "--azure-acr-endpoint=https://{registry}",
            "--provider-rate=20",
            "--provider-burst=40",
            "--provider-ca-bundle=/etc/image-pull-secrets-provisioner/ca/ca.crt",
            "--aws-ecr-endpoint=https://api.ecr.{region}.amazonaws.com",
        ]
    );
    let c = container(&docs);
    assert_eq!(
        c["image"],
        "registry.example.com/team/image-pull-secrets-provisioner@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        c["env"],
        json!([{"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"},
               {"name": "NO_PROXY", "value": ".svc,.cluster.local"}])
    );
    let pod = &find(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"],
        json!([{"name": "ca-bundle", "configMap": {"name": "corporate-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}])
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/arch": "arm64"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(find(&docs, "Deployment")["spec"]["replicas"], 3);
    assert_eq!(
        find(&docs, "ServiceMonitor")["metadata"]["labels"]["release"],
        "prometheus"
    );
    assert_eq!(
        find(&docs, "ConfigMap")["metadata"]["labels"]["grafana_dashboard"],
        "1"
    );
    // The binary accepts every argument (the CA flag aside: it reads the file, mounted only in the pod).
    let mut given = args(&docs);
    given.retain(|a| !a.starts_with("--provider-ca-bundle"));
    accepted(given);
}

#[test]
fn the_schema_rejects_bad_values_with_helms_error() {
    let cases = [
        (
            "unknown-top-level-key",
            "- at '': additional properties 'replicas' not allowed",
        ),
        (
            "replica-count-string",
            "- at '/replicaCount': got string, want integer",
        ),
        (
            "log-level-unknown",
            "- at '/logLevel': value must be one of 'error', 'warn', 'info', 'debug', 'trace'",
        ),
        (
            "digest-not-sha256",
            "- at '/image/digest': 'latest' does not match pattern",
        ),
        ("workers-zero", "- at '/workers': minimum: got 0, want 1"),
        (
            "metrics-port-string",
            "- at '/metrics/port': got string, want integer",
        ),
        (
            "extra-arg-without-dashes",
            "- at '/extraArgs/0': 'min-refresh-interval=2m' does not match pattern '^--'",
        ),
        (
            "lease-duration-number",
            "- at '/leaderElection/leaseDuration': got number, want string",
        ),
        (
            "pod-eviction-not-object",
            "- at '/podEviction': got boolean, want object",
        ),
    ];
    for (file, want) in cases {
        let path = format!("tests/fixtures/helm/bad/{file}.yaml");
        let output = helm(&["template", "x", CHART, "-f", &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file} was accepted");
        assert!(output.stdout.is_empty(), "{file}: something was rendered");
        assert!(
            stderr.contains("values don't meet the specifications of the schema(s)")
                && stderr.contains(want),
            "{file}: {stderr}"
        );
    }
}

/// The rules of the ClusterRole and the leader-election Role, from the kustomize files and from the chart.
#[test]
fn the_charts_rbac_equals_the_kustomize_rbac_rule_by_rule() {
    let chart = yaml_docs(&helm_ok(&["template", "x", CHART]));
    let kustomize_cluster = file_docs("manifests/rbac.yaml");
    let kustomize_lease = file_docs("manifests/leader-election-rbac.yaml");
    for (kind, ours) in [
        ("ClusterRole", &kustomize_cluster),
        ("Role", &kustomize_lease),
    ] {
        let want = find(ours, kind)["rules"].as_array().unwrap();
        let got = find(&chart, kind)["rules"].as_array().unwrap();
        assert!(!want.is_empty());
        for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
            assert_eq!(
                w, g,
                "{kind} rule {i} differs between manifests/ and the chart"
            );
        }
        assert_eq!(want.len(), got.len(), "{kind}: number of rules differs");
    }
    // Both bind the controller's ServiceAccount, and only it.
    for (kind, ours) in [
        ("ClusterRoleBinding", &kustomize_cluster),
        ("RoleBinding", &kustomize_lease),
    ] {
        assert_eq!(find(ours, kind)["subjects"].as_array().unwrap().len(), 1);
        assert_eq!(
            find(&chart, kind)["subjects"],
            json!([{"kind": "ServiceAccount", "name": "x-image-pull-secrets-provisioner", "namespace": "default"}])
        );
    }
}

#[test]
fn alerts_and_dashboard_are_the_same_in_the_chart_and_the_kustomize_component() {
    let chart_rules = file_docs(&format!("{CHART}/files/alerts.yaml"));
    let component = file_docs("manifests/components/monitoring/prometheus-rule.yaml");
    assert_eq!(component[0]["spec"], chart_rules[0]);
    let rendered = yaml_docs(&helm_ok(&[
        "template",
        "x",
        CHART,
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "dashboard.enabled=true",
    ]));
    assert_eq!(find(&rendered, "PrometheusRule")["spec"], chart_rules[0]);
    let dashboard =
        std::fs::read_to_string(project_root().join(CHART).join("files/dashboard.json")).unwrap();
    assert_eq!(
        std::fs::read_to_string(
            project_root().join("manifests/components/monitoring/dashboard.json")
        )
        .unwrap(),
        dashboard
    );
    let in_configmap = find(&rendered, "ConfigMap")["data"]["image-pull-secrets-provisioner.json"]
        .as_str()
        .unwrap()
        .to_string();
    let parsed: Value = serde_json::from_str(&in_configmap).unwrap();
    assert_eq!(parsed, serde_json::from_str::<Value>(&dashboard).unwrap());
}

/// `helm install` into the test cluster: every object is created (the API server validates each, strictly),
/// and the controller run with the chart's ServiceAccount token — so with exactly the chart's RBAC —
/// provisions a secret and elects itself through the chart's Role.
#[test]
fn helm_install_creates_every_object_and_its_rbac_runs_the_controller() {
    let cluster = cluster();
    let release = format!("chart{}x{}", std::process::id(), unique());
    let ns = cluster.namespace("helm");
    let kubeconfig = cluster.admin_kubeconfig.to_str().unwrap();
    let rendered = yaml_docs(&helm_ok(&[
        "template",
        &release,
        CHART,
        "-n",
        &ns,
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "dashboard.enabled=true",
    ]));
    // Server-side validation of every object, unknown fields refused.
    let template = helm_ok(&[
        "template",
        &release,
        CHART,
        "-n",
        &ns,
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "dashboard.enabled=true",
    ]);
    let manifest = std::env::temp_dir().join(format!("{release}.yaml"));
    std::fs::write(&manifest, template).unwrap();
    cluster.kubectl(&[
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        manifest.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&manifest);
    let notes = helm_ok(&[
        "install",
        &release,
        CHART,
        "-n",
        &ns,
        "--kubeconfig",
        kubeconfig,
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "dashboard.enabled=true",
    ]);
    assert!(notes.contains("Check that it works"), "{notes}");
    assert!(
        notes.contains(&format!(
            "kubectl -n {ns} rollout status deployment/{release}-image-pull-secrets-provisioner"
        )),
        "{notes}"
    );
    for doc in &rendered {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let mut get = vec!["get", kind, name, "-o", "name"];
        if doc["metadata"].get("namespace").is_some() {
            get.extend(["-n", &ns]);
        }
        cluster.kubectl(&get);
    }
    let status = helm_ok(&["status", &release, "-n", &ns, "--kubeconfig", kubeconfig]);
    assert!(status.contains("STATUS: deployed"), "{status}");

    // The chart's ServiceAccount runs the controller for a namespace of its own.
    let sa_name = format!("{release}-image-pull-secrets-provisioner");
    let token = service_account_token(cluster, &ns, &sa_name);
    let chart_kubeconfig = cluster.kubeconfig_for_token(&sa_name, &token);
    let apps = cluster.namespace("helm-apps");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &["helm-aud"])
        .allow(EMAIL, "*")
        .start();
    let controller = Controller::builder(&apps)
        .kubeconfig(&chart_kubeconfig)
        .google(&fake.endpoint)
        .args(&[
            "--leader-elect",
            "--leader-election-namespace",
            &ns,
            "--leader-election-id",
            &release,
        ])
        .start();
    cluster.kubectl(&["-n", &apps, "create", "serviceaccount", "app"]);
    cluster.kubectl(&[
        "-n",
        &apps,
        "annotate",
        "serviceaccount",
        "app",
        "imagepullsecrets.preferred.jp/registry=europe-docker.pkg.dev",
        "imagepullsecrets.preferred.jp/audience=helm-aud",
        &format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
    ]);
    let admin = cluster.admin();
    eventually(Duration::from_secs(60), "the secret attached", || {
        let sa: ServiceAccount = admin.get(Some(&apps), "app").ok()?;
        sa.image_pull_secrets?
            .iter()
            .any(|s| s.name == "imagepullsecret-app")
            .then_some(())
    });
    let lease = cluster.kubectl(&[
        "-n",
        &ns,
        "get",
        "lease",
        &release,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(!lease.is_empty());
    let logs = controller.logs();
    assert!(!logs.contains("forbidden"), "{logs}");
    drop(controller);
    helm_ok(&["uninstall", &release, "-n", &ns, "--kubeconfig", kubeconfig]);
    let left = cluster.kubectl(&["get", "clusterrole", "-o", "name"]);
    assert!(!left.contains(&sa_name), "{left}");
}

/// The kustomize install as the README gives it: an overlay of one's own that sets the image, applied with
/// kubectl's built-in kustomize, creates every object (validated strictly by the server first).
#[test]
fn kubectl_apply_k_with_the_image_overridden_creates_every_object() {
    let cluster = cluster();
    let overlay = project_root().join(format!(
        "target/ipsp-overlay-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources:\n  - ../../manifests\ncomponents:\n  - ../../manifests/components/network-policy\nimages:\n  - name: image-pull-secrets-provisioner\n    newName: registry.example.com/image-pull-secrets-provisioner\n    newTag: 0.1.0\n",
    )
    .unwrap();
    let dir = overlay.to_str().unwrap();
    let built = yaml_docs(&cluster.kubectl(&["kustomize", dir]));
    assert_eq!(
        kinds(&built),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    assert_eq!(
        container(&built)["image"],
        "registry.example.com/image-pull-secrets-provisioner:0.1.0"
    );
    // A server dry run of namespaced objects needs their namespace; other tests may have created it already.
    crate::support::controller::apply_manifest(cluster, "namespace.yaml");
    cluster.kubectl(&["apply", "-k", dir, "--dry-run=server", "--validate=strict"]);
    cluster.kubectl(&["apply", "-k", dir]);
    for doc in &built {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let mut get = vec!["get", kind, name, "-o", "name"];
        if let Some(ns) = doc["metadata"]["namespace"].as_str() {
            assert_eq!(ns, "image-pull-secrets-provisioner-system");
            get.extend(["-n", ns]);
        }
        cluster.kubectl(&get);
    }
    // Remove the Deployment again: its pods would otherwise sit Pending in the shared cluster. The RBAC stays,
    // as other tests of this run use it.
    cluster.kubectl(&[
        "-n",
        "image-pull-secrets-provisioner-system",
        "delete",
        "deployment",
        "image-pull-secrets-provisioner",
        "--wait=false",
    ]);
    let _ = std::fs::remove_dir_all(&overlay);
}
