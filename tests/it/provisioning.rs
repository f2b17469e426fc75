//! The provisioning controller end to end: the real binary, as the manifests' ServiceAccount, against the real
//! apiserver (with the garbage collector), moto and the Google stand-in.
//!
//! Each test has its own namespace, its own controller restricted to it and, for Google, its own fake; the
//! shared moto is told apart by role session names (`NAMESPACE.NAME`). Waits poll with generous timeouts; where
//! a time is the requirement itself (restore latency, refresh time, prompt service), it is measured, printed and
//! asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use image_pull_secrets_provisioner::cloud::aws::role_session_name;
use image_pull_secrets_provisioner::kube::types::{LocalObjectReference, Secret};
use serde_json::json;

use crate::support::controller::Controller;
use crate::support::google::{
    create_google_sa, google_config, member, GoogleFake, AUDIENCE, EMAIL, PROVIDER, REGISTRY,
};
use crate::support::moto::{ecr_config, moto, PULLER_ROLE, REGISTRY as ECR_REGISTRY};
use crate::support::objects::{
    annotations, assert_rfc3339_utc_seconds, create_sa, docker_config, events_about, get_sa,
    get_secret, pull_secret_names, secret_names_in, time_annotation, wait_attached, wait_event,
    wait_log, EXPIRES_AT, FAILED, LABEL, PATIENCE, PRINCIPAL, PROVISIONED,
};
use crate::support::{cluster, eventually};

// ---------------------------------------------------------------------------------------------------------
// The basic contract (SPEC A2)

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
    let sa = wait_attached(&admin, &ns, "app", &["imagepullsecret-app"], &controller);
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
    assert_eq!((fake.count("sts_calls"), fake.count("iam_calls")), (1, 1));
}

// ---------------------------------------------------------------------------------------------------------
// A concurrent writer of .imagePullSecrets (SPEC B1)

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
        annotations(&google_config(AUDIENCE, EMAIL)),
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
        fake.count("iam_calls"),
        0,
        "the user's update must land before the controller's write"
    );

    let sa = wait_attached(
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
    controller.wait_idle();
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
// Bad input (SPEC B4)

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
        annotations(&ecr_config(AUDIENCE, crate::support::moto::NO_ECR_ROLE)),
        &[],
    );
    let mut created = BTreeMap::new();
    for (name, pairs, _) in &cases {
        let sa = create_sa(&admin, &ns, name, annotations(pairs), &["users-own"]);
        created.insert(name.to_string(), sa);
    }
    // A good one created after all the bad ones is served promptly.
    let started = Instant::now();
    create_google_sa(&admin, &ns, "good");
    wait_attached(&admin, &ns, "good", &["imagepullsecret-good"], &controller);
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
    let mut both = ecr_config(AUDIENCE, PULLER_ROLE);
    both.extend(
        google_config(AUDIENCE, EMAIL)
            .into_iter()
            .filter(|(k, _)| k.starts_with("googlecloud")),
    );
    create_sa(&admin, &ns, "ambiguous", annotations(&both), &[]);
    wait_attached(
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
    controller.wait_idle();
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
        (fake.count("sts_calls"), fake.count("iam_calls")),
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
// Names longer than a label value allows (issue 5, item 6)

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
        let sa = create_google_sa(&admin, &ns, name);
        let secret_name = format!("imagepullsecret-{name}");
        wait_attached(&admin, &ns, name, &[secret_name.as_str()], &controller);
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
