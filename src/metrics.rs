//! The controller's Prometheus metrics: a small fixed registry rendered in text exposition format 0.0.4.
//!
//! Every metric has its own method on [`Metrics`], so a misspelt name or a wrong label set is a compile error
//! rather than a silently empty series. Label sets stay small: providers, outcomes and results are a handful
//! of fixed words, and the one per-object series — seconds until each secret expires — is removed again with
//! [`Metrics::forget_secret`], so memory follows the number of provisioned secrets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};

const PREFIX: &str = "image_pull_secrets_provisioner";

/// Upper bounds of the provider request duration histogram, in seconds.
pub const REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Linux reports CPU time in clock ticks of 1/100 s on every architecture the controller is built for.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The process-wide registry.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// All metrics of the controller. Every method is cheap and safe to call from any thread.
#[derive(Default)]
pub struct Metrics {
    provisioning: Counters,
    evictions: Counters,
    watch_restarts: Counters,
    provider_requests: Mutex<BTreeMap<String, Histogram>>,
    secret_expiry: Mutex<BTreeMap<SecretKey, Expiry>>,
    queue_depth: AtomicUsize,
    queue_retries: AtomicU64,
    leader: AtomicBool,
}

impl Metrics {
    /// An empty registry; the controller uses the global [`metrics()`], tests make their own.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts one provisioning of a secret: `outcome` is `success` or the step that failed (`token`,
    /// `exchange`, `secret`, `attach`, `config`).
    pub fn provisioning(&self, provider: &str, outcome: &str) {
        self.provisioning.inc(&[provider, outcome]);
    }

    /// Records how long one request to a cloud provider took.
    pub fn observe_provider_request(&self, provider: &str, seconds: f64) {
        lock(&self.provider_requests)
            .entry(provider.to_string())
            .or_default()
            .observe(seconds);
    }

    /// Remembers when a provisioned secret expires; the gauge shows the seconds left at scrape time.
    pub fn set_secret_expiry(
        &self,
        namespace: &str,
        service_account: &str,
        secret: &str,
        expires_at: DateTime<Utc>,
    ) {
        lock(&self.secret_expiry).insert(
            (namespace.to_string(), secret.to_string()),
            (service_account.to_string(), expires_at),
        );
    }

    /// Drops the expiry series of a secret that was deleted or is no longer managed.
    pub fn forget_secret(&self, namespace: &str, secret: &str) {
        lock(&self.secret_expiry).remove(&(namespace.to_string(), secret.to_string()));
    }

    /// Keeps only the expiry series of secrets for which `keep(namespace, secret)` holds, after a relist
    /// showed which still exist.
    pub fn retain_secrets(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.secret_expiry).retain(|(namespace, secret), _| keep(namespace, secret));
    }

    /// Drops the expiry series of every secret of a ServiceAccount that was deleted or is no longer configured.
    pub fn forget_service_account(&self, namespace: &str, service_account: &str) {
        lock(&self.secret_expiry)
            .retain(|(ns, _), (sa, _)| ns != namespace || sa != service_account);
    }

    /// Counts one eviction decision: `evicted`, `failed` or `skipped_no_controller`.
    pub fn eviction(&self, result: &str) {
        self.evictions.inc(&[result]);
    }

    pub fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }

    /// Counts one key put back on the queue after a failure.
    pub fn queue_retry(&self) {
        self.queue_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one watch that had to be re-established, and why (`gone`, `error`, ...).
    pub fn watch_restart(&self, resource: &str, reason: &str) {
        self.watch_restarts.inc(&[resource, reason]);
    }

    pub fn set_leader(&self, is_leader: bool) {
        self.leader.store(is_leader, Ordering::Relaxed);
    }

    /// Everything in text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = self.render_at(Utc::now());
        render_process(&mut out, &ProcessStats::read());
        out
    }

    /// The controller's own metrics, with secret expiry measured from `now`.
    fn render_at(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "build_info",
            "gauge",
            "Version of the controller; always 1.",
        );
        sample(
            &mut out,
            &format!("{PREFIX}_build_info"),
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );

        header(
            &mut out,
            "provisioning_total",
            "counter",
            "Secret provisionings by provider and outcome (success or the step that failed).",
        );
        self.provisioning
            .render(&mut out, "provisioning_total", &["provider", "outcome"]);

        self.render_requests(&mut out);
        self.render_expiry(&mut out, now);

        header(
            &mut out,
            "evictions_total",
            "counter",
            "Pod eviction decisions by result.",
        );
        self.evictions
            .render(&mut out, "evictions_total", &["result"]);

        header(
            &mut out,
            "workqueue_depth",
            "gauge",
            "Keys ready to be processed now (scheduled refreshes are not counted).",
        );
        sample(
            &mut out,
            &format!("{PREFIX}_workqueue_depth"),
            &[],
            self.queue_depth.load(Ordering::Relaxed) as f64,
        );
        header(
            &mut out,
            "workqueue_retries_total",
            "counter",
            "Keys requeued after a failure.",
        );
        sample(
            &mut out,
            &format!("{PREFIX}_workqueue_retries_total"),
            &[],
            self.queue_retries.load(Ordering::Relaxed) as f64,
        );

        header(
            &mut out,
            "watch_restarts_total",
            "counter",
            "Watches re-established, by resource and reason.",
        );
        self.watch_restarts
            .render(&mut out, "watch_restarts_total", &["resource", "reason"]);

        header(
            &mut out,
            "leader",
            "gauge",
            "1 while this replica holds the leader lease.",
        );
        let leader = if self.leader.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        };
        sample(&mut out, &format!("{PREFIX}_leader"), &[], leader);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = format!("{PREFIX}_provider_request_duration_seconds");
        header(
            out,
            "provider_request_duration_seconds",
            "histogram",
            "Duration of each request to a cloud provider (STS, ECR, IAM Credentials, Entra, ACR), without retries or waits.",
        );
        for (provider, histogram) in lock(&self.provider_requests).iter() {
            let mut cumulative = 0;
            for (bound, count) in REQUEST_BUCKETS.iter().zip(histogram.buckets.iter()) {
                cumulative += count;
                let le = format_value(*bound);
                sample(
                    out,
                    &format!("{name}_bucket"),
                    &[("provider", provider), ("le", &le)],
                    cumulative as f64,
                );
            }
            sample(
                out,
                &format!("{name}_bucket"),
                &[("provider", provider), ("le", "+Inf")],
                histogram.count as f64,
            );
            sample(
                out,
                &format!("{name}_sum"),
                &[("provider", provider)],
                histogram.sum,
            );
            sample(
                out,
                &format!("{name}_count"),
                &[("provider", provider)],
                histogram.count as f64,
            );
        }
    }

    fn render_expiry(&self, out: &mut String, now: DateTime<Utc>) {
        header(
            out,
            "secret_expiry_seconds",
            "gauge",
            "Seconds until each provisioned secret expires; negative once it has expired.",
        );
        for ((namespace, secret), (service_account, expires_at)) in lock(&self.secret_expiry).iter()
        {
            let left = (*expires_at - now).num_milliseconds() as f64 / 1000.0;
            let labels = [
                ("namespace", namespace.as_str()),
                ("serviceaccount", service_account),
                ("secret", secret),
            ];
            sample(
                out,
                &format!("{PREFIX}_secret_expiry_seconds"),
                &labels,
                left,
            );
        }
    }
}

/// (namespace, secret name): a secret's expiry series is found by these.
type SecretKey = (String, String);
/// (serviceaccount, expires_at).
type Expiry = (String, DateTime<Utc>);

/// A family of counters keyed by their label values.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<Vec<String>, u64>>);

impl Counters {
    fn inc(&self, values: &[&str]) {
        let key = values.iter().map(|v| v.to_string()).collect();
        *lock(&self.0).entry(key).or_default() += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &[&str]) {
        for (values, count) in lock(&self.0).iter() {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            sample(out, &format!("{PREFIX}_{name}"), &pairs, *count as f64);
        }
    }
}

/// Observations per bucket (not cumulative; rendering adds them up).
#[derive(Default)]
struct Histogram {
    buckets: [u64; REQUEST_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = REQUEST_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// A poisoned lock only means another thread panicked mid-update of a number; the numbers are still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {PREFIX}_{name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let _ = write!(out, "{{{}}}", pairs.join(","));
    }
    let _ = writeln!(out, " {}", format_value(value));
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// What the kernel tells about this process; `None` where it could not be read (not Linux, no /proc).
#[derive(Debug, Default)]
struct ProcessStats {
    resident_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields = stat_fields(&stat);
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        let boot_time = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        ProcessStats {
            resident_bytes: statm
                .split_whitespace()
                .nth(1)
                .and_then(|pages| pages.parse::<u64>().ok())
                .map(|pages| pages * page_size()),
            // utime and stime are fields 14 and 15 of stat(5); starttime is field 22.
            cpu_seconds: ticks(11)
                .zip(ticks(12))
                .map(|(user, system)| (user + system) as f64 / CLOCK_TICKS_PER_SECOND),
            start_time_seconds: boot_time
                .zip(ticks(19))
                .map(|(boot, start)| boot as f64 + start as f64 / CLOCK_TICKS_PER_SECOND),
        }
    }
}

/// The fields of /proc/self/stat after the command name, which may itself contain spaces and parentheses;
/// index 0 is field 3 (state).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// The page size from the ELF auxiliary vector (AT_PAGESZ), which the kernel hands every process; 4096 if
/// it cannot be read.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let word = std::mem::size_of::<usize>();
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    auxv.chunks_exact(2 * word)
        .map(|pair| (read_word(&pair[..word]), read_word(&pair[word..])))
        .find(|(key, _)| *key == AT_PAGESZ)
        .map(|(_, value)| value)
        .filter(|size| size.is_power_of_two())
        .unwrap_or(4096)
}

fn read_word(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    if cfg!(target_endian = "little") {
        buffer[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(buffer)
    } else {
        buffer[8 - bytes.len()..].copy_from_slice(bytes);
        u64::from_be_bytes(buffer)
    }
}

fn render_process(out: &mut String, stats: &ProcessStats) {
    let mut process = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            sample(out, name, &[], value);
        }
    };
    process(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        stats.resident_bytes.map(|b| b as f64),
    );
    process(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stats.cpu_seconds,
    );
    process(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        stats.start_time_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// One parsed sample: name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// A strict reader of the exposition format: every sample must follow a `# TYPE` of its family.
    fn parse(text: &str) -> Vec<Sample> {
        let mut samples = Vec::new();
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => panic!("no value: {line}"),
            };
            assert!(
                name.starts_with(&family),
                "{name} outside its family {family}"
            );
            let mut labels = BTreeMap::new();
            let mut chars = rest.chars().peekable();
            if chars.peek() == Some(&'{') {
                chars.next();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => panic!("dangling escape: {line}"),
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(key, value);
                    match chars.next() {
                        Some(',') => continue,
                        Some('}') => break,
                        other => panic!("unexpected {other:?} in {line}"),
                    }
                }
            }
            let value: String = chars.collect();
            let value = match value.trim() {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            samples.push((name.to_string(), labels, value));
        }
        samples
    }

    fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }

    fn name(suffix: &str) -> String {
        format!("{PREFIX}_{suffix}")
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 16, 0, 0).unwrap()
    }

    #[test]
    fn counters_and_gauges_render_with_their_labels() {
        let m = Metrics::new();
        m.provisioning("aws", "success");
        m.provisioning("aws", "success");
        m.provisioning("google", "exchange");
        m.eviction("evicted");
        m.eviction("skipped_no_controller");
        m.set_queue_depth(7);
        m.queue_retry();
        m.watch_restart("secrets", "gone");
        m.set_leader(true);
        let samples = parse(&m.render_at(now()));
        let s = &samples;
        assert_eq!(
            find(
                s,
                &name("provisioning_total"),
                &[("provider", "aws"), ("outcome", "success")]
            ),
            Some(2.0)
        );
        assert_eq!(
            find(
                s,
                &name("provisioning_total"),
                &[("provider", "google"), ("outcome", "exchange")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find(s, &name("evictions_total"), &[("result", "evicted")]),
            Some(1.0)
        );
        assert_eq!(
            find(
                s,
                &name("evictions_total"),
                &[("result", "skipped_no_controller")]
            ),
            Some(1.0)
        );
        assert_eq!(find(s, &name("workqueue_depth"), &[]), Some(7.0));
        assert_eq!(find(s, &name("workqueue_retries_total"), &[]), Some(1.0));
        assert_eq!(
            find(
                s,
                &name("watch_restarts_total"),
                &[("resource", "secrets"), ("reason", "gone")]
            ),
            Some(1.0)
        );
        assert_eq!(find(s, &name("leader"), &[]), Some(1.0));
        assert_eq!(
            find(
                s,
                &name("build_info"),
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Some(1.0)
        );
        m.set_leader(false);
        assert_eq!(
            find(&parse(&m.render_at(now())), &name("leader"), &[]),
            Some(0.0)
        );
    }

    #[test]
    fn every_family_has_help_and_type() {
        let text = Metrics::new().render();
        for family in [
            "provisioning_total",
            "provider_request_duration_seconds",
            "secret_expiry_seconds",
            "evictions_total",
            "workqueue_depth",
            "workqueue_retries_total",
            "watch_restarts_total",
            "leader",
        ] {
            assert!(
                text.contains(&format!("# HELP {PREFIX}_{family} ")),
                "{family}"
            );
            assert!(
                text.contains(&format!("# TYPE {PREFIX}_{family} ")),
                "{family}"
            );
        }
        parse(&text);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        for seconds in [0.001, 0.02, 0.02, 0.3, 7.0, 60.0] {
            m.observe_provider_request("aws", seconds);
        }
        let samples = parse(&m.render_at(now()));
        let bucket = |le: &str| {
            find(
                &samples,
                &name("provider_request_duration_seconds_bucket"),
                &[("provider", "aws"), ("le", le)],
            )
            .unwrap_or_else(|| panic!("no bucket {le}"))
        };
        assert_eq!(bucket("0.005"), 1.0);
        assert_eq!(bucket("0.01"), 1.0);
        assert_eq!(bucket("0.025"), 3.0);
        assert_eq!(bucket("0.25"), 3.0);
        assert_eq!(bucket("0.5"), 4.0);
        assert_eq!(bucket("5"), 4.0);
        assert_eq!(bucket("10"), 5.0);
        assert_eq!(bucket("+Inf"), 6.0);
        let count = find(
            &samples,
            &name("provider_request_duration_seconds_count"),
            &[("provider", "aws")],
        );
        assert_eq!(count, Some(6.0));
        let sum = find(
            &samples,
            &name("provider_request_duration_seconds_sum"),
            &[("provider", "aws")],
        )
        .unwrap();
        assert!((sum - 67.341).abs() < 1e-9, "{sum}");
        let buckets: Vec<f64> = samples
            .iter()
            .filter(|(n, _, _)| n.ends_with("_bucket"))
            .map(|(_, _, v)| *v)
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn secret_expiry_counts_down_and_goes_negative() {
        let m = Metrics::new();
        m.set_secret_expiry(
            "ns",
            "sa",
            "future",
            now() + chrono::Duration::seconds(3600),
        );
        m.set_secret_expiry(
            "ns",
            "sa",
            "past",
            now() - chrono::Duration::milliseconds(1500),
        );
        let samples = parse(&m.render_at(now()));
        assert_eq!(gauge_in(&samples, "ns", "sa", "future"), Some(3600.0));
        assert_eq!(gauge_in(&samples, "ns", "sa", "past"), Some(-1.5));
        m.forget_secret("ns", "past");
        let samples = parse(&m.render_at(now()));
        assert_eq!(expiry_series(&samples), 1);
    }

    #[test]
    fn forgetting_a_service_account_drops_only_its_secrets() {
        let m = Metrics::new();
        m.set_secret_expiry("ns", "sa", "a", now());
        m.set_secret_expiry("ns", "sa", "a-1", now());
        m.set_secret_expiry("ns", "other", "b", now());
        m.set_secret_expiry("ns2", "sa", "c", now());
        m.forget_service_account("ns", "sa");
        let samples = parse(&m.render_at(now()));
        assert_eq!(expiry_series(&samples), 2);
        assert!(gauge_in(&samples, "ns", "other", "b").is_some());
        assert!(gauge_in(&samples, "ns2", "sa", "c").is_some());
    }

    fn gauge_in(
        samples: &[Sample],
        namespace: &str,
        service_account: &str,
        secret: &str,
    ) -> Option<f64> {
        let labels = [
            ("namespace", namespace),
            ("serviceaccount", service_account),
            ("secret", secret),
        ];
        find(samples, &name("secret_expiry_seconds"), &labels)
    }

    fn expiry_series(samples: &[Sample]) -> usize {
        samples
            .iter()
            .filter(|(n, _, _)| n == &name("secret_expiry_seconds"))
            .count()
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let odd = "a\"b\\c\nd";
        m.watch_restart(odd, "error");
        let text = m.render_at(now());
        assert!(text.contains(r#"resource="a\"b\\c\nd""#), "{text}");
        let samples = parse(&text);
        assert_eq!(
            find(
                &samples,
                &name("watch_restarts_total"),
                &[("resource", odd), ("reason", "error")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn process_metrics_come_from_proc() {
        let text = Metrics::new().render();
        let samples = parse(&text);
        let rss = find(&samples, "process_resident_memory_bytes", &[]).expect("rss");
        assert!(rss > 1_000_000.0, "{rss}");
        assert!(find(&samples, "process_cpu_seconds_total", &[]).expect("cpu") >= 0.0);
        let start = find(&samples, "process_start_time_seconds", &[]).expect("start");
        let now = Utc::now().timestamp() as f64;
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert_eq!(page_size() % 4096, 0);
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 0 0";
        let fields = stat_fields(stat);
        assert_eq!(fields[0], "S");
        assert_eq!(fields[11], "250");
        assert_eq!(fields[12], "50");
        assert_eq!(fields[19], "12345");
    }
}
