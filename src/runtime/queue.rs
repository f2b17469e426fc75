//! A work queue of keys with client-go's guarantees, for blocking worker threads.
//!
//! What must stay true: a key waiting to be processed appears once however often it is added; a key is never
//! handed to two workers at once; a key added while it is being processed is processed again afterwards; a
//! delayed add keeps the earliest requested time; failures back off exponentially per key (with jitter) until
//! [`Queue::forget`] is called after a success. The queue carries keys only: workers read the current state
//! of the object when they run.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::jitter;
use crate::retry::{Backoff, Jitter, Retry};
use crate::sync::{lock, wait, wait_timeout};

/// Per-key failure backoff, by retry class: `first * 2^(failures-1)`, at most `max`, stretched by up to 20%
/// jitter. Permanent failures (only a person can fix them) start and end much later than transient ones; a
/// server's `Retry-After` is a floor on the transient backoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackoffPolicy {
    pub transient: Backoff,
    pub permanent: Backoff,
}

/// The spread of every per-key delay.
const JITTER: Jitter = Jitter::Stretch(0.2);

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy::new(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            // client-go's controllers cap their backoff near here (1000 s): long, yet a fix made without
            // touching the ServiceAccount (RBAC, a trust policy, a foreign secret removed) is seen the same hour.
            Backoff::new(Duration::from_secs(30), Duration::from_secs(900)),
        )
    }
}

impl BackoffPolicy {
    /// The queue's policy over these two backoffs, each spread by the queue's jitter.
    pub(crate) fn new(transient: Backoff, permanent: Backoff) -> Self {
        BackoffPolicy {
            transient: transient.with_jitter(JITTER),
            permanent: permanent.with_jitter(JITTER),
        }
    }

    /// The backoff after `failures` failures, the last of class `retry`.
    pub(crate) fn delay_for(&self, failures: u32, retry: Retry) -> Duration {
        match retry {
            Retry::Transient => self.transient.delay(failures),
            Retry::Permanent => self.permanent.delay(failures),
            // Never sooner than the server asked; jitter only lengthens it.
            Retry::After(at_least) => self
                .transient
                .delay(failures)
                .max(jitter::stretch(at_least, 0.1)),
        }
    }
}

struct State<K> {
    ready: VecDeque<K>,
    /// Keys that need processing: waiting in `ready`, or added again while processing.
    dirty: HashSet<K>,
    processing: HashSet<K>,
    /// Delayed adds, ordered by due time; `due` holds each key's earliest time.
    delayed: BTreeSet<(Instant, u64, K)>,
    due: HashMap<K, (Instant, u64)>,
    sequence: u64,
    failures: HashMap<K, u32>,
    shutting_down: bool,
}

/// Called with the number of ready keys whenever it changes (under the queue's lock: keep it cheap).
type DepthObserver = Box<dyn Fn(usize) + Send + Sync>;

/// A deduplicating, delaying, rate-limiting queue of keys.
pub(crate) struct Queue<K> {
    state: Mutex<State<K>>,
    wake: Condvar,
    backoff: BackoffPolicy,
    on_depth: Option<DepthObserver>,
}

impl<K: Clone + Eq + Hash + Ord> Queue<K> {
    pub(crate) fn new(backoff: BackoffPolicy) -> Self {
        Queue {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                delayed: BTreeSet::new(),
                due: HashMap::new(),
                sequence: 0,
                failures: HashMap::new(),
                shutting_down: false,
            }),
            wake: Condvar::new(),
            backoff,
            on_depth: None,
        }
    }

    /// Reports the backlog (ready keys) to `observer` at every change, so a gauge is current on every
    /// replica, the standby's included, and under load.
    pub(crate) fn with_depth_observer(
        mut self,
        observer: impl Fn(usize) + Send + Sync + 'static,
    ) -> Self {
        self.on_depth = Some(Box::new(observer));
        self
    }

    fn report_depth(&self, state: &State<K>) {
        if let Some(observer) = &self.on_depth {
            observer(state.ready.len());
        }
    }

    /// Marks `key` for processing as soon as a worker is free.
    pub(crate) fn add(&self, key: K) {
        let mut state = lock(&self.state);
        Self::add_locked(&mut state, key);
        self.report_depth(&state);
        drop(state);
        self.wake.notify_one();
    }

    fn add_locked(state: &mut State<K>, key: K) {
        if state.shutting_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.ready.push_back(key);
        }
    }

    /// Marks `key` for processing after `delay`; an earlier pending time for the same key wins.
    pub(crate) fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let at = Instant::now() + delay;
        let mut state = lock(&self.state);
        if state.shutting_down {
            return;
        }
        if let Some(&(existing, sequence)) = state.due.get(&key) {
            if existing <= at {
                return;
            }
            state.delayed.remove(&(existing, sequence, key.clone()));
        }
        state.sequence += 1;
        let sequence = state.sequence;
        state.delayed.insert((at, sequence, key.clone()));
        state.due.insert(key, (at, sequence));
        drop(state);
        // A worker may be sleeping until a later due time.
        self.wake.notify_one();
    }

    /// Adds `key` after its transient failure backoff and counts the failure. Returns the delay chosen.
    #[cfg(test)]
    pub(crate) fn add_rate_limited(&self, key: K) -> Duration {
        self.add_after_failure(key, Retry::Transient)
    }

    /// Adds `key` after the backoff of a failure of class `retry` and counts the failure. Returns the delay
    /// chosen.
    pub(crate) fn add_after_failure(&self, key: K, retry: Retry) -> Duration {
        let failures = {
            let mut state = lock(&self.state);
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            *failures
        };
        let delay = self.backoff.delay_for(failures, retry);
        self.add_after(key, delay);
        delay
    }

    /// Forgets `key`'s failures, after a success.
    pub(crate) fn forget(&self, key: &K) {
        lock(&self.state).failures.remove(key);
    }

    /// Drops every pending add of `key` and its failures (its object is gone).
    pub(crate) fn remove(&self, key: &K) {
        let mut state = lock(&self.state);
        state.failures.remove(key);
        if let Some((at, sequence)) = state.due.remove(key) {
            state.delayed.remove(&(at, sequence, key.clone()));
        }
        if !state.processing.contains(key) && state.dirty.remove(key) {
            state.ready.retain(|k| k != key);
        }
        self.report_depth(&state);
    }

    pub(crate) fn failures(&self, key: &K) -> u32 {
        lock(&self.state).failures.get(key).copied().unwrap_or(0)
    }

    /// Blocks until a key is ready (or `None` once shut down). The caller must call [`Queue::done`] with it.
    #[cfg(test)]
    pub(crate) fn get(&self) -> Option<K> {
        self.get_timeout(None)
    }

    /// As [`Queue::get`], but gives up after `timeout` (returns `None`) so the caller can do other things.
    pub(crate) fn get_timeout(&self, timeout: Option<Duration>) -> Option<K> {
        let give_up = timeout.map(|t| Instant::now() + t);
        let mut state = lock(&self.state);
        loop {
            if state.shutting_down {
                return None;
            }
            let now = Instant::now();
            Self::promote_due(&mut state, now);
            let next = state.ready.pop_front();
            self.report_depth(&state);
            if let Some(key) = next {
                state.dirty.remove(&key);
                state.processing.insert(key.clone());
                return Some(key);
            }
            Self::release_room(&mut state);
            let next_due = state.delayed.first().map(|(at, _, _)| *at);
            let wake_at = match (next_due, give_up) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(limit) = give_up {
                if now >= limit {
                    return None;
                }
            }
            state = match wake_at {
                Some(at) => wait_timeout(&self.wake, state, at.saturating_duration_since(now)).0,
                None => wait(&self.wake, state),
            };
        }
    }

    /// With nothing ready, gives back the room a backlog took (a cold start over 10,000 ServiceAccounts grows
    /// `ready` and `dirty` to 10,000 and they would keep that size for the life of the process).
    fn release_room(state: &mut State<K>) {
        fn oversized(capacity: usize, len: usize) -> bool {
            capacity > 2 * len + 64
        }
        if oversized(state.ready.capacity(), state.ready.len()) {
            state.ready.shrink_to_fit();
        }
        if oversized(state.dirty.capacity(), state.dirty.len()) {
            state.dirty.shrink_to_fit();
        }
        if oversized(state.failures.capacity(), state.failures.len()) {
            state.failures.shrink_to_fit();
        }
        if oversized(state.due.capacity(), state.due.len()) {
            state.due.shrink_to_fit();
        }
    }

    fn promote_due(state: &mut State<K>, now: Instant) {
        while let Some((at, _, _)) = state.delayed.first() {
            if *at > now {
                break;
            }
            let Some((_, _, key)) = state.delayed.pop_first() else {
                break;
            };
            state.due.remove(&key);
            Self::add_locked(state, key);
        }
    }

    /// Ends processing of `key`; if it was added meanwhile, it becomes ready again.
    pub(crate) fn done(&self, key: &K) {
        let mut state = lock(&self.state);
        state.processing.remove(key);
        if state.dirty.contains(key) {
            state.ready.push_back(key.clone());
            self.report_depth(&state);
            drop(state);
            self.wake.notify_one();
        }
    }

    /// Keys ready now plus keys waiting for a delay.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let state = lock(&self.state);
        state.ready.len() + state.due.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        lock(&self.state).shutting_down
    }

    /// Wakes every waiting worker with `None`; later adds are ignored.
    pub(crate) fn shut_down(&self) {
        let mut state = lock(&self.state);
        state.shutting_down = true;
        state.ready.clear();
        state.dirty.clear();
        self.report_depth(&state);
        drop(state);
        self.wake.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy() -> BackoffPolicy {
        BackoffPolicy::new(
            Backoff::new(Duration::from_millis(10), Duration::from_millis(80)),
            Backoff::new(Duration::from_millis(1000), Duration::from_millis(4000)),
        )
    }

    fn queue() -> Queue<String> {
        Queue::new(policy())
    }

    fn now_or_never(q: &Queue<String>) -> Option<String> {
        q.get_timeout(Some(Duration::from_millis(20)))
    }

    #[test]
    fn a_drained_backlog_gives_its_room_back() {
        let q = queue();
        for i in 0..10_000 {
            q.add(format!("k{i}"));
        }
        while let Some(key) = now_or_never(&q) {
            q.done(&key);
        }
        let state = lock(&q.state);
        assert!(
            state.ready.capacity() <= 64 && state.dirty.capacity() <= 128,
            "ready {} dirty {}",
            state.ready.capacity(),
            state.dirty.capacity()
        );
    }

    #[test]
    fn repeated_adds_collapse() {
        let q = queue();
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        assert_eq!(now_or_never(&q), Some("a".into()));
        assert_eq!(now_or_never(&q), Some("b".into()));
        assert_eq!(now_or_never(&q), None);
    }

    #[test]
    fn a_key_is_never_handed_out_twice_at_once_and_re_added_work_runs_after() {
        let q = queue();
        q.add("a".into());
        let key = now_or_never(&q).unwrap();
        q.add("a".into());
        assert_eq!(now_or_never(&q), None, "a is being processed");
        q.done(&key);
        assert_eq!(
            now_or_never(&q),
            Some("a".into()),
            "added while processing: runs again"
        );
        q.done(&"a".to_string());
        assert_eq!(now_or_never(&q), None);
    }

    #[test]
    fn delayed_adds_keep_the_earliest_time() {
        let q = queue();
        // 300 ms: long enough that a loaded machine does not reach it before the first look.
        q.add_after("a".into(), Duration::from_secs(60));
        q.add_after("a".into(), Duration::from_millis(300));
        q.add_after("a".into(), Duration::from_secs(120));
        assert_eq!(q.len(), 1);
        assert_eq!(now_or_never(&q), None);
        let started = Instant::now();
        assert_eq!(
            q.get_timeout(Some(Duration::from_secs(5))),
            Some("a".into())
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn failures_back_off_until_forgotten() {
        let q = queue();
        let first = q.add_rate_limited("a".into());
        let second = q.add_rate_limited("a".into());
        let third = q.add_rate_limited("a".into());
        assert!(first >= Duration::from_millis(10) && first <= Duration::from_millis(12));
        assert!(second >= Duration::from_millis(20));
        assert!(third >= Duration::from_millis(40));
        for _ in 0..10 {
            q.add_rate_limited("a".into());
        }
        assert!(
            q.add_rate_limited("a".into()) <= Duration::from_millis(96),
            "capped"
        );
        assert_eq!(q.failures(&"a".to_string()), 14);
        q.forget(&"a".to_string());
        assert_eq!(q.failures(&"a".to_string()), 0);
    }

    #[test]
    fn permanent_failures_back_off_long_and_retry_after_is_a_floor() {
        let policy = policy();
        let permanent = policy.delay_for(1, Retry::Permanent);
        assert!(
            permanent >= Duration::from_millis(1000) && permanent <= Duration::from_millis(1200)
        );
        assert!(policy.delay_for(10, Retry::Permanent) <= Duration::from_millis(4800));
        assert!(policy.delay_for(1, Retry::Transient) <= Duration::from_millis(12));
        for failures in 1..10 {
            let delay = policy.delay_for(failures, Retry::After(Duration::from_secs(3)));
            assert!(
                delay >= Duration::from_secs(3) && delay <= Duration::from_millis(3300),
                "{delay:?}"
            );
        }
        let q = queue();
        let delay = q.add_after_failure("a".into(), Retry::After(Duration::from_millis(300)));
        assert!(delay >= Duration::from_millis(300));
        assert_eq!(q.failures(&"a".to_string()), 1);
        let started = Instant::now();
        assert_eq!(
            q.get_timeout(Some(Duration::from_secs(2))),
            Some("a".into())
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn the_depth_observer_sees_every_change_of_the_backlog() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let q = queue().with_depth_observer(move |n| record.lock().unwrap().push(n));
        q.add("a".into());
        q.add("b".into());
        assert_eq!(
            *seen.lock().unwrap().last().unwrap(),
            2,
            "without any worker"
        );
        let key = now_or_never(&q).unwrap();
        assert_eq!(*seen.lock().unwrap().last().unwrap(), 1);
        q.add(key.clone());
        q.done(&key);
        assert_eq!(*seen.lock().unwrap().last().unwrap(), 2);
        q.remove(&"b".to_string());
        assert_eq!(*seen.lock().unwrap().last().unwrap(), 1);
        q.shut_down();
        assert_eq!(*seen.lock().unwrap().last().unwrap(), 0);
    }

    #[test]
    fn remove_drops_pending_work() {
        let q = queue();
        q.add("a".into());
        q.add_after("b".into(), Duration::from_millis(10));
        q.remove(&"a".to_string());
        q.remove(&"b".to_string());
        assert!(q.is_empty());
        assert_eq!(q.get_timeout(Some(Duration::from_millis(50))), None);
    }

    #[test]
    fn shut_down_wakes_waiting_workers() {
        let q = Arc::new(queue());
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.get())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        q.shut_down();
        for w in workers {
            assert_eq!(w.join().unwrap(), None);
        }
    }

    #[test]
    fn concurrent_workers_never_share_a_key() {
        let q = Arc::new(queue());
        let busy = Arc::new(Mutex::new(HashSet::new()));
        let processed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (q, busy, processed) = (q.clone(), busy.clone(), processed.clone());
                std::thread::spawn(move || {
                    while let Some(key) = q.get() {
                        assert!(
                            busy.lock().unwrap().insert(key.clone()),
                            "{key} handed out twice"
                        );
                        std::thread::sleep(Duration::from_micros(200));
                        busy.lock().unwrap().remove(&key);
                        processed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        q.done(&key);
                    }
                })
            })
            .collect();
        for round in 0..200 {
            q.add(format!("k{}", round % 5));
        }
        std::thread::sleep(Duration::from_millis(300));
        q.shut_down();
        for w in workers {
            w.join().unwrap();
        }
        assert!(processed.load(std::sync::atomic::Ordering::SeqCst) >= 5);
    }
}
