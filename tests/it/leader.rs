//! Leader election against a real kube-apiserver: two electors in one process on one Lease, with short
//! timings (lease 3 s, renew deadline 2 s, retry 0.5 s). A sampler checks every 20 ms that the two are never
//! leaders at the same time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{cluster, eventually, unique};
use image_pull_secrets_provisioner::kube::types::Lease;
use image_pull_secrets_provisioner::kube::Client;
use image_pull_secrets_provisioner::runtime::leader::{LeaderConfig, LeaderElector, Leadership};
use image_pull_secrets_provisioner::shutdown::Shutdown;

struct Candidate {
    identity: String,
    leadership: Leadership,
    shutdown: Shutdown,
    handle: Option<JoinHandle<()>>,
    changes: Arc<Mutex<Vec<bool>>>,
}

impl Candidate {
    fn start(
        client: Client,
        namespace: &str,
        lease: &str,
        identity: &str,
        release: bool,
    ) -> Candidate {
        let config = LeaderConfig {
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(500),
            release_on_cancel: release,
            ..LeaderConfig::new(namespace, lease, identity)
        };
        let elector = LeaderElector::new(client, config).expect("valid config");
        let leadership = elector.leadership();
        let shutdown = Shutdown::new();
        let changes = Arc::new(Mutex::new(Vec::new()));
        let record = changes.clone();
        let handle = elector
            .spawn(shutdown.clone(), move |leading| {
                record.lock().unwrap().push(leading)
            })
            .expect("leader thread");
        Candidate {
            identity: identity.to_string(),
            leadership,
            shutdown,
            handle: Some(handle),
            changes,
        }
    }

    fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    fn stop(&mut self) {
        self.shutdown.trigger();
        if let Some(handle) = self.handle.take() {
            handle.join().expect("leader thread ends cleanly");
        }
    }

    fn changes(&self) -> Vec<bool> {
        self.changes.lock().unwrap().clone()
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Samples both candidates every 20 ms; `finish` panics if both were ever leaders at once.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(u32, u32)>,
}

impl Sampler {
    fn start(a: &Candidate, b: &Candidate) -> Sampler {
        let (a, b) = (a.leadership.clone(), b.leadership.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut samples, mut both) = (0, 0);
            while !stopped.load(Ordering::Relaxed) {
                samples += 1;
                if a.is_leader() && b.is_leader() {
                    both += 1;
                }
                // The sampler's pace.
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, both)
        });
        Sampler { stop, handle }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, both) = self.handle.join().unwrap();
        assert!(samples > 10, "the sampler ran only {samples} times");
        assert_eq!(both, 0, "both were leaders in {both} of {samples} samples");
    }
}

fn read_lease(client: &Client, namespace: &str, name: &str) -> Lease {
    client
        .get::<Lease>(Some(namespace), name)
        .expect("lease exists")
}

fn holder(lease: &Lease) -> &str {
    lease.spec.holder_identity.as_deref().unwrap_or_default()
}

/// Two candidates on a fresh Lease; returns them with the leader first.
fn two_candidates(release: bool) -> (Client, String, String, Candidate, Candidate, Sampler) {
    let cluster = cluster();
    let client = cluster.admin();
    let namespace = cluster.namespace("leader");
    let lease = format!("lease-{}", unique());
    let a = Candidate::start(cluster.admin(), &namespace, &lease, "candidate-a", release);
    let b = Candidate::start(cluster.admin(), &namespace, &lease, "candidate-b", release);
    let sampler = Sampler::start(&a, &b);
    eventually(Duration::from_secs(15), "a leader", || {
        (a.is_leader() || b.is_leader()).then_some(())
    });
    let (leader, standby) = if a.is_leader() { (a, b) } else { (b, a) };
    (client, namespace, lease, leader, standby, sampler)
}

#[test]
fn exactly_one_of_two_candidates_leads_and_keeps_leading() {
    let (client, namespace, lease, mut leader, mut standby, sampler) = two_candidates(true);
    // Longer than the lease duration: the leader must be renewing, and the standby must keep waiting.
    std::thread::sleep(Duration::from_secs(5));
    assert!(leader.is_leader());
    assert!(!standby.is_leader());
    let current = read_lease(&client, &namespace, &lease);
    assert_eq!(holder(&current), leader.identity);
    assert_eq!(current.spec.lease_transitions, Some(0));
    assert_eq!(current.spec.lease_duration_seconds, Some(3));
    let renew_time = current.spec.renew_time.clone().unwrap_or_default();
    assert!(
        renew_time.len() == "2026-11-28T16:00:00.123456Z".len() && renew_time.ends_with('Z'),
        "renewTime is a MicroTime: {renew_time}"
    );
    assert_eq!(leader.changes(), vec![true]);
    assert!(standby.changes().is_empty());
    sampler.finish();
    standby.stop();
    leader.stop();
}

#[test]
fn a_released_lease_is_taken_over_within_a_retry_period() {
    let (client, namespace, lease, mut leader, mut standby, sampler) = two_candidates(true);
    let stopped = Instant::now();
    leader.stop();
    assert!(!leader.is_leader());
    assert_eq!(leader.changes(), vec![true, false]);
    eventually(Duration::from_secs(10), "the standby to take over", || {
        standby.is_leader().then_some(())
    });
    let took = stopped.elapsed();
    // Without the release the standby would wait out the 3 s lease; with it, one jittered retry (≤ 1.1 s).
    assert!(took < Duration::from_millis(2500), "takeover took {took:?}");
    let current = read_lease(&client, &namespace, &lease);
    assert_eq!(holder(&current), standby.identity);
    assert_eq!(current.spec.lease_transitions, Some(1));
    sampler.finish();
    standby.stop();
}

#[test]
fn a_leader_that_stops_renewing_is_replaced_after_the_lease_duration() {
    let (client, namespace, lease, mut leader, mut standby, sampler) = two_candidates(false);
    let stopped = Instant::now();
    leader.stop();
    assert!(!leader.is_leader());
    let abandoned = read_lease(&client, &namespace, &lease);
    assert_eq!(holder(&abandoned), leader.identity, "not released");
    eventually(Duration::from_secs(15), "the standby to take over", || {
        standby.is_leader().then_some(())
    });
    let took = stopped.elapsed();
    // The last renewal was at most one retry period before the stop, and the standby waits a full lease
    // duration after it saw that renewal.
    assert!(
        took >= Duration::from_secs(2),
        "took over after only {took:?}"
    );
    assert!(
        took < Duration::from_secs(8),
        "took over only after {took:?}"
    );
    let current = read_lease(&client, &namespace, &lease);
    assert_eq!(holder(&current), standby.identity);
    assert_eq!(current.spec.lease_transitions, Some(1));
    assert!(current.spec.acquire_time > abandoned.spec.acquire_time);
    sampler.finish();
    standby.stop();
}

#[test]
fn a_leader_whose_lease_is_taken_steps_down_within_the_renew_deadline_and_campaigns_again() {
    let cluster = cluster();
    let client = cluster.admin();
    let namespace = cluster.namespace("leader");
    let name = format!("lease-{}", unique());
    let mut elector = Candidate::start(cluster.admin(), &namespace, &name, "candidate-a", true);
    eventually(Duration::from_secs(15), "leadership", || {
        elector.is_leader().then_some(())
    });

    // Another process (which then dies) writes itself into the lease, with optimistic concurrency.
    let taken = eventually(Duration::from_secs(10), "the intruder's write", || {
        let mut lease = read_lease(&client, &namespace, &name);
        lease.spec.holder_identity = Some("intruder".into());
        lease.spec.lease_transitions = Some(lease.spec.lease_transitions.unwrap_or(0) + 1);
        client.replace(Some(&namespace), &name, &lease).ok()
    });
    let intruded = Instant::now();
    assert_eq!(holder(&taken), "intruder");
    eventually(Duration::from_secs(5), "stepping down", || {
        (!elector.is_leader()).then_some(())
    });
    assert!(
        intruded.elapsed() <= Duration::from_millis(2600),
        "stepped down only after {:?}",
        intruded.elapsed()
    );
    eventually(Duration::from_secs(2), "the callback", || {
        (elector.changes() == vec![true, false]).then_some(())
    });

    // The intruder never renews, so after the lease duration the elector takes the lease back.
    eventually(Duration::from_secs(10), "leadership again", || {
        elector.is_leader().then_some(())
    });
    assert!(intruded.elapsed() >= Duration::from_secs(3));
    assert_eq!(elector.changes(), vec![true, false, true]);
    let current = read_lease(&client, &namespace, &name);
    assert_eq!(holder(&current), "candidate-a");
    assert_eq!(current.spec.lease_transitions, Some(2));
    elector.stop();
    assert_eq!(holder(&read_lease(&client, &namespace, &name)), "");
}
