//! `check NAMESPACE/NAME` against the real peers: a kube-apiserver with an audit log (so the tests can prove
//! that the only write is the TokenRequest), the strict Google stand-in, moto with authentication on, and a
//! real `distribution` registry that accepts exactly the credentials the stand-ins issue.
//!
//! Every run is `--output json --log-level trace`; the tests parse the steps and assert that no token,
//! password or key appears on stdout or stderr.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::google::CLUSTER_POOL_PROVIDER as PROVIDER;
use crate::support::google::MY_PROJECT_EMAIL as EMAIL;
use crate::support::google::{member, GoogleFake};
use crate::support::moto::{Moto, StandIn, ACCOUNT_ID, PULLER_ROLE};
use crate::support::{base64_encode, eventually, project_root, unique, PrivateCluster};
use serde_json::Value;

const AUDIENCE: &str = "ipsp-check.example.com/google";
/// What moto's ECR answers as password (`AWS:<account>-auth-token`, base64): the registry accepts it for user AWS.
const MOTO_ECR_PASSWORD: &str = "123456789012-auth-token";
const CHECKER: &str = "system:serviceaccount:ipsp-check:checker";
const KEY_PREFIX: &str = "imagepullsecrets.preferred.jp/";

/// The cluster, the registry and the identity `check` runs as; shared by every test of this binary.
struct Env {
    private: PrivateCluster,
    /// Kept for its lifetime: the registry stops when this process ends.
    _registry: StandIn,
    /// `127.0.0.1:PORT` of the registry.
    registry_host: String,
    /// The cluster's and the registry's CAs: `--provider-ca-bundle`.
    ca_bundle: PathBuf,
    /// The access token the Google stand-in issues when started with `--access-token-file`.
    google_token: String,
    google_token_file: PathBuf,
    checker_kubeconfig: PathBuf,
    /// moto that checks web identities as AWS does (`--verify-web-identity`), with an IAM OIDC provider for
    /// the cluster's issuer whose client ID is `sts.amazonaws.com`.
    moto: Moto,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        // Blocking mode: every request is in the log before its answer, so a finished run is fully logged.
        let private = PrivateCluster::start_with(
            "check",
            &["--audit-log"],
            &["--audit-log-mode=blocking"],
        );
        let cluster = &private.cluster;
        let dir = cluster.dir.join("check");
        std::fs::create_dir_all(&dir).expect("test directory");
        let google_token = format!("ya29.check-{}-{}", std::process::id(), unique());
        let google_token_file = dir.join("google-token");
        std::fs::write(&google_token_file, &google_token).expect("token file");
        let moto_password_file = dir.join("moto-password");
        std::fs::write(&moto_password_file, MOTO_ECR_PASSWORD).expect("password file");
        let registry_dir = dir.join("registry");
        let registry = start_registry(
            &registry_dir,
            &[
                format!("oauth2accesstoken={}", google_token_file.display()),
                format!("AWS={}", moto_password_file.display()),
            ],
            false,
        );
        let mut bundle = std::fs::read(&cluster.ca_file).expect("cluster CA");
        bundle.extend(std::fs::read(registry_dir.join("ca.crt")).expect("registry CA"));
        let ca_bundle = dir.join("ca-bundle.pem");
        std::fs::write(&ca_bundle, bundle).expect("CA bundle");

        // check runs as an identity of its own, with read access and TokenRequest only, so that the audit
        // log can tell its requests from the test's setup.
        cluster.apply(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ipsp-check\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: checker\n  namespace: ipsp-check\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: ipsp-check\nrules:\n\
             - apiGroups: [\"\"]\n  resources: [serviceaccounts, secrets]\n  verbs: [get, list]\n\
             - apiGroups: [\"\"]\n  resources: [serviceaccounts/token]\n  verbs: [create]\n\
             - apiGroups: [events.k8s.io]\n  resources: [events]\n  verbs: [list]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: ipsp-check\n\
             roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: ipsp-check\n\
             subjects:\n- kind: ServiceAccount\n  name: checker\n  namespace: ipsp-check\n",
        );
        let admin = cluster.admin();
        let token = eventually(Duration::from_secs(30), "the checker's token", || {
            admin
                .create_token("ipsp-check", "checker", &[cluster.server.as_str()], Duration::from_secs(24 * 3600))
                .ok()
        });
        let checker_kubeconfig = cluster.kubeconfig_for_token("checker", token.token.expose());
        let registry_host = format!("127.0.0.1:{}", registry.port);
        let moto = Moto::start_with(&[
            "--verify-web-identity".to_string(),
            "--ca-file".to_string(),
            cluster.ca_file.display().to_string(),
        ]);
        moto.create_oidc_provider(&cluster.issuer, &["sts.amazonaws.com"]);
        Env {
            moto,
            private,
            _registry: registry,
            registry_host,
            ca_bundle,
            google_token,
            google_token_file,
            checker_kubeconfig,
        }
    })
}

/// Starts a `distribution` registry (htpasswd, or token authentication) accepting `users`
/// (`NAME=PASSWORD_FILE`) and holding `test/app:1`.
fn start_registry(dir: &std::path::Path, users: &[String], token_auth: bool) -> StandIn {
    let registry_bin = Command::new(project_root().join("scripts/testenv/build-registry"))
        .output()
        .expect("scripts/testenv/build-registry runs");
    assert!(registry_bin.status.success(), "build-registry failed");
    let registry_bin = String::from_utf8(registry_bin.stdout)
        .expect("path")
        .trim()
        .to_string();
    let mut args = vec![
        "--registry-bin".to_string(),
        registry_bin,
        "--dir".to_string(),
        dir.display().to_string(),
        "--image".to_string(),
        "test/app:1".to_string(),
    ];
    for user in users {
        args.extend(["--user".to_string(), user.clone()]);
    }
    if token_auth {
        args.push("--token-auth".to_string());
    }
    StandIn::start(
        "registry",
        &project_root().join("scripts/testenv/registry_server.py"),
        &args,
    )
}

/// A namespace with ServiceAccount `app` annotated with `annotations` (keys without the prefix).
fn service_account(prefix: &str, annotations: &[(&str, &str)]) -> String {
    let cluster = &env().private.cluster;
    let namespace = cluster.namespace(prefix);
    let mut manifest = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: {namespace}\n  annotations:\n"
    );
    for (key, value) in annotations {
        manifest.push_str(&format!("    {KEY_PREFIX}{key}: {value:?}\n"));
    }
    if annotations.is_empty() {
        manifest = manifest.replace("  annotations:\n", "");
    }
    cluster.apply(&manifest);
    namespace
}

fn google_annotations(registry: &str) -> Vec<(&'static str, String)> {
    vec![
        ("registry", registry.to_string()),
        ("audience", AUDIENCE.to_string()),
        (
            "googlecloud-workload-identity-provider",
            PROVIDER.to_string(),
        ),
        ("googlecloud-service-account-email", EMAIL.to_string()),
    ]
}

fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A Google stand-in for the private cluster's issuer whose provider accepts [`AUDIENCE`], letting
/// `namespace/app` impersonate [`EMAIL`] and issuing the token the registry accepts.
fn google_for(namespace: &str) -> GoogleFake {
    GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(namespace, "app"))
        .arg(&format!(
            "--access-token-file={}",
            env().google_token_file.display()
        ))
        .start_for(&env().private.cluster)
}

/// The trust policy AWS documents for a ServiceAccount: the cluster's OIDC provider, with `sub` and `aud`.
fn trust_policy(namespace: &str, service_account: &str) -> String {
    let issuer = &env().private.cluster.issuer;
    let host = issuer.trim_start_matches("https://");
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
                format!("{host}:aud"): "sts.amazonaws.com",
            }},
        }],
    })
    .to_string()
}

/// A role that trusts `namespace/app` and may get ECR tokens and pull.
fn trusting_role(namespace: &str) -> String {
    env().moto.create_role_trusting(
        &format!("pull-{namespace}"),
        &[
            "ecr:GetAuthorizationToken",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ],
        &trust_policy(namespace, "app"),
    )
}

/// One `check` run.
struct Run {
    /// The STS role session name of the ServiceAccount checked.
    session_name: String,
    code: i32,
    stdout: String,
    stderr: String,
    steps: Vec<Value>,
}

impl Run {
    fn step(&self, name: &str) -> &Value {
        self.steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name}:\n{}\n{}", self.stdout, self.stderr))
    }

    /// Asserts that step `name` failed and that its detail and fix contain the given texts.
    fn assert_failed(&self, name: &str, detail: &[&str], fix: &[&str]) {
        let step = self.step(name);
        assert_eq!(step["ok"], false, "{name} should fail:\n{}", self.stdout);
        assert_eq!(step["status"], "fail");
        let text = |key: &str| step[key].as_str().unwrap_or_default().to_string();
        for want in detail {
            assert!(
                text("detail").contains(want),
                "{name} detail lacks {want:?}:\n{}",
                text("detail")
            );
        }
        for want in fix {
            assert!(
                text("fix").contains(want),
                "{name} fix lacks {want:?}:\n{}",
                text("fix")
            );
        }
        assert_eq!(self.code, 1, "exit status of a failed check");
    }
}

fn check(namespace: &str, extra: &[&str], google: Option<&GoogleFake>) -> Run {
    check_with(&env().checker_kubeconfig, namespace, extra, google)
}

fn check_with(
    kubeconfig: &std::path::Path,
    namespace: &str,
    extra: &[&str],
    google: Option<&GoogleFake>,
) -> Run {
    let env = env();
    let mut command = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"));
    command
        .arg("check")
        .arg(format!("{namespace}/app"))
        .args(["--output", "json", "--log-level", "trace"])
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--aws-sts-endpoint",
            &env.moto.endpoint,
            "--aws-ecr-endpoint",
            &env.moto.endpoint,
        ])
        .args(["--provider-timeout", "20s"])
        .args(extra)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    if !extra.iter().any(|a| a.starts_with("--provider-ca-bundle")) {
        command.arg("--provider-ca-bundle").arg(&env.ca_bundle);
    }
    if let Some(fake) = google {
        command.args([
            "--google-sts-endpoint",
            &fake.endpoint,
            "--google-iamcredentials-endpoint",
            &fake.endpoint,
        ]);
    }
    let audit_log = env.private.cluster.dir.join("audit.log");
    let offset = std::fs::metadata(&audit_log).map_or(0, |m| m.len() as usize);
    let output = command.output().expect("check runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let steps = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{stderr}"))
        })
        .collect();
    let run = Run {
        session_name: format!("{namespace}.app"),
        code: output.status.code().unwrap_or(-1),
        stdout,
        stderr,
        steps,
    };
    assert_no_secrets(&run);
    assert_only_token_request_written(namespace, offset);
    run
}

/// No JWT, registry password (plain or in an Authorization header), or other credential in the output.
fn assert_no_secrets(run: &Run) {
    let env = env();
    let output = format!("{}\n{}", run.stdout, run.stderr);
    let forbidden = [
        "eyJ".to_string(), // every JWT starts with a base64 '{"'
        env.google_token.clone(),
        base64_encode(format!("oauth2accesstoken:{}", env.google_token).as_bytes()),
        MOTO_ECR_PASSWORD.to_string(),
        base64_encode(format!("AWS:{MOTO_ECR_PASSWORD}").as_bytes()),
        env.private.cluster.admin_token.clone(),
    ];
    // Every STS session moto issued for this ServiceAccount: its keys must not show either.
    let sessions = env.moto.sessions(&run.session_name);
    let forbidden = forbidden
        .into_iter()
        .chain(sessions.into_iter().flat_map(|s| {
            [
                s.secret_access_key.expose().to_string(),
                s.session_token.expose().to_string(),
            ]
        }));
    for secret in forbidden {
        assert!(
            !output.contains(&secret),
            "output holds a credential ({secret:.6}...):\n{output}"
        );
    }
}

/// The audit log, from byte `offset` on, shows the checker's requests in `namespace`: reads, and one
/// TokenRequest, nothing else.
fn assert_only_token_request_written(namespace: &str, offset: usize) {
    let log = std::fs::read(env().private.cluster.dir.join("audit.log")).expect("audit log");
    let log = String::from_utf8_lossy(&log[offset.min(log.len())..]).into_owned();
    let mut token_requests = 0;
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        // Each request is logged at RequestReceived and at ResponseComplete: count it once.
        if event["user"]["username"] != CHECKER
            || event["objectRef"]["namespace"] != namespace
            || event["stage"] != "ResponseComplete"
        {
            continue;
        }
        let verb = event["verb"].as_str().unwrap_or_default();
        let resource = format!(
            "{}/{}",
            event["objectRef"]["resource"].as_str().unwrap_or_default(),
            event["objectRef"]["subresource"]
                .as_str()
                .unwrap_or_default()
        );
        match (verb, resource.as_str()) {
            ("get" | "list" | "watch", _) => {}
            ("create", "serviceaccounts/token") => token_requests += 1,
            _ => panic!("check wrote {verb} {resource} in {namespace}: {line}"),
        }
    }
    assert!(
        token_requests <= 1,
        "{token_requests} TokenRequests in one run"
    );
}

#[test]
fn google_correct_service_account_passes_every_step_and_pulls() {
    let env = env();
    let namespace = service_account(
        "check-google-ok",
        &pairs(&google_annotations(&env.registry_host)),
    );
    let fake = google_for(&namespace);
    // The controller provisions the secret first, so that the cluster steps have something to show.
    let controller = start_controller(&namespace, &fake);
    let cluster = &env.private.cluster;
    eventually(Duration::from_secs(60), "the secret to be attached", || {
        cluster
            .kubectl(&[
                "-n",
                &namespace,
                "get",
                "serviceaccount",
                "app",
                "-o",
                "jsonpath={.imagePullSecrets[*].name}",
            ])
            .contains("imagepullsecret-app")
            .then_some(())
    });
    drop(controller);

    let image = format!("{}/test/app:1", env.registry_host);
    let run = check(&namespace, &["--image", &image], Some(&fake));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let names: Vec<&str> = run
        .steps
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "configuration",
            "token",
            "issuer",
            "exchange",
            "pull",
            "secrets",
            "events"
        ]
    );
    for step in &run.steps {
        assert_eq!(step["ok"], true, "{step}");
    }
    let detail = |name: &str| run.step(name)["detail"].as_str().unwrap().to_string();
    assert!(detail("configuration")
        .contains(&format!("principal {EMAIL} -> secret imagepullsecret-app")));
    assert!(detail("token").contains(&format!("sub: system:serviceaccount:{namespace}:app")));
    assert!(detail("token").contains(&format!("aud: {AUDIENCE}")));
    assert!(detail("token").contains(&format!("iss: {}", cluster.issuer)));
    assert!(detail("token").contains("kid: "));
    assert!(
        detail("issuer").contains("is published"),
        "{}",
        detail("issuer")
    );
    assert_eq!(run.step("issuer")["status"], "pass");
    assert!(detail("exchange").contains("username: oauth2accesstoken"));
    assert!(detail("exchange").contains("expires at "));
    assert!(
        detail("pull").contains(&format!("{image} is pullable")),
        "{}",
        detail("pull")
    );
    assert!(detail("pull").contains("digest sha256:"));
    assert!(
        detail("secrets").contains("imagepullsecret-app: expires at"),
        "{}",
        detail("secrets")
    );
    assert!(detail("secrets").contains("attached"));

    // The text rendering says the same, for people.
    let text = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"))
        .args([
            "check",
            &format!("{namespace}/app"),
            "--image",
            &image,
            "--kubeconfig",
        ])
        .arg(&env.checker_kubeconfig)
        .arg("--provider-ca-bundle")
        .arg(&env.ca_bundle)
        .args([
            "--google-sts-endpoint",
            &fake.endpoint,
            "--google-iamcredentials-endpoint",
            &fake.endpoint,
        ])
        .output()
        .expect("check runs");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{stdout}");
    assert!(
        stdout.contains("[PASS] pull puller@my-project.iam.gserviceaccount.com"),
        "{stdout}"
    );
    assert!(stdout.ends_with("all checks passed\n"), "{stdout}");
    assert!(!stdout.contains(&env.google_token) && !stdout.contains("eyJ"));
}

/// Starts the controller for `namespace` as the cluster admin, with the Google stand-in.
fn start_controller(namespace: &str, fake: &GoogleFake) -> KillOnDrop {
    let cluster = &env().private.cluster;
    let child = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"))
        .arg("--kubeconfig")
        .arg(&cluster.admin_kubeconfig)
        .args([
            "--namespace",
            namespace,
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ])
        .args([
            "--google-sts-endpoint",
            &fake.endpoint,
            "--google-iamcredentials-endpoint",
            &fake.endpoint,
        ])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("controller starts");
    KillOnDrop(child)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_credential_the_registry_refuses_and_a_missing_image_are_told_apart() {
    let env = env();
    let namespace = service_account(
        "check-pull",
        &pairs(&google_annotations(&env.registry_host)),
    );
    // Without --access-token-file the stand-in issues random tokens, which the registry does not know.
    let stranger = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&namespace, "app"))
        .start_for(&env.private.cluster);
    let image = format!("{}/test/app:1", env.registry_host);
    let run = check(&namespace, &["--image", &image], Some(&stranger));
    assert_eq!(run.step("exchange")["ok"], true, "{}", run.stdout);
    run.assert_failed(
        "pull",
        &[&format!(
            "{} refused the credentials: HTTP 401 UNAUTHORIZED",
            env.registry_host
        )],
        &["did not accept the access token of puller@my-project.iam.gserviceaccount.com"],
    );

    let fake = google_for(&namespace);
    let missing = format!("{}/test/app:no-such-tag", env.registry_host);
    let run = check(&namespace, &["--image", &missing], Some(&fake));
    run.assert_failed(
        "pull",
        &["does not exist (the credentials were accepted): HTTP 404 MANIFEST_UNKNOWN"],
        &["check the repository and tag"],
    );
}

#[test]
fn token_authentication_registry_takes_the_bearer_path() {
    let env = env();
    // Signed by a CA of its own, which check must be told about too.
    let dir = env
        .private
        .cluster
        .dir
        .join(format!("token-registry-{}", unique()));
    let registry = start_registry(
        &dir,
        &[format!(
            "oauth2accesstoken={}",
            env.google_token_file.display()
        )],
        true,
    );
    let host = format!("127.0.0.1:{}", registry.port);
    let mut bundle = std::fs::read(&env.ca_bundle).expect("CA bundle");
    bundle.extend(std::fs::read(dir.join("ca.crt")).expect("registry CA"));
    let ca_bundle = dir.join("ca-bundle.pem");
    std::fs::write(&ca_bundle, bundle).expect("CA bundle");
    let ca_flag = format!("--provider-ca-bundle={}", ca_bundle.display());
    let namespace = service_account("check-token-auth", &pairs(&google_annotations(&host)));
    let image = format!("{host}/test/app:1");

    let run = check(
        &namespace,
        &["--image", &image, &ca_flag],
        Some(&google_for(&namespace)),
    );
    let pull = run.step("pull");
    assert_eq!(pull["ok"], true, "{}\n{}", run.stdout, registry.log());
    assert!(pull["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("{image} is pullable")));

    let stranger = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&namespace, "app"))
        .start_for(&env.private.cluster);
    let run = check(&namespace, &["--image", &image, &ca_flag], Some(&stranger));
    run.assert_failed(
        "pull",
        &[
            &format!("{host} refused the credentials: token service https://127.0.0.1:"),
            "HTTP 401 UNAUTHORIZED: authentication required",
        ],
        &["did not accept the access token"],
    );
}

#[test]
fn google_wrong_audience() {
    let namespace = service_account(
        "check-google-aud",
        &pairs(&google_annotations("europe-docker.pkg.dev")),
    );
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &["some-other-audience"])
        .allow(EMAIL, &member(&namespace, "app"))
        .start_for(&env().private.cluster);
    let run = check(&namespace, &[], Some(&fake));
    run.assert_failed(
        "exchange",
        &["obtaining registry credentials for puller@my-project.iam.gserviceaccount.com: sts token exchange: \
           provider projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc: \
           HTTP 400 invalid_grant: The audience in ID Token"],
        &[&format!("the token's audience {AUDIENCE} is not among provider {PROVIDER}'s allowed audiences"),
          &format!("--allowed-audiences={AUDIENCE}")],
    );
}

#[test]
fn google_wrong_pool_or_provider() {
    let wrong = "projects/123456789012/locations/global/workloadIdentityPools/other-pool/providers/kube-oidc";
    let mut annotations = google_annotations("europe-docker.pkg.dev");
    annotations[2].1 = wrong.to_string();
    let namespace = service_account("check-google-pool", &pairs(&annotations));
    let fake = google_for(&namespace);
    let run = check(&namespace, &[], Some(&fake));
    run.assert_failed(
        "exchange",
        &["invalid_target"],
        &[
            &format!("workload identity provider {wrong} does not exist or is disabled"),
            "--workload-identity-pool=other-pool",
        ],
    );
}

#[test]
fn google_service_account_not_granted() {
    // Two principals: the first is granted, the second is not. Each gets its own step.
    let other = "other@my-project.iam.gserviceaccount.com";
    let mut annotations = google_annotations("europe-docker.pkg.dev");
    annotations[3].1 = format!("{EMAIL},{other}");
    let namespace = service_account("check-google-grant", &pairs(&annotations));
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&namespace, "app"))
        .allow(other, &member("some-other-namespace", "app"))
        .start_for(&env().private.cluster);
    let run = check(&namespace, &[], Some(&fake));
    let exchanges: Vec<&Value> = run
        .steps
        .iter()
        .filter(|s| s["name"] == "exchange")
        .collect();
    assert_eq!(exchanges.len(), 2, "{}", run.stdout);
    assert_eq!(
        (&exchanges[0]["principal"], &exchanges[0]["ok"]),
        (&Value::from(EMAIL), &Value::Bool(true))
    );
    assert_eq!(
        (&exchanges[1]["principal"], &exchanges[1]["ok"]),
        (&Value::from(other), &Value::Bool(false))
    );
    let detail = exchanges[1]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "iamcredentials generateAccessToken: service account {other}: HTTP 403 PERMISSION_DENIED"
        )),
        "{detail}"
    );
    let fix = exchanges[1]["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!(
            "gcloud iam service-accounts add-iam-policy-binding {other} --role=roles/iam.workloadIdentityUser \
             --member=principal://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/subject/system:serviceaccount:{namespace}:app"
        )),
        "{fix}"
    );
    assert_eq!(run.code, 1);
}

#[test]
fn unreachable_issuer_warns_with_its_url_and_fails_the_exchange() {
    // A cluster whose tokens name an issuer nobody can reach (nothing listens on port 9).
    let issuer = "https://127.0.0.1:9/unreachable";
    let lonely = PrivateCluster::start_with("check-issuer", &["--issuer", issuer], &[]);
    let cluster = &lonely.cluster;
    let namespace = cluster.namespace("check-issuer");
    let mut manifest = format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n  namespace: {namespace}\n  annotations:\n");
    for (key, value) in google_annotations("europe-docker.pkg.dev") {
        manifest.push_str(&format!("    {KEY_PREFIX}{key}: {value:?}\n"));
    }
    cluster.apply(&manifest);
    let fake = GoogleFake::builder()
        .pool(PROVIDER, &[AUDIENCE])
        .allow(EMAIL, &member(&namespace, "app"))
        .start_for(cluster);
    // As the admin of that cluster: the audit assertions are about the shared one.
    let env = env();
    let output = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"))
        .args([
            "check",
            &format!("{namespace}/app"),
            "--output",
            "json",
            "--log-level",
            "trace",
            "--kubeconfig",
        ])
        .arg(&cluster.admin_kubeconfig)
        .arg("--provider-ca-bundle")
        .arg(&env.ca_bundle)
        .args([
            "--google-sts-endpoint",
            &fake.endpoint,
            "--google-iamcredentials-endpoint",
            &fake.endpoint,
        ])
        .args(["--provider-timeout", "5s"])
        .output()
        .expect("check runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let run = Run {
        session_name: format!("{namespace}.app"),
        code: output.status.code().unwrap_or(-1),
        steps: stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stdout,
    };
    assert!(
        !run.stdout.contains("eyJ") && !run.stderr.contains("eyJ"),
        "a token in the output"
    );
    let issuer_step = run.step("issuer");
    assert_eq!(
        (&issuer_step["ok"], &issuer_step["status"]),
        (&Value::Bool(true), &Value::from("warn")),
        "{issuer_step}"
    );
    assert!(
        issuer_step["fix"].as_str().unwrap().contains(&format!(
            "the cloud must be able to GET {issuer}/.well-known/openid-configuration"
        )),
        "{issuer_step}"
    );
    run.assert_failed(
        "exchange",
        &[&format!("Failed to fetch the JWKS of issuer [{issuer}]")],
        &[
            &format!(
                "{issuer}/.well-known/openid-configuration and its jwks_uri must be reachable"
            ),
            "--jwk-json-path",
        ],
    );
}

#[test]
fn missing_annotation() {
    let namespace = service_account(
        "check-missing",
        &[
            ("registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ("aws-role-arn", PULLER_ROLE),
        ],
    );
    let run = check(&namespace, &[], None);
    run.assert_failed(
        "configuration",
        &["invalid configuration: incomplete configuration: missing annotation imagepullsecrets.preferred.jp/audience"],
        &[&format!("kubectl -n {namespace} annotate --overwrite serviceaccount app imagepullsecrets.preferred.jp/audience=")],
    );
    for skipped in ["token", "issuer", "exchange"] {
        assert_eq!(run.step(skipped)["status"], "skip");
    }
}

#[test]
fn malformed_role_arn() {
    let namespace = service_account(
        "check-arn",
        &[
            ("registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ("audience", "sts.amazonaws.com"),
            ("aws-role-arn", "arn:aws:iam::1234:role/puller"),
        ],
    );
    let run = check(&namespace, &[], None);
    run.assert_failed(
        "configuration",
        &["invalid configuration: annotation imagepullsecrets.preferred.jp/aws-role-arn"],
        &["an IAM role ARN has the form arn:aws:iam::ACCOUNT:role/NAME"],
    );
}

/// Sets annotation `key` (without the prefix) on `namespace/app`.
fn annotate(namespace: &str, key: &str, value: &str) {
    env().private.cluster.kubectl(&[
        "-n",
        namespace,
        "annotate",
        "--overwrite",
        "serviceaccount",
        "app",
        &format!("{KEY_PREFIX}{key}={value}"),
    ]);
}

/// An AWS ServiceAccount whose role is set afterwards (roles are named after the namespace).
fn aws_service_account(prefix: &str, registry: &str, audience: &str) -> String {
    let mut annotations = vec![("registry", registry), ("audience", audience)];
    if !registry.contains(".dkr.ecr.") {
        annotations.push(("aws-region", "us-east-1"));
    }
    service_account(prefix, &annotations)
}

#[test]
fn aws_correct_service_account_exchanges_and_pulls_from_a_mirror() {
    let env = env();
    // The registry on 127.0.0.1 stands in for ECR: a non-ECR host with the region annotation.
    let namespace = aws_service_account("check-aws-ok", &env.registry_host, "sts.amazonaws.com");
    let role = trusting_role(&namespace);
    annotate(&namespace, "aws-role-arn", &role);
    let image = format!("{}/test/app:1", env.registry_host);
    let run = check(&namespace, &["--image", &image], None);
    let exchange = run.step("exchange");
    // moto's ECR always answers an expiry in 2015: shown as a warning, not a failure.
    assert_eq!(exchange["ok"], true, "{}", run.stdout);
    assert_eq!(exchange["status"], "warn", "{exchange}");
    let detail = exchange["detail"].as_str().unwrap();
    assert!(detail.contains("username: AWS"), "{detail}");
    assert!(
        detail.contains(&format!(
            "role {role} trusts system:serviceaccount:{namespace}:app via arn:aws:iam::{ACCOUNT_ID}:oidc-provider/127.0.0.1:"
        )),
        "{detail}"
    );
    let pull = run.step("pull");
    assert_eq!(pull["ok"], true, "{pull}");
    assert!(pull["detail"].as_str().unwrap().contains("is pullable"));
    // Nothing provisioned (no controller ran): the one failing step says so.
    run.assert_failed(
        "secrets",
        &["imagepullsecret-app: does not exist"],
        &["the controller has not provisioned imagepullsecret-app"],
    );
    let failed: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s["ok"] == false)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["secrets"]);
}

#[test]
fn aws_role_not_trusting_the_subject() {
    let namespace = aws_service_account(
        "check-aws-trust",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "sts.amazonaws.com",
    );
    // The trust policy names another ServiceAccount (a typo in the subject, say).
    let role = env().moto.create_role_trusting(
        &format!("pull-{namespace}"),
        &["ecr:GetAuthorizationToken"],
        &trust_policy(&namespace, "ap"),
    );
    annotate(&namespace, "aws-role-arn", &role);
    let run = check(&namespace, &[], None);
    let host = env()
        .private
        .cluster
        .issuer
        .trim_start_matches("https://")
        .to_string();
    run.assert_failed(
        "exchange",
        &[&format!("obtaining registry credentials for {role}: sts AssumeRoleWithWebIdentity: for {role}: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity")],
        &[
            &format!("role {role} must trust system:serviceaccount:{namespace}:app with this trust policy"),
            &format!("\"{host}:sub\": \"system:serviceaccount:{namespace}:app\""),
            &format!("\"{host}:aud\": \"sts.amazonaws.com\""),
            &format!("\"Federated\": \"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{host}\""),
        ],
    );
}

#[test]
fn aws_role_without_ecr_permission() {
    let namespace = aws_service_account(
        "check-aws-ecr",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "sts.amazonaws.com",
    );
    let role = env().moto.create_role_trusting(
        &format!("pull-{namespace}"),
        &["ecr:DescribeRepositories"],
        &trust_policy(&namespace, "app"),
    );
    annotate(&namespace, "aws-role-arn", &role);
    let run = check(&namespace, &[], None);
    run.assert_failed(
        "exchange",
        &[&format!("ecr GetAuthorizationToken: for {role}: AccessDenied")],
        &[
            &format!("role {role} may not get ECR tokens"),
            &format!("aws iam attach-role-policy --role-name pull-{namespace} --policy-arn arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"),
            "\"ecr:GetAuthorizationToken\"",
        ],
    );
}

#[test]
fn aws_unknown_role() {
    let namespace = aws_service_account(
        "check-aws-unknown",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "sts.amazonaws.com",
    );
    let role = format!("arn:aws:iam::{ACCOUNT_ID}:role/no-such-role");
    annotate(&namespace, "aws-role-arn", &role);
    let run = check(&namespace, &[], None);
    run.assert_failed(
        "exchange",
        &["AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity"],
        &[&format!(
            "check that role {role} exists (STS answers AccessDenied for an unknown role too)"
        )],
    );
}

#[test]
fn aws_wrong_audience() {
    let namespace = aws_service_account(
        "check-aws-aud",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "my-cluster",
    );
    let role = trusting_role(&namespace);
    annotate(&namespace, "aws-role-arn", &role);
    let run = check(&namespace, &[], None);
    let issuer = &env().private.cluster.issuer;
    run.assert_failed(
        "exchange",
        &["InvalidIdentityToken: Incorrect token audience"],
        &[&format!(
            "the token's audience my-cluster is not a client ID of the OIDC provider for {issuer}: \
             aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{} --client-id my-cluster",
            issuer.trim_start_matches("https://")
        )],
    );
}

#[test]
fn registry_of_another_region() {
    let namespace = aws_service_account(
        "check-region",
        "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "sts.amazonaws.com",
    );
    annotate(&namespace, "aws-role-arn", &trusting_role(&namespace));
    let run = check(
        &namespace,
        &[
            "--image",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
        ],
        None,
    );
    assert_eq!(run.step("exchange")["ok"], true, "{}", run.stdout);
    run.assert_failed(
        "pull",
        &["the image is in ECR region us-east-1, but the credentials are for 123456789012.dkr.ecr.us-west-2.amazonaws.com in region us-west-2"],
        &["set the registry annotation to 123456789012.dkr.ecr.us-east-1.amazonaws.com"],
    );
}

#[test]
fn foreign_secret_in_the_way() {
    let namespace = service_account(
        "check-foreign",
        &[
            ("registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            ("audience", "sts.amazonaws.com"),
            ("aws-role-arn", PULLER_ROLE),
        ],
    );
    env().private.cluster.kubectl(&[
        "-n",
        &namespace,
        "create",
        "secret",
        "generic",
        "imagepullsecret-app",
        "--from-literal=x=y",
    ]);
    // The Warning the controller publishes about it, as events.k8s.io/v1 (its API).
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    env().private.cluster.apply(&format!(
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: app.foreign\n  namespace: {namespace}\n\
         eventTime: \"{now}\"\nreportingController: imagepullsecrets.preferred.jp/image-pull-secrets-provisioner\n\
         reportingInstance: test\naction: Provision\nreason: FailedProvisioningImagePullSecret\ntype: Warning\n\
         note: a secret named imagepullsecret-app already exists\n\
         regarding:\n  apiVersion: v1\n  kind: ServiceAccount\n  name: app\n  namespace: {namespace}\n"
    ));
    let run = check(&namespace, &[], None);
    let events = run.step("events");
    assert_eq!(events["status"], "warn", "{events}");
    assert!(
        events["detail"].as_str().unwrap().contains(
            "FailedProvisioningImagePullSecret: a secret named imagepullsecret-app already exists"
        ),
        "{events}"
    );
    run.assert_failed(
        "secrets",
        &["imagepullsecret-app: a secret named imagepullsecret-app already exists and is not managed by this controller"],
        &[&format!("kubectl -n {namespace} delete secret imagepullsecret-app, or set the imagepullsecrets.preferred.jp/secret-name annotation")],
    );
}

#[test]
fn unconfigured_and_unknown_service_accounts_fail_and_usage_errors_exit_2() {
    let namespace = service_account("check-none", &[]);
    let run = check(&namespace, &[], None);
    run.assert_failed("configuration", &["is not configured"], &["annotate it"]);
    let output = Command::new(env!("CARGO_BIN_EXE_image-pull-secrets-provisioner"))
        .args(["check", "no-slash"])
        .output()
        .expect("check runs");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not NAMESPACE/NAME"));
}
