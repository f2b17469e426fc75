//! The cache of pending pods and its mapper: from one watch on Pending pods, only the pods of tracked
//! (configured) ServiceAccounts, and only what eviction needs.
//!
//! What must stay true: memory grows with the pending pods of configured ServiceAccounts; for every other
//! ServiceAccount with pending pods only a 64-bit hash of its key is kept, so that when it becomes configured
//! its pods are listed once ([`PendingPods::needs_list`]) instead of never being seen.

use std::collections::{HashMap, HashSet};

use crate::image;
use crate::key::ObjectKey;
use crate::kube::types::Pod;
use crate::runtime::store::{key_hash, Relist};
use crate::runtime::watcher::Event;

/// One container of a pending pod, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodContainer {
    pub name: Box<str>,
    /// The registry host of its image.
    pub registry: Box<str>,
    /// Whether the kubelet reported a status for it yet.
    pub has_status: bool,
    /// The reason it is waiting, if it is.
    pub waiting: Option<Box<str>>,
}

/// A pending pod, reduced to what eviction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingPod {
    pub name: Box<str>,
    pub uid: Box<str>,
    pub pending: bool,
    pub pull_secrets: Box<[Box<str>]>,
    /// Init containers first, then the others.
    pub containers: Box<[PodContainer]>,
    pub has_controller: bool,
}

impl PendingPod {
    pub(crate) fn from_object(pod: &Pod) -> Self {
        let statuses: Vec<_> = pod
            .status
            .init_container_statuses
            .iter()
            .chain(&pod.status.container_statuses)
            .collect();
        PendingPod {
            name: pod.metadata.name.as_str().into(),
            uid: pod.metadata.uid.as_str().into(),
            pending: pod.status.phase == "Pending" || pod.status.phase.is_empty(),
            pull_secrets: pod
                .spec
                .image_pull_secrets
                .iter()
                .map(|s| s.name.as_str().into())
                .collect(),
            containers: pod
                .spec
                .init_containers
                .iter()
                .chain(&pod.spec.containers)
                .map(|c| {
                    let status = statuses.iter().find(|s| s.name == c.name);
                    PodContainer {
                        name: c.name.as_str().into(),
                        registry: image::registry(&c.image).into(),
                        has_status: status.is_some(),
                        waiting: status
                            .and_then(|s| s.state.waiting.as_ref())
                            .map(|w| w.reason.as_str().into()),
                    }
                })
                .collect(),
            has_controller: pod.metadata.controller().is_some(),
        }
    }
}

/// The cache of pending pods of tracked ServiceAccounts.
#[derive(Debug, Default)]
pub(crate) struct PendingPods {
    by_service_account: HashMap<ObjectKey, HashMap<Box<str>, PendingPod>>,
    /// Hashes of untracked ServiceAccounts seen with pending pods.
    untracked: HashSet<u64>,
    relist: Relist,
}

fn service_account_of(pod: &Pod) -> &str {
    match pod.spec.service_account_name.as_str() {
        "" => "default",
        name => name,
    }
}

impl PendingPods {
    /// Turns one watch event into cache updates. `is_tracked` says whether a ServiceAccount is configured.
    /// Returns the ServiceAccount whose pods should be looked at.
    pub(crate) fn apply(
        &mut self,
        event: Event<Pod>,
        is_tracked: impl Fn(&ObjectKey) -> bool,
    ) -> Option<ObjectKey> {
        match event {
            Event::ListStarted => {
                self.relist.start();
                self.untracked.clear();
                None
            }
            Event::Listed(pod) | Event::Applied(pod) => {
                let namespace = &pod.metadata.namespace;
                self.relist.saw(namespace, &pod.metadata.name);
                let key = ObjectKey::new(namespace, service_account_of(&pod));
                if !is_tracked(&key) {
                    self.untracked.insert(key_hash(key.namespace(), key.name()));
                    return None;
                }
                let entry = PendingPod::from_object(&pod);
                let pods = self.by_service_account.entry(key.clone()).or_default();
                if pods.get(&entry.name) == Some(&entry) {
                    return None;
                }
                pods.insert(entry.name.clone(), entry);
                Some(key)
            }
            Event::Deleted(pod) => {
                let key = ObjectKey::new(&pod.metadata.namespace, service_account_of(&pod));
                if let Some(pods) = self.by_service_account.get_mut(&key) {
                    pods.remove(pod.metadata.name.as_str());
                    if pods.is_empty() {
                        self.by_service_account.remove(&key);
                    }
                }
                None
            }
            Event::ListDone => {
                if let Some(listed) = self.relist.finish() {
                    self.by_service_account.retain(|key, pods| {
                        pods.retain(|name, _| listed.contains(key.namespace(), name));
                        !pods.is_empty()
                    });
                }
                None
            }
        }
    }

    /// The pending pods of ServiceAccount `key`.
    pub(crate) fn of(&self, key: &ObjectKey) -> Vec<PendingPod> {
        self.by_service_account
            .get(key)
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether pods of this ServiceAccount were seen while it was not tracked, so they must be listed once.
    pub(crate) fn needs_list(&self, key: &ObjectKey) -> bool {
        self.untracked
            .contains(&key_hash(key.namespace(), key.name()))
    }

    /// Adds pods listed for a ServiceAccount that just became tracked; what the watch already brought wins.
    pub(crate) fn add_listed(&mut self, key: &ObjectKey, pods: Vec<PendingPod>) {
        self.untracked
            .remove(&key_hash(key.namespace(), key.name()));
        let entry = self.by_service_account.entry(key.clone()).or_default();
        for pod in pods {
            entry.entry(pod.name.clone()).or_insert(pod);
        }
        if entry.is_empty() {
            self.by_service_account.remove(key);
        }
    }

    /// Drops the pods of a ServiceAccount that is no longer tracked.
    pub(crate) fn forget_service_account(&mut self, key: &ObjectKey) {
        if self.by_service_account.remove(key).is_some() {
            self.untracked.insert(key_hash(key.namespace(), key.name()));
        }
    }

    /// How many pods are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_service_account.values().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.by_service_account.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::{Container, ContainerState, ContainerStateWaiting, ContainerStatus};

    fn pod(name: &str, sa: &str, waiting: Option<&str>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = "ns".into();
        pod.metadata.name = name.into();
        pod.spec.service_account_name = sa.into();
        pod.status.phase = "Pending".into();
        pod.spec.containers = vec![Container {
            name: "c".into(),
            image: "gcr.io/p/i:1".into(),
            ..Default::default()
        }];
        if let Some(reason) = waiting {
            pod.status.container_statuses = vec![ContainerStatus {
                name: "c".into(),
                state: ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: reason.into(),
                        message: String::new(),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }];
        }
        pod
    }

    fn tracked(key: &ObjectKey) -> bool {
        key.name() == "app"
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn only_pods_of_tracked_service_accounts_are_kept_and_changes_queue_a_look() {
        let mut pods = PendingPods::default();
        assert_eq!(
            pods.apply(Event::Applied(pod("p", "app", None)), tracked),
            Some(key("app"))
        );
        assert_eq!(
            pods.apply(Event::Applied(pod("p", "app", None)), tracked),
            None,
            "nothing changed"
        );
        assert_eq!(
            pods.apply(
                Event::Applied(pod("p", "app", Some("ErrImagePull"))),
                tracked
            ),
            Some(key("app"))
        );
        let kept = pods.of(&key("app"));
        assert_eq!(
            kept[0].containers[0].waiting.as_deref(),
            Some("ErrImagePull")
        );
        assert_eq!(&*kept[0].containers[0].registry, "gcr.io");
        assert_eq!(
            pods.apply(Event::Applied(pod("q", "default", None)), tracked),
            None
        );
        assert_eq!(pods.len(), 1);
        assert!(pods.needs_list(&key("default")) && !pods.needs_list(&key("app")));
        pods.apply(Event::Deleted(pod("p", "app", None)), tracked);
        assert!(pods.is_empty());
    }

    #[test]
    fn listed_pods_fill_in_without_overwriting_newer_ones() {
        let mut pods = PendingPods::default();
        pods.apply(Event::Applied(pod("q", "web", None)), tracked);
        assert!(pods.needs_list(&key("web")));
        pods.apply(
            Event::Applied(pod("p", "web", Some("ErrImagePull"))),
            |_| true,
        );
        pods.add_listed(
            &key("web"),
            vec![
                PendingPod::from_object(&pod("p", "web", None)),
                PendingPod::from_object(&pod("q", "web", None)),
            ],
        );
        assert!(!pods.needs_list(&key("web")));
        let mut names: Vec<_> = pods
            .of(&key("web"))
            .into_iter()
            .map(|p| (p.name, p.containers[0].waiting.clone()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                ("p".into(), Some("ErrImagePull".into())),
                ("q".into(), None)
            ]
        );
        pods.forget_service_account(&key("web"));
        assert!(pods.is_empty() && pods.needs_list(&key("web")));
    }

    #[test]
    fn a_relist_drops_pods_no_longer_pending() {
        let mut pods = PendingPods::default();
        pods.apply(Event::Applied(pod("p", "app", None)), tracked);
        pods.apply(Event::Applied(pod("q", "app", None)), tracked);
        pods.apply(Event::ListStarted, tracked);
        pods.apply(Event::Listed(pod("q", "app", None)), tracked);
        pods.apply(Event::ListDone, tracked);
        assert_eq!(pods.of(&key("app")).len(), 1);
    }
}
