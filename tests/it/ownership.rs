//! Secrets are the controller's by its controller ownerReference alone: a foreign secret with the wanted name,
//! and labelled secrets without our ownerReference, are left untouched with a warning.

use std::collections::BTreeMap;

use image_pull_secrets_provisioner::kube::types::{ObjectMeta, Secret};
use image_pull_secrets_provisioner::kube::Client;

use crate::support::cluster;
use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_config, google_fake, member, GoogleFake, AUDIENCE, EMAIL, PROVIDER,
};
use crate::support::objects::{
    annotations, create_sa, get_sa, get_secret, pull_secret_names, wait_event, FAILED, LABEL,
    SECRET,
};

// ---------------------------------------------------------------------------------------------------------
// A secret the controller does not own (SPEC B1)

#[test]
fn a_foreign_secret_with_the_wanted_name_is_left_untouched_with_a_warning() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("foreign");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let mine = Secret {
        metadata: ObjectMeta {
            name: "imagepullsecret-app".into(),
            namespace: ns.clone(),
            ..Default::default()
        },
        type_: "Opaque".into(),
        data: [(
            "password".to_string(),
            crate::support::base64_encode(b"the user's own"),
        )]
        .into(),
        ..Default::default()
    };
    let before: Secret = admin.create(Some(&ns), &mine).unwrap();
    create_google_sa(&admin, &ns, "app");

    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        "not managed by this controller",
        &controller,
    );
    println!("warning: {note}");
    assert!(
        note.contains("imagepullsecret-app") && note.contains("left untouched"),
        "{note}"
    );
    let after: Secret = admin.get(Some(&ns), "imagepullsecret-app").unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.data, before.data);
    assert_eq!(after.type_, "Opaque");
    assert!(after.metadata.owner_references.is_empty() && after.metadata.labels.is_empty());
    assert!(
        get_sa(&admin, &ns, "app").image_pull_secrets.is_none(),
        "a secret it could not write is not attached"
    );
}

/// A user's secret: Opaque, labelled for `sa`, no ownerReference.
fn users_secret(admin: &Client, ns: &str, name: &str, sa: &str) -> Secret {
    let secret = Secret {
        metadata: ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            labels: [(LABEL.to_string(), sa.to_string())].into(),
            ..Default::default()
        },
        type_: "Opaque".into(),
        data: [(
            "token".to_string(),
            crate::support::base64_encode(b"the user's own"),
        )]
        .into(),
        ..Default::default()
    };
    admin
        .create(Some(ns), &secret)
        .expect("creating the user's secret")
}

#[test]
fn labelled_secrets_without_our_owner_reference_are_left_alone_with_a_warning() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("watch-foreign");
    let fake = google_fake(AUDIENCE, &[member(&ns, "app"), member(&ns, "plain")]);
    // Configured: one with our wanted name, one of another name attached by the user.
    let same_name = users_secret(&admin, &ns, SECRET, "app");
    let other_name = users_secret(&admin, &ns, "users-pull", "app");
    // Unconfigured: the same two cases.
    let plain_same = users_secret(&admin, &ns, "imagepullsecret-plain", "plain");
    let plain_other = users_secret(&admin, &ns, "plain-pull", "plain");
    create_sa(
        &admin,
        &ns,
        "app",
        annotations(&google_config(AUDIENCE, EMAIL)),
        &["users-pull", SECRET],
    );
    create_sa(
        &admin,
        &ns,
        "plain",
        BTreeMap::new(),
        &["plain-pull", "imagepullsecret-plain"],
    );
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();

    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        &format!("a secret named {SECRET} already exists"),
        &controller,
    );
    assert!(
        note.contains("not managed by this controller") && note.contains("left untouched"),
        "{note}"
    );
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        "secret users-pull carries",
        &controller,
    );
    assert!(note.contains("left alone"), "{note}");
    for name in ["plain-pull", "imagepullsecret-plain"] {
        let note = wait_event(
            &admin,
            &ns,
            "plain",
            "Warning",
            FAILED,
            &format!("secret {name} carries"),
            &controller,
        );
        assert!(note.contains("no controller ownerReference"), "{note}");
    }
    // Whatever else it might do, it has done once it is idle.
    controller.wait_idle();
    for before in [&same_name, &other_name, &plain_same, &plain_other] {
        let after = get_secret(&admin, &ns, &before.metadata.name).expect("still there");
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "{}",
            before.metadata.name
        );
        assert_eq!(after.data, before.data);
        assert!(after.metadata.owner_references.is_empty());
    }
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "app")),
        ["users-pull", SECRET]
    );
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "plain")),
        ["plain-pull", "imagepullsecret-plain"]
    );
    assert_eq!(
        fake.exchanges(),
        (0, 0),
        "a foreign name is known before any exchange"
    );
    assert!(
        !controller.logs().contains("forbidden"),
        "{}",
        controller.logs()
    );
}
