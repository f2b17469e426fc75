//! Benchmarks (run by `scripts/bench`, never by the test suite: every test here is `#[ignore]`).
//!
//! Against the real kube-apiserver (with an audit log, so API requests can be counted by verb and resource)
//! and the Google stand-in answering in a configurable latency (default 5 ms), it measures: cold start at
//! 1,000 and 10,000 configured ServiceAccounts; steady state with 10,000 configured plus 10,000 unconfigured
//! ServiceAccounts, 20,000 unrelated secrets and 50,000 pods; annotate-to-attached latency; API requests
//! per newly configured ServiceAccount (while annotating one at a time, and during each cold start); requests
//! per ServiceAccount at a restart over a provisioned namespace; idle CPU; and the cold start with
//! `--workers 1`. It prints a markdown
//! report and writes it to `$IPSP_BENCH_OUT` (default `target/bench/report.md`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::controller::{Controller, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT};
use crate::support::google::GoogleFake;
use crate::support::moto::{Moto, PULLER_ROLE, REGISTRY as AWS_REGISTRY};
use crate::support::{cluster, eventually, poll};
use image_pull_secrets_provisioner::kube::types::{ObjectMeta, Pod, Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::{Client, ListParams};
use serde_json::json;

const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/bench/providers/bench";
const AUDIENCE: &str = "bench";
const REGISTRY: &str = "europe-docker.pkg.dev";
const EMAIL: &str = "puller@bench.iam.gserviceaccount.com";

/// Whether the report section `name` runs: all of them unless `IPSP_BENCH_ONLY` lists some (comma-separated:
/// `cold-1`, `cold-8`, `cold-16`, `cold-large`, `idle`, `steady`, `latency`), for iterating on one measure.
fn section(name: &str) -> bool {
    std::env::var("IPSP_BENCH_ONLY")
        .map(|only| only.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn configured_for(name: &str, ns: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    let mut metadata = ObjectMeta {
        name: name.into(),
        namespace: ns.into(),
        ..Default::default()
    };
    for (key, value) in annotations {
        metadata
            .annotations
            .insert(key.to_string(), value.to_string());
    }
    ServiceAccount {
        metadata,
        ..Default::default()
    }
}

fn annotations() -> [(&'static str, &'static str); 4] {
    [
        ("imagepullsecrets.preferred.jp/registry", REGISTRY),
        ("imagepullsecrets.preferred.jp/audience", AUDIENCE),
        (
            "imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider",
            PROVIDER,
        ),
        (
            "imagepullsecrets.preferred.jp/googlecloud-service-account-email",
            EMAIL,
        ),
    ]
}

/// Where a cold start's credentials come from: the Google stand-in (with its configured latency), or moto
/// (AWS, signatures checked) — the peer the original controller's cold start was measured against.
#[derive(Clone, Copy)]
enum Provider<'a> {
    Google(&'a GoogleFake),
    Aws(&'a Moto),
}

impl Provider<'_> {
    fn name(&self) -> &'static str {
        match self {
            Provider::Google(_) => "Google stand-in",
            Provider::Aws(_) => "AWS (moto)",
        }
    }

    fn annotations(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Provider::Google(_) => annotations().to_vec(),
            Provider::Aws(_) => vec![
                ("imagepullsecrets.preferred.jp/registry", AWS_REGISTRY),
                (
                    "imagepullsecrets.preferred.jp/audience",
                    "sts.amazonaws.com",
                ),
                ("imagepullsecrets.preferred.jp/aws-role-arn", PULLER_ROLE),
            ],
        }
    }

    fn controller(&self, ns: &str) -> crate::support::controller::ControllerBuilder {
        match self {
            Provider::Google(fake) => Controller::builder(ns).google(&fake.endpoint),
            Provider::Aws(moto) => Controller::builder(ns).aws(&moto.endpoint),
        }
    }

    fn short(&self) -> &'static str {
        match self {
            Provider::Google(_) => "g",
            Provider::Aws(_) => "aws",
        }
    }
}

/// Creates `count` objects with `threads` parallel writers.
fn create_many(count: usize, threads: usize, make: impl Fn(&Client, usize) + Sync) {
    let client = cluster().admin();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                make(&client, i);
            });
        }
    });
}

fn create_or_exists<K: image_pull_secrets_provisioner::kube::types::Resource>(
    client: &Client,
    ns: &str,
    object: &K,
) {
    match client.create(Some(ns), object) {
        Ok(_) => {}
        Err(e) if e.is(image_pull_secrets_provisioner::kube::Reason::AlreadyExists) => {}
        Err(e) => panic!("create in {ns}: {e}"),
    }
}

/// Blocks until `count` ServiceAccounts of `ns` list a pull secret, following a watch: the moment is exact,
/// and the API server is not made to list them over and over while it is being measured.
fn wait_until_attached(client: &Client, ns: &str, count: usize, controller: &Controller) {
    use image_pull_secrets_provisioner::kube::watch::WatchEvent;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let mut attached = std::collections::HashSet::new();
        let track = |attached: &mut std::collections::HashSet<String>, sa: ServiceAccount| {
            if sa.image_pull_secrets.is_some_and(|s| !s.is_empty()) {
                attached.insert(sa.metadata.name);
            } else {
                attached.remove(&sa.metadata.name);
            }
        };
        let version = client
            .list_each::<ServiceAccount>(Some(ns), &ListParams::default(), |sa| {
                track(&mut attached, sa)
            })
            .expect("list serviceaccounts");
        let mut stream = client
            .watch::<ServiceAccount>(
                Some(ns),
                &ListParams::default(),
                &version,
                Duration::from_secs(30),
            )
            .expect("watch serviceaccounts");
        while attached.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} attached",
                attached.len()
            );
            assert!(
                controller.is_running(),
                "the controller exited:\n{}",
                controller.logs()
            );
            match stream.next_event() {
                Ok(Some(WatchEvent::Added(sa) | WatchEvent::Modified(sa))) => {
                    track(&mut attached, sa)
                }
                Ok(Some(WatchEvent::Deleted(sa))) => {
                    attached.remove(&sa.metadata.name);
                }
                Ok(Some(WatchEvent::Bookmark { .. })) => {}
                // The watch ended (its timeout) or failed: list again.
                Ok(None) | Ok(Some(WatchEvent::Error(_))) | Err(_) => break,
            }
        }
        if attached.len() >= count {
            return;
        }
    }
}

/// Resident memory now and at its peak, in bytes, and CPU seconds used, of process `pid`.
fn process_stats(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        kib("VmRSS:"),
        kib("VmHWM:"),
        (ticks(11) + ticks(12)) / 100.0,
    )
}

/// Where a process's resident memory is (from /proc/PID/smaps_rollup and status): anonymous (heap, stacks)
/// against file-backed (the binary's own pages), and its thread count.
fn memory_breakdown(pid: u32) -> String {
    let read = |file: &str, key: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    format!(
        "anonymous {:.1} MB, file-backed {:.1} MB, {} threads",
        read("smaps_rollup", "Anonymous:") * 1024.0 / 1e6,
        (read("status", "RssFile:") + read("status", "RssShmem:")) * 1024.0 / 1e6,
        read("status", "Threads:")
    )
}

/// The controller's API requests in the audit log since `offset` bytes: (verb, resource) → count, and the
/// new offset.
fn audit_requests(
    offset: u64,
    namespace_filter: Option<&str>,
) -> (BTreeMap<(String, String), usize>, u64) {
    use std::io::{Seek, SeekFrom};
    let path = cluster().dir.join("audit.log");
    let user = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}");
    let mut counts = BTreeMap::new();
    let Ok(mut file) = std::fs::File::open(&path) else {
        return (counts, offset);
    };
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut reader = std::io::BufReader::new(file);
    let mut position = offset;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        position += line.len() as u64;
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            let stage_complete = event["stage"] == "ResponseComplete";
            let ours = event["user"]["username"] == user.as_str();
            let in_namespace =
                namespace_filter.is_none_or(|ns| event["objectRef"]["namespace"] == ns);
            if stage_complete && ours && in_namespace {
                let mut resource = event["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                if let Some(sub) = event["objectRef"]["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                *counts
                    .entry((event["verb"].as_str().unwrap_or("?").to_string(), resource))
                    .or_insert(0) += 1;
            }
        }
        line.clear();
    }
    (counts, position)
}

fn audit_end() -> u64 {
    std::fs::metadata(cluster().dir.join("audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn writes(counts: &BTreeMap<(String, String), usize>) -> usize {
    counts
        .iter()
        .filter(|((verb, _), _)| matches!(verb.as_str(), "create" | "update" | "patch" | "delete"))
        .map(|(_, n)| n)
        .sum()
}

struct ColdStart {
    provider: &'static str,
    count: usize,
    workers: usize,
    seconds: f64,
    peak_rss: u64,
    /// CPU seconds used during the run by the controller, kube-apiserver and etcd.
    cpu: [f64; 3],
    /// API requests per ServiceAccount other than the lists and watches (which do not grow with them);
    /// `None` when the audit log recorded none (it drops events under heavy load).
    requests_per_sa: Option<f64>,
    /// The same after a restart over the provisioned namespace, and how long the restart took to settle.
    restart_requests_per_sa: f64,
    restart_seconds: f64,
}

/// Requests that are not the watches' own lists and watches.
fn per_object(counts: &BTreeMap<(String, String), usize>) -> usize {
    counts
        .iter()
        .filter(|((verb, _), _)| !matches!(verb.as_str(), "list" | "watch"))
        .map(|(_, n)| n)
        .sum()
}

/// The pids of the test cluster's kube-apiserver and etcd.
fn cluster_pids() -> [u32; 2] {
    let read = |name: &str| {
        std::fs::read_to_string(cluster().dir.join(format!("{name}.pid")))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    };
    [read("kube-apiserver"), read("etcd")]
}

fn cold_start(count: usize, workers: usize, provider: Provider) -> ColdStart {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace(&format!("cold-{count}-w{workers}-{}", provider.short()));
    let annotations = provider.annotations();
    create_many(count, 16, |client, i| {
        create_or_exists(
            client,
            &ns,
            &configured_for(&format!("sa-{i}"), &ns, &annotations),
        )
    });
    let [apiserver, etcd] = cluster_pids();
    let cpu_before = [process_stats(apiserver).2, process_stats(etcd).2];
    let audit_start = audit_end();
    let controller = provider
        .controller(&ns)
        .log_level(&cold_start_log_level())
        .args(&["--workers", &workers.to_string()])
        .args(&extra_args().iter().map(String::as_str).collect::<Vec<_>>())
        .start();
    let started = Instant::now();
    wait_until_attached(&admin, &ns, count, &controller);
    let seconds = started.elapsed().as_secs_f64();
    let (_, peak_rss, controller_cpu) = process_stats(controller.pid());
    let cpu = [
        controller_cpu,
        process_stats(apiserver).2 - cpu_before[0],
        process_stats(etcd).2 - cpu_before[1],
    ];
    // Follow-ups (pod checks, echoes of the writes) settle before the requests are counted.
    wait_for_idle(&controller);
    let (counts, _) = audit_requests(audit_start, Some(&ns));
    let requests_per_sa = (!counts.is_empty()).then(|| per_object(&counts) as f64 / count as f64);
    println!(
        "cold start {count} (workers {workers}): {seconds:.1} s, {:.0}/s, peak RSS {:.1} MB, CPU {cpu:?}, requests {counts:?}, log {}",
        count as f64 / seconds,
        peak_rss as f64 / 1e6,
        controller.log_path.display()
    );
    drop(controller);

    // A restart over the provisioned namespace: the initial lists and watches, and nothing per ServiceAccount.
    let audit_start = audit_end();
    let started = Instant::now();
    let controller = provider
        .controller(&ns)
        .log_level("info")
        .args(&["--workers", &workers.to_string()])
        .start();
    eventually(
        Duration::from_secs(600),
        "the restarted controller ready",
        || controller.logs().contains("ready").then_some(()),
    );
    wait_for_idle(&controller);
    let restart_seconds = started.elapsed().as_secs_f64();
    let (counts, _) = audit_requests(audit_start, Some(&ns));
    println!("restart over {count}: {restart_seconds:.1} s, requests {counts:?}");
    ColdStart {
        provider: provider.name(),
        count,
        workers,
        seconds,
        peak_rss,
        cpu,
        requests_per_sa,
        restart_requests_per_sa: per_object(&counts) as f64 / count as f64,
        restart_seconds,
    }
}

/// Extra controller flags for the cold starts, from `IPSP_BENCH_ARGS` (split at whitespace): e.g.
/// `--provider-rate 1000 --provider-burst 1000` to measure the controller rather than its provider rate limit.
fn extra_args() -> Vec<String> {
    std::env::var("IPSP_BENCH_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The controller's log level in the cold starts, from `IPSP_BENCH_LOG_LEVEL` (default `info`): `trace` logs
/// every request with its duration, to see where a cold start spends its time.
fn cold_start_log_level() -> String {
    std::env::var("IPSP_BENCH_LOG_LEVEL").unwrap_or_else(|_| "info".into())
}

/// How long the controller must stay quiet before a measurement starts: its floods take longer to digest than
/// the tests' single objects ([`crate::support::controller::QUIET`]).
const BENCH_QUIET: Duration = Duration::from_secs(5);

/// Waits until the controller has been idle for [`BENCH_QUIET`] (its work queue empty, no event waiting, no
/// log line about work), however long its backlog takes.
fn wait_for_idle(controller: &Controller) {
    controller.wait_idle_for(BENCH_QUIET, Duration::from_secs(1800));
}

#[test]
#[ignore = "benchmark: run by scripts/bench"]
fn benchmark() {
    let cluster = cluster();
    let admin = cluster.admin();
    let latency = env_number("IPSP_BENCH_PROVIDER_LATENCY_MS", 5);
    let large = env_number("IPSP_BENCH_LARGE", 10_000);
    let small = env_number("IPSP_BENCH_SMALL", 1_000);
    let samples = env_number("IPSP_BENCH_SAMPLES", 200);
    let pods = env_number("IPSP_BENCH_PODS", 50_000);
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, "*")
        .arg("--latency-ms")
        .arg(&latency.to_string())
        .start();
    let mut report = String::new();
    let mut line = |text: String| {
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
    };
    line(format!("# Benchmark report\n\nProvider stand-in latency: {latency} ms per call (two calls per credential). \
        Machine: {} cores. Controller: release build. Kubernetes: real kube-apiserver + etcd on the same machine.\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)));

    // 1 and 5: cold start.
    let default_workers = 8;
    let google = Provider::Google(&fake);
    let moto = section("cold-1-aws").then(Moto::start);
    let runs: Vec<ColdStart> = [
        ("cold-1", small, 1, Some(google)),
        ("cold-1-aws", small, 1, moto.as_ref().map(Provider::Aws)),
        ("cold-8", small, default_workers, Some(google)),
        ("cold-16", small, 2 * default_workers, Some(google)),
        ("cold-large", large, default_workers, Some(google)),
    ]
    .into_iter()
    .filter(|(name, _, _, _)| section(name))
    .filter_map(|(_, count, workers, provider)| Some(cold_start(count, workers, provider?)))
    .collect();
    drop(moto);
    line(
        "## Cold start: configured ServiceAccounts already exist when the controller starts\n"
            .into(),
    );
    line("| provider | ServiceAccounts | workers | time to all attached | provisioned per second | peak RSS | CPU s: controller / kube-apiserver / etcd | requests per new ServiceAccount | requests per ServiceAccount at a restart (settled after) |".into());
    line("|---|---:|---:|---:|---:|---:|---|---:|---:|".into());
    for run in &runs {
        line(format!(
            "| {} | {} | {} | {:.1} s | {:.0} | {:.1} MB | {:.1} / {:.1} / {:.1} | {} | {:.2} ({:.1} s) |",
            run.provider,
            run.count,
            run.workers,
            run.seconds,
            run.count as f64 / run.seconds,
            run.peak_rss as f64 / 1e6,
            run.cpu[0],
            run.cpu[1],
            run.cpu[2],
            run.requests_per_sa
                .map_or("(audit log dropped the events)".to_string(), |r| format!("{r:.2}")),
            run.restart_requests_per_sa,
            run.restart_seconds,
        ));
    }
    line("\nRequests are counted in the audit log, without the initial lists and watches (which do not grow with the number of ServiceAccounts).".into());

    if section("idle") {
        // Idle: an empty namespace, metrics and probes served, nothing to do.
        let ns = cluster.namespace("idle");
        let controller = Controller::builder(&ns)
            .google(&fake.endpoint)
            .log_level("info")
            .start();
        eventually(Duration::from_secs(60), "the idle controller ready", || {
            controller.logs().contains("ready").then_some(())
        });
        wait_for_idle(&controller);
        let idle = Duration::from_secs(env_number("IPSP_BENCH_IDLE_SECONDS", 60) as u64);
        let (_, _, cpu_before) = process_stats(controller.pid());
        // The measurement itself: CPU over an idle stretch of time.
        std::thread::sleep(idle);
        let (idle_rss, _, cpu_after) = process_stats(controller.pid());
        drop(controller);
        line(format!(
        "\n## Idle: an empty namespace, metrics and probes on\n\n| CPU per minute | RSS |\n|---:|---:|\n| {:.3} s | {:.1} MB |",
        (cpu_after - cpu_before) * 60.0 / idle.as_secs_f64(),
        idle_rss as f64 / 1e6
    ));
    }
    if section("steady") {
        // 2: steady state with many unrelated objects, all in one namespace the controller serves.
        let ns = cluster.namespace("steady");
        create_many(large, 16, |client, i| {
            create_or_exists(
                client,
                &ns,
                &configured_for(&format!("sa-{i}"), &ns, &annotations()),
            )
        });
        let controller = Controller::builder(&ns)
            .google(&fake.endpoint)
            .log_level("info")
            .start();
        wait_until_attached(&admin, &ns, large, &controller);
        let (rss_configured, _, _) = process_stats(controller.pid());
        create_many(large, 16, |client, i| {
            let mut sa = ServiceAccount::default();
            sa.metadata.name = format!("plain-{i}");
            create_or_exists(client, &ns, &sa);
        });
        create_many(2 * large, 16, |client, i| {
            let mut secret = Secret::default();
            secret.metadata.name = format!("unrelated-{i}");
            secret.data.insert("k".into(), "dmFsdWU=".into());
            create_or_exists(client, &ns, &secret);
        });
        create_many(pods, 16, |client, i| {
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("pod-{i}")},
            "spec": {"serviceAccountName": format!("plain-{}", i % large), "automountServiceAccountToken": false,
                "containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
            create_or_exists(client, &ns, &pod);
        });
        // Let the watches digest the flood and the work queue drain (nothing is due), then measure a minute.
        wait_for_idle(&controller);
        let (rss_before, _, cpu_before) = process_stats(controller.pid());
        let audit_start = audit_end();
        let minute = Duration::from_secs(env_number("IPSP_BENCH_STEADY_SECONDS", 60) as u64);
        // The measurement itself: a steady minute.
        std::thread::sleep(minute);
        let (rss_after, peak, cpu_after) = process_stats(controller.pid());
        let breakdown = memory_breakdown(controller.pid());
        let (steady_counts, _) = audit_requests(audit_start, Some(&ns));
        let per_minute = 60.0 / minute.as_secs_f64();
        line(format!("\n## Steady state: {large} configured + {large} unconfigured ServiceAccounts, {} unrelated secrets, {pods} pods\n", 2 * large));
        line("| measure | value |".into());
        line("|---|---:|".into());
        line(format!(
            "| RSS with only the {large} configured ServiceAccounts | {:.1} MB |",
            rss_configured as f64 / 1e6
        ));
        line(format!("| RSS after adding the unrelated objects | {:.1} MB (then {:.1} MB a minute later; peak {:.1} MB) |", rss_before as f64 / 1e6, rss_after as f64 / 1e6, peak as f64 / 1e6));
        line(format!(
            "| where the memory is, a minute later | {breakdown} |"
        ));
        line(format!(
            "| CPU per minute | {:.2} s |",
            (cpu_after - cpu_before) * per_minute
        ));
        line(format!(
            "| API writes per minute | {:.0} |",
            writes(&steady_counts) as f64 * per_minute
        ));
        line(format!(
            "| API requests per minute (all verbs) | {:.0} |",
            steady_counts.values().sum::<usize>() as f64 * per_minute
        ));
        drop(controller);
    }
    if section("latency") {
        // 3 and 4: latency from annotation to attachment, and the requests it took.
        let ns = cluster.namespace("latency");
        let controller = Controller::builder(&ns)
            .google(&fake.endpoint)
            .log_level("info")
            .start();
        eventually(Duration::from_secs(60), "the controller ready", || {
            controller.logs().contains("ready").then_some(())
        });
        for i in 0..samples {
            let mut sa = ServiceAccount::default();
            sa.metadata.name = format!("sa-{i}");
            admin.create(Some(&ns), &sa).unwrap();
        }
        let audit_start = audit_end();
        let mut latencies = Vec::new();
        for i in 0..samples {
            let name = format!("sa-{i}");
            let patch = json!({"metadata": {"annotations": annotations().iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}});
            let started = Instant::now();
            admin
                .patch::<ServiceAccount>(
                    Some(&ns),
                    &name,
                    &image_pull_secrets_provisioner::kube::Patch::Merge(patch),
                )
                .unwrap();
            let attached = poll(Duration::from_secs(60), Duration::from_millis(2), || {
                let sa: ServiceAccount = admin.get(Some(&ns), &name).unwrap();
                sa.image_pull_secrets
                    .is_some_and(|s| !s.is_empty())
                    .then_some(())
            });
            assert!(attached.is_some(), "{name} not attached");
            latencies.push(started.elapsed());
        }
        // Scheduled follow-ups (pod checks) finish before the requests are counted.
        wait_for_idle(&controller);
        let (counts, _) = audit_requests(audit_start, Some(&ns));
        latencies.sort();
        let percentile = |p: f64| {
            latencies[((latencies.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(latencies.len() - 1)]
        };
        line(format!("\n## Annotate-to-attached latency over {samples} ServiceAccounts (annotated one at a time)\n"));
        line("| p50 | p90 | p99 | max |".into());
        line("|---:|---:|---:|---:|".into());
        line(format!(
            "| {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            percentile(0.5).as_secs_f64() * 1e3,
            percentile(0.9).as_secs_f64() * 1e3,
            percentile(0.99).as_secs_f64() * 1e3,
            latencies[latencies.len() - 1].as_secs_f64() * 1e3
        ));
        line(format!("\n## API requests per newly configured ServiceAccount (audit log, {samples} ServiceAccounts)\n"));
        line("| verb | resource | per ServiceAccount |".into());
        line("|---|---|---:|".into());
        for ((verb, resource), count) in &counts {
            line(format!(
                "| {verb} | {resource} | {:.2} |",
                *count as f64 / samples as f64
            ));
        }
        line(format!(
            "| **writes** | | **{:.2}** |",
            writes(&counts) as f64 / samples as f64
        ));
        drop(controller);
    }

    let path = std::env::var("IPSP_BENCH_OUT").unwrap_or_else(|_| {
        crate::support::project_root()
            .join("target/bench/report.md")
            .to_string_lossy()
            .into_owned()
    });
    if let Some(parent) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, &report).unwrap();
    println!("\nreport written to {path}");
}
