//! Liveness and readiness as the probes see them: threads report heartbeats, the controller says when it is
//! ready.
//!
//! A process can be alive and useless — a worker stuck forever in a call with no timeout, a watch loop in a
//! deadlock. Each long-running thread registers how long it may stay silent and beats while it works;
//! `/healthz` fails, naming the thread, once one is silent for longer, and the kubelet restarts the pod.

use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Heartbeats of the registered threads and the readiness flag. Shared as `Arc<Health>`.
#[derive(Debug, Default)]
pub(crate) struct Health {
    threads: Mutex<BTreeMap<String, Heartbeat>>,
    ready: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    last: Instant,
    max_silence: Duration,
}

/// A thread that has been silent for longer than it is allowed to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stuck {
    pub thread: String,
    pub silent_for: Duration,
    pub max_silence: Duration,
}

impl Health {
    /// Not ready, no threads registered.
    pub(crate) fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Starts watching `thread`: it counts as having just beaten, and must beat at least every `max_silence`.
    /// Registering again replaces the allowance.
    pub(crate) fn register(&self, thread: &str, max_silence: Duration) {
        self.threads().insert(
            thread.to_string(),
            Heartbeat {
                last: Instant::now(),
                max_silence,
            },
        );
    }

    /// Stops watching `thread`, for a thread that ends on purpose.
    #[cfg(test)]
    pub(crate) fn unregister(&self, thread: &str) {
        self.threads().remove(thread);
    }

    /// Records that `thread` is making progress. Beats of unregistered threads are ignored.
    pub(crate) fn beat(&self, thread: &str) {
        if let Some(heartbeat) = self.threads().get_mut(thread) {
            heartbeat.last = Instant::now();
        }
    }

    /// [`Health::beat`] for the calling thread, by its name: for code deep inside a long task (a reconcile
    /// whose provider calls each take up to their timeout) that does not know which registered thread runs it.
    pub(crate) fn beat_current_thread(&self) {
        if let Some(name) = std::thread::current().name() {
            self.beat(name);
        }
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The threads silent for longer than allowed at `now`, in name order.
    pub(crate) fn stuck_at(&self, now: Instant) -> Vec<Stuck> {
        self.threads()
            .iter()
            .filter_map(|(thread, heartbeat)| {
                let silent_for = now.saturating_duration_since(heartbeat.last);
                (silent_for > heartbeat.max_silence).then(|| Stuck {
                    thread: thread.clone(),
                    silent_for,
                    max_silence: heartbeat.max_silence,
                })
            })
            .collect()
    }

    /// `Ok` when every registered thread beat in time, else a line per stuck thread.
    pub(crate) fn check_alive(&self) -> Result<(), String> {
        let stuck = self.stuck_at(Instant::now());
        if stuck.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = stuck
            .iter()
            .map(|s| {
                format!(
                    "thread {} silent for {:.1}s (allowed {:.1}s)",
                    s.thread,
                    s.silent_for.as_secs_f64(),
                    s.max_silence.as_secs_f64()
                )
            })
            .collect();
        Err(lines.join("\n"))
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Heartbeat>> {
        // A panic elsewhere while holding the lock leaves only timestamps behind, which stay meaningful.
        lock(&self.threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_stuck_only_after_their_allowance() {
        let health = Health::new();
        health.register("worker-0", Duration::from_secs(30));
        health.register("watch-secrets", Duration::from_secs(5));
        let now = Instant::now();
        assert!(health.stuck_at(now).is_empty());
        let later = now + Duration::from_secs(10);
        let stuck = health.stuck_at(later);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].thread, "watch-secrets");
        assert_eq!(stuck[0].max_silence, Duration::from_secs(5));
        assert!(health.stuck_at(now + Duration::from_secs(31)).len() == 2);
    }

    #[test]
    fn a_beat_resets_the_clock_and_unregistering_forgets() {
        let health = Health::new();
        health.register("t", Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(health
            .check_alive()
            .unwrap_err()
            .contains("thread t silent"));
        health.beat("t");
        assert!(health.check_alive().is_ok());
        health.beat("never-registered");
        std::thread::sleep(Duration::from_millis(30));
        health.unregister("t");
        assert!(health.check_alive().is_ok());
    }

    #[test]
    fn a_thread_beats_for_itself_by_its_name() {
        let health = Health::new();
        health.register("worker-1", Duration::from_millis(10));
        health.register("worker-2", Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        let beating = health.clone();
        std::thread::Builder::new()
            .name("worker-1".to_string())
            .spawn(move || beating.beat_current_thread())
            .unwrap()
            .join()
            .unwrap();
        // Unnamed threads (like this test's own, under `--test-threads 1`) beat for nobody.
        let beating = health.clone();
        std::thread::spawn(move || beating.beat_current_thread())
            .join()
            .unwrap();
        let stuck: Vec<String> = health
            .stuck_at(Instant::now())
            .into_iter()
            .map(|s| s.thread)
            .collect();
        assert_eq!(stuck, ["worker-2"]);
    }

    #[test]
    fn readiness_starts_false() {
        let health = Health::new();
        assert!(!health.is_ready());
        health.set_ready(true);
        assert!(health.is_ready());
    }
}
