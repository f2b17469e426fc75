//! Tampered secrets are repaired: a deleted or edited secret is restored within a second (and secrets go with
//! their ServiceAccount); a removed label and an edited password are put back without a token exchange.

use std::time::{Duration, Instant};

use image_pull_secrets_provisioner::kube::types::{Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::Patch;
use serde_json::json;

use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_fake, member, GoogleFake, AUDIENCE, EMAIL, PROVIDER, REGISTRY,
};
use crate::support::objects::{
    docker_config, get_sa, get_secret, pull_secret_names, set_config, wait_attached, LABEL,
    PATIENCE, PREFIX, PRINCIPAL, SECRET,
};
use crate::support::{cluster, eventually, measure, poll, PROMPT};

// ---------------------------------------------------------------------------------------------------------
// Repair within a second; garbage collection with the ServiceAccount (SPEC B3, A2)

#[test]
fn a_deleted_or_edited_secret_is_restored_within_a_second_and_secrets_go_with_their_service_account(
) {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("restore");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    create_google_sa(&admin, &ns, "app");
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let original = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    // Let the run caused by the controller's own writes finish, so the measurement starts from quiet.
    controller.wait_idle();

    let mut latencies = Vec::new();
    let mut uid = original.metadata.uid.clone();
    for round in 0..3 {
        let started = Instant::now();
        admin
            .delete::<Secret>(Some(&ns), "imagepullsecret-app", None)
            .expect("deleting the secret");
        let restored = poll(PATIENCE, Duration::from_millis(10), || {
            get_secret(&admin, &ns, "imagepullsecret-app").filter(|s| s.metadata.uid != uid)
        })
        .unwrap_or_else(|| panic!("not restored:\n{}", controller.logs()));
        let latency = started.elapsed();
        println!("round {round}: deleted secret restored after {latency:?}");
        latencies.push(latency);
        assert_eq!(restored.metadata.annotations[PRINCIPAL], EMAIL);
        assert!(docker_config(&restored)["auths"][REGISTRY]["password"].is_string());
        uid = restored.metadata.uid;
        controller.wait_idle();
    }
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "app")),
        vec!["imagepullsecret-app"]
    );

    // An edit that breaks the content is repaired too.
    let mut edited = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    edited.data.insert(
        ".dockerconfigjson".into(),
        crate::support::base64_encode(b"{}"),
    );
    let started = Instant::now();
    let written: Secret = admin
        .replace(Some(&ns), "imagepullsecret-app", &edited)
        .unwrap();
    let now = poll(PATIENCE, Duration::from_millis(10), || {
        get_secret(&admin, &ns, "imagepullsecret-app")
            .filter(|now| now.metadata.resource_version != written.metadata.resource_version)
    })
    .unwrap_or_else(|| panic!("not repaired:\n{}", controller.logs()));
    assert!(docker_config(&now)["auths"][REGISTRY]["password"].is_string());
    let repair = started.elapsed();
    println!("edited secret repaired after {repair:?}");
    latencies.push(repair);

    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!("restore latencies: {latencies:?}; worst {worst:?}");
    // The requirement is about a second; 2 s leaves room for a loaded test machine.
    assert!(
        worst <= Duration::from_secs(2),
        "restore took {worst:?}:\n{}",
        controller.logs()
    );

    // The ServiceAccount deleted: the garbage collector (kube-controller-manager) removes its secret. The
    // controller is stopped first, so nothing but the ownerReference can be what removes it.
    controller.kill();
    admin
        .delete::<ServiceAccount>(Some(&ns), "app", None)
        .unwrap();
    let started = Instant::now();
    eventually(PATIENCE, "the secret to be garbage-collected", || {
        get_secret(&admin, &ns, "imagepullsecret-app")
            .is_none()
            .then_some(())
    });
    println!(
        "secret garbage-collected {:?} after its ServiceAccount was deleted",
        started.elapsed()
    );
}

#[test]
fn a_removed_label_and_an_edited_password_are_repaired_within_a_second_without_an_exchange() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("watch-tamper");
    let fake = google_fake(AUDIENCE, &[member(&ns, "app")]);
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    create_google_sa(&admin, &ns, "app");
    wait_attached(&admin, &ns, "app", &[SECRET], &controller);
    controller.wait_idle();
    let written = get_secret(&admin, &ns, SECRET).expect("the secret");
    let exchanges_before = fake.exchanges();

    // A person (or a policy engine) removes the label.
    let patch = json!({"metadata": {"labels": {LABEL: null}}});
    let unlabelled: Secret = admin
        .patch(Some(&ns), SECRET, &Patch::Merge(patch))
        .expect("removing the label");
    assert!(!unlabelled.metadata.labels.contains_key(LABEL));
    let relabel = measure("removed label put back", &controller, || {
        get_secret(&admin, &ns, SECRET)
            .is_some_and(|s| s.metadata.labels.get(LABEL).map(String::as_str) == Some("app"))
    });
    let relabelled = get_secret(&admin, &ns, SECRET).unwrap();
    assert_eq!(relabelled.data, written.data, "relabelled, not rewritten");
    assert_eq!(relabelled.metadata.uid, written.metadata.uid);

    // Someone edits the password; `auth` still holds the credential as written.
    let mut edited = relabelled.clone();
    let mut config = docker_config(&edited);
    let original_password = config["auths"][REGISTRY]["password"].clone();
    config["auths"][REGISTRY]["password"] = json!("edited-by-hand");
    set_config(&mut edited, &config);
    let edited: Secret = admin
        .replace(Some(&ns), SECRET, &edited)
        .expect("editing the password");
    let rewrite = measure("edited password rewritten", &controller, || {
        get_secret(&admin, &ns, SECRET).is_some_and(|s| {
            s.metadata.resource_version != edited.metadata.resource_version
                && docker_config(&s)["auths"][REGISTRY]["password"] == original_password
        })
    });
    let repaired = get_secret(&admin, &ns, SECRET).unwrap();
    assert_eq!(repaired.data, written.data, "the content as it was written");
    assert_eq!(
        repaired.metadata.annotations[&format!("{PREFIX}expires-at")],
        written.metadata.annotations[&format!("{PREFIX}expires-at")],
        "the same credential"
    );
    // Whatever else the two writes set off has run before the exchanges are counted.
    controller.wait_idle();
    assert_eq!(
        fake.exchanges(),
        exchanges_before,
        "neither repair exchanged a token:\n{}",
        controller.logs()
    );
    assert_eq!(pull_secret_names(&get_sa(&admin, &ns, "app")), [SECRET]);
    for (what, took) in [("relabel", relabel), ("rewrite", rewrite)] {
        assert!(
            took <= PROMPT,
            "{what} took {took:?}:\n{}",
            controller.logs()
        );
    }
    assert!(
        !controller.logs().contains("created concurrently"),
        "{}",
        controller.logs()
    );
}
