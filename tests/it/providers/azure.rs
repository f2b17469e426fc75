//! Azure Container Registry through Entra workload identity federation (issue 13), end to end: the real
//! kube-apiserver issues the ServiceAccount tokens, the controller runs as the manifests' ServiceAccount, and
//! the Entra/ACR stand-in (`scripts/testenv/azure_fake.py`) verifies every token against the cluster's issuer
//! and its federated identity credentials. The controller reaches Azure's real host names through the
//! stand-in's CONNECT proxy (`HTTPS_PROXY`) and trusts its test CA through `--provider-ca-bundle`, so the
//! authority it chooses for a registry's cloud is what the stand-in's log shows.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::azure::{subject, AzureFake, AUDIENCE, TENANT};
use crate::support::controller::{Controller, ControllerBuilder};
use crate::support::google::{member, GoogleFake};
use crate::support::objects::EXPIRES_AT;
use crate::support::objects::FAILED;
use crate::support::objects::OBTAINED_AT;
use crate::support::objects::PROVISIONED;
use crate::support::objects::{create_sa, get_sa, pull_secret_names, wait_attached};
use crate::support::objects::{
    docker_config, events_about, secret_names_in, time_annotation, wait_event,
};
use crate::support::{cluster, eventually};
use base64::Engine;
use image_pull_secrets_provisioner::kube::types::Secret;
use image_pull_secrets_provisioner::kube::Client;
use serde_json::json;

const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT_2: &str = "22222222-3333-4444-5555-666666666666";
const UNKNOWN: &str = "99999999-8888-7777-6666-555555555555";
const REGISTRY: &str = "myregistry.azurecr.io";
const US_REGISTRY: &str = "myregistry.azurecr.us";
const USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// Every JWT this test meets starts so: `{"alg":` in base64url.
const JWT_PREFIX: &str = "eyJhbGciOi";

fn controller(ns: &str, fake: &AzureFake) -> ControllerBuilder {
    Controller::builder(ns)
        .env("HTTPS_PROXY", &fake.proxy)
        .env("NO_PROXY", "")
        .args(&[
            "--provider-ca-bundle",
            fake.ca_file.to_str().expect("utf-8"),
        ])
}

fn azure(registry: &str, clients: &str) -> Vec<(String, String)> {
    vec![
        (
            "imagepullsecrets.preferred.jp/registry".into(),
            registry.into(),
        ),
        (
            "imagepullsecrets.preferred.jp/audience".into(),
            AUDIENCE.into(),
        ),
        (
            "imagepullsecrets.preferred.jp/azure-client-id".into(),
            clients.into(),
        ),
        (
            "imagepullsecrets.preferred.jp/azure-tenant-id".into(),
            TENANT.into(),
        ),
    ]
}

/// Annotations as `azure` gives them (full keys) → the map a ServiceAccount holds.
fn by_key(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

fn secret(admin: &Client, ns: &str, name: &str) -> Secret {
    admin.get(Some(ns), name).expect("secret")
}

/// Neither a JWT (assertion, Entra token, refresh token) nor any given secret in `text`.
fn assert_no_tokens(text: &str, secrets: &[&str], what: &str) {
    assert!(!text.contains(JWT_PREFIX), "a JWT in {what}: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "a credential in {what}");
    }
}

fn request_times(fake: &AzureFake, needle: &str) -> Vec<f64> {
    fake.log_lines()
        .iter()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn annotated_service_accounts_get_exact_acr_secrets_from_ours_or_the_ecosystems_annotations() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("az");
    let fake = AzureFake::builder()
        .app(CLIENT)
        .app(CLIENT_2)
        .federate(CLIENT, &subject(&ns, "app"))
        .federate(CLIENT_2, &subject(&ns, "app"))
        .federate(CLIENT, &subject(&ns, "eco"))
        .registry(REGISTRY)
        .start();
    let controller = controller(&ns, &fake).log_level("trace").start();

    create_sa(
        &admin,
        &ns,
        "app",
        by_key(&azure(REGISTRY, &format!("{CLIENT}, {CLIENT_2}"))),
        &[],
    );
    let eco = vec![
        (
            "imagepullsecrets.preferred.jp/registry".to_string(),
            REGISTRY.to_string(),
        ),
        (
            "imagepullsecrets.preferred.jp/audience".to_string(),
            AUDIENCE.to_string(),
        ),
        (
            "azure.workload.identity/client-id".to_string(),
            CLIENT.to_string(),
        ),
        (
            "azure.workload.identity/tenant-id".to_string(),
            TENANT.to_string(),
        ),
    ];
    create_sa(&admin, &ns, "eco", by_key(&eco), &[]);
    wait_attached(
        &admin,
        &ns,
        "app",
        &["imagepullsecret-app", "imagepullsecret-app-1"],
        &controller,
    );
    wait_attached(&admin, &ns, "eco", &["imagepullsecret-eco"], &controller);

    let mut passwords = Vec::new();
    for (name, client) in [
        ("imagepullsecret-app", CLIENT),
        ("imagepullsecret-app-1", CLIENT_2),
        ("imagepullsecret-eco", CLIENT),
    ] {
        let secret = secret(&admin, &ns, name);
        assert_eq!(secret.type_, "kubernetes.io/dockerconfigjson");
        assert_eq!(
            secret.metadata.annotations["imagepullsecrets.preferred.jp/principal"],
            client
        );
        let config = docker_config(&secret);
        let entry = &config["auths"][REGISTRY];
        let password = entry["password"].as_str().expect("password").to_string();
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{password}"));
        assert_eq!(
            config,
            json!({"auths": {REGISTRY: {"username": USERNAME, "password": password, "auth": auth}}})
        );
        // The password is the refresh token; the secret expires with its exp claim (three hours).
        let claims = crate::support::jwt_claims(&password);
        assert_eq!(claims["appid"], client);
        assert_eq!(claims["aud"], REGISTRY);
        let expires = time_annotation(&secret, EXPIRES_AT);
        assert_eq!(expires.timestamp(), claims["exp"].as_i64().unwrap());
        let lifetime = (expires - time_annotation(&secret, OBTAINED_AT)).num_seconds();
        assert!((10790..=10810).contains(&lifetime), "lifetime {lifetime}");
        passwords.push(password);
    }
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Normal",
        PROVISIONED,
        "imagepullsecret-app-1",
        &controller,
    );
    assert!(
        note.starts_with(&format!(
            "Provisioned image pull secret imagepullsecret-app-1 for {CLIENT_2}, valid until "
        )),
        "{note}"
    );
    wait_event(
        &admin,
        &ns,
        "eco",
        "Normal",
        PROVISIONED,
        "imagepullsecret-eco",
        &controller,
    );

    // The public cloud's authority, reached by name through the proxy; one exchange per secret.
    let log = fake.log_lines().join("\n");
    assert!(
        log.contains("CONNECT login.microsoftonline.com:443"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "host=login.microsoftonline.com /{TENANT}/oauth2/v2.0/token 200"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("host={REGISTRY} /oauth2/exchange 200")),
        "{log}"
    );
    assert_eq!(
        (fake.count("token_ok"), fake.count("exchange_ok")),
        (3, 3),
        "{log}"
    );

    // Trace level logs the wire traffic, but no token, assertion or refresh token.
    let logs = controller.logs();
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "trace logging is on"
    );
    let secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    assert_no_tokens(&logs, &secrets, "the controller log");
    for sa in ["app", "eco"] {
        assert_no_tokens(
            &format!("{:?}", events_about(&admin, &ns, sa)),
            &secrets,
            "events",
        );
    }
}

#[test]
fn azure_and_google_annotations_together_use_google_with_the_documented_warning() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azconflict");
    let provider = "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
    let email = "puller@proj.iam.gserviceaccount.com";
    let google = GoogleFake::builder()
        .pool(provider, &[AUDIENCE])
        .allow(email, &member(&ns, "both"))
        .start();
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "both"))
        .registry(REGISTRY)
        .start();
    let controller = controller(&ns, &fake).google(&google.endpoint).start();
    let mut annotations = azure("asia-docker.pkg.dev", CLIENT);
    annotations.push((
        "imagepullsecrets.preferred.jp/googlecloud-workload-identity-provider".into(),
        provider.into(),
    ));
    annotations.push((
        "imagepullsecrets.preferred.jp/googlecloud-service-account-email".into(),
        email.into(),
    ));
    create_sa(&admin, &ns, "both", by_key(&annotations), &[]);
    wait_attached(&admin, &ns, "both", &["imagepullsecret-both"], &controller);
    assert_eq!(
        secret(&admin, &ns, "imagepullsecret-both")
            .metadata
            .annotations["imagepullsecrets.preferred.jp/principal"],
        email
    );
    let note = wait_event(
        &admin,
        &ns,
        "both",
        "Warning",
        FAILED,
        "annotations are set",
        &controller,
    );
    assert_eq!(
        note,
        "both Google and Azure annotations are set; using Google and ignoring the Azure ones"
    );
    assert_eq!(fake.count("token_calls"), 0, "Azure was not asked");
}

#[test]
fn a_short_lived_refresh_token_is_renewed_at_three_quarters_of_its_lifetime() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azrefresh");
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "app"))
        .registry(REGISTRY)
        .arg("--refresh-token-lifetime")
        .arg("40")
        .start();
    let controller = controller(&ns, &fake)
        .args(&["--min-refresh-interval", "5s"])
        .start();
    create_sa(&admin, &ns, "app", by_key(&azure(REGISTRY, CLIENT)), &[]);
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    let first = secret(&admin, &ns, "imagepullsecret-app");
    let obtained = time_annotation(&first, OBTAINED_AT);
    let lifetime = (time_annotation(&first, EXPIRES_AT) - obtained).num_seconds();
    assert!((39..=41).contains(&lifetime), "lifetime {lifetime}");
    let refreshed = eventually(
        Duration::from_secs(90),
        "the secret to be refreshed",
        || {
            let now = secret(&admin, &ns, "imagepullsecret-app");
            (now.metadata.annotations[EXPIRES_AT] != first.metadata.annotations[EXPIRES_AT])
                .then_some(now)
        },
    );
    let after = (time_annotation(&refreshed, OBTAINED_AT) - obtained).num_seconds();
    println!("a {lifetime} s refresh token was renewed {after} s after it was obtained");
    // Three quarters of 40 s, brought forward by up to 10% jitter; whole-second annotations.
    assert!(
        (25..=35).contains(&after),
        "renewed after {after} s:\n{}",
        controller.logs()
    );
    assert_eq!(refreshed.metadata.uid, first.metadata.uid);
    assert_eq!(fake.count("exchange_ok"), 2);
}

#[test]
fn refusals_give_the_exact_warning_and_write_nothing() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azfail");
    let no_pull = "33333333-4444-5555-6666-777777777777";
    let fake = AzureFake::builder()
        .app(CLIENT)
        .app(no_pull)
        .federate(CLIENT, &subject(&ns, "wrongaud"))
        .federate(no_pull, &subject(&ns, "nopull"))
        .registry(REGISTRY)
        .arg("--no-pull")
        .arg(no_pull)
        .start();
    let controller = controller(&ns, &fake).start();
    let issuer = &cluster.issuer;
    let mut wrong_audience = azure(REGISTRY, CLIENT);
    wrong_audience[1].1 = "other-audience".into();
    create_sa(&admin, &ns, "wrongaud", by_key(&wrong_audience), &[]);
    create_sa(&admin, &ns, "unfed", by_key(&azure(REGISTRY, CLIENT)), &[]);
    create_sa(
        &admin,
        &ns,
        "unknown",
        by_key(&azure(REGISTRY, UNKNOWN)),
        &[],
    );
    create_sa(
        &admin,
        &ns,
        "nopull",
        by_key(&azure(REGISTRY, no_pull)),
        &[],
    );

    let entra = |client: &str| {
        format!("obtaining registry credentials for {client}: entra token request: application {client} in tenant {TENANT}: HTTP 400")
    };
    let unmatched = |sa: &str, aud: &str| {
        let sub = subject(&ns, sa);
        format!(
            "{} invalid_request: AADSTS70021: No matching federated identity record found for presented assertion. \
             Assertion Issuer: '{issuer}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'; add a federated \
             identity credential to application {CLIENT} with issuer {issuer}, subject {sub} and audience {aud} \
             (the values this ServiceAccount presents)",
            entra(CLIENT)
        )
    };
    let cases = [
        ("wrongaud", unmatched("wrongaud", "other-audience")),
        ("unfed", unmatched("unfed", AUDIENCE)),
        (
            "unknown",
            format!(
                "{} unauthorized_client: AADSTS700016: Application with identifier '{UNKNOWN}' was not found in the \
                 directory '{TENANT}'. This can happen if the application has not been installed by the administrator \
                 of the tenant or consented to by any user in the tenant; check the client ID annotation: application \
                 {UNKNOWN} does not exist in tenant {TENANT} (for a managed identity, use its client ID, and the tenant \
                 of its subscription)",
                entra(UNKNOWN)
            ),
        ),
        (
            "nopull",
            format!(
                "obtaining registry credentials for {no_pull}: acr token exchange: registry {REGISTRY}: HTTP 401 \
                 UNAUTHORIZED: the principal {} has no role assignment on registry {REGISTRY}; check that application \
                 {no_pull} has the AcrPull role (or another role that allows pulling) on registry {REGISTRY}, and \
                 that the registry belongs to tenant {TENANT}",
                uuid5_of(no_pull)
            ),
        ),
    ];
    for (sa, want) in &cases {
        let note = wait_event(
            &admin,
            &ns,
            sa,
            "Warning",
            FAILED,
            "obtaining registry credentials",
            &controller,
        );
        assert_eq!(&note, want, "{sa}");
    }
    controller.wait_idle();
    assert!(
        secret_names_in(&admin, &ns)
            .iter()
            .all(|n| !n.starts_with("imagepullsecret-")),
        "{:?}",
        secret_names_in(&admin, &ns)
    );
    for (sa, _) in &cases {
        assert!(
            pull_secret_names(&get_sa(&admin, &ns, sa)).is_empty(),
            "{sa}"
        );
        assert_no_tokens(
            &format!("{:?}", events_about(&admin, &ns, sa)),
            &[],
            "events",
        );
    }
    assert_no_tokens(&controller.logs(), &[], "the controller log");
    // Refusals are permanent: not retried within the exchange.
    assert_eq!(fake.count("injected_failures"), 0);
}

/// The object ID the stand-in derives from a client ID (uuid5 in the URL namespace), as ACR's message names it.
fn uuid5_of(client_id: &str) -> String {
    let output = std::process::Command::new(crate::support::moto::venv().join("bin/python"))
        .args([
            "-c",
            &format!("import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, {client_id:?}))"),
        ])
        .output()
        .expect("python");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

#[test]
fn an_outage_is_retried_with_backoff_and_retry_after_is_honoured() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azoutage");
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "app"))
        .federate(CLIENT, &subject(&ns, "polite"))
        .registry(REGISTRY)
        .start();
    let controller = controller(&ns, &fake).start();

    // Six 503s: two reconciles of three attempts fail, the third succeeds after the queue's backoff.
    fake.control(json!({"fail_next": 6, "failure_status": 503}));
    create_sa(&admin, &ns, "app", by_key(&azure(REGISTRY, CLIENT)), &[]);
    let note = wait_event(
        &admin,
        &ns,
        "app",
        "Warning",
        FAILED,
        "HTTP 503",
        &controller,
    );
    assert_eq!(
        note,
        format!(
            "obtaining registry credentials for {CLIENT}: entra token request: application {CLIENT} in tenant {TENANT}: \
             HTTP 503 temporarily_unavailable: AADSTS90033: The service is temporarily unavailable"
        )
    );
    assert!(secret_names_in(&admin, &ns)
        .iter()
        .all(|n| n != "imagepullsecret-app"));
    wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
    assert_eq!(fake.count("injected_failures"), 6);
    let attempts = request_times(&fake, "/oauth2/v2.0/token");
    assert_eq!(attempts.len(), 7, "no hot loop: {attempts:?}");
    // Between the reconciles the work queue backed off (at least its first step, one second).
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] >= 0.9 && gaps[5] >= 0.9, "gaps {gaps:?}");

    // 429 with Retry-After: 3: the next attempt comes no sooner.
    fake.control(
        json!({"reset_stats": true, "fail_next": 1, "failure_status": 429, "retry_after": 3}),
    );
    create_sa(&admin, &ns, "polite", by_key(&azure(REGISTRY, CLIENT)), &[]);
    wait_attached(
        &admin,
        &ns,
        "polite",
        &["imagepullsecret-polite"],
        &controller,
    );
    let attempts = request_times(&fake, "/oauth2/v2.0/token");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(
        attempts[1] - attempts[0] >= 3.0,
        "retried after {} s",
        attempts[1] - attempts[0]
    );
}

#[test]
fn a_us_government_registry_goes_to_the_us_government_authority_unless_overridden() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azgov");
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "gov"))
        .federate(CLIENT, &subject(&ns, "pinned"))
        .registry(US_REGISTRY)
        .start();
    let controller = controller(&ns, &fake).start();
    create_sa(&admin, &ns, "gov", by_key(&azure(US_REGISTRY, CLIENT)), &[]);
    wait_attached(&admin, &ns, "gov", &["imagepullsecret-gov"], &controller);
    let log = fake.log_lines().join("\n");
    assert!(
        log.contains("CONNECT login.microsoftonline.us:443"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "host=login.microsoftonline.us /{TENANT}/oauth2/v2.0/token 200"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("host={US_REGISTRY} /oauth2/exchange 200")),
        "{log}"
    );
    assert!(!log.contains("login.microsoftonline.com"), "{log}");
    drop(controller);

    // With --azure-authority-host, the same registry's tokens come from there.
    fake.control(json!({"reset_stats": true}));
    let controller = self::controller(&ns, &fake)
        .args(&["--azure-authority-host", &fake.endpoint])
        .start();
    create_sa(
        &admin,
        &ns,
        "pinned",
        by_key(&azure(US_REGISTRY, CLIENT)),
        &[],
    );
    wait_attached(
        &admin,
        &ns,
        "pinned",
        &["imagepullsecret-pinned"],
        &controller,
    );
    let log = fake.log_lines().join("\n");
    let authority = fake.endpoint.trim_start_matches("https://");
    assert!(
        log.contains(&format!("host={authority} /{TENANT}/oauth2/v2.0/token 200")),
        "{log}"
    );
    assert!(!log.contains("login.microsoftonline.us"), "{log}");
}

#[test]
fn provider_requests_stay_within_the_configured_rate() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azrate");
    let names: Vec<String> = (0..6).map(|i| format!("sa{i}")).collect();
    let mut builder = AzureFake::builder().app(CLIENT).registry(REGISTRY);
    for name in &names {
        builder = builder.federate(CLIENT, &subject(&ns, name));
    }
    let fake = builder.start();
    let (rate, burst) = (4.0, 2.0);
    let controller = controller(&ns, &fake)
        .args(&["--provider-rate", "4", "--provider-burst", "2"])
        .start();
    for name in &names {
        create_sa(&admin, &ns, name, by_key(&azure(REGISTRY, CLIENT)), &[]);
    }
    for name in &names {
        wait_attached(
            &admin,
            &ns,
            name,
            &[&format!("imagepullsecret-{name}")],
            &controller,
        );
    }
    let mut times = request_times(&fake, "/oauth2/");
    times.sort_by(f64::total_cmp);
    assert_eq!(times.len(), 12, "two requests per secret");
    // However the requests bunch, no stretch of them beats the bucket (one request of slack for timing).
    for i in 0..times.len() {
        for j in i..times.len() {
            let allowed = burst + rate * (times[j] - times[i]) + 1.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} requests in {:.2} s: {times:?}",
                j - i + 1,
                times[j] - times[i]
            );
        }
    }
}

/// A tenant cannot aim the controller (issue 22): an Azure registry that is neither an ACR login server nor a
/// host the operator allows is refused from the annotations alone — one Warning naming the rule, no secret,
/// and a listener on that address sees no connection (no ACR exchange, which would carry an Entra token and
/// report what it found there).
#[test]
fn a_registry_host_that_is_not_acr_nor_allowed_by_the_operator_is_refused_without_a_connection() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azaim");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let host = format!(
        "127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "aimed"))
        .registry(REGISTRY)
        .start();
    let controller = controller(&ns, &fake).start();
    let mut aimed = azure(&host, CLIENT);
    aimed.push((
        "imagepullsecrets.preferred.jp/azure-cloud".into(),
        "AzureCloud".into(),
    ));
    create_sa(&admin, &ns, "aimed", by_key(&aimed), &[]);
    let note = wait_event(
        &admin,
        &ns,
        "aimed",
        "Warning",
        FAILED,
        "invalid configuration",
        &controller,
    );
    assert_eq!(
        note,
        format!(
            "invalid configuration: annotation imagepullsecrets.preferred.jp/registry: registry host {host:?} is \
             not an Azure Container Registry login server (NAME.azurecr.io, NAME.azurecr.us or NAME.azurecr.cn) \
             nor a host the operator allows (flag --azure-registry-suffixes); it was refused before any request \
             was made"
        )
    );
    controller.wait_idle();
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the controller connected to the host the tenant named"
    );
    assert!(
        secret_names_in(&admin, &ns).is_empty(),
        "{:?}",
        secret_names_in(&admin, &ns)
    );
    assert!(pull_secret_names(&get_sa(&admin, &ns, "aimed")).is_empty());
    assert_eq!(
        fake.count("token_calls"),
        0,
        "no Entra token was requested for it"
    );
    assert_eq!(fake.count("exchange_calls"), 0);
}

/// What the operator allows with `--azure-registry-suffixes` (a private DNS name of a registry, with the
/// azure-cloud annotation) is provisioned as an ACR host is; a sibling under another suffix is still refused.
#[test]
fn a_private_registry_host_the_operator_allows_is_provisioned() {
    let cluster = cluster();
    let admin = cluster.admin();
    let ns = cluster.namespace("azprivate");
    let private = "acr.registry.internal";
    let fake = AzureFake::builder()
        .app(CLIENT)
        .federate(CLIENT, &subject(&ns, "private"))
        .federate(CLIENT, &subject(&ns, "other"))
        .registry(private)
        .start();
    let controller = controller(&ns, &fake)
        .arg("--azure-registry-suffixes=registry.internal")
        .start();
    let with_cloud = |registry: &str| {
        let mut annotations = azure(registry, CLIENT);
        annotations.push((
            "imagepullsecrets.preferred.jp/azure-cloud".into(),
            "AzureCloud".into(),
        ));
        by_key(&annotations)
    };
    create_sa(&admin, &ns, "private", with_cloud(private), &[]);
    create_sa(
        &admin,
        &ns,
        "other",
        with_cloud("acr.registry.example"),
        &[],
    );
    wait_attached(
        &admin,
        &ns,
        "private",
        &["imagepullsecret-private"],
        &controller,
    );
    let config = docker_config(&secret(&admin, &ns, "imagepullsecret-private"));
    assert!(config["auths"][private]["password"].is_string(), "{config}");
    let note = wait_event(
        &admin,
        &ns,
        "other",
        "Warning",
        FAILED,
        "invalid configuration",
        &controller,
    );
    assert!(
        note.contains("\"acr.registry.example\" is not an Azure Container Registry login server"),
        "{note}"
    );
}
