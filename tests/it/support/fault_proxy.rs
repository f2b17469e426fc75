//! The project's TCP fault proxy (`scripts/testenv/fault_proxy.py`) between the controller and a peer: open
//! connections frozen without FIN or RST, new ones black-holed, resets, latency, answers in pieces. Stopped
//! when dropped and, through `--watch-pid`, when the test process exits.

use std::path::Path;

use serde_json::Value;

use super::moto::StandIn;
use super::project_root;

pub struct FaultProxy {
    stand_in: StandIn,
    control: u16,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 forwarding to `upstream` (`HOST:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let script = project_root().join("scripts/testenv/fault_proxy.py");
        let stand_in = StandIn::start(
            "fault-proxy",
            &script,
            &["--upstream".into(), upstream.into()],
        );
        let printed = std::fs::read_to_string(stand_in.dir.join("stdout")).unwrap_or_default();
        let control = printed
            .lines()
            .find_map(|l| l.strip_prefix("CONTROL port="))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the fault proxy named no control port: {printed}"));
        FaultProxy { stand_in, control }
    }

    /// A proxy in front of the API server at `server` (`https://HOST:PORT`).
    pub fn for_server(server: &str) -> FaultProxy {
        let upstream = server.trim_start_matches("https://").trim_end_matches('/');
        FaultProxy::start(upstream)
    }

    /// The proxy's own port.
    pub fn port(&self) -> u16 {
        self.stand_in.port
    }

    /// Makes a fault (`freeze`, `thaw`, `blackhole`, `open`, `partition`, `heal`, `reset`,
    /// `latency?ms=N`, `pieces?on=1`).
    pub fn make(&self, action: &str) {
        let url = format!("http://127.0.0.1:{}/{action}", self.control);
        let mut answer = ureq::post(&url)
            .send_empty()
            .unwrap_or_else(|e| panic!("fault proxy {action}: {e}"));
        let body = answer.body_mut().read_to_string().unwrap_or_default();
        assert!(
            body.contains("\"ok\": true"),
            "fault proxy {action}: {body}"
        );
    }

    /// Its counters: accepted, open, frozen, blackholed, reset, split_writes, bytes_up, bytes_down.
    pub fn stats(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/stats", self.control);
        let mut answer = ureq::get(&url).call().expect("fault proxy stats");
        serde_json::from_str(&answer.body_mut().read_to_string().expect("stats body"))
            .expect("stats are JSON")
    }

    /// A copy of `kubeconfig` whose cluster is reached through this proxy.
    pub fn kubeconfig(&self, kubeconfig: &Path, server: &str) -> std::path::PathBuf {
        let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
        let through = format!("https://127.0.0.1:{}", self.port());
        assert!(
            text.contains(server),
            "{} names no {server}",
            kubeconfig.display()
        );
        let path = self.stand_in.dir.join("through-proxy.kubeconfig");
        std::fs::write(&path, text.replace(server, &through)).expect("write kubeconfig");
        path
    }
}
