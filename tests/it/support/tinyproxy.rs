//! tinyproxy (Debian's package, installed by `scripts/test`), a real forward proxy with a request log, for
//! proving which requests went through a proxy; and a host name other than `localhost` that reaches the
//! test servers, since Go's rules never proxy `localhost` or loopback IPs.
//!
//! tinyproxy runs on 127.0.0.1 under a small shell guard that stops it when the test process exits, however
//! that ends, and when the [`Tinyproxy`] is dropped.

use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::unique;

pub struct Tinyproxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log: PathBuf,
    guard: Child,
}

impl Tinyproxy {
    pub fn start() -> Tinyproxy {
        let binary = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("tinyproxy is not installed: run scripts/test (it installs it) or apt-get install tinyproxy");
        let dir = std::env::temp_dir().join(format!(
            "ipsp-tinyproxy-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&dir).expect("tinyproxy dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        // No ConnectPort line: CONNECT to any port (the test servers' ports are random).
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .expect("tinyproxy config");
        let script = r#"
"$1" -d -c "$2" >"$3" 2>&1 &
proxy=$!
trap 'kill $proxy 2>/dev/null; exit 0' TERM INT
while kill -0 "$4" 2>/dev/null && kill -0 $proxy 2>/dev/null; do sleep 1; done
kill $proxy 2>/dev/null
"#;
        let guard = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("tinyproxy-guard")
            .arg(&binary)
            .arg(&config)
            .arg(dir.join("tinyproxy.out"))
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        super::poll(Duration::from_secs(20), Duration::from_millis(50), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "tinyproxy did not listen on {port}: {}",
                std::fs::read_to_string(dir.join("tinyproxy.out")).unwrap_or_default()
            )
        });
        Tinyproxy {
            url: format!("http://127.0.0.1:{port}"),
            log,
            guard,
        }
    }

    /// The proxy's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many CONNECT requests for `host:port` the proxy has logged.
    pub fn connects(&self, host: &str, port: u16) -> usize {
        let line = format!(": CONNECT {host}:{port} HTTP/1.1");
        self.log().lines().filter(|l| l.ends_with(&line)).count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.guard.id().to_string())
            .status();
        let _ = self.guard.wait();
    }
}

/// A name other than `localhost` that this machine resolves to 127.0.0.1 and nothing else, found in
/// /etc/hosts (many machines list their host name there). tinyproxy resolves it the same way.
pub fn loopback_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let mut candidates: Vec<String> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some("127.0.0.1"))
                .then(|| fields.map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect();
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        candidates.push(name.trim().to_string());
    }
    candidates
        .into_iter()
        .filter(|name| !name.is_empty() && name != "localhost" && !name.contains("localhost"))
        .find(|name| {
            (name.as_str(), 80)
                .to_socket_addrs()
                .map(|addrs| {
                    let addrs: Vec<_> = addrs.collect();
                    !addrs.is_empty()
                        && addrs
                            .iter()
                            .all(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST))
                })
                .unwrap_or(false)
        })
        .expect(
            "no name other than localhost resolves to 127.0.0.1 (and only to it) on this machine; the proxy test \
             needs one because Go's rules never proxy localhost: add a line `127.0.0.1 ipsp-test` to /etc/hosts",
        )
}
