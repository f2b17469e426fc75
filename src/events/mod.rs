//! Kubernetes events (`events.k8s.io/v1`) about ServiceAccounts and pods, the way users see what happened —
//! recorded like client-go's event recorder: repeats become a series on one Event object, and spam is
//! rate-limited per object and overall.
//!
//! What must stay true:
//! - Publishing never fails or slows a reconcile: [`EventRecorder::publish`] decides and queues; the writes
//!   happen on the `events` thread. A lost event is logged, not retried.
//! - The queue is bounded ([`QUEUE_CAPACITY`] writes, as in client-go's recorder): past that an event is dropped and counted
//!   in `events_dropped_total`.
//! - Spam about one object is dropped, overall volume is paced: every write takes a token of its object's
//!   bucket ([`OBJECT_BURST`], one more every [`OBJECT_REFILL`], client-go's `EventSourceObjectSpamFilter`
//!   defaults) and a write it refuses is dropped; all writes together wait for their turn of one global
//!   [`crate::rate::TokenBucket`] ([`GLOBAL_BURST`], then [`GLOBAL_PER_SECOND`] a second) instead of being
//!   dropped, so a cold start over 1,000 ServiceAccounts still gets its 1,000 Events, just spread out, while
//!   a provider outage over 10,000 cannot flood the API server.
//! - The lease is checked before each write, after its wait for the pace: a process that lost it writes
//!   nothing more. At shutdown [`EventRecorder::shut_down`] lets the thread write what is queued within a
//!   deadline.
//! - Series: an event repeated for the same object (same type, reason, action and note) within
//!   [`EventRecorder::new`]'s window is not a new Event but `series.count`/`series.lastObservedTime` on the
//!   first one. Warnings are remembered in memory for that; a Normal event's repeat — rare, its note names
//!   what differs — is found on the server by its Event's name. The first repeat is written at once, later
//!   ones at most every [`SERIES_UPDATE_INTERVAL`]; repeats still owed when a series stops are written by the
//!   `events` thread when due, so a ServiceAccount failing in a loop costs a few writes, not one per attempt,
//!   and its Event still ends with the full count. A write the object's bucket refuses leaves the count in
//!   memory, written with the next update.
//! - An Event's name is derived from what it is about and says ([`event_name`]: `<object>.<hash>`), so a
//!   restarted process or a new leader finds the series the previous one began (create answers
//!   AlreadyExists; the series is read and continued) instead of starting another Event.
//! - No secret in a note: notes are the reconcilers' own sentences and errors, which carry no token, key or
//!   password (see [`crate::cloud::Sensitive`]); the recorder adds nothing to them but a cut at 1 KiB.
//!
//! One job per file: `limits` (the per-object spam filter and the global pace), `series` (series keys and
//! the pure decision of what to write), `build` (the Event object, its name, the series patch), `queue` (the
//! bounded hand-off) and `recorder` (publishing and the `events` thread).

mod build;
mod limits;
mod queue;
mod recorder;
mod series;

use std::collections::HashMap;
use std::hash::Hash;

pub use build::{build_event, event_name, reference};
pub(crate) use recorder::EventRecorder;

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

/// Gives back the room of a map that pruning left mostly empty: a cold start over 10,000 ServiceAccounts
/// leaves 10,000 series and buckets behind.
fn give_back_room<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 2 * map.len() + 16 {
        map.shrink_to_fit();
    }
}
