//! Series: what the recorder remembers of the events it published, and the pure decision of what each new
//! occurrence calls for (create the Event, write its series, or nothing), with the clock passed in.
//!
//! What must stay true: a repeat within the window (same object, type, reason, action and note) counts on
//! the series of the first occurrence; the first repeat is written at once, later ones at most every
//! [`SERIES_UPDATE_INTERVAL`], and repeats still owed when a series stops are handed out by
//! [`State::due_flushes`]; every write takes a token of the object's spam-filter bucket, and a create it
//! refuses leaves no series behind; only Warnings are remembered; past [`PRUNE_AT`] remembered series or
//! buckets, stale ones are forgotten.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::limits::SpamFilter;
use super::EventType;

/// After the first repeat, a series is written at most this often (its count keeps growing in memory).
pub(crate) const SERIES_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
/// Past this many remembered series or buckets, stale ones are pruned.
const PRUNE_AT: usize = 4096;

/// What identifies a series: the object (by UID) and everything the event says — kept as the 64 bits of the
/// SHA-256 digest that also name its Event (see `build::Occurrence`), so a remembered series costs a few
/// words, not copies of its note; the object's UID as a 64-bit hash, for its rate limit; the reason, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct SeriesKey {
    id: u64,
    pub(super) object: u64,
    pub(super) reason: &'static str,
    /// Warnings are remembered as series. Normal events are not: their notes carry what differs each time (a
    /// secret's expiry, a pod's name), so 10,000 ServiceAccounts provisioned would be 10,000 series that never
    /// repeat; one that does repeat is continued on the server (create answers AlreadyExists, the series is
    /// read and continued).
    remembered: bool,
}

impl SeriesKey {
    /// The key of an occurrence whose digest is `digest`, about the object with UID `uid`.
    pub(super) fn new(digest: [u8; 8], uid: &str, type_: EventType, reason: &'static str) -> Self {
        let mut object = DefaultHasher::new();
        uid.hash(&mut object);
        SeriesKey {
            id: u64::from_be_bytes(digest),
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

/// A series update owed to the server: its Event, the count and the time of the last occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Flush {
    pub(super) key: SeriesKey,
    pub(super) namespace: Box<str>,
    pub(super) name: Box<str>,
    pub(super) count: u32,
    pub(super) last_observed_at: DateTime<Utc>,
}

/// The write an occurrence calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Write {
    /// A new series: create the Event.
    Create,
    /// A repeat: write `count` as the series.
    Series { count: u32 },
    /// Rate-limited, or a series update not due yet.
    Nothing(&'static str),
}

/// The remembered series and spam-filter buckets; pure decisions, the clock passed in.
pub(super) struct State {
    series: HashMap<SeriesKey, Series>,
    objects: SpamFilter,
    window: Duration,
    pruned_at: Instant,
}

impl State {
    pub(super) fn new(window: Duration, now: Instant) -> Self {
        State {
            series: HashMap::new(),
            objects: SpamFilter::new(now),
            window,
            pruned_at: now,
        }
    }

    /// The series updates due at `now` (repeats not written for [`SERIES_UPDATE_INTERVAL`]), each holding
    /// its rate-limit tokens, and when the next one falls due. A refused update is tried an interval later.
    pub(super) fn due_flushes(&mut self, now: Instant) -> (Vec<Flush>, Option<Instant>) {
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
            let allowed = self.objects.take(key.object, now);
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
    pub(super) fn observe(
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
        if let Err(why) = self.objects.take(key.object, now) {
            if write == Write::Create {
                // Nothing on the server to continue: the next occurrence tries to create it again.
                self.series.remove(key);
            }
            return Write::Nothing(why);
        }
        write
    }

    /// Notes that `count` of the series `key` is now on the server.
    pub(super) fn written(&mut self, key: &SeriesKey, count: u32, now: Instant) {
        if let Some(series) = self.series.get_mut(key) {
            series.count = series.count.max(count);
            series.written = Some(now);
            series.written_count = count;
        }
    }

    /// Forgets a series whose Event is gone (or was never written), so the next occurrence creates it.
    pub(super) fn forget(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    /// Drops series past their window and buckets that are full again (forgetting them changes nothing), and
    /// gives back the room they took: a cold start over 10,000 ServiceAccounts leaves 10,000 of each.
    pub(super) fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.series
            .retain(|_, s| now.saturating_duration_since(s.last_observed) < window);
        super::give_back_room(&mut self.series);
        self.objects.prune(now);
        self.pruned_at = now;
    }

    /// When the `events` thread should prune next: a window after the last time, while anything is remembered.
    pub(super) fn next_prune(&self) -> Option<Instant> {
        (!self.series.is_empty() || !self.objects.is_empty()).then(|| self.pruned_at + self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::super::build::Occurrence;
    use super::super::limits::{
        global_pace, ObjectBucket, GLOBAL_BURST, GLOBAL_PER_SECOND, OBJECT_REFILL,
    };
    use super::*;
    use crate::kube::types::ObjectReference;

    fn key_of(uid: &str, type_: EventType, reason: &'static str, note: &str) -> SeriesKey {
        let regarding = ObjectReference {
            uid: uid.into(),
            ..Default::default()
        };
        let occurrence = Occurrence::new(&regarding, type_, reason, "Provision", note);
        SeriesKey::new(occurrence.digest, uid, type_, reason)
    }

    fn key(uid: &str, note: &str) -> SeriesKey {
        key_of(uid, EventType::Warning, "R", note)
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
        let pace = global_pace(t0);
        // Publishing is limited per object only: 500 objects' first events are all to be written...
        let created = (0..500)
            .filter(|i| {
                state.observe(&key(&format!("u{i}"), "down"), "ns", "e", t0, Utc::now())
                    == Write::Create
            })
            .count();
        assert_eq!(created, 500);
        // ...one after another: a burst, then GLOBAL_PER_SECOND a second, each told how long to wait.
        let turns = (0..500).filter(|_| pace.try_take(t0).is_ok()).count();
        assert_eq!(turns, GLOBAL_BURST as usize);
        let wait = pace.try_take(t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs_f64(1.0 / GLOBAL_PER_SECOND),
            "{wait:?}"
        );
        let t1 = t0 + Duration::from_secs(1);
        let turns = (0..500).filter(|_| pace.try_take(t1).is_ok()).count();
        assert_eq!(turns, GLOBAL_PER_SECOND as usize);
    }

    #[test]
    fn normal_events_are_written_but_not_remembered_as_series() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(300), t0);
        for i in 0..100 {
            let key = key_of(
                &format!("u{i}"),
                EventType::Normal,
                "Provisioned",
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
            state.series.capacity() < 1000 && state.objects.buckets.capacity() < 1000,
            "the room is given back"
        );
        assert_eq!(state.next_prune(), None);
    }
}
