//! The list-then-watch loop, as an explicit state machine, for any resource.
//!
//! States: *needs list* → list every page → *watching from resourceVersion* → (stream ends cleanly: watch again
//! from the last resourceVersion | 410 Gone: needs list | other error: back off, watch again). Bookmarks only
//! advance the resourceVersion. The watcher keeps no copy of the objects: it streams [`Event`]s to its consumer,
//! which decides what to remember. After a (re)list, [`Event::ListDone`] tells the consumer that objects it
//! remembers but that were not [`Event::Listed`] since [`Event::ListStarted`] are gone — deletions that happened
//! while no watch was open are not lost.

use std::time::Duration;

use crate::jitter;
use crate::kube::types::Resource;
use crate::kube::watch::WatchEvent;
use crate::kube::{Client, ListParams, Reason};
use crate::retry::{Backoff, Jitter, Retry};
use crate::shutdown::Shutdown;

/// What the consumer of a watch is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<K> {
    /// A list begins; every current object follows as [`Event::Listed`].
    ListStarted,
    Listed(K),
    /// The list is complete. The first one means the consumer has seen the whole initial state.
    ListDone,
    /// An object was added or changed.
    Applied(K),
    Deleted(K),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NeedsList,
    Watching { resource_version: String },
}

/// A list-then-watch loop over one resource, filtered by namespace and selectors.
pub struct Watcher {
    client: Client,
    namespace: Option<String>,
    params: ListParams,
    watch_timeout: Duration,
    state: State,
    backoff: Reconnects,
    name: String,
    restarts: Option<RestartCallback>,
}

/// Told why a watch had to be re-established.
type RestartCallback = Box<dyn Fn(&str) + Send>;

impl Watcher {
    pub fn new(client: Client, namespace: Option<String>, params: ListParams, name: &str) -> Self {
        Watcher {
            client,
            namespace,
            params: ListParams {
                limit: Some(500),
                ..params
            },
            // client-go picks 5 to 10 minutes so that many watchers do not all reconnect at once.
            watch_timeout: jitter::stretch(Duration::from_secs(300), 1.0),
            state: State::NeedsList,
            backoff: Reconnects::new(Duration::from_millis(200), Duration::from_secs(30)),
            name: name.to_string(),
            restarts: None,
        }
    }

    /// How long the server keeps each watch open before ending it.
    pub fn watch_timeout(mut self, timeout: Duration) -> Self {
        self.watch_timeout = timeout;
        self
    }

    /// Page size of lists.
    pub fn page_size(mut self, limit: u32) -> Self {
        self.params.limit = Some(limit);
        self
    }

    /// Starts watching from a resourceVersion the caller already holds instead of listing first.
    pub fn resume_from(mut self, resource_version: &str) -> Self {
        self.state = State::Watching {
            resource_version: resource_version.to_string(),
        };
        self
    }

    /// Called with a short reason each time a watch has to be re-established after an error or a 410.
    pub(crate) fn on_restart(mut self, callback: impl Fn(&str) + Send + 'static) -> Self {
        self.restarts = Some(Box::new(callback));
        self
    }

    /// Runs until `shutdown`, feeding `consumer`.
    pub fn run<K: Resource>(mut self, shutdown: &Shutdown, mut consumer: impl FnMut(Event<K>)) {
        while !shutdown.is_triggered() {
            let state = std::mem::replace(&mut self.state, State::NeedsList);
            self.state = match state {
                State::NeedsList => self.list(&mut consumer),
                State::Watching { resource_version } => {
                    self.watch(resource_version, shutdown, &mut consumer)
                }
            };
            if let Some(delay) = self.backoff.pending.take() {
                if shutdown.sleep(delay) {
                    break;
                }
            }
        }
    }

    fn list<K: Resource>(&mut self, consumer: &mut impl FnMut(Event<K>)) -> State {
        consumer(Event::ListStarted);
        let result =
            self.client
                .list_each::<K>(self.namespace.as_deref(), &self.params, |object| {
                    consumer(Event::Listed(object));
                });
        match result {
            Ok(resource_version) => {
                consumer(Event::ListDone);
                self.backoff.reset();
                State::Watching { resource_version }
            }
            Err(error) => {
                let delay = self.backoff.next_after(&error);
                log::warn!("{}: list failed: {error}; retrying in {delay:?}", self.name);
                self.restarted("list_error");
                State::NeedsList
            }
        }
    }

    fn watch<K: Resource>(
        &mut self,
        mut resource_version: String,
        shutdown: &Shutdown,
        consumer: &mut impl FnMut(Event<K>),
    ) -> State {
        let mut stream = match self.client.watch::<K>(
            self.namespace.as_deref(),
            &self.params,
            &resource_version,
            self.watch_timeout,
        ) {
            Ok(stream) => stream,
            Err(error) if error.is(Reason::Gone) => {
                log::info!(
                    "{}: resourceVersion {resource_version} is too old; listing again",
                    self.name
                );
                self.restarted("gone");
                return State::NeedsList;
            }
            Err(error) => {
                let delay = self.backoff.next_after(&error);
                log::warn!(
                    "{}: watch failed: {error}; retrying in {delay:?}",
                    self.name
                );
                self.restarted("watch_error");
                return State::Watching { resource_version };
            }
        };
        self.backoff.reset();
        loop {
            if shutdown.is_triggered() {
                return State::Watching { resource_version };
            }
            match stream.next_event() {
                Ok(Some(WatchEvent::Added(object))) | Ok(Some(WatchEvent::Modified(object))) => {
                    resource_version = object.metadata().resource_version.clone();
                    consumer(Event::Applied(object));
                }
                Ok(Some(WatchEvent::Deleted(object))) => {
                    resource_version = object.metadata().resource_version.clone();
                    consumer(Event::Deleted(object));
                }
                Ok(Some(WatchEvent::Bookmark {
                    resource_version: bookmark,
                })) => resource_version = bookmark,
                Ok(Some(WatchEvent::Error(error))) if error.is(Reason::Gone) => {
                    log::info!("{}: watch expired ({error}); listing again", self.name);
                    self.restarted("gone");
                    return State::NeedsList;
                }
                Ok(Some(WatchEvent::Error(error))) => {
                    let delay = self.backoff.next();
                    log::warn!("{}: watch error: {error}; retrying in {delay:?}", self.name);
                    self.restarted("watch_error");
                    return State::Watching { resource_version };
                }
                // The server's timeout: the normal way a watch ends. Continue where it stopped.
                Ok(None) => return State::Watching { resource_version },
                Err(error) => {
                    let delay = self.backoff.next();
                    log::warn!(
                        "{}: watch stream broke: {error}; resuming in {delay:?}",
                        self.name
                    );
                    let silent = matches!(error, crate::kube::Error::Silent(_));
                    self.restarted(if silent { "silent" } else { "stream_error" });
                    return State::Watching { resource_version };
                }
            }
        }
    }

    fn restarted(&self, reason: &str) {
        if let Some(callback) = &self.restarts {
            callback(reason);
        }
    }
}

/// The reconnect backoff: the failures in a row, and the delay to apply, parked in `pending` for the loop
/// to sleep on.
struct Reconnects {
    backoff: Backoff,
    failures: u32,
    pending: Option<Duration>,
}

impl Reconnects {
    /// From `first` doubling to `max`, half again at most as jitter, never past `max`.
    fn new(first: Duration, max: Duration) -> Self {
        Reconnects {
            backoff: Backoff::new(first, max).with_jitter(Jitter::StretchWithinMax(0.5)),
            failures: 0,
            pending: None,
        }
    }

    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff.delay(self.failures);
        self.pending = Some(delay);
        delay
    }

    /// The next delay after `error`, never shorter than the server's `Retry-After`.
    fn next_after(&mut self, error: &crate::kube::Error) -> Duration {
        let mut delay = self.next();
        if let Retry::After(at_least) = error.retry() {
            delay = delay.max(at_least);
            self.pending = Some(delay);
        }
        delay
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_a_floor_on_the_backoff() {
        let mut backoff = Reconnects::new(Duration::from_millis(100), Duration::from_secs(1));
        let throttled = crate::kube::Error::from_response(429, "{}", Some(Duration::from_secs(3)));
        assert_eq!(backoff.next_after(&throttled), Duration::from_secs(3));
        assert_eq!(backoff.pending, Some(Duration::from_secs(3)));
        let broken = crate::kube::Error::from_response(503, "{}", None);
        assert!(backoff.next_after(&broken) <= Duration::from_secs(1));
    }

    #[test]
    fn backoff_grows_to_its_ceiling_and_resets() {
        let mut backoff = Reconnects::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(150));
        assert!(delays[3] >= Duration::from_millis(800));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        backoff.reset();
        assert!(backoff.next() <= Duration::from_millis(150));
    }
}
