//! Pod eviction: recover pods stuck pulling images because they were created before their ServiceAccount's
//! secret existed (admission copies `imagePullSecrets` into a pod once, when it is created).
//!
//! What must stay true (SPEC A5, B1): only pods failing to pull from this ServiceAccount's registry, lacking
//! one of its secrets, and owned by a controller that will recreate them are evicted, and always through the
//! Eviction API so that PodDisruptionBudgets hold. The decision is [`assess`], a pure function of the pod.

use super::{Context, ReconcileError};
use crate::annotations as keys;
use crate::cache::pods::{PendingPod, PodContainer};
use crate::events::{reference, EventType};
use crate::key::ObjectKey;
use crate::kube::types::{ObjectMeta, Pod};
use crate::kube::{ListParams, Reason};
use crate::metrics::metrics;
use crate::retry::Retry;
use crate::spec::{self, Parsed};

/// What to do with one pending pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It has every secret, or is not failing on our registry: nothing to do.
    Leave,
    /// Not failing yet, but it lacks a secret and may still fail: look again shortly.
    Recheck,
    /// Failing on our registry without the secret, and a controller will recreate it.
    Evict { container: String },
    /// As `Evict`, but nothing would recreate it: tell the user instead.
    NoController { container: String },
}

/// Decides what to do with `pod`, which uses a ServiceAccount whose provisioned secrets are `secret_names`
/// for `registry`.
pub(crate) fn assess(pod: &PendingPod, secret_names: &[String], registry: &str) -> Verdict {
    if !pod.pending {
        return Verdict::Leave;
    }
    let has_all = secret_names
        .iter()
        .all(|name| pod.pull_secrets.iter().any(|s| **s == **name));
    if has_all {
        return Verdict::Leave;
    }
    let ours = |c: &&PodContainer| *c.registry == *registry;
    let failing = pod.containers.iter().filter(ours).find(|c| {
        matches!(
            c.waiting.as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    if let Some(container) = failing {
        let container = container.name.to_string();
        return if pod.has_controller {
            Verdict::Evict { container }
        } else {
            Verdict::NoController { container }
        };
    }
    let uses_registry = pod.containers.iter().any(|c| ours(&c));
    let may_still_fail = pod.containers.iter().any(|c| {
        !c.has_status
            || matches!(
                c.waiting.as_deref(),
                Some("ContainerCreating" | "PodInitializing" | "")
            )
    });
    if uses_registry && may_still_fail {
        Verdict::Recheck
    } else {
        Verdict::Leave
    }
}

/// Looks at the pending pods of ServiceAccount `key` (as the pod watch delivered them) and evicts those stuck
/// without its secrets. Returns whether some pod may still fail (its next status change, which the watch
/// brings, is looked at again).
pub(crate) fn check_pods(ctx: &Context, key: &ObjectKey) -> Result<bool, ReconcileError> {
    let (namespace, name) = (key.namespace(), key.name());
    let Some(service_account) = ctx.caches.service_account(key) else {
        return Ok(false);
    };
    let Parsed::Configured(configuration) =
        spec::parse(namespace, name, &service_account.annotation_map())
    else {
        return Ok(false);
    };
    let names = configuration.secret_names();
    if !names.iter().all(|n| {
        service_account
            .image_pull_secrets
            .iter()
            .any(|a| **a == **n)
    }) {
        // A recreated pod would still lack the secret: wait for the reconcile that attaches it.
        return Ok(false);
    }
    if ctx.caches.needs_pod_list(key) {
        // Pods that were pending before this ServiceAccount was configured: the watch did not keep them.
        let params = ListParams {
            field_selector: Some(format!(
                "spec.serviceAccountName={name},status.phase=Pending"
            )),
            limit: Some(500),
            resource_version: Some("0".to_string()),
            ..Default::default()
        };
        let mut listed = Vec::new();
        ctx.client
            .list_each::<Pod>(Some(namespace), &params, |pod| {
                listed.push(PendingPod::from_object(&pod));
            })
            .map_err(|e| ReconcileError::kube("listing pending pods", &e))?;
        ctx.caches.listed_pods(key, listed);
    }
    let pending = ctx.caches.pending_pods(key);
    let pods: Vec<(ObjectMeta, Verdict)> = pending
        .iter()
        .map(|pod| (pod, assess(pod, &names, &configuration.registry)))
        .filter(|(_, verdict)| *verdict != Verdict::Leave)
        .map(|(pod, verdict)| {
            let meta = ObjectMeta {
                namespace: namespace.to_string(),
                name: pod.name.to_string(),
                uid: pod.uid.to_string(),
                ..Default::default()
            };
            (meta, verdict)
        })
        .collect();
    log::debug!(
        namespace = namespace, serviceaccount = name;
        "looked at {} pending pods: {} stuck without the secrets, {} to look at again",
        pending.len(),
        pods.iter().filter(|(_, v)| *v != Verdict::Recheck).count(),
        pods.iter().filter(|(_, v)| *v == Verdict::Recheck).count()
    );

    let mut recheck = false;
    let mut retry_later = Vec::new();
    for (pod, verdict) in pods {
        let regarding = reference("v1", "Pod", &pod);
        match verdict {
            Verdict::Leave => {}
            Verdict::Recheck => recheck = true,
            Verdict::NoController { container } => {
                metrics().eviction("skipped_no_controller");
                ctx.events.publish(
                    regarding,
                    EventType::Warning,
                    keys::REASON_FAILED_EVICTION,
                    "Evict",
                    &format!(
                        "Container {container} cannot pull its image because the pod was created before its serviceaccount \
                         {name} had the image pull secrets {}; the pod has no controller that would recreate it, so it was \
                         not evicted: delete and recreate it",
                        names.join(", ")
                    ),
                );
            }
            Verdict::Evict { container } => {
                ctx.check_may_act()?;
                match ctx.client.evict(namespace, &pod.name, &pod.uid) {
                    Ok(()) => {
                        metrics().eviction("evicted");
                        log::info!(namespace = namespace, pod = pod.name.as_str(), serviceaccount = name; "evicted pod stuck pulling images");
                        ctx.events.publish(
                            regarding,
                            EventType::Normal,
                            keys::REASON_EVICTED,
                            "Evict",
                            &format!(
                                "Evicted: container {container} could not pull its image because the pod lacks the image pull \
                                 secrets {} of serviceaccount {name}; its controller will recreate it with them",
                                names.join(", ")
                            ),
                        );
                    }
                    Err(e) if e.is(Reason::NotFound) => {}
                    Err(e) => {
                        metrics().eviction("failed");
                        let why = if e.is(Reason::TooManyRequests) {
                            format!("the eviction is not allowed now (a PodDisruptionBudget?); will retry: {e}")
                        } else {
                            format!("{e}")
                        };
                        ctx.events.publish(
                            regarding,
                            EventType::Warning,
                            keys::REASON_FAILED_EVICTION,
                            "Evict",
                            &format!("Eviction failed: {why}"),
                        );
                        retry_later.push((format!("evicting pod {}: {e}", pod.name), e.retry()));
                    }
                }
            }
        }
    }
    if !retry_later.is_empty() {
        let (messages, classes): (Vec<String>, Vec<Retry>) = retry_later.into_iter().unzip();
        return Err(ReconcileError::new(
            messages.join("; "),
            Retry::combine_all(classes),
        ));
    }
    Ok(recheck)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::types::{
        Container, ContainerState, ContainerStateWaiting, ContainerStatus, LocalObjectReference,
        OwnerReference,
    };

    const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// The verdict on a whole pod, as the pod watch reduces it.
    fn assess(pod: &Pod, secret_names: &[String], registry: &str) -> Verdict {
        super::assess(&PendingPod::from_object(pod), secret_names, registry)
    }

    fn pod(secrets: &[&str], image: &str, waiting: Option<&str>, controlled: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = "p".into();
        pod.status.phase = "Pending".into();
        pod.spec.image_pull_secrets = secrets
            .iter()
            .map(|s| LocalObjectReference {
                name: s.to_string(),
            })
            .collect();
        pod.spec.containers = vec![Container {
            name: "app".into(),
            image: image.into(),
            ..Default::default()
        }];
        if let Some(reason) = waiting {
            pod.status.container_statuses = vec![ContainerStatus {
                name: "app".into(),
                image: image.into(),
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
        if controlled {
            pod.metadata.owner_references = vec![OwnerReference {
                kind: "ReplicaSet".into(),
                name: "rs".into(),
                uid: "u".into(),
                api_version: "apps/v1".into(),
                controller: Some(true),
                ..Default::default()
            }];
        }
        pod
    }

    fn names() -> Vec<String> {
        vec!["imagepullsecret-sa".to_string()]
    }

    #[test]
    fn verdicts() {
        let ours = format!("{REGISTRY}/app:1");
        let evict = Verdict::Evict {
            container: "app".into(),
        };
        assert_eq!(
            assess(
                &pod(&[], &ours, Some("ImagePullBackOff"), true),
                &names(),
                REGISTRY
            ),
            evict
        );
        assert_eq!(
            assess(
                &pod(&[], &ours, Some("ErrImagePull"), true),
                &names(),
                REGISTRY
            ),
            evict
        );
        assert_eq!(
            assess(
                &pod(&["imagepullsecret-sa"], &ours, Some("ErrImagePull"), true),
                &names(),
                REGISTRY
            ),
            Verdict::Leave
        );
        assert_eq!(
            assess(
                &pod(&[], "ghcr.io/x/app:1", Some("ErrImagePull"), true),
                &names(),
                REGISTRY
            ),
            Verdict::Leave
        );
        assert_eq!(
            assess(
                &pod(&[], &ours, Some("ErrImagePull"), false),
                &names(),
                REGISTRY
            ),
            Verdict::NoController {
                container: "app".into()
            }
        );
        assert_eq!(
            assess(&pod(&[], &ours, None, true), &names(), REGISTRY),
            Verdict::Recheck
        );
        assert_eq!(
            assess(
                &pod(&[], &ours, Some("ContainerCreating"), true),
                &names(),
                REGISTRY
            ),
            Verdict::Recheck
        );
        assert_eq!(
            assess(
                &pod(&[], &ours, Some("CrashLoopBackOff"), true),
                &names(),
                REGISTRY
            ),
            Verdict::Leave
        );
        assert_eq!(
            assess(&pod(&[], "nginx", None, true), &names(), REGISTRY),
            Verdict::Leave
        );
        let mut running = pod(&[], &ours, Some("ErrImagePull"), true);
        running.status.phase = "Running".into();
        assert_eq!(assess(&running, &names(), REGISTRY), Verdict::Leave);
    }

    #[test]
    fn init_containers_count_too() {
        let mut p = pod(&[], "nginx", None, true);
        p.spec.init_containers = vec![Container {
            name: "init".into(),
            image: format!("{REGISTRY}/init"),
            ..Default::default()
        }];
        p.status.init_container_statuses = vec![ContainerStatus {
            name: "init".into(),
            state: ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "ImagePullBackOff".into(),
                    message: String::new(),
                }),
                ..Default::default()
            },
            ..Default::default()
        }];
        assert_eq!(
            assess(&p, &names(), REGISTRY),
            Verdict::Evict {
                container: "init".into()
            }
        );
    }
}
