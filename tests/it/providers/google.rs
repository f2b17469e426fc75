//! Google Artifact Registry credentials end to end: a ServiceAccount token from the real kube-apiserver,
//! exchanged at the strict Google stand-in, which verifies it against the API server's OIDC discovery and JWKS.

use std::time::Duration;

use crate::support::google::CLUSTER_POOL_PROVIDER as PROVIDER;
use crate::support::google::MY_PROJECT_EMAIL as EMAIL;
use crate::support::google::{member, GoogleFake};
use crate::support::moto::StandIn;
use crate::support::{cluster, eventually, jwt_claims, project_root};
use chrono::Utc;
use image_pull_secrets_provisioner::cloud::google::{
    parse_workload_identity_provider, GoogleClient, GoogleTarget,
};
use image_pull_secrets_provisioner::cloud::{CloudError, RegistryCredentials, Sensitive};
use serde_json::json;

/// The audience the provider accepts, and the one the ServiceAccount's audience annotation would name.
const AUDIENCE: &str = "ipsp-test.example.com/google";
const STEP_STS: &str = "sts token exchange";
const STEP_IAM: &str = "iamcredentials generateAccessToken";

/// A ServiceAccount `puller` in a fresh namespace.
struct Subject {
    namespace: String,
}

impl Subject {
    fn new(prefix: &str) -> Subject {
        let cluster = cluster();
        let namespace = cluster.namespace(prefix);
        cluster.kubectl(&["create", "serviceaccount", "puller", "-n", &namespace]);
        Subject { namespace }
    }

    /// A token the API server issues for `audience`, with the shortest lifetime it allows.
    fn token(&self, audience: &str) -> Sensitive {
        cluster()
            .admin()
            .create_token(
                &self.namespace,
                "puller",
                &[audience],
                Duration::from_secs(600),
            )
            .expect("TokenRequest")
            .token
    }

    fn member(&self) -> String {
        member(&self.namespace, "puller")
    }
}

/// A fake whose provider accepts [`AUDIENCE`] and lets `subject` impersonate [`EMAIL`].
fn fake_for(subject: &Subject) -> GoogleFake {
    GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &subject.member())
        .start()
}

fn target() -> GoogleTarget {
    GoogleTarget {
        provider: parse_workload_identity_provider(PROVIDER).expect("valid provider"),
        service_account_email: EMAIL.to_string(),
    }
}

/// What the controller does with a principal's annotations: validate, then exchange.
fn exchange(
    client: &GoogleClient,
    provider_annotation: &str,
    token: &Sensitive,
) -> Result<RegistryCredentials, String> {
    let provider = parse_workload_identity_provider(provider_annotation)?;
    let target = GoogleTarget {
        provider,
        service_account_email: EMAIL.to_string(),
    };
    client
        .registry_credentials(&target, token)
        .map_err(|e| e.to_string())
}

/// Asserts that neither rendering of `error` holds the token.
fn assert_no_token(error: &CloudError, token: &Sensitive) {
    let signature = token.expose().rsplit('.').next().expect("JWT");
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(
            !text.contains(token.expose()) && !text.contains(signature),
            "token in error: {text}"
        );
    }
}

fn stat(fake: &GoogleFake, name: &str) -> u64 {
    fake.stats()[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}"))
}

#[test]
fn apiserver_token_becomes_artifact_registry_credentials() {
    let subject = Subject::new("google-ok");
    let fake = fake_for(&subject);
    let token = subject.token(AUDIENCE);
    assert_eq!(jwt_claims(token.expose())["aud"], json!([AUDIENCE]));

    let before = Utc::now();
    let credentials = fake
        .client()
        .registry_credentials(&target(), &token)
        .unwrap_or_else(|e| panic!("exchange failed: {e}\n{}", fake.log()));

    assert_eq!(credentials.username, "oauth2accesstoken");
    assert!(
        credentials.password.expose().starts_with("ya29."),
        "an OAuth access token"
    );
    let lifetime = credentials.expires_at - before;
    assert!(
        lifetime > chrono::Duration::minutes(59) && lifetime <= chrono::Duration::minutes(61),
        "Google's default lifetime is one hour: {}",
        credentials.expires_at
    );
    let stats = fake.stats();
    assert_eq!(
        (&stats["sts_ok"], &stats["iam_ok"], &stats["rejected"]),
        (&json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
    assert!(!format!("{credentials:?}").contains(credentials.password.expose()));
}

#[test]
fn token_for_another_audience_is_refused_by_sts() {
    let subject = Subject::new("google-audience");
    let fake = fake_for(&subject);
    // The ServiceAccount's audience annotation does not match the provider's allowed audiences.
    let token = subject.token("some-other-audience");

    let error = fake
        .client()
        .registry_credentials(&target(), &token)
        .expect_err("wrong audience");

    assert_eq!(error.step, STEP_STS);
    assert!(error.retry.is_permanent(), "{error}");
    let text = error.to_string();
    let wants: &[&str] = &[
        &format!("sts token exchange: provider {PROVIDER}: HTTP 400 invalid_grant: "),
        "The audience in ID Token [['some-other-audience']] does not match the expected audience",
        "check that the provider's allowed audiences include the ServiceAccount's audience annotation",
    ];
    for want in wants {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    assert_no_token(&error, &token);
    assert_eq!((stat(&fake, "sts_calls"), stat(&fake, "iam_calls")), (1, 0));
}

#[test]
fn service_account_without_a_grant_is_permission_denied() {
    let subject = Subject::new("google-denied");
    // The grant names another ServiceAccount of the same namespace.
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&subject.namespace, "someone-else"))
        .start();
    let token = subject.token(AUDIENCE);

    let error = fake
        .client()
        .registry_credentials(&target(), &token)
        .expect_err("no roles/iam.workloadIdentityUser for this ServiceAccount");

    assert_eq!(error.step, STEP_IAM);
    assert!(error.retry.is_permanent(), "{error}");
    let text = error.to_string();
    let principal = format!(
        "principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/subject/{}",
        subject.member()
    );
    let wants: &[&str] = &[
        &format!("iamcredentials generateAccessToken: service account {EMAIL}: HTTP 403 PERMISSION_DENIED: "),
        "Permission 'iam.serviceAccounts.getAccessToken' denied",
        &format!("grants roles/iam.workloadIdentityUser to {principal}"),
    ];
    for want in wants {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    assert_no_token(&error, &token);
    // STS accepted the token; IAM refused once and was not asked again.
    let stats = fake.stats();
    assert_eq!(
        (&stats["sts_ok"], &stats["iam_calls"]),
        (&json!(1), &json!(1)),
        "{stats}"
    );
}

#[test]
fn expired_subject_token_is_refused_by_sts() {
    let subject = Subject::new("google-expired");
    let token = subject.token(AUDIENCE);
    let exp = jwt_claims(token.expose())["exp"]
        .as_i64()
        .expect("exp claim");
    let remaining = exp - Utc::now().timestamp();
    assert!(
        remaining <= 600,
        "the API server issued a longer token: {remaining}s"
    );
    // The API server issues no token shorter than 600 s: set the fake's clock past its expiry instead.
    let offset = (remaining + 60).to_string();
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &subject.member())
        .arg("--now-offset-seconds")
        .arg(&offset)
        .start();
    let client = fake.client();

    let error = client
        .registry_credentials(&target(), &token)
        .expect_err("expired token");

    assert_eq!(error.step, STEP_STS);
    assert!(error.retry.is_permanent(), "{error}");
    let text = error.to_string();
    let wants: &[&str] = &[
        &format!("sts token exchange: provider {PROVIDER}: HTTP 400 invalid_grant: "),
        &format!("The ID Token has expired: exp {exp} is in the past"),
    ];
    for want in wants {
        assert!(text.contains(want), "{want:?} not in: {text}");
    }
    assert_no_token(&error, &token);

    // The very same token is accepted once the clocks agree: it was refused for its expiry alone.
    fake.control(json!({"now_offset_seconds": 0}));
    let credentials = client
        .registry_credentials(&target(), &token)
        .expect("the token is still valid on the host's clock");
    assert_eq!(credentials.username, "oauth2accesstoken");
}

#[test]
fn malformed_provider_annotation_is_rejected_before_any_request() {
    let subject = Subject::new("google-malformed");
    let fake = fake_for(&subject);
    let client = fake.client();
    let token = subject.token(AUDIENCE);
    let cases = [
        (
            "projects/my-project/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc",
            "project \"my-project\" is not a project number",
        ),
        (
            "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool",
            "it names a workload identity pool, not one of its providers",
        ),
        (
            "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc",
            "it is a URL",
        ),
        (
            "projects/123456789012/locations/europe-west1/workloadIdentityPools/cluster-pool/providers/kube-oidc",
            "location \"europe-west1\" is not \"global\"",
        ),
        (
            "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/Kube_OIDC",
            "provider ID \"Kube_OIDC\" contains 'K'",
        ),
    ];
    for (annotation, want) in cases {
        let error = exchange(&client, annotation, &token).expect_err(annotation);
        assert!(
            error.starts_with(&format!(
                "invalid workload identity provider {annotation:?}: {want}"
            )),
            "{error}"
        );
        assert!(
            error.ends_with(
                "expected projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
            ),
            "{error}"
        );
    }
    let stats = fake.stats();
    assert_eq!(
        (&stats["sts_calls"], &stats["iam_calls"]),
        (&json!(0), &json!(0)),
        "nothing may reach Google: {stats}"
    );

    // The full name, as Google's console shows it, is fine and reaches Google.
    let full_name = format!("//iam.googleapis.com/{PROVIDER}");
    exchange(&client, &full_name, &token).expect("the full name is accepted");
    assert_eq!(stat(&fake, "sts_ok"), 1);
}

#[test]
fn unavailable_google_is_retried_then_recovers() {
    let subject = Subject::new("google-unavailable");
    let fake = fake_for(&subject);
    let client = fake.client();
    let token = subject.token(AUDIENCE);

    fake.control(json!({"failure_rate": 1.0}));
    let error = client
        .registry_credentials(&target(), &token)
        .expect_err("Google answers 503");
    assert_eq!(error.step, STEP_STS);
    assert!(!error.retry.is_permanent(), "a 503 may pass: {error}");
    assert_eq!(
        error.to_string(),
        format!(
            "sts token exchange: provider {PROVIDER}: HTTP 503 UNAVAILABLE: The service is currently unavailable"
        )
    );
    assert_no_token(&error, &token);
    let stats = fake.stats();
    assert_eq!(
        (&stats["sts_calls"], &stats["injected_failures"]),
        (&json!(3), &json!(3)),
        "three attempts, then the error: {stats}"
    );

    fake.control(json!({"failure_rate": 0.0, "reset_stats": true}));
    let credentials = client
        .registry_credentials(&target(), &token)
        .expect("recovered");
    assert!(credentials.password.expose().starts_with("ya29."));
    let stats = fake.stats();
    assert_eq!(
        (
            &stats["sts_ok"],
            &stats["iam_ok"],
            &stats["injected_failures"]
        ),
        (&json!(1), &json!(1), &json!(0)),
        "{stats}"
    );
}

#[test]
fn fake_stops_when_the_watched_process_exits() {
    let mut watched = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let fake = StandIn::start_watching(
        "google-fake-watch",
        &project_root().join("scripts/testenv/google_fake.py"),
        &["--issuer".to_string(), cluster().issuer.clone()],
        watched.id(),
    );
    assert!(fake.is_running());
    watched.kill().expect("kill sleep");
    watched.wait().expect("reap sleep");
    eventually(
        Duration::from_secs(20),
        "the fake to stop after the watched process",
        || (!fake.is_running()).then_some(()),
    );
    assert!(
        fake.log().contains("google_fake: stopped"),
        "{}",
        fake.log()
    );
}
