//! Amazon ECR credentials end to end: a ServiceAccount token from the real kube-apiserver, STS and ECR from
//! moto with authentication on (signatures, session tokens and IAM policies really checked).

use std::time::Duration;

use crate::support::moto::{
    moto, post, xml_text, Moto, StandIn, ASSUME_ROLE_WITH_WEB_IDENTITY, GET_AUTHORIZATION_TOKEN,
    NO_ECR_ROLE, PULLER_ROLE, REGISTRY,
};
use crate::support::{cluster, eventually, jwt_claims, project_root};
use chrono::{TimeZone, Utc};
use image_pull_secrets_provisioner::cloud::aws::{
    parse_registry_host, role_session_name, AwsClient, AwsTarget,
};
use image_pull_secrets_provisioner::cloud::{sigv4, CloudError, Sensitive};

/// The audience AWS expects in web identity tokens of EKS-style setups.
const AUDIENCE: &str = "sts.amazonaws.com";
const ECR_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// A ServiceAccount of a fresh namespace and a token the API server issued for it.
struct Subject {
    namespace: String,
    service_account: String,
    token: Sensitive,
}

impl Subject {
    fn new(prefix: &str) -> Subject {
        let cluster = cluster();
        let namespace = cluster.namespace(prefix);
        let service_account = "puller".to_string();
        cluster.kubectl(&[
            "create",
            "serviceaccount",
            &service_account,
            "-n",
            &namespace,
        ]);
        let issued = cluster
            .admin()
            .create_token(
                &namespace,
                &service_account,
                &[AUDIENCE],
                Duration::from_secs(600),
            )
            .expect("TokenRequest");
        Subject {
            namespace,
            service_account,
            token: issued.token,
        }
    }

    fn session_name(&self) -> String {
        role_session_name(&self.namespace, &self.service_account)
    }

    fn target(&self, role_arn: &str) -> AwsTarget {
        AwsTarget {
            role_arn: role_arn.to_string(),
            registry: parse_registry_host(REGISTRY, None).expect("registry host"),
            session_name: self.session_name(),
        }
    }
}

fn client(moto: &Moto) -> AwsClient {
    AwsClient::new(moto.aws_config(), crate::support::provider_http())
}

/// Temporary credentials straight from moto's STS, for signing requests by hand.
fn assume_role(moto: &Moto, subject: &Subject, role_arn: &str) -> sigv4::Credentials {
    let form = [
        ("Action", ASSUME_ROLE_WITH_WEB_IDENTITY),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn),
        ("RoleSessionName", &subject.session_name()),
        ("WebIdentityToken", subject.token.expose()),
        ("DurationSeconds", "900"),
    ]
    .iter()
    .map(|(n, v)| format!("{n}={}", sigv4::uri_encode(v, true)))
    .collect::<Vec<_>>()
    .join("&");
    let (status, body) = post(
        &moto.endpoint,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(status, 200, "moto STS: {body}");
    let field = |name| xml_text(&body, name).unwrap_or_else(|| panic!("no {name} in {body}"));
    sigv4::Credentials {
        access_key_id: field("AccessKeyId"),
        secret_access_key: Sensitive::new(field("SecretAccessKey")),
        session_token: Some(Sensitive::new(field("SessionToken"))),
    }
}

/// A GetAuthorizationToken request for moto, signed with `credentials` now: (headers, body).
fn signed_ecr_request(moto: &Moto, credentials: &sigv4::Credentials) -> Vec<(String, String)> {
    let host = format!("127.0.0.1:{}", moto.port);
    let request = sigv4::Request {
        method: "POST",
        host: &host,
        path: "/",
        query: &[],
        headers: &[
            ("Content-Type", ECR_CONTENT_TYPE),
            ("X-Amz-Target", ECR_TARGET),
        ],
        body: b"{}",
    };
    let signed = sigv4::sign(
        &request,
        &sigv4::Params {
            credentials,
            region: "us-east-1",
            service: "ecr",
            time: Utc::now(),
            settings: sigv4::Settings::default(),
        },
    );
    let mut headers = vec![
        ("Content-Type".to_string(), ECR_CONTENT_TYPE.to_string()),
        ("X-Amz-Target".to_string(), ECR_TARGET.to_string()),
    ];
    headers.extend(
        signed
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone())),
    );
    headers
}

fn send_ecr(moto: &Moto, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    post(&format!("{}/", moto.endpoint), &headers, body)
}

fn replace_header(headers: &mut [(String, String)], name: &str, value: String) {
    let header = headers
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .unwrap_or_else(|| panic!("no {name} header"));
    header.1 = value;
}

/// Asserts that `text` holds none of `secrets` (nor their form encoding, as a proxy might echo them).
fn assert_holds_none(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        let encoded = sigv4::uri_encode(secret, true);
        assert!(
            !text.contains(secret) && !text.contains(&encoded),
            "a secret leaked into: {text}"
        );
    }
}

#[test]
fn apiserver_token_becomes_ecr_credentials_with_authentication_on() {
    let moto = moto();
    let subject = Subject::new("aws-ok");
    let claims = jwt_claims(subject.token.expose());
    assert_eq!(claims["aud"], serde_json::json!([AUDIENCE]));
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{}:puller", subject.namespace)
    );

    let credentials = client(moto)
        .registry_credentials(&subject.target(PULLER_ROLE), &subject.token)
        .unwrap_or_else(|e| panic!("exchange failed: {e}\n{}", moto.log()));

    assert_eq!(credentials.username, "AWS");
    assert!(!credentials.password.expose().is_empty());
    // moto's only expiresAt; real ECR answers twelve hours ahead.
    assert_eq!(
        credentials.expires_at,
        Utc.with_ymd_and_hms(2015, 1, 1, 0, 0, 0).unwrap()
    );

    // One unsigned STS call, then one ECR call signed with that very session, both accepted.
    let session = subject.session_name();
    let calls: Vec<_> = moto
        .calls()
        .into_iter()
        .filter(|c| c.session_name.as_deref() == Some(session.as_str()))
        .collect();
    let seen: Vec<_> = calls
        .iter()
        .map(|c| (c.action.as_str(), c.signed, c.status, c.role_arn.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                ASSUME_ROLE_WITH_WEB_IDENTITY,
                false,
                Some(200),
                Some(PULLER_ROLE)
            ),
            (GET_AUTHORIZATION_TOKEN, true, Some(200), Some(PULLER_ROLE)),
        ]
    );
    assert_eq!(moto.sts_calls(&session), 1);
    assert_eq!(moto.ecr_calls(&session), 1);
}

#[test]
fn role_without_get_authorization_token_is_denied_and_not_retried() {
    let moto = moto();
    let subject = Subject::new("aws-denied");
    let error = client(moto)
        .registry_credentials(&subject.target(NO_ECR_ROLE), &subject.token)
        .expect_err("the role may not call ecr:GetAuthorizationToken");

    assert_eq!(error.step, "ecr GetAuthorizationToken");
    assert!(error.retry.is_permanent(), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("ecr GetAuthorizationToken: for {NO_ECR_ROLE}: ")),
        "{text}"
    );
    assert!(text.contains("AccessDenied"), "{text}");
    assert!(text.contains("ecr:GetAuthorizationToken"), "{text}");
    // Denied once, not retried: a policy does not change by asking again.
    assert_eq!(moto.sts_calls(&subject.session_name()), 1);
    assert_eq!(moto.ecr_calls(&subject.session_name()), 1);
}

#[test]
fn moto_rejects_a_corrupted_signature_and_a_body_changed_after_signing() {
    let moto = moto();
    let subject = Subject::new("aws-signature");
    let session = assume_role(moto, &subject, PULLER_ROLE);

    let good = signed_ecr_request(moto, &session);
    let (status, body) = send_ecr(moto, &good, b"{}");
    assert_eq!(status, 200, "correctly signed: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("ECR answers JSON");
    assert!(
        answer["authorizationData"][0]["authorizationToken"].is_string(),
        "{body}"
    );

    let mut corrupted = good.clone();
    let authorization = corrupted
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| v.clone())
        .expect("Authorization header");
    let last = authorization.chars().last().expect("a signature");
    let flipped = if last == '0' { '1' } else { '0' };
    let corrupt_value = format!("{}{flipped}", &authorization[..authorization.len() - 1]);
    replace_header(&mut corrupted, "Authorization", corrupt_value);
    let (status, body) = send_ecr(moto, &corrupted, b"{}");
    assert_eq!(status, 403, "corrupted signature: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    let (status, body) = send_ecr(moto, &good, br#"{"registryIds":["123456789012"]}"#);
    assert_eq!(status, 403, "body changed after signing: {body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    assert_eq!(
        moto.count(GET_AUTHORIZATION_TOKEN, &subject.session_name()),
        3
    );
}

#[test]
fn moto_rejects_a_missing_or_wrong_session_token() {
    let moto = moto();
    let subject = Subject::new("aws-session-token");
    let session = assume_role(moto, &subject, PULLER_ROLE);

    // Signed with the session's keys, but without its token: the keys alone are not a credential.
    let without_token = sigv4::Credentials {
        session_token: None,
        ..session.clone()
    };
    let headers = signed_ecr_request(moto, &without_token);
    assert!(!headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("X-Amz-Security-Token")));
    let (status, body) = send_ecr(moto, &headers, b"{}");
    assert_eq!(status, 403, "no session token: {body}");
    assert!(body.contains("InvalidClientTokenId"), "{body}");

    // Signed with a token that is not the session's.
    let wrong_token = sigv4::Credentials {
        session_token: Some(Sensitive::new("FQoGZXIvYXdzEBYaDNotTheSessionsToken")),
        ..session
    };
    let (status, body) = send_ecr(moto, &signed_ecr_request(moto, &wrong_token), b"{}");
    assert_eq!(status, 403, "wrong session token: {body}");
    assert!(body.contains("InvalidClientTokenId"), "{body}");
}

#[test]
fn no_error_or_debug_output_holds_a_token_or_key() {
    let moto = moto();
    let subject = Subject::new("aws-secrets");
    let aws = client(moto);

    let credentials = aws
        .registry_credentials(&subject.target(PULLER_ROLE), &subject.token)
        .expect("credentials");
    let denied: CloudError = aws
        .registry_credentials(&subject.target(NO_ECR_ROLE), &subject.token)
        .expect_err("denied");

    let sessions = moto.sessions(&subject.session_name());
    assert_eq!(sessions.len(), 2, "one STS session per exchange");
    let mut secrets = vec![
        subject.token.expose(),
        credentials.password.expose(),
        // The part of the token a proxy would most likely quote.
        subject
            .token
            .expose()
            .split('.')
            .nth(2)
            .expect("JWT signature"),
    ];
    for session in &sessions {
        secrets.push(session.secret_access_key.expose());
        secrets.push(session.session_token.expose());
    }
    let printed = [
        denied.to_string(),
        format!("{denied:?}"),
        format!("{credentials:?}"),
        format!("{:?} {:?}", subject.target(PULLER_ROLE), moto.aws_config()),
    ];
    for text in &printed {
        assert_holds_none(text, &secrets);
    }
    assert!(
        printed[2].contains("<redacted>"),
        "the password prints as <redacted>: {}",
        printed[2]
    );
    // moto's own request log (stderr) never sees them either: they travel in bodies and headers only.
    assert_holds_none(&moto.log(), &secrets);
}

#[test]
fn an_own_moto_counts_only_its_own_calls() {
    let own = Moto::start();
    let subject = Subject::new("aws-own");
    let aws = client(&own);
    for _ in 0..2 {
        aws.registry_credentials(&subject.target(PULLER_ROLE), &subject.token)
            .expect("credentials");
    }
    // A role added after authentication was switched on, through signed IAM calls.
    let role = own.create_role(
        &format!("extra-{}", crate::support::unique()),
        &["ecr:GetAuthorizationToken"],
    );
    aws.registry_credentials(&subject.target(&role), &subject.token)
        .expect("credentials for the new role");

    let session = subject.session_name();
    assert_eq!(own.sts_calls(&session), 3);
    assert_eq!(own.ecr_calls(&session), 3);
    let sts_calls = own
        .calls()
        .into_iter()
        .filter(|c| c.action == ASSUME_ROLE_WITH_WEB_IDENTITY)
        .count();
    assert_eq!(sts_calls, 3, "no other test's calls");
    own.reset_calls();
    assert_eq!(own.sts_calls(&session), 0);
}

#[test]
fn moto_stops_when_the_watched_process_exits() {
    let mut watched = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let moto = StandIn::start_watching(
        "moto-watch",
        &project_root().join("scripts/testenv/moto_server.py"),
        &[],
        watched.id(),
    );
    assert!(moto.is_running());
    watched.kill().expect("kill sleep");
    watched.wait().expect("reap sleep");
    eventually(
        Duration::from_secs(20),
        "moto to stop after the watched process",
        || (!moto.is_running()).then_some(()),
    );
}

#[test]
fn a_signing_clock_twenty_minutes_off_is_corrected_from_aws_date_with_one_extra_request() {
    let moto = moto();
    for (prefix, minutes) in [("aws-ahead", 20), ("aws-behind", -20)] {
        let subject = Subject::new(prefix);
        let offset = chrono::Duration::minutes(minutes);
        let client = client(moto).with_clock(std::sync::Arc::new(move || Utc::now() + offset));
        let credentials = client
            .registry_credentials(&subject.target(PULLER_ROLE), &subject.token)
            .unwrap_or_else(|e| panic!("{minutes} min: exchange failed: {e}\n{}", moto.log()));
        assert_eq!(credentials.username, "AWS");
        let session = subject.session_name();
        let ecr: Vec<Option<u16>> = moto
            .calls()
            .into_iter()
            .filter(|c| {
                c.action == GET_AUTHORIZATION_TOKEN && c.session_name.as_deref() == Some(&session)
            })
            .map(|c| c.status)
            .collect();
        // moto's launcher refuses signatures more than five minutes off, as AWS does.
        assert_eq!(ecr, [Some(400), Some(200)], "{minutes} min");
        assert_eq!(moto.sts_calls(&session), 1);
        // The corrected clock stays: the next exchange needs no extra request.
        client
            .registry_credentials(&subject.target(PULLER_ROLE), &subject.token)
            .expect("second exchange");
        assert_eq!(moto.ecr_calls(&session), 3, "{minutes} min");
    }
}
