//! The controller runtime, generic over what it watches: the list/watch loop, what every cache of watched
//! objects shares (resourceVersion order, compact UIDs, relist bookkeeping), the work queue, leader election,
//! and the gate idle workers wait at. This controller's own caches live above it, in `src/cache/`.
//!
//! What must stay true:
//! - It knows no domain: nothing here imports `cache`, `reconcile`, `events`, `cloud`, `secret`, `spec`,
//!   `annotations` or `metrics`; it builds on `kube`, `key`, `retry`, `jitter`, `sync` and `shutdown` only. What
//!   the controller wants to hear about (leadership changes, queue depth, watch restarts) reaches it through
//!   callbacks.
//! - The queue carries keys, never objects; the watcher keeps no copy of what it streams.
//! - A lock is held only for a map operation or to copy a value in or out, never across a request.

pub(crate) mod gate;
pub mod leader;
pub(crate) mod queue;
pub mod store;
pub mod watcher;
