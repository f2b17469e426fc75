//! The Google STS and IAM Credentials stand-in (`scripts/testenv/google_fake.py`) for tests: it verifies
//! ServiceAccount tokens against the shared cluster's issuer, like a workload identity pool does.
//!
//! Each test starts its own fake with the pools and grants it needs ([`GoogleFake::builder`]), so failure
//! injection and counters never cross tests. The fake is killed when dropped and, through `--watch-pid`, when
//! the test process exits.

use image_pull_secrets_provisioner::cloud::google::{GoogleClient, GoogleConfig};
use serde_json::Value;

use image_pull_secrets_provisioner::kube::types::ServiceAccount;
use image_pull_secrets_provisioner::kube::Client;

use super::moto::{get, post, StandIn};
use super::objects::{annotations, create_sa};
use super::{cluster, Cluster};

/// The workload identity provider most tests federate with, and the Google service accounts they impersonate.
pub const PROVIDER: &str =
    "projects/123456/locations/global/workloadIdentityPools/pool-1/providers/prov-1";
pub const EMAIL: &str = "puller@proj.iam.gserviceaccount.com";
pub const EMAIL_2: &str = "second@proj.iam.gserviceaccount.com";
/// The Artifact Registry host most tests provision for.
pub const REGISTRY: &str = "asia-docker.pkg.dev";

/// A provider and service account with a project number and names as a real cluster's pool would have them
/// (the provider and check tests, which print and compare them).
pub const CLUSTER_POOL_PROVIDER: &str =
    "projects/123456789012/locations/global/workloadIdentityPools/cluster-pool/providers/kube-oidc";
pub const MY_PROJECT_EMAIL: &str = "puller@my-project.iam.gserviceaccount.com";

/// The audience of the ServiceAccount tokens in the tests of the controller's behaviour (provisioning,
/// refresh, repair, ownership, principals, outages, watches).
pub const AUDIENCE: &str = "ipsp-test";

/// The annotations (without the `imagepullsecrets.preferred.jp/` prefix) that configure Google for [`REGISTRY`]
/// through [`PROVIDER`]: `emails` is the service account list as written in the annotation.
pub fn google_config(audience: &str, emails: &str) -> Vec<(&'static str, String)> {
    vec![
        ("registry", REGISTRY.to_string()),
        ("audience", audience.to_string()),
        (
            "googlecloud-workload-identity-provider",
            PROVIDER.to_string(),
        ),
        ("googlecloud-service-account-email", emails.to_string()),
    ]
}

/// A running fake.
pub struct GoogleFake {
    /// `http://127.0.0.1:PORT`: both the STS and the IAM Credentials endpoint.
    pub endpoint: String,
    process: StandIn,
}

/// What a fake is started with.
#[derive(Debug, Default, Clone)]
pub struct GoogleFakeBuilder {
    args: Vec<String>,
}

impl GoogleFakeBuilder {
    /// A workload identity provider (`projects/N/locations/global/workloadIdentityPools/P/providers/X`) and
    /// the token audiences it accepts; none means Google's default (the provider's full name).
    pub fn pool(mut self, provider: &str, audiences: &[&str]) -> Self {
        let value = if audiences.is_empty() {
            provider.to_string()
        } else {
            format!("{provider}={}", audiences.join(","))
        };
        self.args.extend(["--pool".to_string(), value]);
        self
    }

    /// Lets `member` (e.g. [`member`]`(ns, sa)`) impersonate service account `email`, like a
    /// roles/iam.workloadIdentityUser binding.
    pub fn allow(mut self, email: &str, member: &str) -> Self {
        self.args
            .extend(["--allow".to_string(), format!("{email}={member}")]);
        self
    }

    /// Any other flag of google_fake.py, e.g. `--now-offset-seconds 700` or `--failure-rate 1`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Starts the fake against the shared cluster's issuer.
    pub fn start(self) -> GoogleFake {
        self.start_for(cluster())
    }

    /// Starts the fake against `cluster`'s issuer.
    pub fn start_for(self, cluster: &Cluster) -> GoogleFake {
        let mut args = vec![
            "--issuer".to_string(),
            cluster.issuer.clone(),
            "--ca-file".to_string(),
            cluster.ca_file.to_string_lossy().into_owned(),
        ];
        args.extend(self.args);
        let process = StandIn::start(
            "google-fake",
            &super::project_root().join("scripts/testenv/google_fake.py"),
            &args,
        );
        GoogleFake {
            endpoint: format!("http://127.0.0.1:{}", process.port),
            process,
        }
    }
}

/// Creates ServiceAccount `name` configured for Google as most tests need it: [`REGISTRY`] through
/// [`PROVIDER`] as [`EMAIL`], tokens for [`AUDIENCE`].
pub fn create_google_sa(admin: &Client, ns: &str, name: &str) -> ServiceAccount {
    create_sa(
        admin,
        ns,
        name,
        annotations(&google_config(AUDIENCE, EMAIL)),
        &[],
    )
}

/// A fake with [`PROVIDER`]'s pool accepting `audience`, letting each of `members` (e.g. [`member`]`(ns, sa)`,
/// or `*`) impersonate [`EMAIL`].
pub fn google_fake<S: AsRef<str>>(audience: &str, members: &[S]) -> GoogleFake {
    let mut builder = GoogleFake::builder().pool(PROVIDER, &[audience]);
    for m in members {
        builder = builder.allow(EMAIL, m.as_ref());
    }
    builder.start()
}

/// The federated subject of a Kubernetes ServiceAccount, as `--allow` takes it.
pub fn member(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

impl GoogleFake {
    pub fn builder() -> GoogleFakeBuilder {
        GoogleFakeBuilder::default()
    }

    /// Both endpoints pointed at this fake, Google's default token lifetime.
    pub fn config(&self) -> GoogleConfig {
        GoogleConfig {
            sts_endpoint: self.endpoint.clone(),
            iamcredentials_endpoint: self.endpoint.clone(),
            token_lifetime: None,
        }
    }

    /// A client for this fake that retries as the controller does (3 attempts), with short delays.
    pub fn client(&self) -> GoogleClient {
        GoogleClient::new(self.config(), super::provider_http())
    }

    /// The fake's counters: `sts_calls`, `sts_ok`, `iam_calls`, `iam_ok`, `injected_failures`, `rejected`,
    /// `responses` (by status).
    pub fn stats(&self) -> Value {
        let (status, body) = get(&format!("{}/stats", self.endpoint));
        assert_eq!(status, 200, "google fake /stats: {body}");
        serde_json::from_str(&body).expect("stats are JSON")
    }

    /// Changes `latency_ms`, `failure_rate`, `token_lifetime`, `now_offset_seconds` or `reset_stats`; returns
    /// the settings now in force. Panics if the fake refuses the change.
    pub fn control(&self, changes: Value) -> Value {
        let (status, body) = post(
            &format!("{}/control", self.endpoint),
            &[("Content-Type", "application/json")],
            changes.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "google fake /control {changes}: {body}");
        serde_json::from_str(&body).expect("settings are JSON")
    }

    /// The fake's request log (one line per request, never a token).
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// The fake's counter `name` (0 while it has not counted any).
    pub fn count(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// Token exchanges the fake answered: (STS calls, generateAccessToken calls).
    pub fn exchanges(&self) -> (u64, u64) {
        let stats = self.stats();
        (
            stats["sts_calls"].as_u64().unwrap_or(0),
            stats["iam_calls"].as_u64().unwrap_or(0),
        )
    }
}
