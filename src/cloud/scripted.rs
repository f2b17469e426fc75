//! A scripted HTTP server on 127.0.0.1 for the providers' unit tests: it answers each connection with the next
//! scripted reply and records what it received, to pin the wire format and to produce faults (a 503 with
//! `Retry-After`, a proxy's HTML page, a skewed `Date`) on demand. Never a stand-in for a provider's
//! behaviour: that is what the stand-ins under `scripts/testenv/` are for.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One scripted answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub(crate) fn new(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

impl From<(u16, String)> for Reply {
    fn from((status, body): (u16, String)) -> Self {
        Reply::new(status, body)
    }
}

impl From<(u16, &str)> for Reply {
    fn from((status, body): (u16, &str)) -> Self {
        Reply::new(status, body)
    }
}

/// What the server received on one connection.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// e.g. `POST /v1/token HTTP/1.1`
    pub request_line: String,
    pub method: String,
    /// Path and query as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When the request arrived.
    pub at: Instant,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The running server; [`ScriptedServer::finish`] stops it and returns what it received.
pub(crate) struct ScriptedServer {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Recorded>>,
}

impl ScriptedServer {
    /// Serves `replies` in order, one per connection; requests beyond the script get a 500
    /// `unscripted request`, so a client that calls more often than expected fails its test.
    pub(crate) fn start<R: Into<Reply>>(replies: Vec<R>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let mut replies = replies
            .into_iter()
            .map(Into::into)
            .collect::<Vec<Reply>>()
            .into_iter();
        let thread = std::thread::spawn(move || {
            let mut recorded = Vec::new();
            // The client is synchronous: by the time the test calls finish(), every request it made has been
            // answered, so stopping at the flag loses nothing.
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let reply = replies
                            .next()
                            .unwrap_or_else(|| Reply::new(500, "unscripted request"));
                        recorded.push(answer(stream, &reply));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            recorded
        });
        ScriptedServer { url, stop, thread }
    }

    pub(crate) fn finish(self) -> Vec<Recorded> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("scripted server thread")
    }
}

fn answer(mut stream: TcpStream, reply: &Reply) -> Recorded {
    let at = Instant::now();
    stream.set_nonblocking(false).expect("blocking stream");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut buf).expect("read request");
        assert!(n > 0, "connection closed before the request ended");
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().expect("content-length"));
    let mut body = data[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).expect("read body");
        assert!(n > 0, "connection closed before the body ended");
        body.extend_from_slice(&buf[..n]);
    }
    let mut response = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.body.len(),
        reply.body
    ));
    stream
        .write_all(response.as_bytes())
        .expect("write response");
    let mut parts = request_line.split(' ');
    Recorded {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        request_line,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
        at,
    }
}
