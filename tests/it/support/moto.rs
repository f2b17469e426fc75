//! moto, AWS's most faithful stand-in, as STS and ECR for tests: started on 127.0.0.1 with IAM seeded and
//! authentication on, so ECR calls are really SigV4-checked and IAM policies really evaluated.
//!
//! `scripts/testenv/moto_server.py` runs moto with one change (the unsigned STS `AssumeRoleWithWebIdentity`
//! passes while authentication is on, as on AWS) and a call log; see its docstring. One moto serves every test
//! of a test binary ([`moto`]); a test that needs its own starts one with [`Moto::start`]. Either stops when
//! the test process exits, however it ends (`--watch-pid`); an own instance also stops when dropped.
//!
//! Seeded IAM (account [`ACCOUNT_ID`]): role [`PULLER_ROLE`] may call `ecr:GetAuthorizationToken`, role
//! [`NO_ECR_ROLE`] may not; both trust web identities. [`Moto::create_role`] adds roles later, through IAM
//! calls signed with an admin user's keys. [`StandIn`] launches Python stand-ins; `google.rs` uses it too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use image_pull_secrets_provisioner::cloud::aws::{AwsConfig, DEFAULT_SESSION_DURATION_SECONDS};
use image_pull_secrets_provisioner::cloud::sigv4;
use image_pull_secrets_provisioner::cloud::Sensitive;

use super::{project_root, unique};

/// moto's default account, which owns the seeded roles.
pub const ACCOUNT_ID: &str = "123456789012";
/// A role whose policy allows `ecr:GetAuthorizationToken` (and pulling).
pub const PULLER_ROLE: &str = "arn:aws:iam::123456789012:role/puller";
/// A role that trusts web identities but may not call `ecr:GetAuthorizationToken`.
pub const NO_ECR_ROLE: &str = "arn:aws:iam::123456789012:role/no-ecr";
/// A registry of [`ACCOUNT_ID`] in the region moto's ECR is signed for.
pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

/// The annotations (without the `imagepullsecrets.preferred.jp/` prefix) that configure ECR for [`REGISTRY`]:
/// `roles` is the role list as written in the annotation.
pub fn ecr_config(audience: &str, roles: &str) -> Vec<(&'static str, String)> {
    vec![
        ("registry", REGISTRY.to_string()),
        ("audience", audience.to_string()),
        ("aws-role-arn", roles.to_string()),
    ]
}
/// Actions as [`MotoCall::action`] names them.
pub const ASSUME_ROLE_WITH_WEB_IDENTITY: &str = "AssumeRoleWithWebIdentity";
pub const GET_AUTHORIZATION_TOKEN: &str = "GetAuthorizationToken";

const IAM_VERSION: &str = "2010-05-08";
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/127.0.0.1"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
const PULL_ACTIONS: [&str; 3] = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

/// A running moto.
pub struct Moto {
    /// `http://127.0.0.1:PORT`: the STS and ECR endpoint (moto routes by the signature's credential scope).
    pub endpoint: String,
    pub port: u16,
    admin: sigv4::Credentials,
    process: StandIn,
}

/// One AWS API call moto answered, from the wrapper's call log.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MotoCall {
    pub action: String,
    /// The HTTP status moto answered with.
    pub status: Option<u16>,
    /// Whether the request carried an `Authorization` header.
    pub signed: bool,
    /// For STS, the `RoleArn` asked for; for signed calls, the role of the session whose key signed them.
    pub role_arn: Option<String>,
    /// Likewise the role session name (`NAMESPACE.NAME` for the controller's sessions).
    pub session_name: Option<String>,
}

/// The temporary credentials of an STS session moto issued, for tests that check nothing leaks them.
#[derive(Debug, Clone)]
pub struct MotoSession {
    pub role_arn: String,
    pub session_name: String,
    pub access_key_id: String,
    pub secret_access_key: Sensitive,
    pub session_token: Sensitive,
}

/// The moto shared by every test of this test binary; started, seeded and locked down on first use.
pub fn moto() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(Moto::start)
}

impl Moto {
    /// Starts a moto of the caller's own, seeded, with authentication on. Stopped when dropped.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Like [`Moto::start`], with flags of `moto_server.py`, e.g. `--verify-web-identity --ca-file PEM`.
    pub fn start_with(args: &[String]) -> Moto {
        let process = StandIn::start(
            "moto",
            &project_root().join("scripts/testenv/moto_server.py"),
            args,
        );
        let endpoint = format!("http://127.0.0.1:{}", process.port);
        // With authentication off, moto accepts any signature; the keys only name the account.
        let anyone = sigv4::Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".to_string(),
            secret_access_key: Sensitive::new("seeding-while-authentication-is-off"),
            session_token: None,
        };
        let mut moto = Moto {
            endpoint,
            port: process.port,
            admin: anyone,
            process,
        };
        moto.seed();
        moto
    }

    /// Seeds IAM while authentication is off, then switches it on for every later request.
    fn seed(&mut self) {
        for (role, actions) in [
            ("puller", &PULL_ACTIONS[..]),
            ("no-ecr", &["ecr:DescribeRepositories"][..]),
        ] {
            self.put_role(role, actions);
        }
        self.iam(&[("Action", "CreateUser"), ("UserName", "ipsp-admin")]);
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "ipsp-admin"),
            ("PolicyName", "everything"),
            ("PolicyDocument", &allow_policy(&["*"])),
        ]);
        let keys = self.iam(&[("Action", "CreateAccessKey"), ("UserName", "ipsp-admin")]);
        self.admin = sigv4::Credentials {
            access_key_id: xml_text(&keys, "AccessKeyId")
                .expect("CreateAccessKey answers a key id"),
            secret_access_key: Sensitive::new(
                xml_text(&keys, "SecretAccessKey").expect("CreateAccessKey answers a secret key"),
            ),
            session_token: None,
        };
        // "0": no more unauthenticated requests from now on.
        let (status, body) = post(
            &format!("{}/moto-api/reset-auth", self.endpoint),
            &[("Content-Type", "text/plain")],
            b"0",
        );
        assert_eq!(status, 200, "moto reset-auth: {body}");
    }

    /// Creates a role that trusts web identities and may perform `actions` (e.g. `ecr:GetAuthorizationToken`).
    /// Names must be unique within this moto: add [`unique`] or the namespace. Returns the role ARN.
    pub fn create_role(&self, name: &str, actions: &[&str]) -> String {
        self.put_role(name, actions);
        format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
    }

    /// Creates a role with trust policy `trust_policy` that may perform `actions`. Returns the role ARN.
    pub fn create_role_trusting(&self, name: &str, actions: &[&str], trust_policy: &str) -> String {
        self.put_role_trusting(name, actions, trust_policy);
        format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
    }

    /// Registers an IAM OIDC identity provider for `issuer` (an https URL) with `client_ids` as audiences.
    pub fn create_oidc_provider(&self, issuer: &str, client_ids: &[&str]) {
        let mut fields = vec![
            ("Action", "CreateOpenIDConnectProvider"),
            ("Url", issuer),
            (
                "ThumbprintList.member.1",
                "0123456789abcdef0123456789abcdef01234567",
            ),
        ];
        let names: Vec<String> = (1..=client_ids.len())
            .map(|i| format!("ClientIDList.member.{i}"))
            .collect();
        fields.extend(
            names
                .iter()
                .map(String::as_str)
                .zip(client_ids.iter().copied()),
        );
        self.iam(&fields);
    }

    fn put_role(&self, name: &str, actions: &[&str]) {
        self.put_role_trusting(name, actions, TRUST_POLICY)
    }

    fn put_role_trusting(&self, name: &str, actions: &[&str], trust_policy: &str) {
        self.iam(&[
            ("Action", "CreateRole"),
            ("RoleName", name),
            ("AssumeRolePolicyDocument", trust_policy),
        ]);
        self.iam(&[
            ("Action", "PutRolePolicy"),
            ("RoleName", name),
            ("PolicyName", "pull"),
            ("PolicyDocument", &allow_policy(actions)),
        ]);
    }

    /// One IAM query-API call, signed with the admin keys; panics unless moto answers 200.
    fn iam(&self, fields: &[(&str, &str)]) -> String {
        let form: Vec<String> = fields
            .iter()
            .chain(&[("Version", IAM_VERSION)])
            .map(|(n, v)| format!("{n}={}", sigv4::uri_encode(v, true)))
            .collect();
        let body = form.join("&");
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let host = format!("127.0.0.1:{}", self.port);
        let request = sigv4::Request {
            method: "POST",
            host: &host,
            path: "/",
            query: &[],
            headers: &[("Content-Type", content_type)],
            body: body.as_bytes(),
        };
        let signed = sigv4::sign(
            &request,
            &sigv4::Params {
                credentials: &self.admin,
                region: "us-east-1",
                service: "iam",
                time: Utc::now(),
                settings: sigv4::Settings::default(),
            },
        );
        let mut headers = vec![("Content-Type", content_type)];
        headers.extend(signed.headers().iter().map(|(n, v)| (*n, v.as_str())));
        let (status, answer) = post(&format!("{}/", self.endpoint), &headers, body.as_bytes());
        assert_eq!(status, 200, "moto IAM {fields:?}: {answer}");
        answer
    }

    /// STS and ECR endpoints pointed at this moto, the default session length.
    pub fn aws_config(&self) -> AwsConfig {
        AwsConfig {
            sts_endpoint: Some(self.endpoint.clone()),
            ecr_endpoint: Some(self.endpoint.clone()),
            session_duration_seconds: DEFAULT_SESSION_DURATION_SECONDS,
        }
    }

    /// Every API call moto answered since it started (or since [`Moto::reset_calls`]), oldest first.
    pub fn calls(&self) -> Vec<MotoCall> {
        let (status, body) = get(&format!("{}/ipsp/calls", self.endpoint));
        assert_eq!(status, 200, "moto call log: {body}");
        serde_json::from_str(&body).expect("the call log is JSON")
    }

    /// Calls of `action` made for role session `session_name` (`aws::role_session_name(ns, sa)`), whatever
    /// their answer. Safe with a shared moto as long as session names are unique to the test.
    pub fn count(&self, action: &str, session_name: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.action == action && c.session_name.as_deref() == Some(session_name))
            .count()
    }

    /// STS `AssumeRoleWithWebIdentity` calls for `session_name`.
    pub fn sts_calls(&self, session_name: &str) -> usize {
        self.count(ASSUME_ROLE_WITH_WEB_IDENTITY, session_name)
    }

    /// ECR `GetAuthorizationToken` calls signed with a session named `session_name`.
    pub fn ecr_calls(&self, session_name: &str) -> usize {
        self.count(GET_AUTHORIZATION_TOKEN, session_name)
    }

    /// Empties the call log. Only for a moto of the test's own: other tests count in the shared one.
    pub fn reset_calls(&self) {
        let (status, body) = post(&format!("{}/ipsp/calls/reset", self.endpoint), &[], b"");
        assert_eq!(status, 200, "moto call log reset: {body}");
    }

    /// The STS sessions moto issued for `session_name`, with their secrets (from `/moto-api/data.json`).
    pub fn sessions(&self, session_name: &str) -> Vec<MotoSession> {
        let (status, body) = get(&format!("{}/moto-api/data.json", self.endpoint));
        assert_eq!(status, 200, "moto data.json");
        let data: serde_json::Value = serde_json::from_str(&body).expect("data.json is JSON");
        let text = |role: &serde_json::Value, name: &str| {
            role[name].as_str().unwrap_or_default().to_string()
        };
        data["sts"]["AssumedRole"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|role| role["session_name"] == session_name)
            .map(|role| MotoSession {
                role_arn: text(role, "role_arn"),
                session_name: text(role, "session_name"),
                access_key_id: text(role, "access_key_id"),
                secret_access_key: Sensitive::new(text(role, "secret_access_key")),
                session_token: Sensitive::new(text(role, "session_token")),
            })
            .collect()
    }

    /// What moto wrote to stderr (one line per request), for failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// An IAM policy document allowing `actions` on every resource.
fn allow_policy(actions: &[&str]) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    })
    .to_string()
}

/// The text of the first `<tag>` element of an XML answer.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..end].to_string())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// POSTs `body`; returns the status and body whatever the status.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    read(response)
}

pub fn get(url: &str) -> (u16, String) {
    let response = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    read(response)
}

fn read(response: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let body = body
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .expect("response body");
    (status, body)
}

/// A Python stand-in from `scripts/testenv` (moto, the Google fake): started with `--port 0 --watch-pid
/// <this process>`, ready once it prints `READY port=N`; killed when dropped and, through `--watch-pid`, when
/// this process exits.
pub struct StandIn {
    pub port: u16,
    pub dir: PathBuf,
    child: Mutex<Child>,
}

impl StandIn {
    pub fn start(name: &str, script: &Path, args: &[String]) -> StandIn {
        StandIn::start_watching(name, script, args, std::process::id())
    }

    /// Like [`StandIn::start`], but the process stops once process `watch_pid` is gone.
    pub fn start_watching(name: &str, script: &Path, args: &[String], watch_pid: u32) -> StandIn {
        let dir =
            std::env::temp_dir().join(format!("ipsp-{name}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).expect("stand-in directory");
        let stdout = dir.join("stdout");
        let child = Command::new(venv().join("bin/python"))
            .arg(script)
            .args(["--port", "0", "--watch-pid"])
            .arg(watch_pid.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(dir.join("stderr")).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut stand_in = StandIn {
            port: 0,
            dir,
            child: Mutex::new(child),
        };
        let printed = || std::fs::read_to_string(&stdout).unwrap_or_default();
        let port = super::poll(Duration::from_secs(60), Duration::from_millis(50), || {
            let port = printed()
                .lines()
                .find_map(|l| l.strip_prefix("READY port="))
                .and_then(|p| p.trim().parse().ok());
            let exited = stand_in.child.lock().unwrap().try_wait().expect("try_wait");
            assert!(
                port.is_some() || exited.is_none(),
                "{name} did not start ({exited:?}): {}{}",
                printed(),
                stand_in.log()
            );
            port
        });
        stand_in.port = port.unwrap_or_else(|| {
            panic!(
                "{name} did not start within 60 s: {}{}",
                printed(),
                stand_in.log()
            )
        });
        stand_in
    }

    /// What the process wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python virtual environment of the stand-ins (`scripts/testenv/venv`), created on first use.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let output = Command::new(project_root().join("scripts/testenv/venv"))
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/testenv/venv runs");
        assert!(output.status.success(), "scripts/testenv/venv failed");
        PathBuf::from(String::from_utf8(output.stdout).expect("utf-8 path").trim())
    })
}
