//! Reconcilers: what one worker does for one key. Level-triggered: each run reads the current state from the
//! API server and moves it toward what the annotations ask for.

pub mod events;
pub mod evictor;
pub mod service_account;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cloud::CredentialSource;
use crate::kube::types::ObjectMeta;
use crate::kube::Client;
use crate::retry::Retry;
use events::EventRecorder;

/// Settings of reconciliation, from flags.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of the ServiceAccount tokens minted for each exchange (the API's minimum, 600 s, by default).
    pub token_expiration: Duration,
    /// No ServiceAccount is processed again sooner than this after a success, whatever its credentials say.
    pub min_requeue: Duration,
    /// Refreshes are brought forward by up to this fraction of the wait, to spread them out.
    pub refresh_jitter: f64,
    /// The lifetime assumed for secrets that do not record when they were obtained (the original's).
    pub assumed_lifetime_aws: Duration,
    pub assumed_lifetime_google: Duration,
    pub assumed_lifetime_azure: Duration,
    pub pod_eviction: bool,
    /// How often and how many times a pod that may still fail to pull is looked at again.
    pub pod_recheck_interval: Duration,
    pub pod_recheck_limit: u32,
    /// ServiceAccounts listing more principals than this get one Warning and nothing else.
    pub max_principals: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token_expiration: Duration::from_secs(600),
            min_requeue: Duration::from_secs(60),
            refresh_jitter: 0.1,
            assumed_lifetime_aws: Duration::from_secs(12 * 3600),
            assumed_lifetime_google: Duration::from_secs(3600),
            // ACR refresh tokens live about three hours.
            assumed_lifetime_azure: Duration::from_secs(3 * 3600),
            pod_eviction: true,
            pod_recheck_interval: Duration::from_secs(5),
            pod_recheck_limit: 12,
            max_principals: crate::spec::DEFAULT_MAX_PRINCIPALS,
        }
    }
}

/// Everything a reconcile needs; shared by all workers.
pub struct Context {
    pub client: Client,
    pub clouds: Arc<dyn CredentialSource>,
    pub events: EventRecorder,
    pub options: Options,
    /// Whether this process may write (it holds the lease, or leader election is off). Checked before every
    /// write, so a process that loses the lease stops acting at once.
    pub may_act: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The versions this process wrote, so the watches can tell its own writes from everyone else's.
    pub own_writes: Arc<OwnWrites>,
}

/// The resourceVersions of the objects this process wrote last.
///
/// Each write comes back through a watch; without this, that echo would queue another reconcile of the
/// same ServiceAccount that reads everything again only to find nothing to do. At most one entry per
/// object, consumed by the matching event, so the map is bounded by the number of objects written.
#[derive(Debug, Default)]
pub struct OwnWrites {
    versions: Mutex<HashMap<(&'static str, String, String), String>>,
}

impl OwnWrites {
    /// Remembers that this process wrote `meta` (of kind `kind`) at its resourceVersion.
    pub fn record(&self, kind: &'static str, meta: &ObjectMeta) {
        let key = (kind, meta.namespace.clone(), meta.name.clone());
        self.lock().insert(key, meta.resource_version.clone());
    }

    /// Whether `meta` is exactly what this process wrote last; the record is consumed.
    pub fn is_own(&self, kind: &'static str, meta: &ObjectMeta) -> bool {
        let key = (kind, meta.namespace.clone(), meta.name.clone());
        let mut versions = self.lock();
        match versions.get(&key) {
            Some(version) if *version == meta.resource_version && !version.is_empty() => {
                versions.remove(&key);
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String, String), String>> {
        self.versions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a reconcile did not complete, and how soon to try again; the worker retries with the backoff of
/// its class and logs it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileError {
    pub message: String,
    pub retry: Retry,
}

impl ReconcileError {
    pub fn new(message: impl Into<String>, retry: Retry) -> Self {
        ReconcileError {
            message: message.into(),
            retry,
        }
    }

    /// A failure that may pass by itself.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(message, Retry::Transient)
    }

    /// A failed Kubernetes call while `doing` something: "doing: why", classed by the error.
    pub fn kube(doing: &str, error: &crate::kube::Error) -> Self {
        Self::new(format!("{doing}: {error}"), error.retry())
    }
}

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::kube::Error> for ReconcileError {
    fn from(error: crate::kube::Error) -> Self {
        ReconcileError::new(error.to_string(), error.retry())
    }
}

impl Context {
    /// Fails with "not the leader" when this process must not write.
    pub fn check_may_act(&self) -> Result<(), ReconcileError> {
        if (self.may_act)() {
            Ok(())
        } else {
            Err(ReconcileError::transient(
                "leadership lost; leaving the rest to the new leader",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_writes_match_exactly_once_and_only_their_version() {
        let writes = OwnWrites::default();
        let meta = |rv: &str| ObjectMeta {
            namespace: "ns".into(),
            name: "s".into(),
            resource_version: rv.into(),
            ..Default::default()
        };
        writes.record("Secret", &meta("5"));
        assert!(
            !writes.is_own("Secret", &meta("6")),
            "someone else's later write"
        );
        assert!(!writes.is_own("ServiceAccount", &meta("5")), "another kind");
        assert!(writes.is_own("Secret", &meta("5")));
        assert!(!writes.is_own("Secret", &meta("5")), "consumed");
    }
}
