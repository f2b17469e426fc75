//! A real `distribution` registry (built by scripts/testenv/build-tools) on a free loopback port, for the
//! image and release tests. A shell beside it stops it, and removes its storage and the directories handed
//! to [`Registry::start_removing`], when the [`Registry`] is dropped or the test process is gone (a static's
//! Drop never runs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, tool, unique};

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub address: String,
    guard: Child,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_removing(&[])
    }

    /// A registry that also removes `also_remove` when it stops.
    pub fn start_removing(also_remove: &[&Path]) -> Registry {
        let binary = tool("registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let dir: PathBuf =
            std::env::temp_dir().join(format!("ipsp-registry-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(dir.join("data")).expect("registry directory");
        std::fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
                dir.join("data").display()
            ),
        )
        .expect("registry config");
        let script = r#"
"$1" serve "$2" 2>"$3" &
registry=$!
stop() { kill $registry 2>/dev/null; wait $registry 2>/dev/null; shift 4; rm -rf "$@"; exit 0; }
trap stop TERM INT
while kill -0 "$4" 2>/dev/null && kill -0 $registry 2>/dev/null; do sleep 1; done
stop "$@"
"#;
        let guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("registry-guard")
            .arg(&binary)
            .arg(dir.join("config.yml"))
            .arg(dir.join("registry.log"))
            .arg(std::process::id().to_string())
            .arg(&dir)
            .args(also_remove)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("registry starts");
        let registry = Registry { address, guard };
        eventually(
            Duration::from_secs(30),
            "the registry to answer /v2/",
            || registry.get("/v2/", "application/json").ok(),
        );
        registry
    }

    /// GET a path: the content type and the body, or the status as an error.
    pub fn get(&self, path: &str, accept: &str) -> Result<(String, Vec<u8>), String> {
        let mut response = ureq::get(&format!("http://{}{path}", self.address))
            .header("Accept", accept)
            .call()
            .map_err(|e| e.to_string())?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok((content_type, body))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGTERM lets the guard stop the registry and clean up.
        let _ = Command::new("kill")
            .arg(self.guard.id().to_string())
            .status();
        let _ = self.guard.wait();
    }
}
