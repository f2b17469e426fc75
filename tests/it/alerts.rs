//! The alerts and the dashboard are about metrics the controller really exports. A real controller run
//! (one ServiceAccount provisioned, one failing) is scraped; its series become the input of `promtool test
//! rules` for every alert, `promtool check rules` checks the rule file, the dashboard may only name families the
//! scrape showed, and the README's metric table lists exactly those families.
//!
//! promtool comes from `scripts/testenv/build-tools` (built from the Go module proxy and cached).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::controller::{Controller, CONTROLLER_NAMESPACE};
use crate::support::google::GoogleFake;
use crate::support::google::EMAIL;
use crate::support::google::PROVIDER;
use crate::support::{cluster, eventually, project_root, unique};
use serde_json::Value;

const PREFIX: &str = "image_pull_secrets_provisioner_";
const RULES: &str = "manifests/helm/image-pull-secrets-provisioner/files/alerts.yaml";
const DASHBOARD: &str = "manifests/helm/image-pull-secrets-provisioner/files/dashboard.json";

/// One scraped sample: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The families (`# TYPE` lines) and samples of an exposition.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value: value.parse().unwrap_or(f64::NAN),
        });
    }
    (families, samples)
}

/// What one real run exports: a provisioned ServiceAccount and one whose provisioning fails.
fn scrape_a_real_run() -> String {
    static SCRAPE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SCRAPE
        .get_or_init(|| {
            let cluster = cluster();
            let ns = cluster.namespace("alerts");
            let fake = GoogleFake::builder()
                .pool(PROVIDER, &["alerts-aud"])
                .allow(EMAIL, "*")
                .start();
            let controller = Controller::builder(&ns)
                .google(&fake.endpoint)
                .arg("--leader-elect")
                .args(&["--leader-election-namespace", CONTROLLER_NAMESPACE])
                .args(&["--leader-election-id", &ns])
                .start();
            for (sa, email) in [("app", EMAIL), ("denied", "nobody@proj.iam.gserviceaccount.com")] {
                cluster.kubectl(&["-n", &ns, "create", "serviceaccount", sa]);
                cluster.kubectl(&[
                    "-n",
                    &ns,
                    "annotate",
                    "serviceaccount",
                    sa,
                    "imagepullsecrets.preferred.jp/registry=europe-docker.pkg.dev",
                    "imagepullsecrets.preferred.jp/audience=alerts-aud",
                    &format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
                    &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={email}"),
                ]);
            }
            eventually(Duration::from_secs(60), "a success and a failure exported", || {
                let (_, body) = controller.http_get("/metrics");
                let (_, samples) = parse(&body);
                let has = |outcome_is_success: bool| {
                    samples.iter().any(|s| {
                        s.name == format!("{PREFIX}provisioning_total")
                            && (s.labels["outcome"] == "success") == outcome_is_success
                    })
                };
                let expiry = samples
                    .iter()
                    .any(|s| s.name == format!("{PREFIX}secret_expiry_seconds"));
                (has(true) && has(false) && expiry).then_some(body)
            })
        })
        .clone()
}

fn promtool() -> PathBuf {
    let output = Command::new(project_root().join("scripts/testenv/build-tools"))
        .arg("promtool")
        .stderr(Stdio::inherit())
        .output()
        .expect("build-tools runs");
    assert!(output.status.success(), "build-tools promtool failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim()).join("promtool")
}

fn promtool_ok(args: &[&str]) -> String {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(project_root())
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn promtool_check_rules_passes() {
    let out = promtool_ok(&["check", "rules", RULES]);
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");
}

/// A PromQL selector of a scraped series, as promtool's input_series wants it.
fn selector(sample: &Sample, extra: &[(&str, &str)]) -> String {
    let mut labels: BTreeMap<String, String> = sample.labels.clone();
    for (k, v) in extra {
        labels.insert(k.to_string(), v.to_string());
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{}{{{}}}", sample.name, pairs.join(", "))
}

fn yaml_labels(labels: &BTreeMap<String, String>, indent: &str) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{indent}{k}: \"{v}\"\n"))
        .collect()
}

#[test]
fn promtool_test_rules_with_series_from_a_real_run() {
    let (_, samples) = parse(&scrape_a_real_run());
    let find = |name: &str, pick: &dyn Fn(&Sample) -> bool| -> Sample {
        samples
            .iter()
            .find(|s| s.name == format!("{PREFIX}{name}") && pick(s))
            .unwrap_or_else(|| panic!("the run exported no {name}"))
            .clone()
    };
    let expiry = find("secret_expiry_seconds", &|_| true);
    let failure = find("provisioning_total", &|s| s.labels["outcome"] != "success");
    let success = find("provisioning_total", &|s| s.labels["outcome"] == "success");
    let leader = find("leader", &|_| true);
    let build = find("build_info", &|_| true);
    assert_eq!(leader.value, 1.0, "the run's only replica leads");
    let job = [
        ("job", "image-pull-secrets-provisioner"),
        ("instance", "10.0.0.7:8080"),
    ];

    // The secret as exported, then never refreshed: its gauge falls by 60 s a minute. With its lifetime L
    // (the exported value), it is near expiry once below min(L/4, 1 h), and the alert fires 5 min later.
    let start = expiry.value.floor() as i64;
    let quarter = start as f64 / 4.0;
    let below = ((start as f64 - quarter.min(3600.0)) / 60.0).floor() as i64 + 1;
    let fires_at = below + 5 + 1;
    let mut expiry_labels = expiry.labels.clone();
    for (k, v) in job {
        expiry_labels.insert(k.into(), v.into());
    }
    let mut failure_labels = failure.labels.clone();
    failure_labels.retain(|k, _| k == "provider" || k == "outcome");
    let ns = &expiry.labels["namespace"];
    let secret = &expiry.labels["secret"];
    let sa = &expiry.labels["serviceaccount"];
    let test = format!(
        r#"rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: '{expiry_series}'
        values: '{start}-60x{steps}'
    alert_rule_test:
      - eval_time: {quiet}m
        alertname: ImagePullSecretNearExpiry
        exp_alerts: []
      - eval_time: {fires_at}m
        alertname: ImagePullSecretNearExpiry
        exp_alerts:
          - exp_labels:
              alertname: ImagePullSecretNearExpiry
              severity: warning
{expiry_labels}            exp_annotations:
              summary: "Image pull secret {ns}/{secret} is close to expiry and was not refreshed"
              description: "The secret of ServiceAccount {ns}/{sa} was not refreshed. Check the ServiceAccount's events (kubectl describe serviceaccount) and the controller's log."
  - interval: 1m
    input_series:
      - series: '{failure_series}'
        values: '{failure_start}+1x40'
      - series: '{success_series}'
        values: '{success_start}x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: ImagePullSecretProvisioningFailing
        exp_alerts: []
      - eval_time: 25m
        alertname: ImagePullSecretProvisioningFailing
        exp_alerts:
          - exp_labels:
              alertname: ImagePullSecretProvisioningFailing
              severity: warning
{failure_labels}            exp_annotations:
              summary: "Provisioning image pull secrets for {provider} fails at step {outcome}"
              description: "Provisioning has failed for 15 minutes. The events of the affected ServiceAccounts (reason FailedProvisioningImagePullSecret) name the step and the provider's error."
  - interval: 1m
    input_series:
      - series: '{leader_series}'
        values: '1x5 0x20'
      - series: '{build_series}'
        values: '1x5 _x20'
    alert_rule_test:
      - eval_time: 5m
        alertname: ImagePullSecretsProvisionerNoLeader
        exp_alerts: []
      - eval_time: 5m
        alertname: ImagePullSecretsProvisionerAbsent
        exp_alerts: []
      - eval_time: 12m
        alertname: ImagePullSecretsProvisionerNoLeader
        exp_alerts:
          - exp_labels:
              alertname: ImagePullSecretsProvisionerNoLeader
              severity: critical
            exp_annotations:
              summary: "No image-pull-secrets-provisioner replica has held the leader Lease for 5 minutes"
              description: "No secret is refreshed while no replica leads. Check the Lease b1b11bb0.preferred.jp and the controller's log for leader election errors."
      - eval_time: 16m
        alertname: ImagePullSecretsProvisionerAbsent
        exp_alerts:
          - exp_labels:
              alertname: ImagePullSecretsProvisionerAbsent
              severity: critical
            exp_annotations:
              summary: "image-pull-secrets-provisioner has not been scraped for 5 minutes"
              description: "No replica exports metrics: the controller is not running or not scraped. Check the Deployment and the ServiceMonitor or scrape configuration."
  - interval: 1m
    input_series:
      - series: '{leader_series}'
        values: '1x30'
      - series: '{build_series}'
        values: '1x30'
    alert_rule_test:
      - eval_time: 20m
        alertname: ImagePullSecretsProvisionerNoLeader
        exp_alerts: []
      - eval_time: 20m
        alertname: ImagePullSecretsProvisionerAbsent
        exp_alerts: []
"#,
        rules = project_root().join(RULES).display(),
        expiry_series = selector(&expiry, &job),
        steps = fires_at + 10,
        quiet = below - 2,
        expiry_labels = yaml_labels(&expiry_labels, "              "),
        failure_series = selector(&failure, &job),
        failure_start = failure.value,
        success_series = selector(&success, &job),
        success_start = success.value,
        failure_labels = yaml_labels(&failure_labels, "              "),
        provider = failure.labels["provider"],
        outcome = failure.labels["outcome"],
        leader_series = selector(&leader, &job),
        build_series = selector(&build, &job),
    );
    let path = std::env::temp_dir().join(format!(
        "ipsp-rules-test-{}-{}.yaml",
        std::process::id(),
        unique()
    ));
    std::fs::write(&path, &test).unwrap();
    let out = promtool_ok(&["test", "rules", path.to_str().unwrap()]);
    assert!(out.contains("SUCCESS"), "{out}\n{test}");
    let _ = std::fs::remove_file(path);
}

/// Every metric the dashboard queries, and every metric the alerts use, is a family the real run served.
#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let (families, _) = parse(&scrape_a_real_run());
    let served = |name: &str| {
        families.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|family| {
                    families.get(family).map(String::as_str) == Some("histogram")
                })
            })
    };
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(project_root().join(DASHBOARD)).unwrap())
            .unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            exprs.push(variable["query"].as_str().unwrap().to_string());
        }
    }
    let rules = std::fs::read_to_string(project_root().join(RULES)).unwrap();
    let mut named = BTreeSet::new();
    for text in exprs.iter().map(String::as_str).chain([rules.as_str()]) {
        let metrics = metric_names(text);
        assert!(
            !metrics.is_empty() || text.contains("label_values"),
            "no metric in {text}"
        );
        named.extend(metrics);
    }
    let unknown: Vec<&String> = named.iter().filter(|n| !served(n)).collect();
    assert!(
        unknown.is_empty(),
        "not exported: {unknown:?}; served: {families:?}"
    );
    // The dashboard shows every family of the controller's own.
    for family in families.keys().filter(|f| f.starts_with(PREFIX)) {
        assert!(
            exprs.iter().any(|e| e.contains(family.as_str())),
            "the dashboard does not show {family}"
        );
    }
}

/// The metric names in a PromQL text: identifiers of this controller or of the process collector.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut current = String::new();
    for c in text.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else {
            if current.starts_with(PREFIX) || current.starts_with("process_") {
                names.insert(current.clone());
            }
            current.clear();
        }
    }
    names
}

/// The README's metric table lists exactly the families /metrics serves, with their types.
#[test]
fn the_readme_metric_table_matches_what_metrics_serves() {
    let (families, _) = parse(&scrape_a_real_run());
    let readme = std::fs::read_to_string(project_root().join("README.md")).unwrap();
    let table: BTreeMap<String, String> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            (name.starts_with(PREFIX) || name.starts_with("process_"))
                .then(|| (name.to_string(), cells.get(2).unwrap_or(&"").to_string()))
        })
        .collect();
    assert_eq!(
        table, families,
        "README.md's metric table differs from /metrics"
    );
}
