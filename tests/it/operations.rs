//! What an operator relies on (SPEC B9; issue 8), end to end: the real binary, as the manifests'
//! ServiceAccount, against the real apiserver, moto and the Google stand-in.
//!
//! - leader election between real processes: exactly one acts, SIGKILL and SIGTERM hand over, never two at once;
//! - `/metrics` scraped and parsed by a strict reader of the Prometheus text format written here;
//! - `/readyz` only after the initial lists, `/healthz` while work runs;
//! - SIGTERM lets a running reconcile finish, releases the lease and exits 0;
//! - at trace level, in JSON, no credential reaches the logs or events.
//!
//! Leases live in the controller's own namespace (the only one its Role allows), each test with its own name.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown as Direction, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::controller::{
    controller_kubeconfig, service_account_token, Controller, ControllerBuilder,
    CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT,
};
use crate::support::google::EMAIL;
use crate::support::google::EMAIL_2;
use crate::support::google::PROVIDER;
use crate::support::google::REGISTRY as GOOGLE_REGISTRY;
use crate::support::google::{member, GoogleFake};
use crate::support::{base64_encode, cluster, eventually, poll, unique, Cluster};
use image_pull_secrets_provisioner::cloud::aws::role_session_name;
use image_pull_secrets_provisioner::kube::types::{Lease, Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::Client;
use serde_json::Value;

const AUDIENCE: &str = "ipsp-operations";
const METRIC: &str = "image_pull_secrets_provisioner";
const TIMEOUT: Duration = Duration::from_secs(90);
/// Log lines that mean the controller wrote to the cluster.
const WRITES: [&str; 4] = [
    "provisioned secret",
    "updated imagePullSecrets",
    "evicted pod",
    "removed secrets",
];

// ---------------------------------------------------------------------------------------------------------
// The Prometheus text format (0.0.4), read strictly.

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses an exposition. Every sample must belong to a family announced by a `# TYPE` line before it
/// (histogram samples by their `_bucket`, `_sum` and `_count` suffixes), names and label names must be
/// valid, label values properly quoted and escaped, values numbers or `+Inf`/`-Inf`/`NaN`.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            match words.next() {
                Some("TYPE") => {
                    let name = words.next().ok_or_else(|| fail("TYPE without a name"))?;
                    let kind = words.next().ok_or_else(|| fail("TYPE without a type"))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(fail("unknown type"));
                    }
                    if !is_metric_name(name) {
                        return Err(fail("bad metric name"));
                    }
                    if types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(fail("second TYPE for a family"));
                    }
                }
                Some("HELP") => {
                    words.next().ok_or_else(|| fail("HELP without a name"))?;
                }
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| fail("no value"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(fail("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                rest = rest.trim_start_matches(' ');
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest.find('=').ok_or_else(|| fail("label without ="))?;
                let label = rest[..eq].trim();
                if !is_label_name(label) {
                    return Err(fail("bad label name"));
                }
                let mut chars = rest[eq + 1..].char_indices();
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(fail("unquoted label value"));
                }
                let mut value = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '"' => {
                            end = Some(eq + 1 + i + 1);
                            break;
                        }
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(fail("bad escape in a label value")),
                        },
                        c => value.push(c),
                    }
                }
                let end = end.ok_or_else(|| fail("unterminated label value"))?;
                if labels.insert(label.to_string(), value).is_some() {
                    return Err(fail("repeated label"));
                }
                rest = &rest[end..];
                if let Some(after) = rest.strip_prefix(',') {
                    rest = after;
                } else if !rest.starts_with('}') {
                    return Err(fail("expected , or } after a label"));
                }
            }
        }
        let mut fields = rest.split_whitespace();
        let value = match fields.next().ok_or_else(|| fail("no value"))? {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number.parse().map_err(|_| fail("value is not a number"))?,
        };
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| fail("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing text"));
        }
        let family_known = types.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|family| {
                    matches!(
                        types.get(family).map(String::as_str),
                        Some("histogram" | "summary")
                    )
                })
            });
        if !family_known {
            return Err(fail("sample before its family's TYPE"));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name}{labels:?} matches several samples: {matching:?}"
    );
    matching.first().map(|s| s.value)
}

#[test]
fn the_exposition_reader_is_strict() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\\n\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n# TYPE g gauge\ng -Inf\n";
    let samples = parse_exposition(good).unwrap();
    assert_eq!(samples.len(), 5);
    assert_eq!(samples[0].labels["y"], "q\"\\\n");
    assert_eq!(value(&samples, "h_bucket", &[("le", "+Inf")]), Some(2.0));
    for bad in [
        "a 1\n",
        "# TYPE a counter\na{x=1} 1\n",
        "# TYPE a counter\na{x=\"1} 1\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\na{x=\"\\t\"} 1\n",
        "# TYPE a counter\n# TYPE a gauge\n",
        "# TYPE a counter\na_bucket 1\n",
        "# TYPE 1a counter\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.

/// GET with a short timeout; `None` when the server cannot be reached.
fn get(url: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_to_string().ok()?))
}

fn scrape(controller: &Controller) -> Vec<Sample> {
    let (status, body) = controller.http_get("/metrics");
    assert_eq!(status, 200, "{body}");
    parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// The leader gauge of the controller at `address`; `None` when it does not answer (not running).
fn leader_gauge(address: &str) -> Option<bool> {
    let (status, body) = get(&format!("http://{address}/metrics"))?;
    if status != 200 {
        return None;
    }
    let samples = parse_exposition(&body).ok()?;
    value(&samples, &format!("{METRIC}_leader"), &[]).map(|v| v == 1.0)
}

/// The identity a controller campaigns with, from its start-up line.
fn identity(controller: &Controller) -> String {
    eventually(TIMEOUT, "the controller's identity", || {
        controller.logs().lines().find_map(|l| {
            l.contains("connecting to ")
                .then(|| l.rsplit(" as ").next().unwrap().trim().to_string())
        })
    })
}

/// Flags for fast leader election on `lease` in the controller's own namespace.
fn leader_args(lease: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--leader-election-namespace",
        CONTROLLER_NAMESPACE,
        "--leader-election-id",
        lease,
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "3s",
        "--leader-election-retry-period",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn with_args(builder: ControllerBuilder, args: &[String]) -> ControllerBuilder {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    builder.args(&args)
}

/// A Lease in the controller's namespace that is deleted when the test ends.
struct TestLease {
    name: String,
}

impl TestLease {
    fn new() -> TestLease {
        TestLease {
            name: format!("ipsp-ops-{}-{}", std::process::id(), unique()),
        }
    }

    fn holder(&self, admin: &Client) -> Option<String> {
        admin
            .get::<Lease>(Some(CONTROLLER_NAMESPACE), &self.name)
            .ok()?
            .spec
            .holder_identity
    }
}

impl Drop for TestLease {
    fn drop(&mut self) {
        let cluster = cluster();
        let _ = std::process::Command::new(&cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&cluster.admin_kubeconfig)
            .args([
                "-n",
                CONTROLLER_NAMESPACE,
                "delete",
                "lease",
                &self.name,
                "--ignore-not-found",
            ])
            .output();
    }
}

fn annotate(cluster: &Cluster, ns: &str, sa: &str, annotations: &[(&str, &str)]) {
    let mut args = vec![
        "-n".to_string(),
        ns.to_string(),
        "annotate".to_string(),
        "--overwrite".to_string(),
        "serviceaccount".to_string(),
        sa.to_string(),
    ];
    args.extend(
        annotations
            .iter()
            .map(|(k, v)| format!("imagepullsecrets.preferred.jp/{k}={v}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.kubectl(&args);
}

/// Creates ServiceAccount `sa` configured for Google with `emails`.
fn google_service_account(cluster: &Cluster, ns: &str, sa: &str, emails: &str) {
    cluster.kubectl(&["-n", ns, "create", "serviceaccount", sa]);
    annotate(
        cluster,
        ns,
        sa,
        &[
            ("registry", GOOGLE_REGISTRY),
            ("audience", AUDIENCE),
            ("googlecloud-workload-identity-provider", PROVIDER),
            ("googlecloud-service-account-email", emails),
        ],
    );
}

/// Waits until `sa` has `secret` attached.
fn wait_listed(admin: &Client, ns: &str, sa: &str, secret: &str, controllers: &[&Controller]) {
    let attached = poll(TIMEOUT, Duration::from_millis(100), || {
        admin
            .get::<ServiceAccount>(Some(ns), sa)
            .ok()
            .and_then(|sa| sa.image_pull_secrets)
            .is_some_and(|list| list.iter().any(|s| s.name == secret))
            .then_some(())
    });
    if attached.is_none() {
        let logs: Vec<String> = controllers.iter().map(|c| c.logs()).collect();
        panic!(
            "{secret} was not attached to {ns}/{sa} within {TIMEOUT:?}; logs:\n{}",
            logs.join("\n-----\n")
        );
    }
}

/// The timestamp that starts a text log line (RFC 3339, UTC, milliseconds: ordered as strings).
fn timestamp(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or_default()
}

fn write_lines(logs: &str) -> Vec<String> {
    logs.lines()
        .filter(|l| WRITES.iter().any(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

fn line_with(logs: &str, needle: &str) -> Option<String> {
    logs.lines()
        .find(|l| l.contains(needle))
        .map(str::to_string)
}

/// Milliseconds between two log timestamps.
fn millis_between(earlier: &str, later: &str) -> i64 {
    let parse = |ts: &str| {
        chrono::DateTime::parse_from_rfc3339(ts)
            .unwrap_or_else(|e| panic!("{ts:?}: {e}"))
            .timestamp_millis()
    };
    parse(later) - parse(earlier)
}

// ---------------------------------------------------------------------------------------------------------
// Leader election between real processes.

/// Samples the leader gauge of every registered controller every 100 ms. Each round reads all of them twice
/// in a row: a controller that says 1 both times led during the whole round (leadership does not flap
/// within milliseconds), so two such controllers in one round led at the same time.
struct Sampler {
    targets: Arc<Mutex<Vec<(String, String)>>>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl Sampler {
    fn start() -> Sampler {
        let targets: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let handle = {
            let (targets, stop, rounds) = (targets.clone(), stop.clone(), rounds.clone());
            std::thread::spawn(move || {
                let mut violations = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let now: Vec<(String, String)> = targets.lock().unwrap().clone();
                    let first: Vec<bool> = now
                        .iter()
                        .map(|(_, a)| leader_gauge(a) == Some(true))
                        .collect();
                    let second: Vec<bool> = now
                        .iter()
                        .map(|(_, a)| leader_gauge(a) == Some(true))
                        .collect();
                    let leading: Vec<&str> = now
                        .iter()
                        .zip(first.iter().zip(&second))
                        .filter(|(_, (a, b))| **a && **b)
                        .map(|((name, _), _)| name.as_str())
                        .collect();
                    if leading.len() > 1 {
                        violations.push(format!(
                            "{}: {leading:?} all lead",
                            chrono::Utc::now().to_rfc3339()
                        ));
                    }
                    rounds.fetch_add(1, Ordering::Relaxed);
                    // The sampler's pace.
                    std::thread::sleep(Duration::from_millis(100));
                }
                violations
            })
        };
        Sampler {
            targets,
            stop,
            rounds,
            handle: Some(handle),
        }
    }

    fn add(&self, name: &str, controller: &Controller) {
        self.targets
            .lock()
            .unwrap()
            .push((name.to_string(), controller.http_address()));
    }

    /// Stops sampling: the number of rounds and the rounds in which two led.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let violations = self.handle.take().unwrap().join().expect("sampler");
        (self.rounds.load(Ordering::Relaxed), violations)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn of_several_instances_exactly_one_acts_and_leadership_passes_on_sigkill_and_on_sigterm() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("ops-leader");
    let mut fake = GoogleFake::builder().pool(PROVIDER, &[AUDIENCE]);
    for sa in ["one", "two", "three"] {
        fake = fake.allow(EMAIL, &member(&ns, sa));
    }
    let fake = fake.start();
    let lease = TestLease::new();
    let start = || {
        with_args(
            Controller::builder(&ns).google(&fake.endpoint),
            &leader_args(&lease.name),
        )
        .start()
    };
    let sampler = Sampler::start();
    let a = start();
    let b = start();
    let (id_a, id_b) = (identity(&a), identity(&b));
    assert_ne!(id_a, id_b);
    sampler.add("a", &a);
    sampler.add("b", &b);

    // Exactly one acquires; the other stands by, ready.
    let first = eventually(TIMEOUT, "one of the two to acquire the lease", || {
        lease.holder(&admin).filter(|h| *h == id_a || *h == id_b)
    });
    let (leader, standby, standby_id) = if first == id_a {
        (&a, &b, &id_b)
    } else {
        (&b, &a, &id_a)
    };
    eventually(TIMEOUT, "the leader's gauge", || {
        (leader_gauge(&leader.http_address()) == Some(true)).then_some(())
    });
    assert!(line_with(
        &leader.logs(),
        &format!("acquired lease {CONTROLLER_NAMESPACE}/{}", lease.name)
    )
    .is_some());
    assert_eq!(leader_gauge(&standby.http_address()), Some(false));
    eventually(TIMEOUT, "the standby to be ready", || {
        (standby.http_get("/readyz").0 == 200).then_some(())
    });

    google_service_account(cluster, &ns, "one", EMAIL);
    wait_listed(&admin, &ns, "one", "imagepullsecret-one", &[&a, &b]);
    leader.wait_idle();
    let leader_writes = write_lines(&leader.logs());
    assert!(
        leader_writes
            .iter()
            .any(|l| l.contains("serviceaccount=one")),
        "{leader_writes:?}"
    );
    assert!(
        write_lines(&standby.logs()).is_empty(),
        "the standby wrote:\n{}",
        standby.logs()
    );
    assert!(!standby.logs().contains("acquired lease"));
    assert_eq!(lease.holder(&admin).as_deref(), Some(first.as_str()));

    // SIGKILL: the standby takes over once the lease has not changed for a lease duration.
    let killed_at = Instant::now();
    let killed_at_wall = chrono::Utc::now();
    leader.kill();
    let took_over = eventually(TIMEOUT, "the standby to take over", || {
        (lease.holder(&admin).as_deref() == Some(standby_id.as_str())).then(Instant::now)
    });
    let takeover = took_over.duration_since(killed_at);
    eprintln!("takeover after SIGKILL: {takeover:?} (lease duration 4s, retry period 1s)");
    assert!(
        takeover >= Duration::from_secs(1),
        "taken over before the lease could have expired: {takeover:?}"
    );
    assert!(
        takeover <= Duration::from_secs(12),
        "takeover took {takeover:?}"
    );
    let second = standby;
    // The Lease is written before the new leader logs that it acquired it.
    let second_acquired = eventually(TIMEOUT, "the acquired line", || {
        line_with(&second.logs(), "acquired lease")
    });
    assert!(
        timestamp(&second_acquired)
            > killed_at_wall
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .as_str(),
        "{second_acquired}"
    );
    google_service_account(cluster, &ns, "two", EMAIL);
    wait_listed(&admin, &ns, "two", "imagepullsecret-two", &[second]);
    assert!(write_lines(&second.logs())
        .iter()
        .any(|l| l.contains("serviceaccount=two")));
    assert!(!write_lines(&leader.logs())
        .iter()
        .any(|l| l.contains("serviceaccount=two")));

    // SIGTERM: the leader releases the lease and a third instance takes over within a retry period or two.
    let c = start();
    let id_c = identity(&c);
    sampler.add("c", &c);
    eventually(TIMEOUT, "the third instance to see the lease held", || {
        c.logs()
            .contains(&format!("is held by {standby_id}"))
            .then_some(())
    });
    let termed_at = Instant::now();
    let status = second
        .terminate(Duration::from_secs(40))
        .expect("the SIGTERM'd leader exits");
    let exited = termed_at.elapsed();
    assert!(status.success(), "exit status {status:?}");
    let handed = eventually(TIMEOUT, "the third instance to take over", || {
        (lease.holder(&admin).as_deref() == Some(id_c.as_str())).then(Instant::now)
    });
    let handover = handed.duration_since(termed_at);
    let released = line_with(&second.logs(), "released lease").expect("the lease was released");
    let third_acquired = eventually(TIMEOUT, "the acquired line", || {
        line_with(&c.logs(), "acquired lease")
    });
    eprintln!(
        "SIGTERM: exit 0 after {exited:?}; new leader {handover:?} after SIGTERM, {} ms after the release",
        millis_between(timestamp(&released), timestamp(&third_acquired))
    );
    assert!(
        handover <= Duration::from_secs(8),
        "handover took {handover:?}"
    );
    google_service_account(cluster, &ns, "three", EMAIL);
    wait_listed(&admin, &ns, "three", "imagepullsecret-three", &[&c]);
    assert!(write_lines(&c.logs())
        .iter()
        .any(|l| l.contains("serviceaccount=three")));

    // Never two at once: by the gauges, and by the logs (each one's writes lie within its own term, and the
    // terms follow each other).
    let (rounds, violations) = sampler.finish();
    eprintln!("leader gauges sampled in {rounds} rounds");
    assert!(rounds >= 20, "only {rounds} sampling rounds");
    assert!(violations.is_empty(), "{violations:?}");
    let first_writes = write_lines(&leader.logs());
    let second_writes = write_lines(&second.logs());
    let third_writes = write_lines(&c.logs());
    let second_stopped =
        line_with(&second.logs(), "stopped being the leader").expect("stopped line");
    for line in &first_writes {
        assert!(timestamp(line) < timestamp(&second_acquired), "{line}");
    }
    for line in &second_writes {
        assert!(timestamp(line) >= timestamp(&second_acquired), "{line}");
        assert!(timestamp(line) <= timestamp(&second_stopped), "{line}");
    }
    assert!(timestamp(&second_stopped) <= timestamp(&third_acquired));
    for line in &third_writes {
        assert!(timestamp(line) >= timestamp(&third_acquired), "{line}");
    }
    let _ = c.terminate(Duration::from_secs(30));
}

// ---------------------------------------------------------------------------------------------------------
// Metrics.

#[test]
fn metrics_are_exposed_and_the_expiry_gauge_follows_the_secrets() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("ops-metrics");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .allow(EMAIL_2, &member(&ns, "app"))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    google_service_account(cluster, &ns, "app", &format!("{EMAIL},{EMAIL_2}"));
    let secrets = ["imagepullsecret-app", "imagepullsecret-app-1"];
    for secret in secrets {
        wait_listed(&admin, &ns, "app", secret, &[&controller]);
    }

    let check_expiry = |samples: &[Sample]| {
        for name in secrets {
            let secret: Secret = admin.get(Some(&ns), name).unwrap();
            let expires_at = chrono::DateTime::parse_from_rfc3339(
                &secret.metadata.annotations["imagepullsecrets.preferred.jp/expires-at"],
            )
            .unwrap();
            let expected = (expires_at.timestamp_millis() - chrono::Utc::now().timestamp_millis())
                as f64
                / 1000.0;
            let gauge = value(
                samples,
                &format!("{METRIC}_secret_expiry_seconds"),
                &[
                    ("namespace", &ns),
                    ("serviceaccount", "app"),
                    ("secret", name),
                ],
            )
            .unwrap_or_else(|| panic!("no expiry gauge for {name}: {samples:?}"));
            assert!(
                (gauge - expected).abs() <= 5.0,
                "{name}: gauge {gauge}, expires-at says {expected}"
            );
            assert!(gauge > 3000.0, "{name}: {gauge}");
        }
    };

    let samples = scrape(&controller);
    check_expiry(&samples);
    let provisioned = value(
        &samples,
        &format!("{METRIC}_provisioning_total"),
        &[("provider", "google"), ("outcome", "success")],
    );
    assert!(provisioned >= Some(2.0), "{provisioned:?}");
    let build = samples
        .iter()
        .find(|s| s.name == format!("{METRIC}_build_info"))
        .expect("build info");
    assert_eq!(build.value, 1.0);
    assert_eq!(build.labels["version"], env!("CARGO_PKG_VERSION"));
    let rss = value(&samples, "process_resident_memory_bytes", &[]).expect("rss");
    assert!(rss > 1_000_000.0, "{rss}");
    assert!(value(&samples, "process_cpu_seconds_total", &[]).expect("cpu") >= 0.0);
    let started = value(&samples, "process_start_time_seconds", &[]).expect("start time");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        (now - 600.0..=now + 5.0).contains(&started),
        "{started} vs {now}"
    );
    assert_eq!(value(&samples, &format!("{METRIC}_leader"), &[]), Some(1.0));
    assert!(value(&samples, &format!("{METRIC}_workqueue_depth"), &[]).is_some());
    // The provider latency histogram: cumulative buckets ending in +Inf = count.
    let histogram = format!("{METRIC}_provider_request_duration_seconds");
    let count = value(
        &samples,
        &format!("{histogram}_count"),
        &[("provider", "google")],
    )
    .expect("histogram count");
    assert!(count >= 2.0, "{count}");
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{histogram}_bucket") && s.labels["provider"] == "google")
        .collect();
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
    assert_eq!(buckets.last().unwrap().value, count);

    // A restarted controller (or a new leader) reports the secrets it finds fresh, not only those it wrote.
    controller.kill();
    let restarted = Controller::builder(&ns).google(&fake.endpoint).start();
    eventually(
        TIMEOUT,
        "the restarted controller to look at the secrets",
        || restarted.logs().contains("is fresh until").then_some(()),
    );
    let samples = eventually(TIMEOUT, "the expiry gauges after a restart", || {
        let samples = scrape(&restarted);
        samples
            .iter()
            .any(|s| s.name == format!("{METRIC}_secret_expiry_seconds"))
            .then_some(samples)
    });
    check_expiry(&samples);
    assert!(
        write_lines(&restarted.logs()).is_empty(),
        "the restarted controller re-provisioned fresh secrets:\n{}",
        restarted.logs()
    );

    // Deleting the ServiceAccount removes its series.
    cluster.kubectl(&["-n", &ns, "delete", "serviceaccount", "app"]);
    eventually(TIMEOUT, "the expiry gauges to go", || {
        (!scrape(&restarted)
            .iter()
            .any(|s| s.name == format!("{METRIC}_secret_expiry_seconds")))
        .then_some(())
    });
}

// ---------------------------------------------------------------------------------------------------------
// Health and readiness.

/// A TCP proxy to the API server that holds every connection until it is opened, so a test can keep the
/// controller's initial lists in flight for as long as it likes.
struct GatedProxy {
    port: u16,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl GatedProxy {
    fn start(upstream: &str) -> GatedProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let handle = {
            let (open, stop) = (open.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (open, stop, upstream) =
                                (open.clone(), stop.clone(), upstream.clone());
                            std::thread::spawn(move || {
                                while !open.load(Ordering::Relaxed) {
                                    if stop.load(Ordering::Relaxed) {
                                        return;
                                    }
                                    // Held until the gate opens (polled).
                                    std::thread::sleep(Duration::from_millis(20));
                                }
                                let _ = client.set_nonblocking(false);
                                if let Ok(server) = TcpStream::connect(&upstream) {
                                    pipe(client, server);
                                }
                            });
                        }
                        // Nothing to accept (the listener does not block): look again shortly.
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        GatedProxy {
            port,
            open,
            stop,
            handle: Some(handle),
        }
    }

    fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }
}

impl Drop for GatedProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(client_reader), Ok(server_writer)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || copy_then_close(client_reader, server_writer));
    copy_then_close(server, client);
    let _ = upstream.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Direction::Write);
}

/// A kubeconfig for the controller's ServiceAccount that points at `server` instead of the API server.
fn kubeconfig_via(cluster: &Cluster, server: &str) -> PathBuf {
    controller_kubeconfig(); // the manifests' RBAC
    let token = service_account_token(cluster, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT);
    let elsewhere = Cluster {
        server: server.to_string(),
        ..cluster.clone()
    };
    elsewhere.kubeconfig_for_token("controller-elsewhere", &token)
}

#[test]
fn readiness_waits_for_the_initial_lists_while_health_answers_at_once() {
    let cluster = cluster();
    let ns = cluster.namespace("ops-ready");
    let upstream = cluster
        .server
        .strip_prefix("https://")
        .expect("https server");
    let proxy = GatedProxy::start(upstream);
    let kubeconfig = kubeconfig_via(cluster, &format!("https://127.0.0.1:{}", proxy.port));
    let controller = Controller::builder(&ns).kubeconfig(&kubeconfig).start();
    controller.http_address();
    // The lists are held at the proxy: alive, not ready, for as long as they are held.
    let held_until = Instant::now() + Duration::from_secs(3);
    let mut probes = 0;
    while Instant::now() < held_until {
        assert_eq!(controller.http_get("/readyz").0, 503);
        assert_eq!(controller.http_get("/healthz").0, 200);
        probes += 1;
        // The probes' pace while the lists are held.
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(probes >= 5);
    assert!(!controller.logs().contains("initial lists complete"));

    let opened_at = Instant::now();
    proxy.open();
    eventually(TIMEOUT, "readiness", || {
        (controller.http_get("/readyz").0 == 200).then_some(())
    });
    eprintln!(
        "ready {:?} after the API server became reachable",
        opened_at.elapsed()
    );
    assert!(controller.logs().contains("initial lists complete; ready"));
    assert_eq!(controller.http_get("/healthz").0, 200);
    controller.kill();
}

#[test]
fn a_controller_that_cannot_reach_the_api_server_is_alive_but_not_ready() {
    let cluster = cluster();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = kubeconfig_via(cluster, &format!("https://127.0.0.1:{closed_port}"));
    let controller = Controller::builder("nowhere")
        .kubeconfig(&kubeconfig)
        .start();
    controller.http_address();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let (status, body) = controller.http_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert_eq!(controller.http_get("/healthz").0, 200);
        // The probes' pace for as long as the API server stays out of reach.
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(controller.is_running());
    controller.kill();
}

// ---------------------------------------------------------------------------------------------------------
// Graceful shutdown.

#[test]
fn sigterm_lets_the_running_reconcile_finish_releases_the_lease_and_exits_0() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("ops-shutdown");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let lease = TestLease::new();
    let controller = with_args(
        Controller::builder(&ns).google(&fake.endpoint),
        &leader_args(&lease.name),
    )
    .start();
    eventually(TIMEOUT, "the lease", || {
        controller.logs().contains("acquired lease").then_some(())
    });
    fake.control(serde_json::json!({"latency_ms": 2000}));

    google_service_account(cluster, &ns, "app", EMAIL);
    eventually(TIMEOUT, "the reconcile to start", || {
        controller
            .logs()
            .contains("app: secret imagepullsecret-app is due")
            .then_some(())
    });
    // Work is running (each Google call takes 2 s): the probes answer all the same.
    let asked = Instant::now();
    assert_eq!(controller.http_get("/healthz").0, 200);
    assert_eq!(controller.http_get("/readyz").0, 200);
    eprintln!(
        "probes answered in {:?} during a reconcile",
        asked.elapsed()
    );

    let termed_at = Instant::now();
    let status = controller
        .terminate(Duration::from_secs(40))
        .expect("the controller exits after SIGTERM");
    let took = termed_at.elapsed();
    eprintln!("SIGTERM during a reconcile: exited after {took:?}");
    assert!(status.success(), "exit status {status:?}");
    assert!(took <= Duration::from_secs(25), "{took:?}");

    let logs = controller.logs();
    let position = |needle: &str| {
        logs.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{logs}"))
    };
    assert!(
        position("stopping: no new work") < position("provisioned secret"),
        "the reconcile was not running at SIGTERM:\n{logs}"
    );
    assert!(position("provisioned secret") < position("released lease"));
    assert!(position("released lease") < position("controller: stopped\n"));
    let secret: Secret = admin
        .get(Some(&ns), "imagepullsecret-app")
        .expect("the secret was written");
    assert!(secret.data.contains_key(".dockerconfigjson"));
    wait_listed(&admin, &ns, "app", "imagepullsecret-app", &[&controller]);
    assert_eq!(
        lease.holder(&admin).as_deref(),
        Some(""),
        "lease not released"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Logs: JSON, and never a credential.

/// Every run of at least `min` characters of `alphabet` that follows `prefix` in `text`, with what follows it.
fn runs_after<'a>(
    text: &'a str,
    prefix: &str,
    min: usize,
    alphabet: impl Fn(char) -> bool,
) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix) {
        let start = from + at;
        let rest = &text[start + prefix.len()..];
        let len = rest.find(|c: char| !alphabet(c)).unwrap_or(rest.len());
        if len >= min {
            found.push((&text[start..start + prefix.len() + len], &rest[len..]));
        }
        from = start + prefix.len();
    }
    found
}

/// What a credential looks like, whatever its value: a JWT, a Google access token, an Authorization header,
/// a SigV4 signature.
fn credential_shapes(text: &str) -> Vec<String> {
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut found: Vec<String> = Vec::new();
    for (jwt, after) in runs_after(text, "eyJ", 10, base64url) {
        if after.starts_with('.') {
            found.push(format!("JWT {jwt}"));
        }
    }
    for (token, _) in runs_after(text, "ya29.", 1, |c| base64url(c) || c == '.') {
        found.push(format!("Google token {token}"));
    }
    for needle in [
        "Bearer ",
        "AWS4-HMAC-SHA256 Credential=",
        "Signature=",
        "X-Amz-Security-Token",
        "aws_secret_access_key",
    ] {
        if text.contains(needle) {
            found.push(needle.to_string());
        }
    }
    found
}

#[test]
fn credential_shapes_are_recognised() {
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    assert!(!credential_shapes(&format!("token {jwt} end")).is_empty());
    assert_eq!(credential_shapes("ya29.c.AbC-12_x").len(), 1);
    assert_eq!(credential_shapes("Authorization: Bearer x").len(), 1);
    assert!(credential_shapes("eyJ short. and eyJabcdefghijklmnop without a dot").is_empty());
    assert!(
        credential_shapes("provisioned secret for puller@proj.iam.gserviceaccount.com").is_empty()
    );
}

#[test]
fn at_trace_level_in_json_no_credential_reaches_the_logs_or_events() {
    let cluster = cluster();
    let admin = cluster.admin();
    let moto = crate::support::moto::moto();
    let ns = cluster.namespace("ops-logs");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "gcp"))
        .start();
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .aws(&moto.endpoint)
        .log_level("trace")
        .args(&["--log-format", "json"])
        .start();
    for (sa, role) in [
        ("aws", crate::support::moto::PULLER_ROLE),
        ("aws-denied", crate::support::moto::NO_ECR_ROLE),
    ] {
        cluster.kubectl(&["-n", &ns, "create", "serviceaccount", sa]);
        annotate(
            cluster,
            &ns,
            sa,
            &[
                ("registry", crate::support::moto::REGISTRY),
                ("audience", "sts.amazonaws.com"),
                ("aws-role-arn", role),
            ],
        );
    }
    google_service_account(cluster, &ns, "gcp", EMAIL);
    // Not allowed to impersonate EMAIL_2: the exchange succeeds, generateAccessToken is refused.
    google_service_account(cluster, &ns, "gcp-denied", EMAIL_2);
    wait_listed(&admin, &ns, "aws", "imagepullsecret-aws", &[&controller]);
    wait_listed(&admin, &ns, "gcp", "imagepullsecret-gcp", &[&controller]);
    let events_text = || {
        let core: Value = admin
            .call_json("GET", &format!("/api/v1/namespaces/{ns}/events"), &[], None)
            .unwrap();
        let new: Value = admin
            .call_json(
                "GET",
                &format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
                &[],
                None,
            )
            .unwrap();
        format!("{core}\n{new}")
    };
    eventually(TIMEOUT, "warnings for the denied ServiceAccounts", || {
        let events: Value = admin
            .call_json(
                "GET",
                &format!("/apis/events.k8s.io/v1/namespaces/{ns}/events"),
                &[],
                None,
            )
            .unwrap();
        let warned = |sa: &str| {
            events["items"].as_array().unwrap().iter().any(|e| {
                e["regarding"]["name"] == sa
                    && e["type"] == "Warning"
                    && e["reason"] == "FailedProvisioningImagePullSecret"
            })
        };
        (warned("aws-denied") && warned("gcp-denied")).then_some(())
    });
    controller.wait_idle();

    // The secrets that must not appear anywhere.
    let mut secrets: Vec<(String, String)> = Vec::new();
    for name in ["imagepullsecret-aws", "imagepullsecret-gcp"] {
        let secret: Secret = admin.get(Some(&ns), name).unwrap();
        let encoded = &secret.data[".dockerconfigjson"];
        secrets.push((format!("{name} data"), encoded.clone()));
        let config: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap(),
        )
        .unwrap();
        for (registry, entry) in config["auths"].as_object().unwrap() {
            let password = entry["password"].as_str().unwrap().to_string();
            assert!(password.len() >= 16, "{name}: a short password");
            secrets.push((
                format!("{name} auth for {registry}"),
                entry["auth"].as_str().unwrap().to_string(),
            ));
            secrets.push((
                format!("{name} password base64"),
                base64_encode(password.as_bytes()),
            ));
            secrets.push((format!("{name} password"), password));
        }
    }
    for sa in ["aws", "aws-denied"] {
        let sessions = moto.sessions(&role_session_name(&ns, sa));
        assert!(!sessions.is_empty(), "moto issued no session for {sa}");
        for session in sessions {
            secrets.push((
                format!("{sa} secret access key"),
                session.secret_access_key.expose().to_string(),
            ));
            secrets.push((
                format!("{sa} session token"),
                session.session_token.expose().to_string(),
            ));
        }
    }
    assert!(moto.ecr_calls(&role_session_name(&ns, "aws")) >= 1);

    let logs = controller.logs();
    let events = events_text();
    assert!(events.contains("AccessDenied"), "{events}");
    for (what, text) in [("logs", &logs), ("events", &events)] {
        for (name, secret) in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "the {name} is in the {what}"
            );
        }
        let shapes = credential_shapes(text);
        assert!(shapes.is_empty(), "credentials in the {what}: {shapes:?}");
    }

    // JSON: one object per line; provisioning lines name the namespace, ServiceAccount and secret.
    let mut trace_lines = 0;
    let mut provisioned = Vec::new();
    for line in logs.lines() {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for member in ["ts", "level", "target", "msg"] {
            assert!(record[member].is_string(), "{member} missing: {line}");
        }
        if record["level"] == "trace" {
            trace_lines += 1;
        }
        if record["msg"]
            .as_str()
            .unwrap()
            .starts_with("provisioned secret")
        {
            assert_eq!(record["namespace"], ns.as_str(), "{line}");
            let sa = record["serviceaccount"].as_str().expect(line);
            assert_eq!(record["secret"], format!("imagepullsecret-{sa}"), "{line}");
            provisioned.push(sa.to_string());
        }
    }
    assert!(trace_lines > 10, "only {trace_lines} trace lines");
    assert!(provisioned.contains(&"aws".to_string()), "{provisioned:?}");
    assert!(provisioned.contains(&"gcp".to_string()), "{provisioned:?}");
    controller.kill();
}
