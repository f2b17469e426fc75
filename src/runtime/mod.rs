//! The controller runtime: watch loops, the work queue, leader election, and the workers that drain the queue.

pub mod leader;
pub mod queue;
pub mod watcher;
