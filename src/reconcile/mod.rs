//! Reconcilers: what one worker does for one key. Level-triggered: each run reads the current state from the
//! API server and moves it toward what the annotations ask for.

pub mod events;
pub mod evictor;
pub mod service_account;

use std::sync::Arc;
use std::time::Duration;

use crate::cloud::CredentialSource;
use crate::kube::Client;
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
    pub pod_eviction: bool,
    /// How often and how many times a pod that may still fail to pull is looked at again.
    pub pod_recheck_interval: Duration,
    pub pod_recheck_limit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            token_expiration: Duration::from_secs(600),
            min_requeue: Duration::from_secs(60),
            refresh_jitter: 0.1,
            assumed_lifetime_aws: Duration::from_secs(12 * 3600),
            assumed_lifetime_google: Duration::from_secs(3600),
            pod_eviction: true,
            pod_recheck_interval: Duration::from_secs(5),
            pod_recheck_limit: 12,
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
}

/// Why a reconcile did not complete; the worker retries with backoff and logs it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileError(pub String);

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::kube::Error> for ReconcileError {
    fn from(error: crate::kube::Error) -> Self {
        ReconcileError(error.to_string())
    }
}

impl Context {
    /// Fails with "not the leader" when this process must not write.
    pub fn check_may_act(&self) -> Result<(), ReconcileError> {
        if (self.may_act)() {
            Ok(())
        } else {
            Err(ReconcileError(
                "leadership lost; leaving the rest to the new leader".to_string(),
            ))
        }
    }
}
