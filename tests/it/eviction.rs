//! Pod eviction end to end (SPEC A5, B1; issue 6): the real binary, as the manifests' ServiceAccount, against
//! the real apiserver with the ReplicaSet controller running and the ServiceAccount admission plugin on.
//!
//! No kubelet runs, so pods stay Pending and the tests write container statuses through `pods/status`, as a
//! kubelet would after a failed pull. Each test has its own namespace, Google stand-in and controller. Pods
//! are created before the ServiceAccount is configured, so admission gave them no secret — the situation the
//! evictor exists for. "Not evicted" means: the controller looked at the ServiceAccount's pending pods (its
//! debug log says so), then went idle (`Controller::wait_idle`), and the pod is still there with the same UID.

use std::time::{Duration, Instant};

use crate::support::controller::{Controller, ControllerBuilder};
use crate::support::google::EMAIL;
use crate::support::google::PROVIDER;
use crate::support::google::REGISTRY;
use crate::support::google::{member, GoogleFake};
use crate::support::objects::EVICTED;
use crate::support::objects::FAILED_EVICTION;
use crate::support::objects::SECRET;
use crate::support::{cluster, eventually, poll, Cluster};
use image_pull_secrets_provisioner::kube::types::{Pod, ServiceAccount};
use image_pull_secrets_provisioner::kube::{Client, ListParams, Reason};
use serde_json::Value;

const AUDIENCE: &str = "ipsp-eviction";
const SA: &str = "app";
const TIMEOUT: Duration = Duration::from_secs(90);

fn our_image() -> String {
    format!("{REGISTRY}/proj/repo/app:1")
}

/// An event about a pod.
#[derive(Debug)]
struct PodEvent {
    type_: String,
    reason: String,
    note: String,
    /// The pod's UID.
    uid: String,
}

/// One test's namespace, with ServiceAccount [`SA`] (not yet configured) and a Google stand-in that lets it
/// impersonate [`EMAIL`].
struct Scenario {
    cluster: &'static Cluster,
    admin: Client,
    ns: String,
    fake: GoogleFake,
}

impl Scenario {
    fn new(prefix: &str) -> Scenario {
        let cluster = cluster();
        let ns = cluster.namespace(prefix);
        let fake = GoogleFake::builder()
            .pool(PROVIDER, &[AUDIENCE])
            .allow(EMAIL, &member(&ns, SA))
            .start();
        let scenario = Scenario {
            cluster,
            admin: cluster.admin(),
            ns,
            fake,
        };
        scenario.create_service_account(SA);
        scenario
    }

    fn controller(&self) -> ControllerBuilder {
        Controller::builder(&self.ns).google(&self.fake.endpoint)
    }

    fn create_service_account(&self, name: &str) {
        self.cluster
            .kubectl(&["-n", &self.ns, "create", "serviceaccount", name]);
        // Admission refuses pods of a ServiceAccount it cannot see yet.
        eventually(TIMEOUT, "the serviceaccount to exist", || {
            self.admin.get::<ServiceAccount>(Some(&self.ns), name).ok()
        });
    }

    /// Annotates [`SA`] for Google; the controller provisions [`SECRET`].
    fn configure(&self) {
        self.cluster.kubectl(&[
            "-n",
            &self.ns,
            "annotate",
            "serviceaccount",
            SA,
            &format!("imagepullsecrets.preferred.jp/registry={REGISTRY}"),
            &format!("imagepullsecrets.preferred.jp/audience={AUDIENCE}"),
            &format!(
                "imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"
            ),
            &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
        ]);
    }

    /// Waits until [`SECRET`] is in [`SA`]'s imagePullSecrets; returns when the test saw it.
    fn wait_attached(&self, controller: &Controller) -> Instant {
        eventually(
            TIMEOUT,
            "the secret to be attached to the serviceaccount",
            || {
                let sa: ServiceAccount = self.admin.get(Some(&self.ns), SA).ok()?;
                let attached = sa.image_pull_secrets?.iter().any(|s| s.name == SECRET);
                if !controller.is_running() {
                    panic!("the controller exited:\n{}", controller.logs());
                }
                attached.then(Instant::now)
            },
        )
    }

    /// A ReplicaSet of one pod using ServiceAccount `sa`; returns that pod once the ReplicaSet controller
    /// created it.
    fn replicaset(&self, name: &str, sa: &str, image: &str, secrets: &[&str]) -> Pod {
        let pull_secrets: Vec<String> = secrets
            .iter()
            .map(|s| format!("{{\"name\":\"{s}\"}}"))
            .collect();
        self.cluster.apply(&format!(
            r#"{{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{{"name":"{name}","namespace":"{ns}"}},
              "spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"{name}"}}}},
                "template":{{"metadata":{{"labels":{{"app":"{name}"}}}},
                  "spec":{{"serviceAccountName":"{sa}","imagePullSecrets":[{pull_secrets}],
                    "containers":[{{"name":"app","image":"{image}"}}]}}}}}}}}"#,
            ns = self.ns,
            pull_secrets = pull_secrets.join(","),
        ));
        eventually(TIMEOUT, "the replicaset's pod", || {
            let pods = self.pods_labelled(name);
            (pods.len() == 1).then(|| pods.into_iter().next().unwrap())
        })
    }

    /// A pod that no controller owns.
    fn bare_pod(&self, name: &str, sa: &str, image: &str) -> Pod {
        self.cluster.apply(&format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}","labels":{{"app":"{name}"}}}},
              "spec":{{"serviceAccountName":"{sa}","containers":[{{"name":"app","image":"{image}"}}]}}}}"#,
            ns = self.ns,
        ));
        self.admin
            .get(Some(&self.ns), name)
            .expect("the pod exists")
    }

    fn pods_labelled(&self, app: &str) -> Vec<Pod> {
        let params = ListParams {
            label_selector: Some(format!("app={app}")),
            ..Default::default()
        };
        let mut pods = Vec::new();
        self.admin
            .list_each::<Pod>(Some(&self.ns), &params, |pod| {
                if pod.metadata.deletion_timestamp.is_none() {
                    pods.push(pod)
                }
            })
            .expect("list pods");
        pods
    }

    /// Writes what a kubelet writes when pulling the pod's image fails: Pending, the container waiting with
    /// `reason`.
    fn set_waiting(&self, pod: &Pod, reason: &str) {
        let image = &pod.spec.containers[0].image;
        let status = serde_json::json!({"status": {
            "phase": "Pending",
            "containerStatuses": [{
                "name": pod.spec.containers[0].name,
                "image": image,
                "imageID": "",
                "ready": false,
                "started": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": format!("Back-off pulling image \"{image}\"")}},
            }],
        }});
        self.cluster.kubectl(&[
            "-n",
            &self.ns,
            "patch",
            "pod",
            &pod.metadata.name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    /// The pod of that name as it is now, unless it is gone (or going).
    fn current(&self, pod: &Pod) -> Option<Pod> {
        match self.admin.get::<Pod>(Some(&self.ns), &pod.metadata.name) {
            Ok(now)
                if now.metadata.uid == pod.metadata.uid
                    && now.metadata.deletion_timestamp.is_none() =>
            {
                Some(now)
            }
            Ok(_) => None,
            Err(e) if e.is(Reason::NotFound) => None,
            Err(e) => panic!("reading pod {}: {e}", pod.metadata.name),
        }
    }

    /// Waits until `pod` is gone; returns when the test saw it gone.
    fn wait_gone(&self, pod: &Pod, controller: &Controller) -> Instant {
        poll(TIMEOUT, Duration::from_millis(50), || {
            self.current(pod).is_none().then(Instant::now)
        })
        .unwrap_or_else(|| {
            panic!(
                "pod {} was not evicted within {TIMEOUT:?}; controller log:\n{}",
                pod.metadata.name,
                controller.logs()
            )
        })
    }

    /// Events about pod `name` (events.k8s.io, as the controller writes them). Read as JSON: events written
    /// by others carry nulls the controller's own Event type does not expect.
    fn pod_events(&self, name: &str) -> Vec<PodEvent> {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{}/events", self.ns);
        let list: Value = self
            .admin
            .call_json("GET", &path, &[], None)
            .expect("list events");
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["regarding"]["kind"] == "Pod" && e["regarding"]["name"] == name)
            .map(|e| PodEvent {
                type_: text(&e["type"]),
                reason: text(&e["reason"]),
                note: text(&e["note"]),
                uid: text(&e["regarding"]["uid"]),
            })
            .collect()
    }

    fn wait_pod_event(&self, name: &str, type_: &str, reason: &str) -> PodEvent {
        eventually(
            TIMEOUT,
            &format!("a {type_} {reason} event on pod {name}"),
            || {
                self.pod_events(name)
                    .into_iter()
                    .find(|e| e.type_ == type_ && e.reason == reason)
            },
        )
    }

    /// Waits until the controller has looked at [`SA`]'s pending pods (after the secret was attached) and
    /// until it went idle (a second look, which the pod watch would bring, has happened by then); returns the
    /// line that reported the look.
    fn wait_looked_at_pods(&self, controller: &Controller) -> String {
        let line = eventually(
            TIMEOUT,
            "the controller to look at the pending pods",
            || {
                controller
                    .logs()
                    .lines()
                    .find(|l| {
                        l.contains("looked at") && l.contains(&format!("serviceaccount={SA}"))
                    })
                    .map(str::to_string)
            },
        );
        controller.wait_idle();
        line
    }

    /// The pod is still there, unchanged, and nothing says it was evicted.
    fn assert_not_evicted(&self, pod: &Pod, controller: &Controller) {
        assert!(
            self.current(pod).is_some(),
            "pod {} was evicted; controller log:\n{}",
            pod.metadata.name,
            controller.logs()
        );
        let evicted: Vec<PodEvent> = self
            .pod_events(&pod.metadata.name)
            .into_iter()
            .filter(|e| e.reason == EVICTED)
            .collect();
        assert!(evicted.is_empty(), "unexpected events: {evicted:?}");
        assert!(
            !controller.logs().contains("evicted pod"),
            "{}",
            controller.logs()
        );
    }
}

#[test]
fn a_replicaset_pod_stuck_without_the_secret_is_evicted_and_its_replacement_has_the_secret() {
    let s = Scenario::new("evict");
    let pod = s.replicaset("web", SA, &our_image(), &[]);
    assert!(
        pod.spec.image_pull_secrets.is_empty(),
        "admission gave the pod secrets: {:?}",
        pod.spec.image_pull_secrets
    );
    s.set_waiting(&pod, "ImagePullBackOff");

    let controller = s.controller().start();
    s.configure();
    let attached_at = s.wait_attached(&controller);
    let gone_at = s.wait_gone(&pod, &controller);
    eprintln!(
        "eviction latency: {:?} after the test saw the secret attached",
        gone_at.duration_since(attached_at)
    );

    let event = s.wait_pod_event(&pod.metadata.name, "Normal", EVICTED);
    assert_eq!(event.uid, pod.metadata.uid);
    assert!(event.note.contains(SECRET), "{}", event.note);
    assert!(event.note.contains("container app"), "{}", event.note);

    let replacement = eventually(TIMEOUT, "the replicaset's replacement pod", || {
        s.pods_labelled("web")
            .into_iter()
            .find(|p| p.metadata.uid != pod.metadata.uid)
    });
    let secrets: Vec<&str> = replacement
        .spec
        .image_pull_secrets
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(secrets, [SECRET], "the replacement pod's imagePullSecrets");
    assert!(controller
        .logs()
        .lines()
        .any(|l| l.contains("evicted pod stuck pulling images")
            && l.contains(&format!("pod={}", pod.metadata.name))));
}

#[test]
fn a_pod_that_already_has_the_secret_is_not_evicted() {
    let s = Scenario::new("evict-has");
    // The pod names the secret before it exists; its pull fails for another reason (say, a missing tag).
    let pod = s.replicaset("web", SA, &our_image(), &[SECRET]);
    s.set_waiting(&pod, "ImagePullBackOff");
    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let line = s.wait_looked_at_pods(&controller);
    assert!(line.contains("looked at 1 pending pods: 0 stuck"), "{line}");
    s.assert_not_evicted(&pod, &controller);
}

#[test]
fn a_pod_failing_on_another_registry_is_not_evicted() {
    let s = Scenario::new("evict-other-registry");
    let pod = s.replicaset("web", SA, "ghcr.io/acme/app:1", &[]);
    s.set_waiting(&pod, "ImagePullBackOff");
    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let line = s.wait_looked_at_pods(&controller);
    assert!(line.contains("looked at 1 pending pods: 0 stuck"), "{line}");
    s.assert_not_evicted(&pod, &controller);
}

#[test]
fn a_pod_without_a_controller_is_not_evicted_and_gets_a_warning_to_recreate_it() {
    let s = Scenario::new("evict-bare");
    let pod = s.bare_pod("lonely", SA, &our_image());
    s.set_waiting(&pod, "ErrImagePull");
    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let event = s.wait_pod_event("lonely", "Warning", FAILED_EVICTION);
    assert!(
        event.note.contains("delete and recreate it"),
        "{}",
        event.note
    );
    assert!(event.note.contains(SECRET), "{}", event.note);
    s.wait_looked_at_pods(&controller);
    s.assert_not_evicted(&pod, &controller);
}

#[test]
fn a_pod_of_another_service_account_is_not_evicted() {
    let s = Scenario::new("evict-other-sa");
    s.create_service_account("other");
    let pod = s.replicaset("web", "other", &our_image(), &[]);
    s.set_waiting(&pod, "ImagePullBackOff");
    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let line = s.wait_looked_at_pods(&controller);
    assert!(line.contains("looked at 0 pending pods"), "{line}");
    s.assert_not_evicted(&pod, &controller);
}

#[test]
fn no_pod_is_evicted_with_disable_pod_eviction() {
    let s = Scenario::new("evict-disabled");
    let pod = s.replicaset("web", SA, &our_image(), &[]);
    s.set_waiting(&pod, "ImagePullBackOff");
    let bare = s.bare_pod("lonely", SA, &our_image());
    s.set_waiting(&bare, "ErrImagePull");
    let controller = s.controller().arg("--disable-pod-eviction").start();
    s.configure();
    s.wait_attached(&controller);
    controller.wait_idle();
    s.assert_not_evicted(&pod, &controller);
    s.assert_not_evicted(&bare, &controller);
    assert!(s.pod_events("lonely").is_empty());
    assert!(
        !controller.logs().contains("looked at"),
        "{}",
        controller.logs()
    );
}

#[test]
fn a_pod_that_starts_failing_after_the_secret_was_provisioned_is_still_evicted() {
    let s = Scenario::new("evict-late");
    // Created before the configuration, not failing yet: no container status, as before the kubelet ran.
    let pod = s.replicaset("web", SA, &our_image(), &[]);
    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let line = eventually(
        TIMEOUT,
        "the controller to look at the pending pods",
        || {
            controller
                .logs()
                .lines()
                .find(|l| l.contains("looked at") && l.contains("1 to look at again"))
                .map(str::to_string)
        },
    );
    assert!(line.contains("0 stuck"), "{line}");
    controller.wait_idle();
    assert!(s.current(&pod).is_some(), "evicted before it failed");

    s.set_waiting(&pod, "ErrImagePull");
    let failing_at = Instant::now();
    let gone_at = s.wait_gone(&pod, &controller);
    eprintln!(
        "late failure: evicted {:?} after its status turned ErrImagePull",
        gone_at.duration_since(failing_at)
    );
    s.wait_pod_event(&pod.metadata.name, "Normal", EVICTED);
}

/// Deletes a cluster-scoped object when dropped, so a failing test does not leave it behind.
struct ClusterObject<'a> {
    cluster: &'a Cluster,
    kind: &'static str,
    name: String,
}

impl ClusterObject<'_> {
    fn delete(&self) {
        self.cluster
            .kubectl(&["delete", self.kind, &self.name, "--ignore-not-found"]);
    }
}

impl Drop for ClusterObject<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.cluster.kubectl)
            .arg("--kubeconfig")
            .arg(&self.cluster.admin_kubeconfig)
            .args(["delete", self.kind, &self.name, "--ignore-not-found"])
            .output();
    }
}

/// Asks the apiserver, as a dry run, whether `pod` may be evicted now.
fn dry_run_eviction(admin: &Client, ns: &str, pod: &str) -> Result<(), String> {
    let eviction = serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": ns},
        "deleteOptions": {"dryRun": ["All"]},
    });
    let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction");
    let body = image_pull_secrets_provisioner::kube::client::Body::json(&eviction).unwrap();
    admin
        .call_json::<serde_json::Value>("POST", &path, &[], Some(body))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A refused eviction gets a Warning event and is retried with backoff until the eviction is allowed.
///
/// The refusal comes from a ValidatingAdmissionPolicy on `pods/eviction`. A PodDisruptionBudget cannot
/// refuse it: the Eviction API lets Pending pods ignore PDBs (`canIgnorePDB` in kube-apiserver), and the
/// evictor only ever evicts Pending pods. The test keeps a PDB that would block a running pod
/// (`minAvailable: 1` of 1) in place throughout, to show it does not keep a stuck pod stuck.
#[test]
fn a_refused_eviction_gets_a_warning_and_is_retried_until_it_is_allowed() {
    let s = Scenario::new("evict-refused");
    let pod = s.replicaset("web", SA, &our_image(), &[]);
    s.set_waiting(&pod, "ImagePullBackOff");
    s.cluster.apply(&format!(
        r#"{{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{{"name":"web","namespace":"{}"}},
          "spec":{{"minAvailable":1,"selector":{{"matchLabels":{{"app":"web"}}}}}}}}"#,
        s.ns
    ));
    let name = format!("ipsp-deny-eviction-{}", s.ns);
    let policy = ClusterObject {
        cluster: s.cluster,
        kind: "validatingadmissionpolicy",
        name: name.clone(),
    };
    let binding = ClusterObject {
        cluster: s.cluster,
        kind: "validatingadmissionpolicybinding",
        name: name.clone(),
    };
    s.cluster.apply(&format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicy","metadata":{{"name":"{name}"}},
          "spec":{{"failurePolicy":"Fail",
            "matchConstraints":{{"resourceRules":[{{"apiGroups":[""],"apiVersions":["v1"],"operations":["CREATE"],"resources":["pods/eviction"]}}]}},
            "validations":[{{"expression":"false","message":"evictions are frozen in this namespace"}}]}}}}"#
    ));
    s.cluster.apply(&format!(
        r#"{{"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingAdmissionPolicyBinding","metadata":{{"name":"{name}"}},
          "spec":{{"policyName":"{name}","validationActions":["Deny"],
            "matchResources":{{"namespaceSelector":{{"matchLabels":{{"kubernetes.io/metadata.name":"{}"}}}}}}}}}}"#,
        s.ns
    ));
    eventually(TIMEOUT, "the admission policy to refuse evictions", || {
        dry_run_eviction(&s.admin, &s.ns, &pod.metadata.name).err()
    });

    let controller = s.controller().start();
    s.configure();
    s.wait_attached(&controller);
    let event = s.wait_pod_event(&pod.metadata.name, "Warning", FAILED_EVICTION);
    assert!(event.note.contains("Eviction failed"), "{}", event.note);
    assert!(event.note.contains("frozen"), "{}", event.note);
    // Retried with backoff, and still refused.
    eventually(TIMEOUT, "two retries of the refused eviction", || {
        let logs = controller.logs();
        (logs
            .lines()
            .filter(|l| l.contains("evicting pod") && l.contains("retrying in"))
            .count()
            >= 2)
            .then_some(())
    });
    assert!(s.current(&pod).is_some(), "evicted while refused");

    binding.delete();
    policy.delete();
    let allowed_at = Instant::now();
    let gone_at = s.wait_gone(&pod, &controller);
    eprintln!(
        "refused eviction: evicted {:?} after the refusal was lifted (the PDB still in place)",
        gone_at.duration_since(allowed_at)
    );
    s.wait_pod_event(&pod.metadata.name, "Normal", EVICTED);
}

/// An eviction names the pod it decided on by UID: a pod recreated under the same name in between is refused
/// by the API server (409 Conflict) and stays, and the pod it decided on is evicted (issue 22).
#[test]
fn an_eviction_only_removes_the_pod_with_the_uid_it_was_decided_for() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("evict-uid");
    cluster.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"app","namespace":"{ns}"}},
          "spec":{{"automountServiceAccountToken":false,
            "containers":[{{"name":"app","image":"{REGISTRY}/proj/repo/app:1"}}]}}}}"#
    ));
    let pod: Pod = admin.get(Some(&ns), "app").expect("the pod exists");
    let refused = admin
        .evict(&ns, "app", "00000000-0000-0000-0000-000000000000")
        .expect_err("another UID is refused");
    assert!(refused.is(Reason::Conflict), "{refused}");
    let still: Pod = admin.get(Some(&ns), "app").expect("the pod is still there");
    assert_eq!(still.metadata.uid, pod.metadata.uid);
    admin
        .evict(&ns, "app", &pod.metadata.uid)
        .expect("the pod's own UID is evicted");
    eventually(Duration::from_secs(30), "the evicted pod gone", || {
        admin.get::<Pod>(Some(&ns), "app").is_err().then_some(())
    });
}
