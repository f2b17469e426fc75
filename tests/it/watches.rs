//! What the watches alone deliver is acted on within a second (issue 16): an annotation edit, a deleted secret,
//! a pod that starts failing to pull. The real binary, as the manifests' ServiceAccount, against the real
//! apiserver and the Google stand-in.
//!
//! The controller reconciles from its caches; these tests change one thing each, the way a person or a policy
//! engine would, and measure until the controller's answer is visible. The requirement is about a second; the
//! assertions allow 2 s for a loaded machine ([`PROMPT`]).

use std::collections::BTreeMap;

use image_pull_secrets_provisioner::kube::types::{Pod, Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::Patch;
use serde_json::json;

use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_config, google_fake, member, AUDIENCE, EMAIL, REGISTRY,
};
use crate::support::objects::{
    annotations, create_sa, events_about, get_sa, get_secret, pull_secret_names, wait_attached,
    FAILED_EVICTION, PATIENCE, PREFIX, SECRET,
};
use crate::support::{cluster, eventually, measure, Cluster, PROMPT};

#[test]
fn an_annotation_edit_and_a_deleted_secret_are_acted_on_within_a_second() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("watch-edit");
    let fake = google_fake(AUDIENCE, &[member(&ns, "app")]);
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    create_google_sa(&admin, &ns, "app");
    wait_attached(&admin, &ns, "app", &[SECRET], &controller);
    // The run caused by the controller's own writes is over: the measurement starts from quiet.
    controller.wait_idle();

    let patch = json!({"metadata": {"annotations": {format!("{PREFIX}secret-name"): "renamed"}}});
    admin
        .patch::<ServiceAccount>(Some(&ns), "app", &Patch::Merge(patch))
        .expect("annotating");
    let edit = measure(
        "annotation edit to the renamed secret attached",
        &controller,
        || pull_secret_names(&get_sa(&admin, &ns, "app")) == ["renamed"],
    );
    controller.wait_idle();

    let before = get_secret(&admin, &ns, "renamed").expect("the renamed secret");
    admin
        .delete::<Secret>(Some(&ns), "renamed", None)
        .expect("deleting the secret");
    let restore = measure("deleted secret restored", &controller, || {
        get_secret(&admin, &ns, "renamed").is_some_and(|s| s.metadata.uid != before.metadata.uid)
    });
    for (what, took) in [("annotation edit", edit), ("deleted secret", restore)] {
        assert!(
            took <= PROMPT,
            "{what} took {took:?}:\n{}",
            controller.logs()
        );
    }
}

/// A pod of `sa` without any imagePullSecrets, created before the ServiceAccount is configured.
fn early_pod(cluster: &Cluster, ns: &str, name: &str, sa: &str) -> Pod {
    cluster.apply(&format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"{ns}"}},
          "spec":{{"serviceAccountName":"{sa}","automountServiceAccountToken":false,
            "containers":[{{"name":"app","image":"{REGISTRY}/proj/repo/app:1"}}]}}}}"#
    ));
    cluster.admin().get(Some(ns), name).expect("the pod exists")
}

#[test]
fn a_pod_that_starts_failing_to_pull_is_acted_on_within_a_second() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("watch-pod");
    let fake = google_fake(AUDIENCE, &[member(&ns, "app")]);
    create_sa(&admin, &ns, "app", BTreeMap::new(), &[]);
    eventually(
        PATIENCE,
        "the serviceaccount to be visible to admission",
        || admin.get::<ServiceAccount>(Some(&ns), "app").ok(),
    );
    let pod = early_pod(cluster, &ns, "early", "app");
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let patch = json!({"metadata": {"annotations": annotations(&google_config(AUDIENCE, EMAIL))}});
    admin
        .patch::<ServiceAccount>(Some(&ns), "app", &Patch::Merge(patch))
        .expect("configuring");
    wait_attached(&admin, &ns, "app", &[SECRET], &controller);
    eventually(
        PATIENCE,
        "the controller to look at the pending pod",
        || {
            controller
                .logs()
                .contains(
                    "looked at 1 pending pods: 0 stuck without the secrets, 1 to look at again",
                )
                .then_some(())
        },
    );
    controller.wait_idle();

    // The kubelet's report of a failed pull, delivered only by the pod watch.
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "app",
        "image": pod.spec.containers[0].image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}}]}});
    cluster.kubectl(&[
        "-n",
        &ns,
        "patch",
        "pod",
        "early",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
    // No controller would recreate this pod: the answer is a Warning on it.
    let took = measure("failing pod answered", &controller, || {
        events_about(&admin, &ns, "early")
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == FAILED_EVICTION)
    });
    assert!(took <= PROMPT, "took {took:?}:\n{}", controller.logs());
}
