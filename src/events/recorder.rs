//! The recorder: [`EventRecorder::publish`] decides on the worker's thread (series, the object's limit) and
//! queues the write; the `events` thread writes queued Events and due series updates, one at a time, each
//! after its turn of the global pace and a fresh look at the lease.
//!
//! What must stay true: publishing never waits for the API server and never fails a reconcile; every write —
//! a new Event, a repeat, a flush of owed repeats — goes through [`Inner::write`], which waits for the pace,
//! then checks the lease; a create that is not written (refused, not the leader, failed) leaves no series
//! behind, so the next occurrence tries again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::build::{parse_micro_time, series_count, series_patch, Occurrence};
use super::limits::{global_pace, wait_for_turn};
use super::queue::{EventQueue, Next};
use super::series::{Flush, SeriesKey, State, Write};
use super::EventType;
use crate::kube::types::{Event, ObjectReference};
use crate::kube::{Client, Patch, Reason};
use crate::metrics::metrics;
use crate::rate::TokenBucket;
use crate::sync::lock;

/// Event writes waiting for the `events` thread (client-go's recorder queues 1000 too).
pub(crate) const QUEUE_CAPACITY: usize = 1000;

/// A write queued for the `events` thread.
#[derive(Debug, Clone)]
enum Job {
    /// A new series: create its Event.
    Create { key: SeriesKey, event: Box<Event> },
    /// A repeat, or repeats owed: write the series count.
    Series(Flush),
}

/// Publishes events as series, rate-limited. Shared by all workers.
///
/// A thread (`events`) writes what [`EventRecorder::publish`] queued, and the repeats that were counted but
/// not yet written once their update is due, so a series that stops still shows its full count. It ends
/// after [`EventRecorder::shut_down`] (or when the recorder is dropped) once the queue is empty.
pub(crate) struct EventRecorder {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    instance: String,
    state: Mutex<State>,
    /// The global pace of writes, taken by the `events` thread only.
    pace: TokenBucket,
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
    pub(crate) fn new(
        client: Client,
        instance: &str,
        window: Duration,
        may_act: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Self {
        let now = Instant::now();
        let inner = Arc::new(Inner {
            client,
            instance: instance.to_string(),
            state: Mutex::new(State::new(window, now)),
            pace: global_pace(now),
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
    pub(crate) fn publish(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: &str,
    ) {
        self.inner.publish(&regarding, type_, reason, action, note);
    }

    /// Stops taking events and waits up to `deadline` for the `events` thread to write what is queued
    /// (owed series counts not yet due are not written).
    pub(crate) fn shut_down(&self, deadline: Duration) {
        let left = self.inner.queue.close(deadline);
        if left > 0 {
            log::warn!(
                "{left} events were not written within {deadline:?} of stopping; exiting anyway"
            );
        }
    }
}

impl Inner {
    fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &'static str,
        action: &str,
        note: &str,
    ) {
        let occurrence = Occurrence::new(regarding, type_, reason, action, note);
        let key = SeriesKey::new(occurrence.digest, &regarding.uid, type_, reason);
        let namespace = regarding.namespace.as_str();
        let (now, now_at) = (Instant::now(), Utc::now());
        let write = lock(&self.state).observe(&key, namespace, &occurrence.name, now, now_at);
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
                event: Box::new(occurrence.into_event(&self.instance, now_at)),
            },
            Write::Series { count } => Job::Series(Flush {
                key,
                namespace: namespace.into(),
                name: occurrence.name.into(),
                count,
                last_observed_at: now_at,
            }),
        };
        let create = matches!(job, Job::Create { .. });
        let queued = self.queue.push(job);
        metrics().set_events_queued(self.queue.len());
        if !queued {
            metrics().event_dropped();
            if create {
                // Nothing on the server to continue: the next occurrence tries to create it again.
                lock(&self.state).forget(&key);
            }
            log::warn!(
                "dropped {reason} event for {} {namespace}/{}: {QUEUE_CAPACITY} events are waiting to be written",
                regarding.kind,
                regarding.name
            );
        }
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
                let mut state = lock(&self.state);
                if state.next_prune().is_some_and(|at| at <= now) {
                    state.prune(now);
                }
                let (flushes, next) = state.due_flushes(now);
                let prune = state.next_prune();
                (flushes, next.into_iter().chain(prune).min())
            };
            next_flush = next;
            for flush in flushes {
                self.write(Job::Series(flush));
            }
        }
    }

    /// Performs one write after its turn of the global pace, unless this process may no longer act.
    fn write(&self, job: Job) {
        let (key, namespace, name) = match &job {
            Job::Create { key, event } => (
                key,
                event.metadata.namespace.as_str(),
                event.metadata.name.as_str(),
            ),
            Job::Series(flush) => (&flush.key, &*flush.namespace, &*flush.name),
        };
        // The lease is checked after the wait, right before the write.
        wait_for_turn(&self.pace);
        if !(self.may_act)() {
            log::debug!(
                "not the leader: {} event {namespace}/{name} is left to the leader",
                key.reason
            );
            if matches!(job, Job::Create { .. }) {
                lock(&self.state).forget(key);
            }
            return;
        }
        let result = match &job {
            Job::Create { key, event } => self.create(key, event),
            Job::Series(flush) => self.update_series(flush),
        };
        if let Err(error) = result {
            log::warn!(
                "cannot record {} event {namespace}/{name}: {error}",
                key.reason
            );
        }
    }

    fn create(&self, key: &SeriesKey, event: &Event) -> Result<(), String> {
        let namespace = event.metadata.namespace.as_str();
        match self.client.create(Some(namespace), event) {
            Ok(_) => {
                lock(&self.state).written(key, 1, Instant::now());
                Ok(())
            }
            Err(e) if e.is(Reason::AlreadyExists) => {
                // Begun by an earlier process (or leader): continue its series.
                let existing: Event = self
                    .client
                    .get(Some(namespace), &event.metadata.name)
                    .map_err(|e| {
                        lock(&self.state).forget(key);
                        format!("reading the existing event {}: {e}", event.metadata.name)
                    })?;
                self.update_series(&Flush {
                    key: *key,
                    namespace: namespace.into(),
                    name: event.metadata.name.as_str().into(),
                    count: series_count(&existing) + 1,
                    last_observed_at: parse_micro_time(&event.event_time).unwrap_or_else(Utc::now),
                })
            }
            Err(e) => {
                lock(&self.state).forget(key);
                Err(e.to_string())
            }
        }
    }

    /// Writes `flush.count` as the series of its Event.
    fn update_series(&self, flush: &Flush) -> Result<(), String> {
        let (key, name) = (&flush.key, &*flush.name);
        let patch = Patch::Merge(series_patch(flush.count, flush.last_observed_at));
        match self
            .client
            .patch::<Event>(Some(&flush.namespace), name, &patch)
        {
            Ok(_) => {
                lock(&self.state).written(key, flush.count, Instant::now());
                Ok(())
            }
            Err(e) => {
                if e.is(Reason::NotFound) {
                    // Expired (the API server keeps events for an hour): the next occurrence starts anew.
                    lock(&self.state).forget(key);
                }
                Err(format!("updating the series of event {name}: {e}"))
            }
        }
    }
}
