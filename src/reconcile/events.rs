//! Kubernetes events (`events.k8s.io/v1`) about ServiceAccounts and pods, the way users see what happened —
//! recorded like client-go's event recorder: repeats become a series on one Event object, and spam is
//! rate-limited per object and overall.
//!
//! What must stay true: publishing an event never fails a reconcile (a lost event is logged, not retried);
//! an event repeated for the same object (same type, reason, action and note) within [`EventRecorder::new`]'s
//! window is not a new Event but `series.count`/`series.lastObservedTime` on the first one; every write
//! (create or series update) takes a token from the object's bucket ([`OBJECT_BURST`], one more every
//! [`OBJECT_REFILL`], client-go's `EventSourceObjectSpamFilter` defaults) and from the global bucket
//! ([`GLOBAL_BURST`], [`GLOBAL_PER_SECOND`] a second); a write refused by either is dropped (a series keeps
//! counting in memory and writes the total with its next update). Series updates are written at once for the
//! first repeat and then at most every [`SERIES_UPDATE_INTERVAL`] (repeats still owed when a series stops are
//! written by the `events` thread when due), so a ServiceAccount failing in a loop costs a few writes, not one
//! per attempt, and its Event still ends with the full count.
//!
//! An Event's name is derived from what it is about and says (`<object>.<hash>`), so a restarted process or
//! a new leader finds the series the previous one began (create answers AlreadyExists; the series is read and
//! continued) instead of starting another Event.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::annotations::CONTROLLER_NAME;
use crate::kube::types::{Event, ObjectMeta, ObjectReference};
use crate::kube::{Client, Patch, Reason};

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
pub const GLOBAL_PER_SECOND: f64 = 10.0;
/// After the first repeat, a series is written at most this often (its count keeps growing in memory).
pub const SERIES_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
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

    /// Whether a token is available at `now` (without taking it).
    pub fn has_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= 1.0
    }

    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// Full again: forgetting it changes nothing.
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// What identifies a series: the object (by UID) and everything the event says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    uid: String,
    type_: EventType,
    reason: String,
    action: String,
    note: String,
}

#[derive(Debug, Clone)]
struct Series {
    /// Where its Event is.
    namespace: String,
    name: String,
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
    namespace: String,
    name: String,
    count: u32,
    last_observed_at: DateTime<Utc>,
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
    objects: HashMap<String, TokenBucket>,
    global: TokenBucket,
    window: Duration,
    /// The recorder is gone: the flusher ends.
    closed: bool,
}

impl State {
    fn new(window: Duration, now: Instant) -> Self {
        State {
            series: HashMap::new(),
            objects: HashMap::new(),
            global: TokenBucket::full(GLOBAL_BURST, GLOBAL_PER_SECOND, now),
            window,
            closed: false,
        }
    }

    /// Takes a token from `uid`'s bucket and the global one, or says which refused.
    fn take_tokens(&mut self, uid: &str, now: Instant) -> Result<(), &'static str> {
        let object = self.objects.entry(uid.to_string()).or_insert_with(|| {
            TokenBucket::full(OBJECT_BURST, 1.0 / OBJECT_REFILL.as_secs_f64(), now)
        });
        if !object.has_token(now) {
            return Err("rate limit of events about this object");
        }
        if !self.global.has_token(now) {
            return Err("rate limit of events overall");
        }
        object.take(now);
        self.global.take(now);
        Ok(())
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
            .filter_map(|(k, s)| Some((k.clone(), s.written? + SERIES_UPDATE_INTERVAL)))
            .collect();
        for (key, due_at) in pending {
            if due_at > now {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
                continue;
            }
            let allowed = self.take_tokens(&key.uid, now);
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
            None => {
                self.series.insert(
                    key.clone(),
                    Series {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
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
        if let Err(why) = self.take_tokens(&key.uid, now) {
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

    fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.series
            .retain(|_, s| now.saturating_duration_since(s.last_observed) < window);
        self.objects.retain(|_, bucket| !bucket.is_full(now));
    }
}

/// Publishes events as series, rate-limited. Shared by all workers.
///
/// A thread (`events`) writes the repeats that were counted but not yet written once their update is due,
/// so a series that stops still shows its full count; it sleeps until then (or until a new repeat) and ends
/// when the recorder is dropped.
pub struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    instance: String,
    state: Mutex<State>,
    /// Wakes the flusher: a repeat was counted, or the recorder is gone.
    wake: Condvar,
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        self.inner.lock().closed = true;
        self.inner.wake.notify_all();
    }
}

impl EventRecorder {
    /// `instance` identifies this process (`reportingInstance`); a repeat within `window` of the previous
    /// occurrence joins its series.
    pub fn new(client: Client, instance: &str, window: Duration) -> Self {
        let inner = Arc::new(Inner {
            client,
            instance: instance.to_string(),
            state: Mutex::new(State::new(window, Instant::now())),
            wake: Condvar::new(),
        });
        let flusher = inner.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || flusher.flush_loop())
        {
            log::warn!("cannot start the event series thread; series counts are written only with new repeats: {e}");
        }
        EventRecorder { inner }
    }

    /// Publishes an event about `regarding` (kind and apiVersion as given): a new Event, a series update of
    /// the one it repeats, or nothing when rate-limited.
    pub fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        self.inner.publish(regarding, type_, reason, action, note);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes due series updates until the recorder is dropped; blocks while none is due.
    fn flush_loop(&self) {
        let mut state = self.lock();
        loop {
            if state.closed {
                return;
            }
            let now = Instant::now();
            let (flushes, next) = state.due_flushes(now);
            if flushes.is_empty() {
                state = match next {
                    Some(at) => {
                        self.wake
                            .wait_timeout(state, at.saturating_duration_since(now))
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    None => self.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
                };
                continue;
            }
            drop(state);
            for flush in flushes {
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
            state = self.lock();
        }
    }

    fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let note = truncate_note(note);
        let key = SeriesKey {
            uid: regarding.uid.clone(),
            type_,
            reason: reason.to_string(),
            action: action.to_string(),
            note: note.clone(),
        };
        let name = event_name(&regarding, type_, reason, action, &note);
        let namespace = regarding.namespace.clone();
        let (now, now_at) = (Instant::now(), Utc::now());
        let write = self.lock().observe(&key, &namespace, &name, now, now_at);
        let result = match write {
            Write::Nothing(why) => {
                // A counted repeat: the flusher writes it when due.
                self.wake.notify_one();
                log::debug!(
                    "not writing {reason} event for {} {namespace}/{}: {why}",
                    regarding.kind,
                    regarding.name
                );
                return;
            }
            Write::Create => {
                let event = build_event(
                    &regarding,
                    type_,
                    reason,
                    action,
                    &note,
                    &self.instance,
                    now_at,
                );
                self.create(&key, &event)
            }
            Write::Series { count } => self.update_series(&key, &namespace, &name, count, now_at),
        };
        if let Err(error) = result {
            log::warn!(
                "cannot record {reason} event for {} {namespace}/{}: {error}",
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
    let mut hasher = Sha256::new();
    for part in [regarding.uid.as_str(), type_.as_str(), reason, action, note] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let suffix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let prefix: String = regarding.name.chars().take(253 - 17).collect();
    format!("{prefix}.{suffix}")
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
        SeriesKey {
            uid: uid.into(),
            type_: EventType::Warning,
            reason: "R".into(),
            action: "Provision".into(),
            note: note.into(),
        }
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
                key: k.clone(),
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
    fn all_writes_share_a_global_limit() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        let created = (0..500)
            .filter(|i| {
                state.observe(&key(&format!("u{i}"), "down"), "ns", "e", t0, Utc::now())
                    == Write::Create
            })
            .count();
        assert_eq!(created, GLOBAL_BURST as usize);
        let t1 = t0 + Duration::from_secs(1);
        let created = (500..600)
            .filter(|i| {
                state.observe(&key(&format!("u{i}"), "down"), "ns", "e", t1, Utc::now())
                    == Write::Create
            })
            .count();
        assert_eq!(created, GLOBAL_PER_SECOND as usize);
    }

    #[test]
    fn stale_series_and_full_buckets_are_pruned() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        for i in 0..10 {
            state.observe(&key(&format!("u{i}"), "x"), "ns", "e", t0, Utc::now());
        }
        state.prune(t0 + Duration::from_secs(301) + OBJECT_REFILL);
        assert!(state.series.is_empty());
        assert!(state.objects.is_empty());
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
