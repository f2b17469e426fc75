//! Credentials are refreshed before they expire: a short-lived Google credential at three quarters of its
//! lifetime, and ECR tokens that arrive already expired (moto's) without a hot loop.

use std::time::{Duration, Instant};

use chrono::Utc;
use image_pull_secrets_provisioner::cloud::aws::role_session_name;

use crate::support::controller::Controller;
use crate::support::google::{create_google_sa, member, GoogleFake, AUDIENCE, EMAIL, PROVIDER};
use crate::support::moto::{ecr_config, moto, PULLER_ROLE, REGISTRY as ECR_REGISTRY};
use crate::support::objects::{
    annotations, create_sa, docker_config, get_secret, time_annotation, wait_attached, EXPIRES_AT,
    OBTAINED_AT,
};
use crate::support::{cluster, eventually};

// ---------------------------------------------------------------------------------------------------------
// Refresh timing (SPEC B2)

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
    create_google_sa(&admin, &ns, "app");
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
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
    assert_eq!(fake.count("iam_ok"), 2, "{}", fake.log());
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
    create_sa(
        &admin,
        &ns,
        "app",
        annotations(&ecr_config(AUDIENCE, PULLER_ROLE)),
        &[],
    );
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let secret = get_secret(&admin, &ns, "imagepullsecret-app").unwrap();
    assert!(
        time_annotation(&secret, EXPIRES_AT) < Utc::now(),
        "moto's ECR tokens come back already expired"
    );
    let config = docker_config(&secret);
    assert_eq!(config["auths"][ECR_REGISTRY]["username"], "AWS");
    let remaining = Duration::from_secs(30).saturating_sub(started.elapsed());
    // The scenario's own time: 30 s in which a hot loop would have called STS many times.
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
