//! Kubernetes events (`events.k8s.io/v1`) about ServiceAccounts and pods, the way users see what happened —
//! recorded like client-go's event recorder: repeats become a series on one Event object, and spam is
//! rate-limited per object and overall.
//!
//! What must stay true: publishing an event never fails a reconcile (a lost event is logged, not retried);
//! an event repeated for the same object (same type, reason, action and note) within [`EventRecorder::new`]'s
//! window is not a new Event but `series.count`/`series.lastObservedTime` on the first one (Warnings are
//! remembered in memory for that; a Normal event's repeat — rare, its note names what differs — is found on the
//! server by its Event's name, see `SeriesKey`); every write
//! (create or series update) takes a token from the object's bucket ([`OBJECT_BURST`], one more every
//! [`OBJECT_REFILL`], client-go's `EventSourceObjectSpamFilter` defaults); a write it refuses is dropped (a
//! series keeps counting in memory and writes the total with its next update). All writes together are paced
//! by the global bucket ([`GLOBAL_BURST`], then [`GLOBAL_PER_SECOND`] a second): a write waits in the queue for
//! its turn instead of being dropped, so a cold start over 1,000 ServiceAccounts still gets its 1,000 Events,
//! just spread out, while a provider outage over 10,000 cannot flood the API server. Series updates are
//! written at once for the first repeat and then at most every [`SERIES_UPDATE_INTERVAL`] (repeats still owed
//! when a series stops are written by the `events` thread when due), so a ServiceAccount failing in a loop
//! costs a few writes, not one per attempt, and its Event still ends with the full count.
//!
//! Writes happen on the `events` thread, never on the worker that publishes: [`EventRecorder::publish`] decides
//! (series, the object's limit) and queues the write, at most [`QUEUE_CAPACITY`] of them; past that an event
//! is dropped and counted in `events_dropped_total`, as client-go's recorder does. The thread writes only while
//! this process may act (holds the lease), so a process that lost it publishes nothing; at shutdown
//! [`EventRecorder::shut_down`] lets it write what is queued within a deadline.
//!
//! An Event's name is derived from what it is about and says (`<object>.<hash>`), so a restarted process or
//! a new leader finds the series the previous one began (create answers AlreadyExists; the series is read and
//! continued) instead of starting another Event.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::annotations::CONTROLLER_NAME;
use crate::kube::types::{Event, ObjectMeta, ObjectReference};
use crate::kube::{Client, Patch, Reason};
use crate::metrics::metrics;
use crate::reconcile::event_queue::{EventQueue, Next};

/// Notes longer than this are cut: the API refuses notes over 1 KiB.
const MAX_NOTE: usize = 1024;
/// Writes about one object in a burst (client-go's spam filter: 25).
pub const OBJECT_BURST: f64 = 25.0;
/// One more write about an object per this long (client-go's spam filter: 1 per 5 minutes).
pub const OBJECT_REFILL: Duration = Duration::from_secs(300);
/// Event writes of the whole process in a burst: room for a wave of first failures after an outage.
pub const GLOBAL_BURST: f64 = 100.0;
/// Event writes of the whole process per second in the long run: an outage over 10,000 ServiceAccounts
/// costs the API server at most this, whatever the retry rate.
pub const GLOBAL_PER_SECOND: f64 = 50.0;
/// After the first repeat, a series is written at most this often (its count keeps growing in memory).
pub const SERIES_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
/// Event writes waiting for the `events` thread (client-go's recorder queues 1000 too).
pub const QUEUE_CAPACITY: usize = 1000;
/// Past this many remembered series or buckets, stale ones are pruned.
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A token bucket: `burst` tokens, refilled continuously at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn full(burst: f64, per_second: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            per_second,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
    }

    /// How long after the last refill one token is there again.
    fn time_to_token(&self) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens) / self.per_second).max(0.0))
    }

    /// Whether a token is available at `now` (without taking it).
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }
}

/// An object's spam-filter bucket ([`OBJECT_BURST`], one more every [`OBJECT_REFILL`]) in 8 bytes — tokens and
/// the second (since the recorder began) they were counted at — because a cold start leaves one per
/// ServiceAccount for five minutes.
#[derive(Debug, Clone, Copy)]
struct ObjectBucket {
    tokens: f32,
    at: u32,
}

impl ObjectBucket {
    fn full(at: u32) -> Self {
        ObjectBucket {
            tokens: OBJECT_BURST as f32,
            at,
        }
    }

    fn refill(&mut self, at: u32) {
        let elapsed = at.saturating_sub(self.at) as f32;
        self.tokens =
            (self.tokens + elapsed / OBJECT_REFILL.as_secs_f32()).min(OBJECT_BURST as f32);
        self.at = self.at.max(at);
    }

    /// Takes a token if there is one.
    fn take(&mut self, at: u32) -> bool {
        self.refill(at);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Full again: forgetting it changes nothing.
    fn is_full(&mut self, at: u32) -> bool {
        self.refill(at);
        self.tokens >= OBJECT_BURST as f32
    }
}

/// What identifies a series: the object (by UID) and everything the event says — kept as the 64 bits of the
/// SHA-256 digest that also name its Event (see [`event_name`]), so a remembered series costs a few words, not
/// copies of its note; the object's UID as a 64-bit hash, for its rate limit; the reason, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    id: u64,
    object: u64,
    reason: &'static str,
    /// Warnings are remembered as series. Normal events are not: their notes carry what differs each time (a
    /// secret's expiry, a pod's name), so 10,000 ServiceAccounts provisioned would be 10,000 series that never
    /// repeat; one that does repeat is continued on the server (create answers AlreadyExists, the series is
    /// read and continued).
    remembered: bool,
}

impl SeriesKey {
    fn new(uid: &str, type_: EventType, reason: &'static str, action: &str, note: &str) -> Self {
        let mut object = DefaultHasher::new();
        uid.hash(&mut object);
        SeriesKey {
            id: u64::from_be_bytes(series_digest(uid, type_, reason, action, note)),
            object: object.finish(),
            reason,
            remembered: type_ == EventType::Warning,
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    /// Where its Event is.
    namespace: Box<str>,
    name: Box<str>,
    count: u32,
    last_observed: Instant,
    last_observed_at: DateTime<Utc>,
    /// When the series was last written (or a write was last attempted), and the count written then.
    written: Option<Instant>,
    written_count: u32,
}

/// A series update the flusher owes the server: repeats counted in memory but not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flush {
    key: SeriesKey,
    namespace: Box<str>,
    name: Box<str>,
    count: u32,
    last_observed_at: DateTime<Utc>,
}

/// A write queued for the `events` thread.
#[derive(Debug, Clone)]
enum Job {
    Create {
        key: SeriesKey,
        event: Box<Event>,
    },
    Series {
        key: SeriesKey,
        namespace: Box<str>,
        name: Box<str>,
        count: u32,
        last_observed_at: DateTime<Utc>,
    },
}

/// The write an occurrence calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Write {
    /// A new series: create the Event.
    Create,
    /// A repeat: write `count` as the series.
    Series { count: u32 },
    /// Rate-limited, or a series update not due yet.
    Nothing(&'static str),
}

/// The remembered series and buckets; pure decisions, the clock passed in.
struct State {
    series: HashMap<SeriesKey, Series>,
    /// By the object's UID hash.
    objects: HashMap<u64, ObjectBucket>,
    global: TokenBucket,
    window: Duration,
    pruned_at: Instant,
    /// The clock of the object buckets counts whole seconds from here.
    began: Instant,
}

impl State {
    fn new(window: Duration, now: Instant) -> Self {
        State {
            series: HashMap::new(),
            objects: HashMap::new(),
            began: now,
            global: TokenBucket::full(GLOBAL_BURST, GLOBAL_PER_SECOND, now),
            window,
            pruned_at: now,
        }
    }

    /// Takes a token from the bucket of the object `key` is about, or says it refused.
    fn take_tokens(&mut self, key: &SeriesKey, now: Instant) -> Result<(), &'static str> {
        let at = self.second(now);
        let object = self
            .objects
            .entry(key.object)
            .or_insert_with(|| ObjectBucket::full(at));
        if !object.take(at) {
            return Err("rate limit of events about this object");
        }
        Ok(())
    }

    /// `now` in the object buckets' whole seconds.
    fn second(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.began).as_secs()).unwrap_or(u32::MAX)
    }

    /// Takes the global token a write needs, or says how long until there is one.
    fn take_turn(&mut self, now: Instant) -> Result<(), Duration> {
        if self.global.has_token(now) {
            self.global.take(now);
            Ok(())
        } else {
            Err(self.global.time_to_token())
        }
    }

    /// The series updates due at `now` (repeats not written for [`SERIES_UPDATE_INTERVAL`]), each holding
    /// its rate-limit tokens, and when the next one falls due. A refused update is tried an interval later.
    fn due_flushes(&mut self, now: Instant) -> (Vec<Flush>, Option<Instant>) {
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        let pending: Vec<(SeriesKey, Instant)> = self
            .series
            .iter()
            .filter(|(_, s)| s.count > s.written_count)
            .filter_map(|(k, s)| Some((*k, s.written? + SERIES_UPDATE_INTERVAL)))
            .collect();
        for (key, due_at) in pending {
            if due_at > now {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
                continue;
            }
            let allowed = self.take_tokens(&key, now);
            let Some(series) = self.series.get_mut(&key) else {
                continue;
            };
            series.written = Some(now);
            match allowed {
                Ok(()) => due.push(Flush {
                    key,
                    namespace: series.namespace.clone(),
                    name: series.name.clone(),
                    count: series.count,
                    last_observed_at: series.last_observed_at,
                }),
                Err(_) => {
                    let again = now + SERIES_UPDATE_INTERVAL;
                    next = Some(next.map_or(again, |n| n.min(again)));
                }
            }
        }
        (due, next)
    }

    /// Records one occurrence of `key` (whose Event is `namespace/name`) and decides what to write.
    fn observe(
        &mut self,
        key: &SeriesKey,
        namespace: &str,
        name: &str,
        now: Instant,
        now_at: DateTime<Utc>,
    ) -> Write {
        if self.series.len() >= PRUNE_AT || self.objects.len() >= PRUNE_AT {
            self.prune(now);
        }
        let window = self.window;
        let live = self
            .series
            .get_mut(key)
            .filter(|s| now.saturating_duration_since(s.last_observed) < window);
        let write = match live {
            Some(series) => {
                series.count += 1;
                series.last_observed = now;
                series.last_observed_at = now_at;
                let due = series.written.is_none_or(|at| {
                    series.written_count < 2
                        || now.saturating_duration_since(at) >= SERIES_UPDATE_INTERVAL
                });
                if !due {
                    return Write::Nothing("series update not due yet");
                }
                Write::Series {
                    count: series.count,
                }
            }
            None if !key.remembered => Write::Create,
            None => {
                self.series.insert(
                    *key,
                    Series {
                        namespace: namespace.into(),
                        name: name.into(),
                        count: 1,
                        last_observed: now,
                        last_observed_at: now_at,
                        written: None,
                        written_count: 0,
                    },
                );
                Write::Create
            }
        };
        if let Err(why) = self.take_tokens(key, now) {
            if write == Write::Create {
                // Nothing on the server to continue: the next occurrence tries to create it again.
                self.series.remove(key);
            }
            return Write::Nothing(why);
        }
        write
    }

    /// Notes that `count` of the series `key` is now on the server.
    fn written(&mut self, key: &SeriesKey, count: u32, now: Instant) {
        if let Some(series) = self.series.get_mut(key) {
            series.count = series.count.max(count);
            series.written = Some(now);
            series.written_count = count;
        }
    }

    /// Forgets a series whose Event is gone (or was never written), so the next occurrence creates it.
    fn forget(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    /// Drops series past their window and buckets that are full again (forgetting them changes nothing), and
    /// gives back the room they took: a cold start over 10,000 ServiceAccounts leaves 10,000 of each.
    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.series
            .retain(|_, s| now.saturating_duration_since(s.last_observed) < window);
        let at = self.second(now);
        self.objects.retain(|_, bucket| !bucket.is_full(at));
        if self.series.capacity() > 2 * self.series.len() + 16 {
            self.series.shrink_to_fit();
        }
        if self.objects.capacity() > 2 * self.objects.len() + 16 {
            self.objects.shrink_to_fit();
        }
        self.pruned_at = now;
    }

    /// When the `events` thread should prune next: a window after the last time, while anything is remembered.
    fn next_prune(&self) -> Option<Instant> {
        (!self.series.is_empty() || !self.objects.is_empty()).then(|| self.pruned_at + self.window)
    }
}

/// Publishes events as series, rate-limited. Shared by all workers.
///
/// A thread (`events`) writes what [`EventRecorder::publish`] queued, and the repeats that were counted but
/// not yet written once their update is due, so a series that stops still shows its full count. It ends
/// after [`EventRecorder::shut_down`] (or when the recorder is dropped) once the queue is empty.
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    instance: String,
    state: Mutex<State>,
    queue: EventQueue<Job>,
    /// Whether this process may write (holds the lease); checked before every write.
    may_act: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        self.inner.queue.close(Duration::ZERO);
    }
}

impl EventRecorder {
    /// `instance` identifies this process (`reportingInstance`); a repeat within `window` of the previous
    /// occurrence joins its series; nothing is written while `may_act` says no.
    pub fn new(
        client: Client,
        instance: &str,
        window: Duration,
        may_act: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        let inner = Arc::new(Inner {
            client,
            instance: instance.to_string(),
            state: Mutex::new(State::new(window, Instant::now())),
            queue: EventQueue::new(QUEUE_CAPACITY),
            may_act,
        });
        let writer = inner.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || writer.run())
        {
            log::warn!("cannot start the events thread; no event will be written: {e}");
            inner.queue.abandon();
        }
        EventRecorder { inner }
    }

    /// Publishes an event about `regarding` (kind and apiVersion as given): queues a new Event or a series
    /// update of the one it repeats, or nothing when rate-limited or the queue is full. Never waits for
    /// the API server.
    pub fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: &str,
    ) {
        self.inner.publish(regarding, type_, reason, action, note);
    }

    /// Stops taking events and waits up to `deadline` for the `events` thread to write what is queued
    /// (owed series counts not yet due are not written).
    pub fn shut_down(&self, deadline: Duration) {
        let left = self.inner.queue.close(deadline);
        if left > 0 {
            log::warn!(
                "{left} events were not written within {deadline:?} of stopping; exiting anyway"
            );
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes queued events, and due series updates when the queue is empty, until closed and drained.
    fn run(&self) {
        let mut next_flush: Option<Instant> = None;
        loop {
            let timeout = next_flush.map(|at| at.saturating_duration_since(Instant::now()));
            let next = self.queue.next(timeout);
            metrics().set_events_queued(self.queue.len());
            match next {
                Next::Item(job) => {
                    self.write(job);
                    continue;
                }
                Next::Closed => return,
                Next::Idle => {}
            }
            let (flushes, next) = {
                let now = Instant::now();
                let mut state = self.lock();
                if state.next_prune().is_some_and(|at| at <= now) {
                    state.prune(now);
                }
                let (flushes, next) = state.due_flushes(now);
                let prune = state.next_prune();
                (flushes, next.into_iter().chain(prune).min())
            };
            next_flush = next;
            for flush in flushes {
                // The lease is checked after the wait, right before the write.
                self.wait_for_turn();
                if !(self.may_act)() {
                    log::debug!(
                        "not the leader: the repeats of {} event {}/{} are left to the leader",
                        flush.key.reason,
                        flush.namespace,
                        flush.name
                    );
                    continue;
                }
                if let Err(error) = self.update_series(
                    &flush.key,
                    &flush.namespace,
                    &flush.name,
                    flush.count,
                    flush.last_observed_at,
                ) {
                    log::warn!(
                        "cannot record the repeats of {} event {}/{}: {error}",
                        flush.key.reason,
                        flush.namespace,
                        flush.name
                    );
                }
            }
        }
    }

    /// Blocks until the global bucket allows one more write (at most 1 / [`GLOBAL_PER_SECOND`] s at a time).
    fn wait_for_turn(&self) {
        loop {
            let turn = self.lock().take_turn(Instant::now());
            match turn {
                Ok(()) => return,
                Err(wait) => std::thread::sleep(wait.max(Duration::from_millis(1))),
            }
        }
    }

    /// Performs one queued write, unless this process may no longer act.
    fn write(&self, job: Job) {
        let (key, namespace, name) = match &job {
            Job::Create { key, event } => (
                key,
                event.metadata.namespace.as_str(),
                event.metadata.name.as_str(),
            ),
            Job::Series {
                key,
                namespace,
                name,
                ..
            } => (key, &**namespace, &**name),
        };
        // The lease is checked after the wait, right before the write.
        self.wait_for_turn();
        if !(self.may_act)() {
            log::debug!(
                "not the leader: {} event {namespace}/{name} is not written",
                key.reason
            );
            if matches!(job, Job::Create { .. }) {
                self.lock().forget(key);
            }
            return;
        }
        let result = match &job {
            Job::Create { key, event } => self.create(key, event),
            Job::Series {
                key,
                namespace,
                name,
                count,
                last_observed_at,
            } => self.update_series(key, namespace, name, *count, *last_observed_at),
        };
        if let Err(error) = result {
            log::warn!(
                "cannot record {} event {namespace}/{name}: {error}",
                key.reason
            );
        }
    }

    fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: &str,
    ) {
        let note = truncate_note(note);
        let key = SeriesKey::new(&regarding.uid, type_, reason, action, &note);
        let name = event_name(&regarding, type_, reason, action, &note);
        let namespace = regarding.namespace.clone();
        let (now, now_at) = (Instant::now(), Utc::now());
        let write = self.lock().observe(&key, &namespace, &name, now, now_at);
        let job = match write {
            Write::Nothing(why) => {
                // A counted repeat: the events thread writes it when due.
                self.queue.poke();
                log::debug!(
                    "not writing {reason} event for {} {namespace}/{}: {why}",
                    regarding.kind,
                    regarding.name
                );
                return;
            }
            Write::Create => Job::Create {
                key,
                event: Box::new(build_event(
                    &regarding,
                    type_,
                    reason,
                    action,
                    &note,
                    &self.instance,
                    now_at,
                )),
            },
            Write::Series { count } => Job::Series {
                key,
                namespace: namespace.as_str().into(),
                name: name.into(),
                count,
                last_observed_at: now_at,
            },
        };
        let create = matches!(job, Job::Create { .. });
        let queued = self.queue.push(job);
        metrics().set_events_queued(self.queue.len());
        if !queued {
            metrics().event_dropped();
            if create {
                // Nothing on the server to continue: the next occurrence tries to create it again.
                self.lock().forget(&key);
            }
            log::warn!(
                "dropped {reason} event for {} {namespace}/{}: {QUEUE_CAPACITY} events are waiting to be written",
                regarding.kind,
                regarding.name
            );
        }
    }

    fn create(&self, key: &SeriesKey, event: &Event) -> Result<(), String> {
        let namespace = event.metadata.namespace.as_str();
        match self.client.create(Some(namespace), event) {
            Ok(_) => {
                self.lock().written(key, 1, Instant::now());
                Ok(())
            }
            Err(e) if e.is(Reason::AlreadyExists) => {
                // Begun by an earlier process (or leader): continue its series.
                let existing: Event = self
                    .client
                    .get(Some(namespace), &event.metadata.name)
                    .map_err(|e| {
                        self.lock().forget(key);
                        format!("reading the existing event {}: {e}", event.metadata.name)
                    })?;
                let count = series_count(&existing) + 1;
                let at = parse_micro_time(&event.event_time).unwrap_or_else(Utc::now);
                self.update_series(key, namespace, &event.metadata.name, count, at)
            }
            Err(e) => {
                self.lock().forget(key);
                Err(e.to_string())
            }
        }
    }

    fn update_series(
        &self,
        key: &SeriesKey,
        namespace: &str,
        name: &str,
        count: u32,
        last_observed_at: DateTime<Utc>,
    ) -> Result<(), String> {
        let patch = Patch::Merge(series_patch(count, last_observed_at));
        match self.client.patch::<Event>(Some(namespace), name, &patch) {
            Ok(_) => {
                self.lock().written(key, count, Instant::now());
                Ok(())
            }
            Err(e) => {
                if e.is(Reason::NotFound) {
                    // Expired (the API server keeps events for an hour): the next occurrence starts anew.
                    self.lock().forget(key);
                }
                Err(format!("updating the series of event {name}: {e}"))
            }
        }
    }
}

/// The merge patch that records a series of `count` occurrences, the last at `last_observed_at`.
fn series_patch(count: u32, last_observed_at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({"series": {
        "count": count,
        "lastObservedTime": last_observed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
    }})
}

/// How many occurrences an Event on the server records: its series count, else one.
fn series_count(event: &Event) -> u32 {
    event
        .other
        .get("series")
        .and_then(|s| s.get("count"))
        .and_then(|c| c.as_u64())
        .map_or(1, |c| c.min(u64::from(u32::MAX - 1)) as u32)
        .max(1)
}

fn parse_micro_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A reference to an object for an event's `regarding`.
pub fn reference(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
    }
}

/// The name of the Event for this occurrence: `<object>.<hash of object UID, type, reason, action, note>`,
/// the same in every process, so a series survives restarts and leader changes.
pub fn event_name(
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) -> String {
    let digest = series_digest(&regarding.uid, type_, reason, action, note);
    let suffix: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = regarding.name.chars().take(253 - 17).collect();
    format!("{prefix}.{suffix}")
}

/// The first 8 bytes of the SHA-256 digest of what identifies a series (object UID, type, reason, action, note).
fn series_digest(uid: &str, type_: EventType, reason: &str, action: &str, note: &str) -> [u8; 8] {
    let mut hasher = Sha256::new();
    for part in [uid, type_.as_str(), reason, action, note] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    first
}

/// `note` cut to what the API accepts, at a character boundary.
pub fn truncate_note(note: &str) -> String {
    let mut note = note.to_string();
    if note.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// The Event object of a new series.
pub fn build_event(
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
    instance: &str,
    now: DateTime<Utc>,
) -> Event {
    let note = truncate_note(note);
    Event {
        metadata: ObjectMeta {
            name: event_name(regarding, type_, reason, action, &note),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        event_time: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        reporting_controller: CONTROLLER_NAME.to_string(),
        reporting_instance: instance.chars().take(128).collect(),
        action: action.to_string(),
        reason: reason.to_string(),
        regarding: regarding.clone(),
        note,
        type_: type_.as_str().to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regarding() -> ObjectReference {
        ObjectReference {
            name: "sa".into(),
            namespace: "ns".into(),
            kind: "ServiceAccount".into(),
            api_version: "v1".into(),
            uid: "u".into(),
            ..Default::default()
        }
    }

    fn key(uid: &str, note: &str) -> SeriesKey {
        SeriesKey::new(uid, EventType::Warning, "R", "Provision", note)
    }

    #[test]
    fn events_have_stable_names_and_bounded_notes() {
        let long = "é".repeat(2000);
        let event = build_event(
            &regarding(),
            EventType::Warning,
            "R",
            "Provision",
            &long,
            "me",
            Utc::now(),
        );
        assert!(event.note.len() <= MAX_NOTE);
        assert!(event.metadata.name.starts_with("sa."));
        assert_eq!(event.type_, "Warning");
        assert_eq!(event.regarding.uid, "u");
        let again = event_name(
            &regarding(),
            EventType::Warning,
            "R",
            "Provision",
            &event.note,
        );
        assert_eq!(event.metadata.name, again, "the same in every process");
        assert_ne!(
            again,
            event_name(&regarding(), EventType::Warning, "R", "Provision", "other"),
            "another note, another series"
        );
        let other_object = ObjectReference {
            uid: "u2".into(),
            ..regarding()
        };
        assert_ne!(
            again,
            event_name(
                &other_object,
                EventType::Warning,
                "R",
                "Provision",
                &event.note
            )
        );
        let long_name = ObjectReference {
            name: "a".repeat(253),
            ..regarding()
        };
        let name = event_name(&long_name, EventType::Normal, "R", "A", "n");
        assert_eq!(name.len(), 253);
    }

    #[test]
    fn repeats_become_a_series_written_first_at_once_then_at_intervals() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        let k = key("u", "boom");
        assert_eq!(state.observe(&k, "ns", "e", t0, Utc::now()), Write::Create);
        state.written(&k, 1, t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            state.observe(&k, "ns", "e", t1, Utc::now()),
            Write::Series { count: 2 }
        );
        state.written(&k, 2, t1);
        let t2 = t1 + Duration::from_secs(2);
        assert!(matches!(
            state.observe(&k, "ns", "e", t2, Utc::now()),
            Write::Nothing(_)
        ));
        let t3 = t1 + SERIES_UPDATE_INTERVAL;
        assert_eq!(
            state.observe(&k, "ns", "e", t3, Utc::now()),
            Write::Series { count: 4 },
            "the repeats in between are counted"
        );
        state.written(&k, 4, t3);
        // Silent for longer than the window: the next occurrence begins a new series.
        let later = t3 + Duration::from_secs(301);
        assert_eq!(
            state.observe(&k, "ns", "e", later, Utc::now()),
            Write::Create
        );
    }

    #[test]
    fn repeats_not_written_yet_are_flushed_when_due_even_if_the_series_stops() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        let k = key("u", "boom");
        state.observe(&k, "ns", "e", t0, Utc::now());
        state.written(&k, 1, t0);
        assert_eq!(state.due_flushes(t0), (vec![], None), "nothing owed");
        let t1 = t0 + Duration::from_secs(1);
        state.observe(&k, "ns", "e", t1, Utc::now());
        state.written(&k, 2, t1);
        let last_at = Utc::now();
        for i in 2..5 {
            let write = state.observe(&k, "ns", "e", t1 + Duration::from_secs(i), last_at);
            assert_eq!(write, Write::Nothing("series update not due yet"));
        }
        let due_at = t1 + SERIES_UPDATE_INTERVAL;
        assert_eq!(
            state.due_flushes(t1 + Duration::from_secs(5)),
            (vec![], Some(due_at)),
            "the flusher sleeps until the update is due"
        );
        let (flushes, next) = state.due_flushes(due_at);
        assert_eq!(
            flushes,
            vec![Flush {
                key: k,
                namespace: "ns".into(),
                name: "e".into(),
                count: 5,
                last_observed_at: last_at,
            }]
        );
        assert_eq!(next, None);
        state.written(&k, 5, due_at);
        assert_eq!(
            state.due_flushes(due_at + SERIES_UPDATE_INTERVAL),
            (vec![], None)
        );
    }

    #[test]
    fn writes_about_one_object_are_limited_like_client_gos_spam_filter() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        let mut writes = 0;
        for i in 0..40 {
            let k = key("u", &format!("note {i}"));
            if state.observe(&k, "ns", "e", t0, Utc::now()) == Write::Create {
                writes += 1;
            }
        }
        assert_eq!(writes, 25, "the burst");
        assert_eq!(
            state.series.len(),
            25,
            "refused creates leave no series behind"
        );
        let k = key("u", "after");
        assert!(matches!(
            state.observe(&k, "ns", "e", t0 + Duration::from_secs(10), Utc::now()),
            Write::Nothing("rate limit of events about this object")
        ));
        assert_eq!(
            state.observe(
                &key("u", "after 2"),
                "ns",
                "e",
                t0 + OBJECT_REFILL,
                Utc::now()
            ),
            Write::Create,
            "one more per refill period"
        );
        assert_eq!(
            state.observe(&key("other", "x"), "ns", "e", t0, Utc::now()),
            Write::Create,
            "other objects have their own bucket"
        );
    }

    #[test]
    fn all_writes_share_a_global_pace_that_delays_instead_of_dropping() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        // Publishing is limited per object only: 500 objects' first events are all to be written...
        let created = (0..500)
            .filter(|i| {
                state.observe(&key(&format!("u{i}"), "down"), "ns", "e", t0, Utc::now())
                    == Write::Create
            })
            .count();
        assert_eq!(created, 500);
        // ...one after another: a burst, then GLOBAL_PER_SECOND a second, each told how long to wait.
        let turns = (0..500).filter(|_| state.take_turn(t0).is_ok()).count();
        assert_eq!(turns, GLOBAL_BURST as usize);
        let wait = state.take_turn(t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs_f64(1.0 / GLOBAL_PER_SECOND),
            "{wait:?}"
        );
        let t1 = t0 + Duration::from_secs(1);
        let turns = (0..500).filter(|_| state.take_turn(t1).is_ok()).count();
        assert_eq!(turns, GLOBAL_PER_SECOND as usize);
    }

    #[test]
    fn normal_events_are_written_but_not_remembered_as_series() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        for i in 0..100 {
            let key = SeriesKey::new(
                &format!("u{i}"),
                EventType::Normal,
                "Provisioned",
                "Provision",
                &format!("valid until {i}"),
            );
            assert_eq!(
                state.observe(&key, "ns", "e", t0, Utc::now()),
                Write::Create
            );
            // The same again is another create: the server's AlreadyExists continues the series there.
            assert_eq!(
                state.observe(&key, "ns", "e", t0, Utc::now()),
                Write::Create
            );
        }
        assert!(state.series.is_empty());
        assert_eq!(
            state.objects.len(),
            100,
            "the spam filter still counts them"
        );
        assert_eq!(std::mem::size_of::<ObjectBucket>(), 8);
    }

    #[test]
    fn stale_series_and_full_buckets_are_pruned() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        assert_eq!(
            state.next_prune(),
            None,
            "nothing remembered, nothing to wake for"
        );
        for i in 0..1000 {
            state.observe(&key(&format!("u{i}"), "x"), "ns", "e", t0, Utc::now());
        }
        assert_eq!(state.next_prune(), Some(t0 + Duration::from_secs(300)));
        let later = t0 + Duration::from_secs(301) + OBJECT_REFILL;
        state.prune(later);
        assert!(state.series.is_empty());
        assert!(state.objects.is_empty());
        assert!(
            state.series.capacity() < 1000 && state.objects.capacity() < 1000,
            "the room is given back"
        );
        assert_eq!(state.next_prune(), None);
    }

    #[test]
    fn series_patches_and_counts_follow_the_api() {
        let at = DateTime::parse_from_rfc3339("2026-11-30T04:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            series_patch(3, at),
            serde_json::json!({"series": {"count": 3, "lastObservedTime": "2026-11-30T04:00:00.123456Z"}})
        );
        let mut event = Event::default();
        assert_eq!(series_count(&event), 1);
        event.other.insert(
            "series".into(),
            serde_json::json!({"count": 7, "lastObservedTime": "x"}),
        );
        assert_eq!(series_count(&event), 7);
    }
}
