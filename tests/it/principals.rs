//! Several principals on one ServiceAccount: positional secrets that follow the annotation's list, for Google
//! and for AWS; the principal limit (a thousand principals get one warning and no token request); and the
//! failures of several principals told in one warning that names each.

use std::time::Duration;

use image_pull_secrets_provisioner::cloud::aws::role_session_name;
use image_pull_secrets_provisioner::kube::types::{Event, Secret, ServiceAccount};
use image_pull_secrets_provisioner::kube::{Client, ListParams};
use serde_json::json;

use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_config, google_fake, member, GoogleFake, AUDIENCE, EMAIL, EMAIL_2,
    PROVIDER,
};
use crate::support::moto::{ecr_config, moto, PULLER_ROLE};
use crate::support::objects::{
    annotate, annotations, count_events, create_sa, events_about, events_in, get_sa, get_secret,
    pull_secret_names, secret_names_in, series_count, wait_attached, wait_event, DECOMMISSIONED,
    FAILED, LABEL, PRINCIPAL,
};
use crate::support::{cluster, eventually};

/// Longer than elsewhere: a thousand principals, and event series that take their time.
const PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------------------
// Several principals: positional names, reordering, removal, renaming, deconfiguration (SPEC A1, A2)

/// The whole life of a two-principal ServiceAccount `app`, whose `.imagePullSecrets` starts with a user's
/// entry that must survive everything. `config` builds the annotations for a list of principals,
/// `principal_key` is the annotation that lists them, `p0` and `p1` are the two principals.
fn several_principals_scenario(
    admin: &Client,
    ns: &str,
    controller: &Controller,
    config: impl Fn(&str) -> Vec<(&'static str, String)>,
    principal_key: &str,
    p0: &str,
    p1: &str,
) {
    // Two principals, with spaces around them (trimmed).
    create_sa(
        admin,
        ns,
        "app",
        annotations(&config(&format!(" {p0} , {p1} "))),
        &["users-own"],
    );
    wait_attached(
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
    wait_attached(
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
    wait_attached(admin, ns, "app", &["users-own", "renamed"], controller);
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
    wait_attached(admin, ns, "app", &["users-own"], controller);
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
        |emails| google_config(AUDIENCE, emails),
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
        |roles| ecr_config(AUDIENCE, roles),
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
// The principal limit

#[test]
fn a_thousand_principals_get_one_warning_and_no_token_request() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("principals");
    let fake = google_fake(AUDIENCE, &["*"]);
    // At trace level the client logs every request line (never a token): proof of what was not sent.
    let controller = Controller::builder(&ns)
        .google(&fake.endpoint)
        .log_level("trace")
        .start();
    let emails: Vec<String> = (0..1000)
        .map(|i| format!("p{i}@proj.iam.gserviceaccount.com"))
        .collect();
    create_sa(
        &admin,
        &ns,
        "many",
        annotations(&google_config(AUDIENCE, &emails.join(","))),
        &[],
    );
    // A control within the limit in the same run: its token request is seen in the log.
    create_google_sa(&admin, &ns, "few");
    eventually(PATIENCE, "the control's secret", || {
        admin.get::<Secret>(Some(&ns), "imagepullsecret-few").ok()
    });
    let want = "too many principals: annotation imagepullsecrets.preferred.jp/googlecloud-service-account-email \
                lists 1000, more than the 20 this controller allows per serviceaccount (flag \
                --max-principals-per-service-account); nothing was provisioned: split them over several serviceaccounts";
    let warning = |admin: &Client| -> Vec<Event> {
        events_in(admin, &ns)
            .into_iter()
            .filter(|e| e.regarding.name == "many")
            .collect()
    };
    eventually(PATIENCE, "the Warning about the limit", || {
        (!warning(&admin).is_empty()).then_some(())
    });
    // Another reconcile of the same ServiceAccount repeats the Warning. A change to what the reconcile reads
    // queues one (a label would not: the cache keeps only the annotations configuration is read from); an
    // annotation of ours that configures nothing leaves the Warning's text as it was.
    cluster.kubectl(&[
        "-n",
        &ns,
        "annotate",
        "serviceaccount",
        "many",
        "imagepullsecrets.preferred.jp/touched=yes",
    ]);
    eventually(PATIENCE, "the repeat counted in the series", || {
        warning(&admin)
            .iter()
            .any(|e| series_count(e) >= 2)
            .then_some(())
    });
    let events = warning(&admin);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].type_, "Warning");
    assert_eq!(events[0].reason, FAILED);
    assert_eq!(events[0].note, want);

    let logs = controller.logs();
    assert!(
        logs.contains(&format!(
            "POST /api/v1/namespaces/{ns}/serviceaccounts/few/token ->"
        )),
        "the log shows token requests"
    );
    assert!(
        !logs.contains(&format!(
            "/api/v1/namespaces/{ns}/serviceaccounts/many/token"
        )),
        "no token request for the ServiceAccount over the limit"
    );
    assert!(
        !logs.contains(&format!("POST /api/v1/namespaces/{ns}/secrets")) || {
            let mut names = Vec::new();
            admin
                .list_each::<Secret>(Some(&ns), &ListParams::default(), |s| {
                    names.push(s.metadata.name)
                })
                .unwrap();
            names.iter().all(|n| !n.starts_with("imagepullsecret-many"))
        },
        "no secret written for it"
    );
    let sa: ServiceAccount = admin.get(Some(&ns), "many").unwrap();
    assert!(sa.image_pull_secrets.unwrap_or_default().is_empty());
    assert_eq!(fake.stats()["sts_calls"], 1, "only the control's exchange");
}

#[test]
fn failures_of_several_principals_make_one_warning_naming_each() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("several");
    let fake = google_fake(AUDIENCE, &["*"]);
    fake.control(json!({"failure_rate": 1.0}));
    let controller = Controller::builder(&ns).google(&fake.endpoint).start();
    let second = "second@proj.iam.gserviceaccount.com";
    create_sa(
        &admin,
        &ns,
        "app",
        annotations(&google_config(AUDIENCE, &format!("{EMAIL},{second}"))),
        &[],
    );
    let warnings = |admin: &Client| -> Vec<Event> {
        events_in(admin, &ns)
            .into_iter()
            .filter(|e| e.regarding.name == "app" && e.reason == FAILED)
            .collect()
    };
    let events = eventually(PATIENCE, "the Warning and a repeat of it", || {
        let events = warnings(&admin);
        events
            .iter()
            .any(|e| series_count(e) >= 2)
            .then_some(events)
    });
    assert_eq!(events.len(), 1, "one Warning per reconcile: {events:#?}");
    let note = &events[0].note;
    println!("warning: {note}");
    assert!(note.starts_with("2 failures (2 principals): "), "{note}");
    assert!(
        note.contains(&format!("obtaining registry credentials for {EMAIL}: "))
            && note.contains(&format!("obtaining registry credentials for {second}: ")),
        "{note}"
    );
    assert!(controller.is_running());
}
