//! The Entra and ACR stand-in (`scripts/testenv/azure_fake.py`) for tests: it verifies ServiceAccount tokens
//! against the shared cluster's issuer and federated identity credentials, like Entra does, and serves HTTPS
//! with its own test CA plus a CONNECT proxy that reaches it under the real host names.
//!
//! Each test starts its own stand-in with the applications, credentials and registries it needs, so failure
//! injection and counters never cross tests. It is killed when dropped and, through `--watch-pid`, when the
//! test process exits.

use std::path::PathBuf;
use std::time::Duration;

use image_pull_secrets_provisioner::transport;
use serde_json::Value;

use super::moto::StandIn;
use super::{cluster, unique};

/// Microsoft's documented audience of federated tokens.
pub const AUDIENCE: &str = "api://AzureADTokenExchange";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// A running stand-in.
pub struct AzureFake {
    /// `https://127.0.0.1:PORT`: the Entra and ACR endpoints.
    pub endpoint: String,
    /// `http://127.0.0.1:PORT`: the CONNECT proxy that reaches the endpoints under Azure's names.
    pub proxy: String,
    /// The test CA that signed the endpoints' certificate.
    pub ca_file: PathBuf,
    agent: ureq::Agent,
    process: StandIn,
}

#[derive(Debug, Default, Clone)]
pub struct AzureFakeBuilder {
    args: Vec<String>,
}

impl AzureFakeBuilder {
    /// An application (client ID) registered in [`TENANT`].
    pub fn app(mut self, client_id: &str) -> Self {
        self.args
            .extend(["--app".to_string(), client_id.to_string()]);
        self
    }

    /// A federated identity credential of `client_id` for `subject`, with the cluster's issuer and the
    /// documented audience.
    pub fn federate(mut self, client_id: &str, subject: &str) -> Self {
        self.args
            .extend(["--fic".to_string(), format!("{client_id}={subject}")]);
        self
    }

    pub fn registry(mut self, host: &str) -> Self {
        self.args
            .extend(["--registry".to_string(), host.to_string()]);
        self
    }

    /// Any other flag of azure_fake.py, e.g. `--no-pull CLIENT_ID` or `--refresh-token-lifetime 40`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub fn start(self) -> AzureFake {
        let cluster = cluster();
        let tls_dir = std::env::temp_dir().join(format!(
            "ipsp-azure-tls-{}-{}",
            std::process::id(),
            unique()
        ));
        let mut args = vec![
            "--issuer".to_string(),
            cluster.issuer.clone(),
            "--ca-file".to_string(),
            cluster.ca_file.to_string_lossy().into_owned(),
            "--tls-dir".to_string(),
            tls_dir.to_string_lossy().into_owned(),
            "--tenant".to_string(),
            TENANT.to_string(),
        ];
        args.extend(self.args);
        let process = StandIn::start(
            "azure-fake",
            &super::project_root().join("scripts/testenv/azure_fake.py"),
            &args,
        );
        let printed = std::fs::read_to_string(process.dir.join("stdout")).unwrap_or_default();
        let proxy_port: u16 = printed
            .lines()
            .find_map(|l| l.strip_prefix("PROXY port="))
            .and_then(|p| p.trim().parse().ok())
            .expect("azure fake prints its proxy port");
        let ca_file = tls_dir.join("ca.crt");
        let roots = transport::certificates_from_file(&ca_file).expect("the stand-in's CA");
        let agent = transport::agent_config(&roots, None)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        AzureFake {
            endpoint: format!("https://127.0.0.1:{}", process.port),
            proxy: format!("http://127.0.0.1:{proxy_port}"),
            ca_file,
            agent,
            process,
        }
    }
}

/// The federated subject of a Kubernetes ServiceAccount.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

impl AzureFake {
    pub fn builder() -> AzureFakeBuilder {
        AzureFakeBuilder::default()
    }

    fn get_json(&self, path: &str) -> Value {
        let mut response = self
            .agent
            .get(&format!("{}{path}", self.endpoint))
            .call()
            .unwrap_or_else(|e| panic!("azure fake {path}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "azure fake {path}");
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("JSON")
    }

    /// Counters: `token_calls`, `token_ok`, `exchange_calls`, `exchange_ok`, `injected_failures`,
    /// `rejected`, `connects`, `responses` (by status).
    pub fn stats(&self) -> Value {
        self.get_json("/stats")
    }

    pub fn count(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// The request log: `EPOCH CLIENT METHOD host=HOST PATH STATUS ...` and `EPOCH CONNECT HOST:PORT` lines.
    pub fn log_lines(&self) -> Vec<String> {
        self.get_json("/log")
            .as_array()
            .expect("log is a list")
            .iter()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect()
    }

    /// Changes knobs (`fail_next`, `failure_status`, `retry_after`, `refresh_token_lifetime`, ...).
    pub fn control(&self, changes: Value) -> Value {
        let mut response = self
            .agent
            .post(&format!("{}/control", self.endpoint))
            .header("Content-Type", "application/json")
            .send(changes.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("azure fake /control: {e}"));
        let body = response.body_mut().read_to_string().expect("body");
        assert_eq!(
            response.status().as_u16(),
            200,
            "azure fake /control {changes}: {body}"
        );
        serde_json::from_str(&body).expect("settings are JSON")
    }

    /// What the stand-in wrote to stderr.
    pub fn stderr(&self) -> String {
        self.process.log()
    }
}
