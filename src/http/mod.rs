//! The operator-facing HTTP endpoints — `/metrics`, `/healthz`, `/readyz` — on a minimal HTTP/1.1 server
//! that no client can wedge.
//!
//! GET only, one request per connection (`Connection: close`), the request head capped at 8 KiB. What must
//! stay true, whatever any client on the network does:
//! - every connection has one deadline, [`REQUEST_DEADLINE`], for reading its whole head (within
//!   [`HEAD_DEADLINE`]) and writing the whole answer — a client trickling a byte every few seconds is cut off
//!   when it passes, not reset per read;
//! - each connection has its own short-lived thread (small stack), so a slow client never delays another, and
//!   up to [`MAX_CONNECTIONS`] are open at once (one file descriptor each, so both servers fit a default
//!   limit of 1024); a new connection beyond that closes the *oldest* one — real probes and scrapes finish in
//!   milliseconds, so the oldest is the one most likely stalling — so a probe is always accepted and answered
//!   at once;
//! - the accept thread blocks in `accept` (no polling when idle); [`Server::join`] wakes it by connecting to
//!   it after shutdown has been triggered.
//!
//! That is all Prometheus and the kubelet need, and it keeps an HTTP server framework out of the binary.
//!
//! Addresses are written as the Go flags write them: `:8080` is every interface, `127.0.0.1:0` lets the
//! system pick a port, `0` turns the server off.

pub(crate) mod health;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown as Direction, SocketAddr, TcpListener, TcpStream,
    ToSocketAddrs,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) use health::Health;

use crate::metrics::metrics;
use crate::shutdown::Shutdown;
use crate::sync::lock;

/// Request line and headers together may not be longer than this.
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Connections open at the same time; a new one beyond this closes the oldest.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Reading the request head and writing the answer, together, may take this long.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The request head must have arrived this long after the connection was accepted; the rest of
/// [`REQUEST_DEADLINE`] is left for the answer (a 400 to a client that was too slow included).
pub(crate) const HEAD_DEADLINE: Duration = Duration::from_secs(3);
/// Stack of each connection thread: the handler keeps its buffers on the heap.
const CONNECTION_STACK: usize = 128 * 1024;
/// How long to wait before accepting again after `accept` failed (out of file descriptors and the like).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Which routes a server answers; the others are 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoints {
    /// `/metrics`, for `--metrics-bind-address`.
    Metrics,
    /// `/healthz` and `/readyz`, for `--health-probe-bind-address`.
    Probes,
    /// Everything, for when both flags name the same address.
    All,
}

impl Endpoints {
    fn metrics(self) -> bool {
        matches!(self, Endpoints::Metrics | Endpoints::All)
    }

    fn probes(self) -> bool {
        matches!(self, Endpoints::Probes | Endpoints::All)
    }

    fn thread_name(self) -> &'static str {
        match self {
            Endpoints::Metrics => "http-metrics",
            Endpoints::Probes => "http-probes",
            Endpoints::All => "http",
        }
    }
}

/// A running server: where it listens and its accept thread.
pub(crate) struct Server {
    address: SocketAddr,
    handle: JoinHandle<()>,
    shutdown: Shutdown,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The bound address, with the real port when port 0 was asked for.
    #[cfg(test)]
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Ends the accept thread once shutdown is triggered (waiting for that) and waits for it. Connection
    /// threads are not joined: each ends within [`REQUEST_DEADLINE`].
    pub(crate) fn join(self) {
        while !self.shutdown.sleep(Duration::from_secs(3600)) {}
        // The accept thread is blocked in accept: a connection wakes it to see the flag. If none can be
        // made, the thread is left to end with the process rather than hang the shutdown.
        match TcpStream::connect_timeout(&wake_address(self.address), Duration::from_secs(1)) {
            Ok(_) => {
                let _ = self.handle.join();
            }
            Err(e) => log::debug!("cannot wake the http thread on {}: {e}", self.address),
        }
    }
}

/// Where to connect to reach a listener bound to `bound` (a wildcard address is reached over loopback).
fn wake_address(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Listens on `address` and answers `endpoints` on a thread until `shutdown`; `Ok(None)` when `address` is
/// `0` (disabled).
pub(crate) fn serve(
    address: &str,
    endpoints: Endpoints,
    health: Arc<Health>,
    shutdown: Shutdown,
) -> Result<Option<Server>, String> {
    let Some(candidates) = parse_address(address)? else {
        return Ok(None);
    };
    let listener = bind(address, &candidates)?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let accept_shutdown = shutdown.clone();
    let handle = std::thread::Builder::new()
        .name(endpoints.thread_name().to_string())
        .spawn(move || accept_loop(listener, endpoints, health, accept_shutdown))
        .map_err(|e| format!("cannot start the http thread: {e}"))?;
    log::info!("serving {endpoints:?} endpoints on http://{bound}");
    Ok(Some(Server {
        address: bound,
        handle,
        shutdown,
    }))
}

/// The socket addresses to try for a Go-style listen address, or `None` for `0`.
fn parse_address(address: &str) -> Result<Option<Vec<SocketAddr>>, String> {
    let address = address.trim();
    if address == "0" {
        return Ok(None);
    }
    if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid listen address {address:?}: bad port"))?;
        // Go listens on both families; the IPv6 wildcard does that on Linux unless IPv6 is disabled.
        return Ok(Some(vec![
            SocketAddr::from(([0u16; 8], port)),
            SocketAddr::from(([0u8; 4], port)),
        ]));
    }
    let candidates: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("invalid listen address {address:?}: {e}"))?
        .collect();
    if candidates.is_empty() {
        return Err(format!("invalid listen address {address:?}: no addresses"));
    }
    Ok(Some(candidates))
}

fn bind(address: &str, candidates: &[SocketAddr]) -> Result<TcpListener, String> {
    let mut last_error = None;
    for candidate in candidates {
        match TcpListener::bind(candidate) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    let why = last_error.map(|e| e.to_string()).unwrap_or_default();
    Err(format!("cannot listen on {address}: {why}"))
}

/// The open connections, oldest first, as clones that can cut them off.
#[derive(Default)]
struct Open {
    next_id: u64,
    streams: BTreeMap<u64, Arc<TcpStream>>,
}

fn accept_loop(
    listener: TcpListener,
    endpoints: Endpoints,
    health: Arc<Health>,
    shutdown: Shutdown,
) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let accepted = listener.accept();
        if shutdown.is_triggered() {
            return;
        }
        match accepted {
            Ok((stream, _peer)) => admit(stream, endpoints, &health, &open),
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                log::warn!("http accept failed: {e}");
                if shutdown.sleep(ACCEPT_ERROR_PAUSE) {
                    return;
                }
            }
        }
    }
}

/// Registers the connection (closing the oldest when full) and answers it on its own thread.
fn admit(stream: TcpStream, endpoints: Endpoints, health: &Arc<Health>, open: &Arc<Mutex<Open>>) {
    let started = Instant::now();
    // Shared, not duplicated: one file descriptor per connection, so a default limit of 1024 holds both
    // servers full.
    let stream = Arc::new(stream);
    let handle = stream.clone();
    let id = {
        let mut open = lock(open);
        while open.streams.len() >= MAX_CONNECTIONS {
            if let Some((_, oldest)) = open.streams.pop_first() {
                log::debug!("too many open http connections; closing the oldest");
                // Its thread sees the end of the stream and finishes.
                let _ = oldest.shutdown(Direction::Both);
            }
        }
        open.next_id += 1;
        let id = open.next_id;
        open.streams.insert(id, handle);
        id
    };
    let (health, registry) = (health.clone(), open.clone());
    let spawned = std::thread::Builder::new()
        .name("http-conn".to_string())
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            if let Err(e) = handle_connection(stream, started, endpoints, &health) {
                log::debug!("http connection: {e}");
            }
            lock(&registry).streams.remove(&id);
        });
    if let Err(e) = spawned {
        lock(open).streams.remove(&id);
        log::warn!("cannot start an http connection thread: {e}");
    }
}

/// The time left until `deadline`, or a timed-out error when it has passed.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request deadline passed",
        ));
    }
    Ok(left)
}

fn handle_connection(
    stream: Arc<TcpStream>,
    accepted: Instant,
    endpoints: Endpoints,
    health: &Health,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let deadline = accepted + REQUEST_DEADLINE;
    let response = match read_head(&stream, accepted + HEAD_DEADLINE)? {
        Head::Complete(head) => respond(&head, endpoints, health),
        Head::TooLarge => Response::text(431, "request header fields too large"),
        Head::Incomplete(0) => return Ok(()),
        Head::Incomplete(_) => Response::text(400, "incomplete request"),
    };
    write_before(&stream, &response.to_bytes(), deadline)?;
    stream.shutdown(Direction::Write)?;
    if response.status >= 400 {
        // Closing with unread input makes the kernel send a reset, which can destroy the answer in flight.
        let linger = left(deadline)?.min(Duration::from_millis(500));
        stream.set_read_timeout(Some(linger))?;
        let _ = std::io::copy(&mut (&*stream).take(64 * 1024), &mut std::io::sink());
    }
    Ok(())
}

/// Writes all of `bytes`, failing when `deadline` passes first.
fn write_before(
    mut stream: &TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

enum Head {
    Complete(String),
    TooLarge,
    /// The peer stopped sending, or the deadline passed, after this many bytes.
    Incomplete(usize),
}

/// Reads up to the blank line that ends the request head, all of it before `deadline`.
fn read_head(mut stream: &TcpStream, deadline: Instant) -> std::io::Result<Head> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(left) = left(deadline) else {
            return Ok(Head::Incomplete(buffer.len()));
        };
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Head::Incomplete(buffer.len()));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buffer) {
            if end > MAX_HEAD_BYTES {
                return Ok(Head::TooLarge);
            }
            buffer.truncate(end);
            return Ok(Head::Complete(
                String::from_utf8_lossy(&buffer).into_owned(),
            ));
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
    }
}

/// The length of the head including its terminating blank line.
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// A complete answer, always closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    content_type: &'static str,
    extra_headers: Vec<(&'static str, &'static str)>,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_headers: Vec::new(),
            body: format!("{body}\n"),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(self.body.as_bytes());
        bytes
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// The answer to a complete request head.
fn respond(head: &str, endpoints: Endpoints, health: &Health) -> Response {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(400, "unsupported protocol version");
    }
    if method != "GET" {
        let mut response = Response::text(405, "only GET is supported");
        response.extra_headers.push(("Allow", "GET"));
        return response;
    }
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/metrics" if endpoints.metrics() => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            extra_headers: Vec::new(),
            body: metrics().render(),
        },
        "/healthz" if endpoints.probes() => match health.check_alive() {
            Ok(()) => Response::text(200, "ok"),
            Err(why) => Response::text(500, &why),
        },
        "/readyz" if endpoints.probes() => {
            if health.is_ready() {
                Response::text(200, "ok")
            } else {
                Response::text(503, "not ready")
            }
        }
        _ => Response::text(404, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn start(endpoints: Endpoints) -> (SocketAddr, Arc<Health>, Shutdown, Server) {
        let health = Health::new();
        let shutdown = Shutdown::new();
        let server = serve("127.0.0.1:0", endpoints, health.clone(), shutdown.clone())
            .unwrap()
            .expect("enabled");
        (server.address(), health, shutdown, server)
    }

    /// Sends raw bytes and returns (status, head, body) of the answer.
    fn exchange(address: SocketAddr, request: &[u8]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
        exchange(
            address,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn routes_answer_with_their_content() {
        let (address, health, shutdown, server) = start(Endpoints::All);
        let (status, head, body) = get(address, "/metrics");
        assert_eq!(status, 200);
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert!(
            body.contains("image_pull_secrets_provisioner_build_info{version="),
            "{body}"
        );
        assert_eq!(get(address, "/healthz").0, 200);
        assert_eq!(get(address, "/healthz?verbose=1").2, "ok\n");
        assert_eq!(get(address, "/readyz").0, 503);
        health.set_ready(true);
        let (status, _, body) = get(address, "/readyz");
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        assert_eq!(get(address, "/other").0, 404);
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn only_get_is_allowed() {
        let (address, _health, shutdown, server) = start(Endpoints::All);
        let (status, head, _) = exchange(
            address,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(status, 405);
        assert!(head.contains("Allow: GET"), "{head}");
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn oversized_and_malformed_requests_are_refused() {
        let (address, _health, shutdown, server) = start(Endpoints::All);
        let huge = format!(
            "GET /metrics HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(exchange(address, huge.as_bytes()).0, 431);
        let endless = format!("GET /metrics HTTP/1.1\r\nX-Filler: {}", "a".repeat(20_000));
        assert_eq!(exchange(address, endless.as_bytes()).0, 431);
        assert_eq!(exchange(address, b"garbage\r\n\r\n").0, 400);
        assert_eq!(exchange(address, b"GET /metrics SPDY/3\r\n\r\n").0, 400);
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn healthz_fails_naming_a_thread_that_stopped_beating() {
        let (address, health, shutdown, server) = start(Endpoints::Probes);
        health.register("worker-3", Duration::from_millis(200));
        assert_eq!(get(address, "/healthz").0, 200);
        std::thread::sleep(Duration::from_millis(300));
        let (status, _, body) = get(address, "/healthz");
        assert_eq!(status, 500);
        assert!(body.contains("worker-3"), "{body}");
        health.beat("worker-3");
        assert_eq!(get(address, "/healthz").0, 200);
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn each_server_answers_only_its_endpoints() {
        let (metrics_address, _h1, shutdown, metrics_server) = start(Endpoints::Metrics);
        let (probes_address, _h2, shutdown2, probes_server) = start(Endpoints::Probes);
        assert_eq!(get(metrics_address, "/healthz").0, 404);
        assert_eq!(get(metrics_address, "/metrics").0, 200);
        assert_eq!(get(probes_address, "/metrics").0, 404);
        shutdown.trigger();
        shutdown2.trigger();
        metrics_server.join();
        probes_server.join();
    }

    #[test]
    fn a_trickling_client_is_cut_off_at_the_request_deadline() {
        let (address, _health, shutdown, server) = start(Endpoints::Probes);
        let mut slow = TcpStream::connect(address).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = Instant::now();
        // A byte a second: each read succeeds, but the whole head never arrives in time.
        let mut answer = Vec::new();
        for byte in b"GET /healthz HTTP/1.1\r\nX: ".iter() {
            if slow.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1000));
            if started.elapsed() > HEAD_DEADLINE + Duration::from_secs(2) {
                break;
            }
        }
        let _ = slow.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(
            started.elapsed() < REQUEST_DEADLINE + Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn probes_are_answered_while_the_connection_table_is_full() {
        let (address, _health, shutdown, server) = start(Endpoints::Probes);
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 10)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        let started = Instant::now();
        assert_eq!(get(address, "/healthz").0, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(idle);
        shutdown.trigger();
        server.join();
    }

    #[test]
    fn the_accept_thread_ends_soon_after_shutdown() {
        let (_, _, shutdown, server) = start(Endpoints::All);
        let started = Instant::now();
        shutdown.trigger();
        server.join();
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn addresses_follow_the_go_flags() {
        assert_eq!(parse_address("0"), Ok(None));
        let all = parse_address(":8080").unwrap().unwrap();
        assert!(all
            .iter()
            .all(|a| a.port() == 8080 && a.ip().is_unspecified()));
        assert_eq!(
            parse_address("127.0.0.1:9090").unwrap().unwrap(),
            vec!["127.0.0.1:9090".parse::<SocketAddr>().unwrap()]
        );
        assert!(parse_address(":http").unwrap_err().contains("bad port"));
        assert!(parse_address("nonsense").is_err());
        let disabled = serve("0", Endpoints::All, Health::new(), Shutdown::new()).unwrap();
        assert!(disabled.is_none());
    }
}
