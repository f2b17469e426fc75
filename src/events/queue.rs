//! The bounded hand-off between workers and the `events` thread, so a reconcile never waits for an Event
//! write — like client-go's recorder, which queues events for a separate goroutine and drops them when
//! its queue is full.
//!
//! What must stay true: [`EventQueue::push`] never blocks; past [`EventQueue::new`]'s capacity an item is
//! refused and the caller told (a lost event is cheaper than a slow reconcile; the recorder counts it in
//! `events_dropped_total`); after [`EventQueue::close`] the
//! consumer still gets everything queued before it, then [`Next::Closed`], and the closer waits for that
//! only up to its deadline.

use crate::sync::{lock, wait, wait_timeout};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the consumer gets from [`EventQueue::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    Item(T),
    /// Woken by [`EventQueue::poke`] or the timeout: nothing queued, look for other work.
    Idle,
    /// Closed and empty: the consumer ends.
    Closed,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    poked: bool,
    closed: bool,
    /// The consumer has seen [`Next::Closed`] (or is gone).
    finished: bool,
}

pub(crate) struct EventQueue<T> {
    state: Mutex<State<T>>,
    /// Wakes the consumer: an item, a poke, or closing.
    ready: Condvar,
    /// Wakes the closer: the consumer finished.
    finished: Condvar,
}

impl<T> EventQueue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                capacity,
                poked: false,
                closed: false,
                finished: false,
            }),
            ready: Condvar::new(),
            finished: Condvar::new(),
        }
    }

    /// Queues `item` for the consumer; false (the item dropped) when full or closed.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut state = lock(&self.state);
        if state.closed || state.items.len() >= state.capacity {
            return false;
        }
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
        true
    }

    /// Wakes the consumer without an item (it has other work to look at).
    pub(crate) fn poke(&self) {
        lock(&self.state).poked = true;
        self.ready.notify_one();
    }

    /// The next item; blocks until there is one, a poke, closing, or `timeout` (forever when `None`).
    pub(crate) fn next(&self, timeout: Option<Duration>) -> Next<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = state.items.pop_front() {
                return Next::Item(item);
            }
            if state.closed {
                state.finished = true;
                self.finished.notify_all();
                return Next::Closed;
            }
            if std::mem::take(&mut state.poked) {
                return Next::Idle;
            }
            state = match deadline {
                None => wait(&self.ready, state),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Next::Idle;
                    }
                    wait_timeout(&self.ready, state, left).0
                }
            };
        }
    }

    /// Marks the consumer gone (it could not start), so closing does not wait for it.
    pub(crate) fn abandon(&self) {
        let mut state = lock(&self.state);
        state.finished = true;
        state.closed = true;
        drop(state);
        self.finished.notify_all();
    }

    /// Refuses new items and lets the consumer take what is queued; waits up to `deadline` for it to finish.
    /// Returns how many items were still queued when the wait ended (0 when drained).
    pub(crate) fn close(&self, deadline: Duration) -> usize {
        let until = Instant::now() + deadline;
        let mut state = lock(&self.state);
        state.closed = true;
        self.ready.notify_all();
        while !state.finished {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = wait_timeout(&self.finished, state, left).0;
        }
        state.items.len()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.state).items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let queue = EventQueue::new(2);
        assert!(queue.push(1));
        assert!(queue.push(2));
        let dropped = [queue.push(3), queue.push(4)]
            .iter()
            .filter(|queued| !**queued)
            .count();
        assert_eq!((queue.len(), dropped), (2, 2));
        assert_eq!(queue.next(None), Next::Item(1));
        assert!(queue.push(5));
        assert_eq!(queue.next(None), Next::Item(2));
        assert_eq!(queue.next(None), Next::Item(5));
        assert_eq!(queue.next(Some(Duration::from_millis(10))), Next::Idle);
    }

    #[test]
    fn a_poke_wakes_the_consumer_once() {
        let queue: EventQueue<u32> = EventQueue::new(1);
        queue.poke();
        assert_eq!(queue.next(None), Next::Idle);
        assert_eq!(queue.next(Some(Duration::ZERO)), Next::Idle);
    }

    #[test]
    fn closing_lets_the_consumer_drain_what_was_queued_then_refuses_more() {
        let queue = Arc::new(EventQueue::new(10));
        for i in 0..3 {
            assert!(queue.push(i));
        }
        let consumer = queue.clone();
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                match consumer.next(None) {
                    Next::Item(i) => {
                        std::thread::sleep(Duration::from_millis(20));
                        got.push(i);
                    }
                    Next::Idle => {}
                    Next::Closed => return got,
                }
            }
        });
        assert_eq!(queue.close(Duration::from_secs(30)), 0);
        assert!(!queue.push(9), "dropped");
        assert_eq!(thread.join().ok(), Some(vec![0, 1, 2]));
    }

    #[test]
    fn closing_waits_only_up_to_its_deadline() {
        let queue = EventQueue::new(10);
        assert!(queue.push(1));
        assert!(queue.push(2));
        // No consumer takes them: the closer gives up and says how many were left.
        let started = Instant::now();
        assert_eq!(queue.close(Duration::from_millis(50)), 2);
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A consumer gone before it started does not make closing wait.
        let gone: EventQueue<u32> = EventQueue::new(1);
        gone.abandon();
        assert_eq!(gone.close(Duration::from_secs(3600)), 0);
    }
}
