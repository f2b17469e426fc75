//! The controller's Prometheus metrics: a small fixed registry of its own families (this file), written in
//! text exposition format 0.0.4 by `exposition`, plus the standard process metrics from `process`.
//!
//! Every metric has its own method on [`Metrics`], so a misspelt name or a wrong label set is a compile error
//! rather than a silently empty series. Label sets stay small: providers, outcomes and results are a handful
//! of fixed words, and the one per-object series — seconds until each secret expires — is removed again with
//! [`Metrics::forget_secret`], so memory follows the number of provisioned secrets.

mod exposition;
mod process;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};

use crate::sync::lock;
use exposition::{header, sample, Counters, Histogram};
use process::{render_process, ProcessStats};

const PREFIX: &str = "image_pull_secrets_provisioner";

/// Upper bounds of the provider request duration histogram, in seconds.
pub(crate) const REQUEST_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide registry.
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// All metrics of the controller. Every method is cheap and safe to call from any thread.
#[derive(Default)]
pub(crate) struct Metrics {
    provisioning: Counters,
    evictions: Counters,
    watch_restarts: Counters,
    provider_requests: Mutex<BTreeMap<String, Histogram>>,
    /// By namespace, then secret name: a namespace's name is kept once, not once per secret.
    secret_expiry: Mutex<BTreeMap<Box<str>, SecretExpiries>>,
    queue_depth: AtomicUsize,
    queue_retries: AtomicU64,
    events_dropped: AtomicU64,
    events_queued: AtomicUsize,
    leader: AtomicBool,
}

impl Metrics {
    /// An empty registry; the controller uses the global [`metrics()`], tests make their own.
    pub(crate) fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts one provisioning of a secret: `outcome` is `success` or the step that failed (`token`,
    /// `exchange`, `secret`, `attach`, `config`).
    pub(crate) fn provisioning(&self, provider: &str, outcome: &str) {
        self.provisioning.inc(&[provider, outcome]);
    }

    /// Records how long one request to a cloud provider took.
    pub(crate) fn observe_provider_request(&self, provider: &str, seconds: f64) {
        lock(&self.provider_requests)
            .entry(provider.to_string())
            .or_insert_with(|| Histogram::new(&REQUEST_BUCKETS))
            .observe(seconds);
    }

    /// Remembers when a provisioned secret expires; the gauge shows the seconds left at scrape time.
    pub(crate) fn set_secret_expiry(
        &self,
        namespace: &str,
        service_account: &str,
        secret: &str,
        expires_at: DateTime<Utc>,
    ) {
        let mut expiries = lock(&self.secret_expiry);
        if !expiries.contains_key(namespace) {
            expiries.insert(namespace.into(), BTreeMap::new());
        }
        if let Some(secrets) = expiries.get_mut(namespace) {
            secrets.insert(secret.into(), (service_account.into(), expires_at));
        }
    }

    /// Drops the expiry series of a secret that was deleted or is no longer managed.
    pub(crate) fn forget_secret(&self, namespace: &str, secret: &str) {
        let mut expiries = lock(&self.secret_expiry);
        if let Some(secrets) = expiries.get_mut(namespace) {
            secrets.remove(secret);
            if secrets.is_empty() {
                expiries.remove(namespace);
            }
        }
    }

    /// Keeps only the expiry series of secrets for which `keep(namespace, secret)` holds, after a relist
    /// showed which still exist.
    pub(crate) fn retain_secrets(&self, keep: impl Fn(&str, &str) -> bool) {
        lock(&self.secret_expiry).retain(|namespace, secrets| {
            secrets.retain(|secret, _| keep(namespace, secret));
            !secrets.is_empty()
        });
    }

    /// Drops the expiry series of every secret of a ServiceAccount that was deleted or is no longer configured.
    pub(crate) fn forget_service_account(&self, namespace: &str, service_account: &str) {
        let mut expiries = lock(&self.secret_expiry);
        if let Some(secrets) = expiries.get_mut(namespace) {
            secrets.retain(|_, (sa, _)| &**sa != service_account);
            if secrets.is_empty() {
                expiries.remove(namespace);
            }
        }
    }

    /// Counts one eviction decision: `evicted`, `failed` or `skipped_no_controller`.
    pub(crate) fn eviction(&self, result: &str) {
        self.evictions.inc(&[result]);
    }

    pub(crate) fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n, Ordering::Relaxed);
    }

    /// Counts one key put back on the queue after a failure.
    pub(crate) fn queue_retry(&self) {
        self.queue_retries.fetch_add(1, Ordering::Relaxed);
    }

    /// How many events wait to be written.
    pub(crate) fn set_events_queued(&self, n: usize) {
        self.events_queued.store(n, Ordering::Relaxed);
    }

    /// Counts one event dropped because too many were waiting to be written.
    pub(crate) fn event_dropped(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one watch that had to be re-established, and why (`gone`, `error`, ...).
    pub(crate) fn watch_restart(&self, resource: &str, reason: &str) {
        self.watch_restarts.inc(&[resource, reason]);
    }

    pub(crate) fn set_leader(&self, is_leader: bool) {
        self.leader.store(is_leader, Ordering::Relaxed);
    }

    /// Everything in text exposition format 0.0.4.
    pub(crate) fn render(&self) -> String {
        let mut out = self.render_at(Utc::now());
        render_process(&mut out, &ProcessStats::read());
        out
    }

    /// The controller's own metrics, with secret expiry measured from `now`.
    fn render_at(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        header(
            &mut out,
            &format!("{PREFIX}_build_info"),
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
            &format!("{PREFIX}_provisioning_total"),
            "counter",
            "Secret provisionings by provider and outcome (success or the step that failed).",
        );
        self.provisioning.render(
            &mut out,
            &format!("{PREFIX}_provisioning_total"),
            &["provider", "outcome"],
        );

        self.render_requests(&mut out);
        self.render_expiry(&mut out, now);

        header(
            &mut out,
            &format!("{PREFIX}_evictions_total"),
            "counter",
            "Pod eviction decisions by result.",
        );
        self.evictions
            .render(&mut out, &format!("{PREFIX}_evictions_total"), &["result"]);

        header(
            &mut out,
            &format!("{PREFIX}_workqueue_depth"),
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
            &format!("{PREFIX}_workqueue_retries_total"),
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
            &format!("{PREFIX}_events_queued"),
            "gauge",
            "Events waiting for their turn to be written.",
        );
        sample(
            &mut out,
            &format!("{PREFIX}_events_queued"),
            &[],
            self.events_queued.load(Ordering::Relaxed) as f64,
        );

        header(
            &mut out,
            &format!("{PREFIX}_events_dropped_total"),
            "counter",
            "Events not written because too many were waiting to be written.",
        );
        sample(
            &mut out,
            &format!("{PREFIX}_events_dropped_total"),
            &[],
            self.events_dropped.load(Ordering::Relaxed) as f64,
        );

        header(
            &mut out,
            &format!("{PREFIX}_watch_restarts_total"),
            "counter",
            "Watches re-established, by resource and reason.",
        );
        self.watch_restarts.render(
            &mut out,
            &format!("{PREFIX}_watch_restarts_total"),
            &["resource", "reason"],
        );

        header(
            &mut out,
            &format!("{PREFIX}_leader"),
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
            &format!("{PREFIX}_provider_request_duration_seconds"),
            "histogram",
            "Duration of each request to a cloud provider (STS, ECR, IAM Credentials, Entra, ACR), without retries or waits.",
        );
        for (provider, histogram) in lock(&self.provider_requests).iter() {
            histogram.render(out, &name, &[("provider", provider)]);
        }
    }

    fn render_expiry(&self, out: &mut String, now: DateTime<Utc>) {
        header(
            out,
            &format!("{PREFIX}_secret_expiry_seconds"),
            "gauge",
            "Seconds until each provisioned secret expires; negative once it has expired.",
        );
        let expiries = lock(&self.secret_expiry);
        let all = expiries.iter().flat_map(|(namespace, secrets)| {
            secrets
                .iter()
                .map(move |(secret, expiry)| (namespace, secret, expiry))
        });
        for (namespace, secret, (service_account, expires_at)) in all {
            let left = (*expires_at - now).num_milliseconds() as f64 / 1000.0;
            let labels = [
                ("namespace", &**namespace),
                ("serviceaccount", &**service_account),
                ("secret", &**secret),
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

/// (serviceaccount, expires_at).
type Expiry = (Box<str>, DateTime<Utc>);
/// The expiries of one namespace's secrets, by secret name.
type SecretExpiries = BTreeMap<Box<str>, Expiry>;

#[cfg(test)]
mod tests {
    use super::exposition::reader::{find, parse, Sample};
    use super::*;
    use chrono::TimeZone;

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
        m.set_events_queued(3);
        m.event_dropped();
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
        assert_eq!(find(s, &name("events_queued"), &[]), Some(3.0));
        assert_eq!(find(s, &name("events_dropped_total"), &[]), Some(1.0));
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
            "events_queued",
            "events_dropped_total",
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
}
