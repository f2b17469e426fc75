//! This controller's caches of what the watches delivered — configured ServiceAccounts, labelled secrets
//! without their data, the pending pods of configured ServiceAccounts — and the mappers from watch events to
//! the keys that need work, built on the generic machinery of [`crate::runtime`] (watch events,
//! resourceVersion order, relist bookkeeping). Like kube-runtime's `reflector::Store`, but holding only what
//! a reconcile reads.
//!
//! What must stay true:
//! - A lock is held only to copy an entry out or put one in, never across a request, so a slow reconcile never
//!   holds up a watch (and a watch never holds up more than a map operation). Only the pod watch holds two
//!   locks at once (pods, then ServiceAccounts, to ask whether one is tracked); nothing takes them the other
//!   way round.
//! - The watches write through the `*_event` methods; a reconcile writes only what the API server just told
//!   it (`observed_*`, `secret_gone`, `listed_pods`, `forget_if_unconfigured`), and a cache never goes back to
//!   an older version of an object than the one it holds, whoever brings it.
//! - Memory grows with configured ServiceAccounts, their secrets and their pending pods, nothing else.

pub(crate) mod pods;
pub(crate) mod secrets;
pub(crate) mod service_accounts;

use std::sync::{Mutex, MutexGuard};

use crate::key::ObjectKey;
use crate::kube::types::{Pod, Secret, ServiceAccount};
use crate::runtime::watcher::Event;
use crate::sync::lock;
use pods::{PendingPod, PendingPods};
use secrets::{CachedSecret, Secrets};
use service_accounts::{Action, CachedServiceAccount, ServiceAccounts};

/// The three caches, one lock each.
#[derive(Debug, Default)]
pub(crate) struct Caches {
    service_accounts: Mutex<ServiceAccounts>,
    secrets: Mutex<Secrets>,
    pods: Mutex<PendingPods>,
}

impl Caches {
    fn service_accounts(&self) -> MutexGuard<'_, ServiceAccounts> {
        lock(&self.service_accounts)
    }

    fn secrets(&self) -> MutexGuard<'_, Secrets> {
        lock(&self.secrets)
    }

    fn pods(&self) -> MutexGuard<'_, PendingPods> {
        lock(&self.pods)
    }

    // What the watches deliver.

    /// Takes in one event of the ServiceAccount watch; returns the work it calls for. The pending pods of a
    /// ServiceAccount that is forgotten are dropped with it.
    pub(crate) fn service_account_event(&self, event: Event<ServiceAccount>) -> Vec<Action> {
        let actions = self.service_accounts().apply(event);
        for action in &actions {
            if let Action::Forget(key) = action {
                self.pods().forget_service_account(key);
            }
        }
        actions
    }

    /// Takes in one event of the secret watch; returns the ServiceAccounts to reconcile.
    pub(crate) fn secret_event(&self, event: Event<Secret>) -> Vec<ObjectKey> {
        self.secrets().apply(event)
    }

    /// Takes in one event of the pending-pod watch; returns the ServiceAccount whose pods to look at.
    pub(crate) fn pod_event(&self, event: Event<Pod>) -> Option<ObjectKey> {
        self.pods().apply(event, |key| self.is_tracked(key))
    }

    // What a reconcile reads.

    pub(crate) fn service_account(&self, key: &ObjectKey) -> Option<CachedServiceAccount> {
        self.service_accounts().get(key)
    }

    /// Whether ServiceAccount `key` is kept (configured, or not yet cleaned up after).
    pub(crate) fn is_tracked(&self, key: &ObjectKey) -> bool {
        self.service_accounts().contains(key)
    }

    /// The secrets that belong to, or claim to belong to, ServiceAccount `key`.
    pub(crate) fn secrets_of(&self, key: &ObjectKey) -> Vec<CachedSecret> {
        self.secrets().for_service_account(key)
    }

    /// The pending pods of ServiceAccount `key`.
    pub(crate) fn pending_pods(&self, key: &ObjectKey) -> Vec<PendingPod> {
        self.pods().of(key)
    }

    /// Whether ServiceAccount `key` had pending pods while it was not tracked, so they must be listed once.
    pub(crate) fn needs_pod_list(&self, key: &ObjectKey) -> bool {
        self.pods().needs_list(key)
    }

    // What a reconcile learns.

    /// Keeps a secret as the API server just returned it (written or read), unless a newer version is
    /// already kept; returns it as cached.
    pub(crate) fn observed_secret(&self, secret: &Secret) -> CachedSecret {
        let cached = CachedSecret::from_object(secret);
        self.secrets().upsert(cached.clone());
        cached
    }

    /// Keeps a ServiceAccount as the API server just returned it (written or read), unless a newer version
    /// is already kept.
    pub(crate) fn observed_service_account(&self, sa: &ServiceAccount) {
        let key = ObjectKey::new(&sa.metadata.namespace, &sa.metadata.name);
        self.service_accounts()
            .upsert(key, CachedServiceAccount::from_object(sa));
    }

    /// Forgets secret `key`, which the reconcile deleted or found gone.
    pub(crate) fn secret_gone(&self, key: &ObjectKey) {
        self.secrets().remove(key);
    }

    /// Adds the pending pods listed for ServiceAccount `key`, which just became tracked; what the watch
    /// brought meanwhile wins.
    pub(crate) fn listed_pods(&self, key: &ObjectKey, pods: Vec<PendingPod>) {
        self.pods().add_listed(key, pods);
    }

    /// Drops ServiceAccount `key` once its reconcile has cleaned up after it, if it is still unconfigured at
    /// the `resource_version` that reconcile saw.
    pub(crate) fn forget_if_unconfigured(&self, key: &ObjectKey, resource_version: &str) {
        self.service_accounts()
            .forget_if_unconfigured(key, resource_version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations as keys;

    fn service_account(rv: &str, registry: Option<&str>) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.namespace = "ns".into();
        sa.metadata.name = "app".into();
        sa.metadata.uid = "uid-app".into();
        sa.metadata.resource_version = rv.into();
        if let Some(registry) = registry {
            sa.metadata
                .annotations
                .insert(keys::REGISTRY.into(), registry.into());
        }
        sa
    }

    fn pending_pod(name: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = "ns".into();
        pod.metadata.name = name.into();
        pod.spec.service_account_name = "app".into();
        pod.status.phase = "Pending".into();
        pod
    }

    #[test]
    fn pods_are_kept_while_their_service_account_is_tracked_and_go_with_it() {
        let caches = Caches::default();
        let key = ObjectKey::new("ns", "app");
        assert_eq!(caches.pod_event(Event::Applied(pending_pod("early"))), None);
        assert!(caches.needs_pod_list(&key), "seen while untracked");
        assert_eq!(
            caches.service_account_event(Event::Applied(service_account("1", Some("gcr.io")))),
            vec![Action::Reconcile(key.clone())]
        );
        assert_eq!(
            caches.pod_event(Event::Applied(pending_pod("p"))),
            Some(key.clone())
        );
        assert_eq!(caches.pending_pods(&key).len(), 1);
        // What a reconcile learns goes in, and an older event does not take it back.
        caches.observed_service_account(&service_account("3", Some("ghcr.io")));
        caches.service_account_event(Event::Applied(service_account("2", Some("gcr.io"))));
        assert!(caches
            .service_account(&key)
            .is_some_and(|sa| sa.resource_version.is("3")));
        assert_eq!(
            caches.service_account_event(Event::Deleted(service_account("4", None))),
            vec![Action::Forget(key.clone())]
        );
        assert!(!caches.is_tracked(&key) && caches.pending_pods(&key).is_empty());
        assert!(caches.needs_pod_list(&key), "listed again if it comes back");
    }
}
