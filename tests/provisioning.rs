//! The provisioning controller end to end: the real binary, as the manifests' ServiceAccount, against the real
//! apiserver (with the garbage collector), moto and the Google stand-in.
//!
//! Each test has its own namespace, its own controller restricted to it and, for Google, its own fake; the
//! shared moto is told apart by role session names (`NAMESPACE.NAME`). Waits poll with generous timeouts; where
//! a time is the requirement itself (restore latency, refresh time, prompt service), it is measured, printed and
//! asserted.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use image_pull_secrets_provisioner::cloud::aws::role_session_name;
use image_pull_secrets_provisioner::kube::types::{
    LocalObjectReference, ObjectMeta, OwnerReference, Secret, ServiceAccount,
};
use image_pull_secrets_provisioner::kube::{Client, Patch};
use serde_json::{json, Value};
use support::controller::Controller;
use support::google::{member, GoogleFake};
use support::moto::{moto, PULLER_ROLE};
use support::objects::{
    docker_config, events_about, secret_names_in, time_annotation, wait_event, PATIENCE,
};
use support::{cluster, eventually};

const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";
const EMAIL_2: &str = "second@proj.iam.gserviceaccount.com";
const AUDIENCE: &str = "ipsp-test";
const REGISTRY: &str = "asia-docker.pkg.dev";
const ECR_REGISTRY: &str = support::moto::REGISTRY;

const PREFIX: &str = "imagepullsecrets.preferred.jp/";
const LABEL: &str = "imagepullsecrets.preferred.jp/service-account";
const PRINCIPAL: &str = "imagepullsecrets.preferred.jp/principal";
const EXPIRES_AT: &str = "imagepullsecrets.preferred.jp/expires-at";
const OBTAINED_AT: &str = "imagepullsecrets.preferred.jp/obtained-at";
const PROVISIONED: &str = "ProvisionedImagePullSecret";
const FAILED: &str = "FailedProvisioningImagePullSecret";
const DECOMMISSIONED: &str = "DecommissionedImagePullSecret";

// ---------------------------------------------------------------------------------------------------------
// Helpers

/// `(key without prefix, value)` pairs → the annotation map.
fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect()
}

fn google_config(emails: &str) -> Pairs {
    vec![
        ("registry", REGISTRY.to_string()),
        ("audience", AUDIENCE.to_string()),
        (
            "googlecloud-workload-identity-provider",
            PROVIDER.to_string(),
        ),
        ("googlecloud-service-account-email", emails.to_string()),
    ]
}

fn aws_config(roles: &str) -> Pairs {
    vec![
        ("registry", ECR_REGISTRY.to_string()),
        ("audience", AUDIENCE.to_string()),
        ("aws-role-arn", roles.to_string()),
    ]
}

fn borrowed<'a>(pairs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    pairs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
    names
        .iter()
        .map(|n| LocalObjectReference {
            name: n.to_string(),
        })
        .collect()
}

/// Creates a ServiceAccount with annotations and `.imagePullSecrets` as given.
fn create_sa(
    admin: &Client,
    ns: &str,
    name: &str,
    pairs: &[(&str, &str)],
    pull_secrets: &[&str],
) -> ServiceAccount {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: ns.to_string(),
            annotations: annotations(pairs),
            ..Default::default()
        },
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| refs(pull_secrets)),
        ..Default::default()
    };
    admin
        .create(Some(ns), &sa)
        .unwrap_or_else(|e| panic!("creating serviceaccount {ns}/{name}: {e}"))
}

/// Sets (Some) or removes (None) annotations with a merge patch.
fn annotate(admin: &Client, ns: &str, name: &str, changes: &[(&str, Option<&str>)]) {
    let map: serde_json::Map<String, Value> = changes
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.map_or(Value::Null, |v| json!(v))))
        .collect();
    admin
        .patch::<ServiceAccount>(
            Some(ns),
            name,
            &Patch::Merge(json!({"metadata": {"annotations": map}})),
        )
        .unwrap_or_else(|e| panic!("annotating {ns}/{name}: {e}"));
}

fn get_sa(admin: &Client, ns: &str, name: &str) -> ServiceAccount {
    admin
        .get(Some(ns), name)
        .unwrap_or_else(|e| panic!("reading serviceaccount {ns}/{name}: {e}"))
}

fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

/// Waits until `.imagePullSecrets` is exactly `want`, in order.
fn wait_pull_secrets(
    admin: &Client,
    ns: &str,
    name: &str,
    want: &[&str],
    controller: &Controller,
) -> ServiceAccount {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let sa = get_sa(admin, ns, name);
        if pull_secret_names(&sa) == want {
            return sa;
        }
        if Instant::now() > deadline {
            panic!(
                "{ns}/{name}: imagePullSecrets {:?}, want {want:?}\n--- controller log ---\n{}",
                pull_secret_names(&sa),
                controller.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get_secret(admin: &Client, ns: &str, name: &str) -> Option<Secret> {
    admin.get(Some(ns), name).ok()
}

/// Checks the format the original controller wrote: RFC 3339, UTC (`Z`), whole seconds.
fn assert_rfc3339_utc_seconds(text: &str) {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "{text:?} is not RFC 3339 UTC with second precision"
    );
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
}

fn count_events(events: &[(String, String, String)], type_: &str, reason: &str) -> usize {
    events
        .iter()
        .filter(|(t, r, _)| t == type_ && r == reason)
        .count()
}

/// Waits until the controller has logged a line containing `text`.
fn wait_log(controller: &Controller, text: &str) {
    eventually(PATIENCE, &format!("the controller to log {text:?}"), || {
        controller.logs().contains(text).then_some(())
    });
}

/// The Google fake's counter `name`.
fn fake_count(fake: &GoogleFake, name: &str) -> u64 {
    fake.stats()[name].as_u64().unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------------
// 1. The basic contract (SPEC A2)

#[test]
fn an_annotated_service_account_gets_its_secret_attached_with_an_event() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("provision");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    cluster.kubectl(&["-n", &ns, "create", "serviceaccount", "app"]);
    cluster.kubectl(&["-n", &ns, "create", "serviceaccount", "plain"]);
    let asked_at = Utc::now();
    cluster.kubectl(&[
        "-n",
        &ns,
        "annotate",
        "serviceaccount",
        "app",
        &format!("imagepullsecrets.preferred.jp/registry={REGISTRY}"),
        &format!("imagepullsecrets.preferred.jp/audience={AUDIENCE}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider={PROVIDER}"),
        &format!("imagepullsecrets.preferred.jp/googlecloud-service-account-email={EMAIL}"),
    ]);
    let sa = wait_pull_secrets(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let secret: Secret = admin.get(Some(&ns), "imagepullsecret-app").unwrap();

    // Type, label, annotations, ownerReference.
    assert_eq!(secret.type_, "kubernetes.io/dockerconfigjson");
    assert_eq!(secret.metadata.labels[LABEL], "app");
    assert_eq!(secret.metadata.annotations[PRINCIPAL], EMAIL);
    let expires_text = &secret.metadata.annotations[EXPIRES_AT];
    assert_rfc3339_utc_seconds(expires_text);
    let expires_at = time_annotation(&secret, EXPIRES_AT);
    // The fake grants Google's default hour.
    let lifetime = (expires_at - asked_at).num_seconds();
    assert!(
        (3500..=3700).contains(&lifetime),
        "expires-at {expires_text} is {lifetime} s after the request"
    );
    assert_eq!(secret.metadata.owner_references.len(), 1);
    let owner = &secret.metadata.owner_references[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        (
            "v1",
            "ServiceAccount",
            "app",
            sa.metadata.uid.as_str(),
            Some(true)
        )
    );

    // Exact content: one registry, username, password and auth = base64(username:password), nothing else.
    assert_eq!(
        secret.data.keys().collect::<Vec<_>>(),
        vec![".dockerconfigjson"]
    );
    let config = docker_config(&secret);
    let entry = &config["auths"][REGISTRY];
    let password = entry["password"].as_str().expect("a password").to_string();
    assert!(
        password.starts_with("ya29."),
        "the password is the fake's access token"
    );
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("oauth2accesstoken:{password}"));
    assert_eq!(
        config,
        json!({"auths": {REGISTRY: {"username": "oauth2accesstoken", "password": password, "auth": auth}}})
    );

    // A Normal event on the ServiceAccount.
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Normal",
        PROVISIONED,
        "imagepullsecret-app",
        &controller,
    );
    assert!(
        note.contains(EMAIL) && note.contains(expires_text.as_str()),
        "{note}"
    );
    let described = cluster.kubectl(&["-n", &ns, "describe", "serviceaccount", "app"]);
    assert!(
        described.contains(PROVISIONED),
        "kubectl describe shows the event: {described}"
    );

    // The unannotated one got nothing: no pull secrets, no secret, no event, not even a look.
    let plain = get_sa(&admin, &ns, "plain");
    assert!(plain.image_pull_secrets.is_none());
    assert_eq!(secret_names_in(&admin, &ns), vec!["imagepullsecret-app"]);
    assert!(events_about(&admin, &ns, "plain").is_empty());
    assert!(
        !controller.logs().contains(&format!("{ns}/plain")),
        "{}",
        controller.logs()
    );
    assert_eq!(
        (
            fake_count(&fake, "sts_calls"),
            fake_count(&fake, "iam_calls")
        ),
        (1, 1)
    );
}

// ---------------------------------------------------------------------------------------------------------
// 2. Several principals: positional names, reordering, removal, renaming, deconfiguration (SPEC A1, A2)

/// The whole life of a two-principal ServiceAccount `app`, whose `.imagePullSecrets` starts with a user's
/// entry that must survive everything. `config` builds the annotations for a list of principals,
/// `principal_key` is the annotation that lists them, `p0` and `p1` are the two principals.
fn several_principals_scenario(
    admin: &Client,
    ns: &str,
    controller: &Controller,
    config: impl Fn(&str) -> Pairs,
    principal_key: &str,
    p0: &str,
    p1: &str,
) {
    // Two principals, with spaces around them (trimmed).
    create_sa(
        admin,
        ns,
        "app",
        &borrowed(&config(&format!(" {p0} , {p1} "))),
        &["users-own"],
    );
    wait_pull_secrets(
        admin,
        ns,
        "app",
        &["users-own", "imagepullsecret-app", "imagepullsecret-app-1"],
        controller,
    );
    let base = get_secret(admin, ns, "imagepullsecret-app").unwrap();
    let second = get_secret(admin, ns, "imagepullsecret-app-1").unwrap();
    assert_eq!(base.metadata.annotations[PRINCIPAL], p0);
    assert_eq!(second.metadata.annotations[PRINCIPAL], p1);
    assert_eq!(
        secret_names_in(admin, ns),
        vec!["imagepullsecret-app", "imagepullsecret-app-1"]
    );

    // Reordered: the same names are re-provisioned in place, their principals swapped.
    annotate(
        admin,
        ns,
        "app",
        &[(principal_key, Some(&format!("{p1},{p0}")))],
    );
    eventually(PATIENCE, "the principals to swap", || {
        let base = get_secret(admin, ns, "imagepullsecret-app")?;
        let second = get_secret(admin, ns, "imagepullsecret-app-1")?;
        (base.metadata.annotations[PRINCIPAL] == p1 && second.metadata.annotations[PRINCIPAL] == p0)
            .then_some(())
    });
    assert_eq!(
        get_secret(admin, ns, "imagepullsecret-app")
            .unwrap()
            .metadata
            .uid,
        base.metadata.uid
    );
    assert_eq!(
        get_secret(admin, ns, "imagepullsecret-app-1")
            .unwrap()
            .metadata
            .uid,
        second.metadata.uid
    );
    assert_eq!(
        secret_names_in(admin, ns),
        vec!["imagepullsecret-app", "imagepullsecret-app-1"]
    );
    assert_eq!(
        pull_secret_names(&get_sa(admin, ns, "app")),
        vec!["users-own", "imagepullsecret-app", "imagepullsecret-app-1"]
    );

    // One principal removed: `-1` is detached, then deleted, with a Normal event.
    annotate(admin, ns, "app", &[(principal_key, Some(p1))]);
    wait_pull_secrets(
        admin,
        ns,
        "app",
        &["users-own", "imagepullsecret-app"],
        controller,
    );
    eventually(PATIENCE, "imagepullsecret-app-1 to be deleted", || {
        get_secret(admin, ns, "imagepullsecret-app-1")
            .is_none()
            .then_some(())
    });
    wait_event(
        admin,
        ns,
        "app",
        "Normal",
        DECOMMISSIONED,
        "imagepullsecret-app-1",
        controller,
    );
    assert_eq!(
        get_secret(admin, ns, "imagepullsecret-app")
            .unwrap()
            .metadata
            .annotations[PRINCIPAL],
        p1
    );

    // A new secret name: the new secret is created and attached, the old one detached and deleted.
    annotate(admin, ns, "app", &[("secret-name", Some("renamed"))]);
    wait_pull_secrets(admin, ns, "app", &["users-own", "renamed"], controller);
    eventually(PATIENCE, "the old secret to be deleted", || {
        (secret_names_in(admin, ns) == ["renamed"]).then_some(())
    });
    let renamed = get_secret(admin, ns, "renamed").unwrap();
    assert_eq!(renamed.metadata.annotations[PRINCIPAL], p1);
    assert_eq!(renamed.metadata.labels[LABEL], "app");
    wait_event(
        admin,
        ns,
        "app",
        "Normal",
        DECOMMISSIONED,
        "imagepullsecret-app",
        controller,
    );

    // The configuration removed: everything provisioned goes; the user's entry stays.
    let all: Vec<(&str, Option<&str>)> = [
        "registry",
        "audience",
        "aws-role-arn",
        "googlecloud-workload-identity-provider",
        "googlecloud-service-account-email",
        "secret-name",
    ]
    .iter()
    .map(|k| (*k, None))
    .collect();
    annotate(admin, ns, "app", &all);
    wait_pull_secrets(admin, ns, "app", &["users-own"], controller);
    eventually(PATIENCE, "every provisioned secret to be deleted", || {
        secret_names_in(admin, ns).is_empty().then_some(())
    });
    wait_event(
        admin,
        ns,
        "app",
        "Normal",
        DECOMMISSIONED,
        "renamed",
        controller,
    );
    assert_eq!(
        count_events(&events_about(admin, ns, "app"), "Warning", FAILED),
        0,
        "{:#?}",
        events_about(admin, ns, "app")
    );
}

#[test]
fn several_google_principals_get_positional_secrets_that_follow_the_annotations() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("multi-google");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .allow(EMAIL_2, &member(&ns, "app"))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    several_principals_scenario(
        &admin,
        &ns,
        &controller,
        google_config,
        "googlecloud-service-account-email",
        EMAIL,
        EMAIL_2,
    );
}

#[test]
fn several_aws_principals_get_positional_secrets_that_follow_the_annotations() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("multi-aws");
    let moto = moto();
    let second_role = moto.create_role(&format!("puller-{ns}"), &["ecr:GetAuthorizationToken"]);
    let controller = Controller::builder(&ns).aws(&moto.endpoint).start();
    several_principals_scenario(
        &admin,
        &ns,
        &controller,
        aws_config,
        "aws-role-arn",
        PULLER_ROLE,
        &second_role,
    );
    // Each provisioning of each role was one STS session for `NS.app`, and each signed one ECR call.
    let session = role_session_name(&ns, "app");
    let (sts, ecr) = (moto.sts_calls(&session), moto.ecr_calls(&session));
    println!("STS calls for {session}: {sts}, ECR calls: {ecr}");
    assert!(sts >= 4 && sts == ecr, "sts {sts}, ecr {ecr}");
}

// ---------------------------------------------------------------------------------------------------------
// 3. A concurrent writer of .imagePullSecrets (SPEC B1)

#[test]
fn a_concurrent_writers_pull_secret_survives_a_forced_conflict() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("conflict");
    // Every Google answer takes 2 s: the controller holds the ServiceAccount it read for at least 4 s before
    // it writes, a window the test uses to change the ServiceAccount behind its back.
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .arg("--latency-ms")
        .arg("2000")
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    create_sa(
        &admin,
        &ns,
        "app",
        &borrowed(&google_config(EMAIL)),
        &["users-first"],
    );

    // The controller has read the ServiceAccount and decided to provision: it is now waiting for Google.
    wait_log(
        &controller,
        &format!("{ns}/app: secret imagepullsecret-app is due"),
    );
    let mut sa = get_sa(&admin, &ns, "app");
    sa.image_pull_secrets
        .get_or_insert_with(Vec::new)
        .push(LocalObjectReference {
            name: "users-second".into(),
        });
    admin
        .replace(Some(&ns), "app", &sa)
        .expect("the user's update");
    assert_eq!(
        fake_count(&fake, "iam_calls"),
        0,
        "the user's update must land before the controller's write"
    );

    let sa = wait_pull_secrets(
        &admin,
        &ns,
        "app",
        &["users-first", "users-second", "imagepullsecret-app"],
        &controller,
    );
    let logs = controller.logs();
    assert!(
        logs.contains(&format!(
            "{ns}/app: serviceaccount changed while updating imagePullSecrets; reading it again"
        )),
        "the controller's update did not conflict:\n{logs}"
    );
    // It stays that way: the re-run triggered by the user's write changes nothing.
    std::thread::sleep(Duration::from_secs(2));
    let later = get_sa(&admin, &ns, "app");
    assert_eq!(
        pull_secret_names(&later),
        vec!["users-first", "users-second", "imagepullsecret-app"]
    );
    assert_eq!(
        later.metadata.resource_version,
        sa.metadata.resource_version
    );
}

// ---------------------------------------------------------------------------------------------------------
// 4. A secret the controller does not own (SPEC B1)

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
            support::base64_encode(b"the user's own"),
        )]
        .into(),
        ..Default::default()
    };
    let before: Secret = admin.create(Some(&ns), &mine).unwrap();
    create_sa(&admin, &ns, "app", &borrowed(&google_config(EMAIL)), &[]);

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

// ---------------------------------------------------------------------------------------------------------
// 5. Repair within a second; garbage collection with the ServiceAccount (SPEC B3, A2)

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
    create_sa(&admin, &ns, "app", &borrowed(&google_config(EMAIL)), &[]);
    wait_pull_secrets(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let original = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    // Let the run caused by the controller's own writes finish, so the measurement starts from quiet.
    std::thread::sleep(Duration::from_secs(1));

    let mut latencies = Vec::new();
    let mut uid = original.metadata.uid.clone();
    for round in 0..3 {
        let started = Instant::now();
        admin
            .delete::<Secret>(Some(&ns), "imagepullsecret-app", None)
            .expect("deleting the secret");
        let restored = loop {
            match get_secret(&admin, &ns, "imagepullsecret-app") {
                Some(s) if s.metadata.uid != uid => break s,
                _ => {}
            }
            assert!(
                started.elapsed() < PATIENCE,
                "not restored:\n{}",
                controller.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let latency = started.elapsed();
        println!("round {round}: deleted secret restored after {latency:?}");
        latencies.push(latency);
        assert_eq!(restored.metadata.annotations[PRINCIPAL], EMAIL);
        assert!(docker_config(&restored)["auths"][REGISTRY]["password"].is_string());
        uid = restored.metadata.uid;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "app")),
        vec!["imagepullsecret-app"]
    );

    // An edit that breaks the content is repaired too.
    let mut edited = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    edited
        .data
        .insert(".dockerconfigjson".into(), support::base64_encode(b"{}"));
    let started = Instant::now();
    let written: Secret = admin
        .replace(Some(&ns), "imagepullsecret-app", &edited)
        .unwrap();
    loop {
        let now = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
        if now.metadata.resource_version != written.metadata.resource_version {
            assert!(docker_config(&now)["auths"][REGISTRY]["password"].is_string());
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "not repaired:\n{}",
            controller.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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

// ---------------------------------------------------------------------------------------------------------
// 6. Refresh timing (SPEC B2)

#[test]
fn a_short_lived_google_credential_is_refreshed_at_three_quarters_of_its_lifetime() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("refresh");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .arg("--token-lifetime")
        .arg("40")
        .start();
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .args(&["--min-refresh-interval", "5s"])
        .start();
    create_sa(&admin, &ns, "app", &borrowed(&google_config(EMAIL)), &[]);
    wait_pull_secrets(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let seen_at = Instant::now();
    let first = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    let (obtained, expires) = (
        time_annotation(&first, OBTAINED_AT),
        time_annotation(&first, EXPIRES_AT),
    );
    let lifetime = (expires - obtained).num_seconds();
    assert!((39..=41).contains(&lifetime), "lifetime {lifetime} s");

    let refreshed = eventually(
        Duration::from_secs(90),
        "the secret to be refreshed",
        || {
            let now = get_secret(&admin, &ns, "imagepullsecret-app")?;
            (now.metadata.annotations[EXPIRES_AT] != first.metadata.annotations[EXPIRES_AT])
                .then_some(now)
        },
    );
    let observed = seen_at.elapsed();
    let refreshed_after = (time_annotation(&refreshed, OBTAINED_AT) - obtained).num_seconds();
    println!(
        "credential of {lifetime} s refreshed {refreshed_after} s after it was obtained (observed {observed:?} after first seen)"
    );
    // Three quarters of 40 s is 30 s, brought forward by up to 10% jitter; whole-second annotations.
    assert!(
        (25..=35).contains(&refreshed_after),
        "refreshed after {refreshed_after} s:\n{}",
        controller.logs()
    );
    assert!(
        time_annotation(&refreshed, OBTAINED_AT) < expires,
        "refreshed before the old credential expired"
    );
    assert!(observed < Duration::from_secs(40), "observed {observed:?}");
    assert_eq!(
        refreshed.metadata.uid, first.metadata.uid,
        "refreshed in place"
    );
    // Exactly one refresh so far: one exchange for the first secret, one for the refresh.
    assert_eq!(fake_count(&fake, "iam_ok"), 2, "{}", fake.log());
}

#[test]
fn already_expired_ecr_tokens_do_not_cause_a_hot_loop() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("nohotloop");
    let moto = moto();
    let controller = Controller::builder(&ns).aws(&moto.endpoint).start();
    let session = role_session_name(&ns, "app");
    let started = Instant::now();
    create_sa(&admin, &ns, "app", &borrowed(&aws_config(PULLER_ROLE)), &[]);
    wait_pull_secrets(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let secret = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    assert!(
        time_annotation(&secret, EXPIRES_AT) < Utc::now(),
        "moto's ECR tokens come back already expired"
    );
    let config = docker_config(&secret);
    assert_eq!(config["auths"][ECR_REGISTRY]["username"], "AWS");
    let remaining = Duration::from_secs(30).saturating_sub(started.elapsed());
    std::thread::sleep(remaining);
    let sts = moto.sts_calls(&session);
    println!(
        "STS AssumeRoleWithWebIdentity calls for {session} in {:?}: {sts}",
        started.elapsed()
    );
    assert!(
        (1..=3).contains(&sts),
        "{sts} STS calls in 30 s:\n{}",
        controller.logs()
    );
}

// ---------------------------------------------------------------------------------------------------------
// 7. Bad input (SPEC B4)

/// Annotations as `(key without prefix, value)` pairs.
type Pairs = Vec<(&'static str, String)>;

/// Bad configurations: ServiceAccount name, annotations, and the precise text the Warning event must carry.
fn bad_configurations() -> Vec<(&'static str, Pairs, String)> {
    let role = PULLER_ROLE;
    let ecr = ECR_REGISTRY;
    let aws = |registry: &str, roles: &str| {
        vec![
            ("registry", registry.to_string()),
            ("audience", "aud".to_string()),
            ("aws-role-arn", roles.to_string()),
        ]
    };
    let google = |registry: &str, provider: &str, emails: &str| {
        vec![
            ("registry", registry.to_string()),
            ("audience", "aud".to_string()),
            (
                "googlecloud-workload-identity-provider",
                provider.to_string(),
            ),
            ("googlecloud-service-account-email", emails.to_string()),
        ]
    };
    let azure = |registry: &str, clients: &str, tenant: &str| {
        vec![
            ("registry", registry.to_string()),
            ("audience", "api://AzureADTokenExchange".to_string()),
            ("azure-client-id", clients.to_string()),
            ("azure-tenant-id", tenant.to_string()),
        ]
    };
    let with = |mut base: Vec<(&'static str, String)>, key: &'static str, value: &str| {
        base.retain(|(k, _)| *k != key);
        base.push((key, value.to_string()));
        base
    };
    let (acr, client, tenant) = (
        "myregistry.azurecr.io",
        "11111111-2222-3333-4444-555555555555",
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
    );
    let arn = "annotation imagepullsecrets.preferred.jp/aws-role-arn: ";
    let reg = "annotation imagepullsecrets.preferred.jp/registry: ";
    let name = "annotation imagepullsecrets.preferred.jp/secret-name: ";
    let wip = "annotation imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider: ";
    let mail = "annotation imagepullsecrets.preferred.jp/googlecloud-service-account-email: ";
    let dns = "is not a valid secret name: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit";
    let long = "x".repeat(254);
    vec![
        ("missing-audience", vec![("registry", ecr.into()), ("aws-role-arn", role.into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/audience".into()),
        ("missing-registry", vec![("audience", "aud".into()), ("aws-role-arn", role.into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/registry".into()),
        ("missing-principal", vec![("registry", ecr.into()), ("audience", "aud".into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/aws-role-arn (or both Google annotations, or imagepullsecrets.preferred.jp/azure-client-id)".into()),
        ("missing-email", vec![("registry", REGISTRY.into()), ("audience", "aud".into()), ("googlecloud-workload-identity-provider", PROVIDER.into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/googlecloud-service-account-email".into()),
        ("missing-provider", vec![("registry", REGISTRY.into()), ("audience", "aud".into()), ("googlecloud-service-account-email", EMAIL.into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider".into()),
        ("only-secret-name", vec![("secret-name", "x".into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/registry, imagepullsecrets.preferred.jp/audience, imagepullsecrets.preferred.jp/aws-role-arn (or both Google annotations, or imagepullsecrets.preferred.jp/azure-client-id)".into()),
        ("arn-trailing-comma", aws(ecr, &format!("{role},")),
            format!("{arn}item 2 of \"{role},\" is empty; remove the extra comma")),
        ("arn-leading-comma", aws(ecr, &format!(",{role}")),
            format!("{arn}item 1 of \",{role}\" is empty; remove the extra comma")),
        ("arn-empty-middle", aws(ecr, &format!("{role} , ,arn:aws:iam::123456789012:role/other")),
            format!("{arn}item 2 of \"{role} , ,arn:aws:iam::123456789012:role/other\" is empty; remove the extra comma")),
        ("arn-listed-twice", aws(ecr, &format!("{role}, {role}")),
            format!("{arn}\"{role}\" is listed twice")),
        ("arn-short-account", aws(ecr, "arn:aws:iam::12345:role/x"),
            format!("{arn}role ARN \"arn:aws:iam::12345:role/x\": account ID \"12345\" must be 12 digits")),
        ("arn-not-an-arn", aws(ecr, "role/puller"),
            format!("{arn}role ARN \"role/puller\" is malformed (expected arn:aws:iam::ACCOUNT_ID:role/NAME)")),
        ("arn-user", aws(ecr, "arn:aws:iam::123456789012:user/bob"),
            format!("{arn}role ARN \"arn:aws:iam::123456789012:user/bob\": \"user/bob\" is not a role (expected role/NAME)")),
        ("arn-other-partition", aws(ecr, "arn:aws-cn:iam::123456789012:role/x"),
            format!("{arn}role ARN \"arn:aws-cn:iam::123456789012:role/x\" is in partition aws-cn, but the registry is in aws (us-east-1); credentials do not cross partitions")),
        ("ecr-not-ecr", aws("registry.example.com", role),
            format!("{reg}registry host \"registry.example.com\" is not an Amazon ECR host (expected ACCOUNT.dkr.ecr.REGION.amazonaws.com); set the imagepullsecrets.preferred.jp/aws-region annotation for registry mirrors")),
        ("ecr-scheme", aws(&format!("https://{ecr}"), role),
            format!("{reg}registry host \"https://{ecr}\" is a URL: remove \"https://\" and give the host name only")),
        ("ecr-upper-case", aws("123456789012.DKR.ECR.us-east-1.amazonaws.com", role),
            format!("{reg}registry host \"123456789012.DKR.ECR.us-east-1.amazonaws.com\" must be lower case")),
        ("ecr-trailing-dot", aws(&format!("{ecr}."), role),
            format!("{reg}registry host \"{ecr}.\" must not end with a dot")),
        ("audience-space", with(aws(ecr, role), "audience", "two audiences"),
            "annotation imagepullsecrets.preferred.jp/audience: \"two audiences\" contains whitespace, a comma or a control character; give exactly one audience".into()),
        ("audience-comma", with(aws(ecr, role), "audience", "a,b"),
            "annotation imagepullsecrets.preferred.jp/audience: \"a,b\" contains whitespace, a comma or a control character; give exactly one audience".into()),
        ("name-upper-case", with(aws(ecr, role), "secret-name", "Upper"), format!("{name}\"Upper\" {dns}")),
        ("name-underscore", with(aws(ecr, role), "secret-name", "under_score"), format!("{name}\"under_score\" {dns}")),
        ("name-leading-dash", with(aws(ecr, role), "secret-name", "-leading-dash"), format!("{name}\"-leading-dash\" {dns}")),
        ("name-too-long", with(aws(ecr, role), "secret-name", &long), format!("{name}\"{long}\" is longer than 253 characters")),
        ("provider-project-id", google(REGISTRY, "projects/abc/locations/global/workloadIdentityPools/p/providers/x", EMAIL),
            format!("{wip}invalid workload identity provider \"projects/abc/locations/global/workloadIdentityPools/p/providers/x\": project \"abc\" is not a project number: the provider names its project by number, not by ID; expected projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER")),
        ("provider-pool-only", google(REGISTRY, "projects/123456/locations/global/workloadIdentityPools/pool-1", EMAIL),
            format!("{wip}invalid workload identity provider \"projects/123456/locations/global/workloadIdentityPools/pool-1\": it names a workload identity pool, not one of its providers; expected projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER")),
        ("email-no-at", google(REGISTRY, PROVIDER, "not-an-email"),
            format!("{mail}invalid service account email \"not-an-email\": it has no '@'; expected NAME@PROJECT.iam.gserviceaccount.com")),
        ("email-two-ats", google(REGISTRY, PROVIDER, &format!("{EMAIL}, other@@proj.iam.gserviceaccount.com")),
            format!("{mail}invalid service account email \"other@@proj.iam.gserviceaccount.com\": it has more than one '@'; expected NAME@PROJECT.iam.gserviceaccount.com")),
        ("email-trailing-comma", google(REGISTRY, PROVIDER, &format!("{EMAIL},")),
            format!("{mail}item 2 of \"{EMAIL},\" is empty; remove the extra comma")),
        ("email-listed-twice", google(REGISTRY, PROVIDER, &format!("{EMAIL},{EMAIL}")),
            format!("{mail}\"{EMAIL}\" is listed twice")),
        ("gar-scheme", google(&format!("https://{REGISTRY}"), PROVIDER, EMAIL),
            format!("{reg}\"https://{REGISTRY}\" has a scheme; give the host only, e.g. europe-docker.pkg.dev")),
        ("gar-path", google(&format!("{REGISTRY}/project/repo"), PROVIDER, EMAIL),
            format!("{reg}\"{REGISTRY}/project/repo\" has a path; give the registry host only")),
        ("gar-upper-case", google("Asia-Docker.pkg.dev", PROVIDER, EMAIL), format!("{reg}\"Asia-Docker.pkg.dev\" must be lower case")),
        ("gar-bad-port", google("registry:99999", PROVIDER, EMAIL), format!("{reg}\"registry:99999\" has an invalid port")),
        ("gar-underscore", google("bad_host.example", PROVIDER, EMAIL), format!("{reg}\"bad_host.example\" is not a valid host name")),
        ("az-client-id", azure(acr, "my-app", tenant),
            "annotation imagepullsecrets.preferred.jp/azure-client-id: client ID \"my-app\" is not an application (client) ID: expected a GUID such as 00000000-0000-0000-0000-000000000000 (the application's or managed identity's client ID, not its name or object ID URL)".into()),
        ("az-client-twice", azure(acr, &format!("{client},{client}"), tenant),
            format!("annotation imagepullsecrets.preferred.jp/azure-client-id: \"{client}\" is listed twice")),
        ("az-missing-tenant", vec![("registry", acr.into()), ("audience", "aud".into()), ("azure-client-id", client.into())],
            "incomplete configuration: missing annotation imagepullsecrets.preferred.jp/azure-tenant-id (or azure.workload.identity/tenant-id)".into()),
        ("az-tenant", azure(acr, client, "contoso"),
            "annotation imagepullsecrets.preferred.jp/azure-tenant-id: tenant \"contoso\" is neither a tenant ID (a GUID such as 00000000-0000-0000-0000-000000000000) nor a domain name such as contoso.onmicrosoft.com".into()),
        ("az-ecr-registry", azure(ecr, client, tenant),
            format!("{reg}registry host \"{ecr}\" is not an Azure Container Registry host (expected NAME.azurecr.io, NAME.azurecr.us or NAME.azurecr.cn); set the imagepullsecrets.preferred.jp/azure-cloud annotation for other hosts")),
        ("az-other-cloud", with(azure("myregistry.azurecr.cn", client, tenant), "azure-cloud", "AzureCloud"),
            format!("{reg}registry host \"myregistry.azurecr.cn\" is in AzureChinaCloud, but annotation imagepullsecrets.preferred.jp/azure-cloud says AzureCloud; credentials do not cross clouds")),
        ("az-short-name", azure("acr.azurecr.io", client, tenant),
            format!("{reg}registry host \"acr.azurecr.io\": registry name \"acr\" must be 5 to 50 lower-case letters and digits")),
    ]
}

#[test]
fn bad_configurations_get_one_precise_warning_and_no_writes_and_never_delay_a_good_one() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("badinput");
    let moto = moto();
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "good"))
        .start();
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .aws(&moto.endpoint)
        .start();
    let cases = bad_configurations();
    assert!(cases.len() >= 25, "{} cases", cases.len());

    // A ServiceAccount that fails at the provider (its role may not call ECR) is retried with backoff.
    create_sa(
        &admin,
        &ns,
        "denied",
        &borrowed(&aws_config(support::moto::NO_ECR_ROLE)),
        &[],
    );
    let mut created = BTreeMap::new();
    for (name, pairs, _) in &cases {
        let sa = create_sa(&admin, &ns, name, &borrowed(pairs), &["users-own"]);
        created.insert(name.to_string(), sa);
    }
    // A good one created after all the bad ones is served promptly.
    let started = Instant::now();
    create_sa(&admin, &ns, "good", &borrowed(&google_config(EMAIL)), &[]);
    wait_pull_secrets(&admin, &ns, "good", &["imagepullsecret-good"], &controller);
    let prompt = started.elapsed();
    println!(
        "good ServiceAccount provisioned {prompt:?} after creation, behind {} bad ones",
        cases.len() + 1
    );
    assert!(
        prompt < Duration::from_secs(5),
        "took {prompt:?}:\n{}",
        controller.logs()
    );

    // The ambiguous configuration provisions with AWS and says so.
    let mut both = aws_config(PULLER_ROLE);
    both.extend(
        google_config(EMAIL)
            .into_iter()
            .filter(|(k, _)| k.starts_with("googlecloud")),
    );
    create_sa(&admin, &ns, "ambiguous", &borrowed(&both), &[]);
    wait_pull_secrets(
        &admin,
        &ns,
        "ambiguous",
        &["imagepullsecret-ambiguous"],
        &controller,
    );
    assert_eq!(
        get_secret(&admin, &ns, "imagepullsecret-ambiguous")
            .unwrap()
            .metadata
            .annotations[PRINCIPAL],
        PULLER_ROLE
    );
    wait_event(
        &admin,
        &ns,
        "ambiguous",
        "Warning",
        FAILED,
        "both imagepullsecrets.preferred.jp/aws-role-arn and Google annotations are set; using AWS and ignoring the Google ones",
        &controller,
    );

    // Every bad one: exactly one Warning with the precise text, and nothing else.
    for (name, _, want) in &cases {
        let note = wait_event(&admin, &ns, name, "Warning", FAILED, want, &controller);
        assert_eq!(note, format!("invalid configuration: {want}"), "{name}");
    }
    // Let any re-runs (there should be none) happen before counting.
    std::thread::sleep(Duration::from_secs(2));
    let logs = controller.logs();
    for (name, _, _) in &cases {
        let events = events_about(&admin, &ns, name);
        assert_eq!(events.len(), 1, "{name}: {events:#?}");
        let sa = get_sa(&admin, &ns, name);
        let before = &created[*name];
        assert_eq!(
            sa.metadata.resource_version, before.metadata.resource_version,
            "{name} was written"
        );
        assert_eq!(pull_secret_names(&sa), vec!["users-own"], "{name}");
        assert!(
            !logs.contains(&format!("{ns}/{name}: secret")),
            "{name} was provisioned:\n{logs}"
        );
        assert_eq!(
            moto.sts_calls(&role_session_name(&ns, name)),
            0,
            "{name} reached STS"
        );
    }
    // No secret but the good and the ambiguous ones; Google saw the good one only.
    assert_eq!(
        secret_names_in(&admin, &ns),
        vec!["imagepullsecret-ambiguous", "imagepullsecret-good"]
    );
    assert_eq!(
        (
            fake_count(&fake, "sts_calls"),
            fake_count(&fake, "iam_calls")
        ),
        (1, 1),
        "{}",
        fake.log()
    );
    // The provider failure is reported, and retried.
    wait_event(
        &admin,
        &ns,
        "denied",
        "Warning",
        FAILED,
        "AccessDenied",
        &controller,
    );
}

// ---------------------------------------------------------------------------------------------------------
// 8. Provider outage (SPEC B2, issue 5)

/// The delays of "retrying in N s" lines the worker logged for ServiceAccount `name`.
fn retry_delays(logs: &str, name: &str) -> Vec<f64> {
    logs.lines()
        .filter(|l| l.contains(&format!("serviceaccount={name}")))
        .filter_map(|l| l.split("retrying in ").nth(1))
        .filter_map(|rest| rest.split('s').next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn a_provider_outage_backs_off_warns_once_and_recovers() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("outage");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .start();
    fake.control(json!({"failure_rate": 1.0}));
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let started = Instant::now();
    create_sa(&admin, &ns, "app", &borrowed(&google_config(EMAIL)), &[]);
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        "obtaining registry credentials",
        &controller,
    );
    println!("warning: {note}");
    assert!(note.contains(EMAIL) && note.contains("503"), "{note}");

    std::thread::sleep(Duration::from_secs(15).saturating_sub(started.elapsed()));
    let logs = controller.logs();
    let delays = retry_delays(&logs, "app");
    let sts = fake_count(&fake, "sts_calls");
    println!(
        "after {:?}: {sts} STS calls, retry delays {delays:?}",
        started.elapsed()
    );
    assert!(delays.len() >= 2, "{logs}");
    assert!(
        delays.windows(2).all(|w| w[1] > w[0]),
        "backoff grows: {delays:?}"
    );
    // The queue's backoff (1, 2, 4, 8 s, +20% jitter) allows at most 5 reconciles in 15 s, each trying the
    // provider 3 times within itself: without backoff there would be hundreds.
    assert!(
        delays.len() <= 5,
        "{} retries in 15 s: {delays:?}",
        delays.len()
    );
    assert!(sts <= 15, "{sts} STS calls in 15 s");
    assert_eq!(fake_count(&fake, "iam_calls"), 0);
    let events = events_about(&admin, &ns, "app");
    assert_eq!(
        count_events(&events, "Warning", FAILED),
        1,
        "repeated warnings are not repeated: {events:#?}"
    );
    assert!(get_secret(&admin, &ns, "imagepullsecret-app").is_none());

    fake.control(json!({"failure_rate": 0.0}));
    let recovered = Instant::now();
    wait_pull_secrets(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    println!(
        "provisioned {:?} after the provider recovered",
        recovered.elapsed()
    );
    wait_event(
        &admin,
        &ns,
        "app",
        "Normal",
        PROVISIONED,
        "imagepullsecret-app",
        &controller,
    );
}

// ---------------------------------------------------------------------------------------------------------
// 9. Taking over from the original controller (issue 5, item 4)

/// A secret exactly as the original Go controller wrote it for ServiceAccount `sa`: label, controller
/// ownerReference, principal and expires-at (RFC 3339, no obtained-at), and a dockerconfigjson without `auth`.
fn original_controllers_secret(sa: &ServiceAccount, expires_at: DateTime<Utc>) -> Secret {
    let name = &sa.metadata.name;
    let config = json!({"auths": {REGISTRY: {"username": "oauth2accesstoken", "password": "ya29.from-the-original"}}});
    Secret {
        metadata: ObjectMeta {
            name: format!("imagepullsecret-{name}"),
            namespace: sa.metadata.namespace.clone(),
            labels: [(LABEL.to_string(), name.clone())].into(),
            annotations: [
                (PRINCIPAL.to_string(), EMAIL.to_string()),
                (
                    EXPIRES_AT.to_string(),
                    expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ),
            ]
            .into(),
            owner_references: vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                name: name.clone(),
                uid: sa.metadata.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }],
            ..Default::default()
        },
        type_: "kubernetes.io/dockerconfigjson".into(),
        data: [(
            ".dockerconfigjson".to_string(),
            support::base64_encode(config.to_string().as_bytes()),
        )]
        .into(),
        ..Default::default()
    }
}

/// The delay of the first "next run in Some(…)" the controller logged for `ns/name`.
fn first_requeue(logs: &str, ns: &str, name: &str) -> Option<Duration> {
    logs.lines()
        .filter(|l| l.contains(&format!("{ns}/{name}: reconciled in")))
        .find_map(|l| l.split("next run in Some(").nth(1))
        .and_then(|rest| rest.split("s)").next())
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
}

#[test]
fn secrets_of_the_original_controller_are_adopted_as_they_are_and_refreshed_when_due() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("takeover");
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, "app"))
        .allow(EMAIL, &member(&ns, "late"))
        .start();

    // `app`'s credential has 50 minutes left: with Google's usual hour assumed, it is due with a quarter (15
    // minutes) left, in 35 minutes. `late`'s has 10 minutes left: due now. Both attached, after a user's entry.
    let mut before = BTreeMap::new();
    for (name, left) in [("app", 50 * 60), ("late", 10 * 60)] {
        let sa = create_sa(
            &admin,
            &ns,
            name,
            &borrowed(&google_config(EMAIL)),
            &["users-own"],
        );
        let expires_at = Utc::now() + chrono::Duration::seconds(left);
        let secret: Secret = admin
            .create(Some(&ns), &original_controllers_secret(&sa, expires_at))
            .unwrap();
        let mut attached = get_sa(&admin, &ns, name);
        attached.image_pull_secrets = Some(refs(&["users-own", &secret.metadata.name]));
        let attached: ServiceAccount = admin.replace(Some(&ns), name, &attached).unwrap();
        before.insert(name, (attached, secret, expires_at));
    }
    let started_at = Utc::now();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();

    // `late` is refreshed at once, in place: same secret, same ownerReference, now with obtained-at.
    let (_, late_before, late_expiry) = &before["late"];
    let refreshed = eventually(PATIENCE, "the due secret to be refreshed", || {
        get_secret(&admin, &ns, "imagepullsecret-late")
            .filter(|s| s.metadata.annotations.contains_key(OBTAINED_AT))
    });
    assert_eq!(refreshed.metadata.uid, late_before.metadata.uid);
    assert_eq!(
        refreshed.metadata.owner_references,
        late_before.metadata.owner_references
    );
    assert!(time_annotation(&refreshed, EXPIRES_AT) > *late_expiry);
    assert!(docker_config(&refreshed)["auths"][REGISTRY]["auth"].is_string());
    assert_eq!(
        pull_secret_names(&get_sa(&admin, &ns, "late")),
        vec!["users-own", "imagepullsecret-late"]
    );

    // `app` is adopted as it is: no token, no exchange, no write to the secret or the ServiceAccount ...
    wait_log(
        &controller,
        &format!("{ns}/app: secret imagepullsecret-app is fresh until"),
    );
    wait_log(&controller, &format!("{ns}/app: reconciled in"));
    let logs = controller.logs();
    assert!(
        !logs.contains(&format!("{ns}/app: secret imagepullsecret-app is due")),
        "{logs}"
    );
    let (sa_before, app_before, _) = &before["app"];
    let now = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    assert_eq!(
        now.metadata.resource_version,
        app_before.metadata.resource_version
    );
    assert_eq!(
        get_sa(&admin, &ns, "app").metadata.resource_version,
        sa_before.metadata.resource_version
    );
    assert_eq!(
        fake_count(&fake, "iam_calls"),
        1,
        "only `late` was exchanged: {}",
        fake.log()
    );
    assert!(events_about(&admin, &ns, "app").is_empty());

    // ... and its refresh is scheduled for when it is due: 35 minutes, brought forward by at most 10%.
    let delay =
        first_requeue(&logs, &ns, "app").unwrap_or_else(|| panic!("no requeue logged:\n{logs}"));
    let due_in = (original_due_at(app_before) - started_at).to_std().unwrap();
    println!("adopted secret due in {due_in:?}; refresh scheduled in {delay:?}");
    assert!(
        delay <= due_in && delay >= due_in.mul_f64(0.9).saturating_sub(Duration::from_secs(60)),
        "{delay:?}"
    );
}

/// When a secret of the original controller is due: a quarter of Google's usual hour before it expires.
fn original_due_at(secret: &Secret) -> DateTime<Utc> {
    time_annotation(secret, EXPIRES_AT) - chrono::Duration::minutes(15)
}

// ---------------------------------------------------------------------------------------------------------
// 10. Names longer than a label value allows (issue 5, item 6)

#[test]
fn service_accounts_with_names_longer_than_a_label_value_are_served() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("longname");
    let prefix = "a-service-account-whose-name-is-longer-than-any-label-value-may-be";
    let (one, two) = (format!("{prefix}-one"), format!("{prefix}-two"));
    assert!(one.len() > 63);
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&ns, &one))
        .allow(EMAIL, &member(&ns, &two))
        .start();
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let mut labels = Vec::new();
    for name in [&one, &two] {
        let sa = create_sa(&admin, &ns, name, &borrowed(&google_config(EMAIL)), &[]);
        let secret_name = format!("imagepullsecret-{name}");
        wait_pull_secrets(&admin, &ns, name, &[secret_name.as_str()], &controller);
        let secret = get_secret(&admin, &ns, &secret_name).unwrap();
        let label = secret.metadata.labels[LABEL].clone();
        assert!(
            label.len() <= 63 && label.starts_with(&prefix[..40]),
            "{label}"
        );
        assert_eq!(
            label,
            image_pull_secrets_provisioner::secret::service_account_label_value(name)
        );
        let owner = &secret.metadata.owner_references[0];
        assert_eq!(
            (owner.name.as_str(), owner.uid.as_str()),
            (name.as_str(), sa.metadata.uid.as_str())
        );
        labels.push(label);
    }
    assert_ne!(labels[0], labels[1], "the shortened labels stay unique");

    // Ownership rests on the ownerReference: a deleted secret is restored.
    let secret_name = format!("imagepullsecret-{one}");
    let uid = get_secret(&admin, &ns, &secret_name).unwrap().metadata.uid;
    admin
        .delete::<Secret>(Some(&ns), &secret_name, None)
        .unwrap();
    eventually(PATIENCE, "the secret to be restored", || {
        get_secret(&admin, &ns, &secret_name).filter(|s| s.metadata.uid != uid)
    });
}
