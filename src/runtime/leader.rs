//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's semantics and timings, so that
//! of several replicas exactly one provisions secrets and the others stand by.
//!
//! What must stay true:
//! - Another holder's lease is judged by *local monotonic* time since this process last saw the lease record
//!   change (holder, renewTime, ...), never by comparing `renewTime` with the local clock: clock skew between
//!   nodes can then neither make two leaders nor keep a dead one in office.
//! - Every write carries the resourceVersion that was read (create fails if the Lease exists, replace fails
//!   with 409 if it changed), so two candidates racing for a free lease cannot both win. A conflict means
//!   "not acquired this round"; the next round reads again.
//! - A leader that has not renewed successfully within `renew_deadline` stops being leader at that instant:
//!   [`Leadership::is_leader`] turns false by itself, even while the elector thread is stuck in a request, and
//!   the callback hears `false` as soon as the thread notices. Because `renew_deadline < lease_duration`, it has
//!   stopped before any standby may take over. Unlike client-go, which exits, the elector then goes back to
//!   being a candidate.
//! - On shutdown a leader first stops (callback `false`), then — with `release_on_cancel` — releases the
//!   lease (empty holder, duration 1 s), so a standby takes over within about one retry period instead of a
//!   whole lease duration.
//!
//! The decisions (`decide`, `observe`, the spec builders) are pure functions, tested state by state; the
//! elector loop around them does the I/O.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::jitter;
use crate::kube::types::{Lease, LeaseSpec, ObjectMeta};
use crate::kube::{Client, Error, Reason};
use crate::shutdown::Shutdown;

/// client-go's `JitterFactor`: a candidate waits `retry_period × [1, 2.2)` between attempts.
const JITTER_FACTOR: f64 = 1.2;

/// Which Lease, who we are, and the timings (client-go's defaults from [`LeaderConfig::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per process; see [`default_identity`].
    pub identity: String,
    /// How long a standby waits, after it last saw the lease change, before taking it over.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
    /// Release the lease on shutdown so a standby need not wait for it to expire.
    pub release_on_cancel: bool,
}

impl LeaderConfig {
    /// client-go's defaults: lease 15 s, renew deadline 10 s, retry every 2 s, release on shutdown.
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaderConfig {
        LeaderConfig {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// The same checks as client-go: the timings must leave a leader time to notice it is late.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.namespace.is_empty() || self.name.is_empty() {
            return Err("leader election needs a lease namespace and name".into());
        }
        if self.identity.is_empty() {
            return Err("leader election needs an identity".into());
        }
        if self.lease_duration < Duration::from_secs(1) {
            return Err("lease duration must be at least 1s".into());
        }
        if self.lease_duration <= self.renew_deadline {
            return Err("lease duration must be greater than the renew deadline".into());
        }
        if self.retry_period.is_zero()
            || self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR)
        {
            return Err(format!(
                "renew deadline must be greater than the retry period times {JITTER_FACTOR}"
            ));
        }
        Ok(())
    }
}

/// A cheap, cloneable view of whether this process is the leader, for the workers to check before acting.
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<Term>,
}

/// Leadership as a term that ends by itself: nanoseconds after `origin` until which we lead, 0 for never.
#[derive(Debug)]
struct Term {
    origin: Instant,
    until: AtomicU64,
}

impl Leadership {
    fn new() -> Leadership {
        Leadership {
            inner: Arc::new(Term {
                origin: Instant::now(),
                until: AtomicU64::new(0),
            }),
        }
    }

    /// True while this process holds the lease and its last renewal is within the renew deadline.
    pub fn is_leader(&self) -> bool {
        let elapsed = self.inner.origin.elapsed().as_nanos() as u64;
        elapsed < self.inner.until.load(Ordering::Acquire)
    }

    fn extend_until(&self, until: Instant) {
        let nanos = until
            .saturating_duration_since(self.inner.origin)
            .as_nanos() as u64;
        self.inner.until.store(nanos, Ordering::Release);
    }

    fn end(&self) {
        self.inner.until.store(0, Ordering::Release);
    }
}

/// The last Lease this process read or wrote, and when its record last changed in this process's eyes.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) lease: Lease,
    pub(crate) changed_at: Instant,
}

/// What to do with the Lease in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// No Lease exists: create it, holding it.
    Create,
    /// We hold it: write a new renewTime.
    Renew,
    /// It is free (released) or its holder has stopped renewing: take it.
    TakeOver,
    /// Someone else holds it and is renewing.
    Wait,
}

/// holder, duration, acquireTime, renewTime, transitions.
type Record<'a> = (
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
    Option<i64>,
);

/// The parts of the record whose change proves the holder is alive.
fn record(spec: &LeaseSpec) -> Record<'_> {
    (
        spec.holder_identity.as_deref(),
        spec.lease_duration_seconds,
        spec.acquire_time.as_deref(),
        spec.renew_time.as_deref(),
        spec.lease_transitions,
    )
}

/// Remembers `lease`, keeping the previous change time when its record has not changed.
pub(crate) fn observe(previous: Option<Observed>, lease: Lease, now: Instant) -> Observed {
    let changed_at = match previous {
        Some(p) if record(&p.lease.spec) == record(&lease.spec) => p.changed_at,
        _ => now,
    };
    Observed { lease, changed_at }
}

/// The decision of one round, from the last observation (`None`: the Lease does not exist).
/// `default_duration` stands in for a missing `leaseDurationSeconds`, so a malformed record is not stolen.
pub(crate) fn decide(
    observed: Option<&Observed>,
    now: Instant,
    me: &str,
    default_duration: Duration,
) -> Action {
    let Some(observed) = observed else {
        return Action::Create;
    };
    let spec = &observed.lease.spec;
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Action::Renew;
    }
    if holder.is_empty() {
        return Action::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .filter(|seconds| *seconds > 0)
        .map(|seconds| Duration::from_secs(seconds as u64))
        .unwrap_or(default_duration);
    if now >= observed.changed_at + duration {
        Action::TakeOver
    } else {
        Action::Wait
    }
}

/// Kubernetes MicroTime: RFC 3339, UTC, microseconds.
pub(crate) fn micro_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The spec of a Lease we are creating.
pub(crate) fn build_new_spec(me: &str, duration: Duration, now: DateTime<Utc>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs() as i64),
        acquire_time: Some(micro_time(now)),
        renew_time: Some(micro_time(now)),
        lease_transitions: Some(0),
        ..Default::default()
    }
}

/// The spec after renewing (acquire time and transitions kept) or taking over (both new).
pub(crate) fn build_held_spec(
    old: &LeaseSpec,
    taking_over: bool,
    me: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> LeaseSpec {
    let mut spec = old.clone();
    spec.holder_identity = Some(me.to_string());
    spec.lease_duration_seconds = Some(duration.as_secs() as i64);
    spec.renew_time = Some(micro_time(now));
    if taking_over {
        spec.acquire_time = Some(micro_time(now));
        spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0) + 1);
    }
    spec
}

/// The spec of a released Lease, as client-go writes it: no holder, a 1 s duration, transitions kept.
pub(crate) fn build_released_spec(old: &LeaseSpec, now: DateTime<Utc>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(micro_time(now)),
        renew_time: Some(micro_time(now)),
        lease_transitions: old.lease_transitions,
        other: old.other.clone(),
    }
}

/// The timeout of each Lease request: a read and a write fit in one renew deadline.
fn request_timeout(renew_deadline: Duration) -> Duration {
    (renew_deadline / 2).max(Duration::from_millis(500))
}

/// `<hostname>_<random hex>`, unique per process like client-go's `<hostname>_<uuid>`.
pub(crate) fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    format!("{host}_{}", random_hex())
}

/// 128 random bits from the kernel, or clock-seeded bits where /proc is missing.
fn random_hex() -> String {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .map(|uuid| uuid.trim().replace('-', ""))
        .filter(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    from_kernel.unwrap_or_else(|| {
        let bits = || (jitter::unit() * (1u64 << 53) as f64) as u64;
        format!("{:016x}{:016x}", bits(), bits())
    })
}

/// Campaigns for the Lease and holds it; see the module documentation.
pub struct LeaderElector {
    client: Client,
    config: LeaderConfig,
    leadership: Leadership,
    observed: Option<Observed>,
    /// Set while leading: when the last successful acquire or renew *started* (a conservative bound).
    renewed_at: Option<Instant>,
}

impl LeaderElector {
    /// Each attempt (a read and a write) must end within the renew deadline, as client-go's does, so a hung
    /// request cannot delay the loss notification beyond that: the elector uses `client`'s connections with
    /// its own per-call timeout of half the renew deadline (never longer than `client`'s).
    pub fn new(client: Client, config: LeaderConfig) -> Result<LeaderElector, String> {
        config.validate()?;
        let timeout = request_timeout(config.renew_deadline).min(client.timeout());
        Ok(LeaderElector {
            client: client.with_timeout(timeout),
            config,
            leadership: Leadership::new(),
            observed: None,
            renewed_at: None,
        })
    }

    /// The view workers hold; valid before and after [`LeaderElector::run`].
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Runs [`LeaderElector::run`] on a thread named `leader`.
    pub fn spawn(
        self,
        shutdown: Shutdown,
        on_change: impl FnMut(bool) + Send + 'static,
    ) -> Result<JoinHandle<()>, String> {
        std::thread::Builder::new()
            .name("leader".to_string())
            .spawn(move || self.run(&shutdown, on_change))
            .map_err(|e| format!("cannot start the leader thread: {e}"))
    }

    /// Campaigns until `shutdown`, calling `on_change(true)` when leadership is gained and `on_change(false)`
    /// when it is lost or given up. Returns after releasing the lease (if configured).
    pub(crate) fn run(mut self, shutdown: &Shutdown, mut on_change: impl FnMut(bool)) {
        log::info!(
            "campaigning for lease {}/{} as {}",
            self.config.namespace,
            self.config.name,
            self.config.identity
        );
        loop {
            self.check_deadline(&mut on_change);
            if shutdown.is_triggered() {
                break;
            }
            let started = Instant::now();
            match self.try_acquire_or_renew(started) {
                Ok(true) => self.renewed(started, &mut on_change),
                Ok(false) => {
                    log::debug!("lease {} is held by {}", self.lease_name(), self.holder())
                }
                Err(e) => log::warn!("lease {}: {e}", self.lease_name()),
            }
            self.check_deadline(&mut on_change);
            if shutdown.sleep(self.next_wake().saturating_duration_since(Instant::now())) {
                break;
            }
        }
        self.stop(&mut on_change);
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.name)
    }

    fn holder(&self) -> &str {
        self.observed
            .as_ref()
            .and_then(|o| o.lease.spec.holder_identity.as_deref())
            .unwrap_or_default()
    }

    fn is_leading(&self) -> bool {
        self.renewed_at.is_some()
    }

    fn renewed(&mut self, started: Instant, on_change: &mut impl FnMut(bool)) {
        let was_leading = self.is_leading();
        self.renewed_at = Some(started);
        self.leadership
            .extend_until(started + self.config.renew_deadline);
        if !was_leading {
            log::info!(
                "acquired lease {} as {}",
                self.lease_name(),
                self.config.identity
            );
            on_change(true);
        }
    }

    /// Gives up leadership once the last successful renewal is older than the renew deadline.
    fn check_deadline(&mut self, on_change: &mut impl FnMut(bool)) {
        let Some(renewed_at) = self.renewed_at else {
            return;
        };
        if renewed_at.elapsed() >= self.config.renew_deadline {
            log::warn!(
                "lost lease {}: not renewed within {:?}",
                self.lease_name(),
                self.config.renew_deadline
            );
            self.step_down(on_change);
        }
    }

    fn step_down(&mut self, on_change: &mut impl FnMut(bool)) {
        self.renewed_at = None;
        self.leadership.end();
        on_change(false);
    }

    /// A leader renews every retry period but wakes at its deadline; a candidate waits with jitter.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        match self.renewed_at {
            Some(renewed_at) => {
                (now + self.config.retry_period).min(renewed_at + self.config.renew_deadline)
            }
            None => now + jitter::stretch(self.config.retry_period, JITTER_FACTOR),
        }
    }

    /// One round: read the Lease, decide, write. `Ok(true)` when we hold it after this round.
    fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, Error> {
        let namespace = Some(self.config.namespace.as_str());
        let lease = match self.client.get::<Lease>(namespace, &self.config.name) {
            Ok(lease) => Some(lease),
            Err(e) if e.is(Reason::NotFound) => None,
            Err(e) => return Err(e),
        };
        self.observed = lease.map(|lease| observe(self.observed.take(), lease, now));
        let action = decide(
            self.observed.as_ref(),
            now,
            &self.config.identity,
            self.config.lease_duration,
        );
        let wall = Utc::now();
        let written = match (action, &self.observed) {
            (Action::Wait, _) => return Ok(false),
            (Action::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: self.config.name.clone(),
                        namespace: self.config.namespace.clone(),
                        ..Default::default()
                    },
                    spec: build_new_spec(&self.config.identity, self.config.lease_duration, wall),
                };
                self.client.create(namespace, &lease)
            }
            (Action::Renew | Action::TakeOver, Some(observed)) => {
                let mut lease = observed.lease.clone();
                lease.spec = build_held_spec(
                    &observed.lease.spec,
                    action == Action::TakeOver,
                    &self.config.identity,
                    self.config.lease_duration,
                    wall,
                );
                self.client.replace(namespace, &self.config.name, &lease)
            }
            (Action::Renew | Action::TakeOver, None) => return Ok(false),
        };
        match written {
            Ok(lease) => {
                self.observed = Some(observe(self.observed.take(), lease, now));
                Ok(true)
            }
            // Someone else wrote first; the next round reads what they wrote.
            Err(e) if e.is(Reason::Conflict) || e.is(Reason::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Shutdown: stop acting first, then hand the lease over if it is still ours.
    fn stop(&mut self, on_change: &mut impl FnMut(bool)) {
        if self.is_leading() {
            self.step_down(on_change);
        }
        if !self.config.release_on_cancel || self.holder() != self.config.identity {
            return;
        }
        let Some(observed) = &self.observed else {
            return;
        };
        let mut lease = observed.lease.clone();
        lease.spec = build_released_spec(&observed.lease.spec, Utc::now());
        let namespace = Some(self.config.namespace.as_str());
        match self.client.replace(namespace, &self.config.name, &lease) {
            Ok(_) => log::info!("released lease {}", self.lease_name()),
            Err(e) => log::warn!("cannot release lease {}: {e}", self.lease_name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ME: &str = "host-a_0123";
    const OTHER: &str = "host-b_4567";
    const DEFAULT: Duration = Duration::from_secs(15);

    fn lease(holder: Option<&str>, renew_time: &str, transitions: i64) -> Lease {
        Lease {
            spec: LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                acquire_time: Some("2026-11-28T15:00:00.000000Z".into()),
                renew_time: Some(renew_time.into()),
                lease_transitions: Some(transitions),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn seen(lease: Lease, at: Instant) -> Observed {
        observe(None, lease, at)
    }

    #[test]
    fn a_missing_lease_is_created() {
        assert_eq!(decide(None, Instant::now(), ME, DEFAULT), Action::Create);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let t0 = Instant::now();
        let observed = seen(lease(Some(ME), "2026-11-28T16:00:00.000000Z", 3), t0);
        assert_eq!(
            decide(Some(&observed), t0 + Duration::from_secs(60), ME, DEFAULT),
            Action::Renew
        );
    }

    #[test]
    fn a_released_or_unheld_lease_is_taken_at_once() {
        let t0 = Instant::now();
        for holder in [Some(""), None] {
            let observed = seen(lease(holder, "2026-11-28T16:00:00.000000Z", 3), t0);
            assert_eq!(
                decide(Some(&observed), t0, ME, DEFAULT),
                Action::TakeOver,
                "{holder:?}"
            );
        }
    }

    #[test]
    fn another_holders_lease_is_waited_for_until_it_stops_changing_for_a_duration() {
        let t0 = Instant::now();
        let observed = seen(lease(Some(OTHER), "2026-11-28T16:00:00.000000Z", 3), t0);
        assert_eq!(
            decide(Some(&observed), t0 + Duration::from_secs(14), ME, DEFAULT),
            Action::Wait
        );
        assert_eq!(
            decide(Some(&observed), t0 + Duration::from_secs(15), ME, DEFAULT),
            Action::TakeOver
        );
    }

    #[test]
    fn expiry_follows_local_observation_not_the_renew_time() {
        // The holder's clock is a year behind: its renewTime looks ancient, but it keeps changing.
        let t0 = Instant::now();
        let first = seen(lease(Some(OTHER), "2025-01-01T00:00:00.000000Z", 3), t0);
        let t1 = t0 + Duration::from_secs(10);
        let second = observe(
            Some(first),
            lease(Some(OTHER), "2025-01-01T00:00:10.000000Z", 3),
            t1,
        );
        assert_eq!(second.changed_at, t1);
        assert_eq!(
            decide(Some(&second), t1 + Duration::from_secs(14), ME, DEFAULT),
            Action::Wait
        );

        // Its clock is a year ahead but it stopped renewing: the unchanged record expires all the same.
        let ahead = seen(lease(Some(OTHER), "2027-12-01T00:00:00.000000Z", 3), t0);
        let again = observe(
            Some(ahead),
            lease(Some(OTHER), "2027-12-01T00:00:00.000000Z", 3),
            t1,
        );
        assert_eq!(
            again.changed_at, t0,
            "an unchanged record keeps its first sighting"
        );
        assert_eq!(
            decide(Some(&again), t0 + Duration::from_secs(15), ME, DEFAULT),
            Action::TakeOver
        );
    }

    #[test]
    fn the_holders_own_duration_counts_and_a_missing_one_falls_back() {
        let t0 = Instant::now();
        let mut short = lease(Some(OTHER), "2026-11-28T16:00:00.000000Z", 0);
        short.spec.lease_duration_seconds = Some(3);
        let observed = seen(short.clone(), t0);
        assert_eq!(
            decide(Some(&observed), t0 + Duration::from_secs(3), ME, DEFAULT),
            Action::TakeOver
        );
        short.spec.lease_duration_seconds = None;
        let observed = seen(short, t0);
        assert_eq!(
            decide(Some(&observed), t0 + Duration::from_secs(3), ME, DEFAULT),
            Action::Wait
        );
    }

    #[test]
    fn lease_requests_end_within_the_renew_deadline() {
        assert_eq!(
            request_timeout(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        assert_eq!(
            request_timeout(Duration::from_millis(600)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn specs_are_built_like_client_go() {
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 16, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        assert_eq!(micro_time(now), "2026-11-28T16:00:00.123456Z");

        let created = build_new_spec(ME, DEFAULT, now);
        assert_eq!(created.holder_identity.as_deref(), Some(ME));
        assert_eq!(created.lease_duration_seconds, Some(15));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.acquire_time, created.renew_time);

        let old = lease(Some(ME), "2026-11-28T15:59:58.000000Z", 4).spec;
        let renewed = build_held_spec(&old, false, ME, DEFAULT, now);
        assert_eq!(
            renewed.renew_time.as_deref(),
            Some("2026-11-28T16:00:00.123456Z")
        );
        assert_eq!(renewed.acquire_time, old.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(4));

        let old = lease(Some(OTHER), "2026-11-28T15:59:00.000000Z", 4).spec;
        let taken = build_held_spec(&old, true, ME, DEFAULT, now);
        assert_eq!(taken.holder_identity.as_deref(), Some(ME));
        assert_eq!(
            taken.acquire_time.as_deref(),
            Some("2026-11-28T16:00:00.123456Z")
        );
        assert_eq!(taken.lease_transitions, Some(5));

        let released = build_released_spec(&renewed, now);
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(4));
    }

    #[test]
    fn leadership_ends_by_itself_at_the_deadline() {
        let leadership = Leadership::new();
        assert!(!leadership.is_leader());
        leadership.extend_until(Instant::now() + Duration::from_millis(50));
        assert!(leadership.is_leader());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!leadership.is_leader());
        leadership.extend_until(Instant::now() + Duration::from_secs(60));
        leadership.end();
        assert!(!leadership.is_leader());
    }

    #[test]
    fn timings_are_validated() {
        let ok = LeaderConfig::new("ns", "lease", ME);
        assert_eq!(ok.validate(), Ok(()));
        let mut bad = ok.clone();
        bad.renew_deadline = Duration::from_secs(15);
        assert!(bad.validate().unwrap_err().contains("renew deadline"));
        let mut bad = ok.clone();
        bad.retry_period = Duration::from_secs(9);
        assert!(bad.validate().unwrap_err().contains("retry period"));
        let mut bad = ok.clone();
        bad.identity.clear();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn identities_are_host_and_random_hex() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        let (host, hex) = a.rsplit_once('_').unwrap();
        assert!(!host.is_empty());
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
