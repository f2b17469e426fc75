//! The probe port under hostile clients: `/healthz` and `/readyz` answer within a second under 200 slow and
//! 200 idle connections, and the HTTP thread does not wake up while nothing connects.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::controller::Controller;
use crate::support::{cluster, eventually};

/// How long the controller gets to log its probe address.
const PATIENCE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------------------
// The probe port

/// The address a server of the controller logged, e.g. `All`.
fn served_address(controller: &Controller, endpoints: &str) -> SocketAddr {
    let marker = format!("serving {endpoints} endpoints on http://");
    eventually(PATIENCE, "the controller's probe address", || {
        controller.logs().lines().find_map(|line| {
            let rest = line.split(&marker).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    })
}

/// One GET on a fresh connection, timed from connect to the end of the answer: (status, elapsed).
fn timed_get(address: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = (|| -> std::io::Result<u16> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    })()
    .unwrap_or(0);
    (status, started.elapsed())
}

/// How often the controller's threads named `name` have gone to sleep so far (voluntary context switches):
/// a thread blocked until there is work does not count up while idle; one that polls does, every round.
fn thread_wakeups(pid: u32, name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[test]
fn probes_answer_within_a_second_under_200_slow_and_200_idle_clients() {
    let cluster = cluster();
    let ns = cluster.namespace("probes");
    let controller = Controller::builder(&ns).log_level("info").start();
    // The test controller serves metrics and probes on one address (both flags are 127.0.0.1:0), so the
    // attack below also runs against /metrics' server.
    let probes = served_address(&controller, "All");
    eventually(PATIENCE, "the controller to be ready", || {
        (timed_get(probes, "/readyz").0 == 200).then_some(())
    });

    // Idle: the accept thread blocks; it does not wake up while nothing connects.
    let pid = controller.pid();
    let before = thread_wakeups(pid, "http");
    // The measurement itself: 5 s in which nothing connects.
    std::thread::sleep(Duration::from_secs(5));
    let idle_wakeups = thread_wakeups(pid, "http") - before;
    println!("http accept thread woke {idle_wakeups} times while idle for 5 s");
    assert!(
        idle_wakeups <= 1,
        "the probe server polls while idle: {idle_wakeups} wake-ups in 5 s"
    );

    // The attack: 200 clients sending one byte every 4 s and 200 sending nothing, each reconnecting as soon
    // as the server cuts it off, for the whole measurement.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attacker = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        std::thread::spawn(move || {
            let connect = || TcpStream::connect_timeout(&probes, Duration::from_secs(5)).ok();
            let mut slow: Vec<Option<TcpStream>> = (0..200).map(|_| connect()).collect();
            let mut idle: Vec<Option<TcpStream>> = (0..200)
                .map(|_| {
                    connect().inspect(|s| {
                        let _ = s.set_nonblocking(true);
                    })
                })
                .collect();
            let mut reconnects = 0u64;
            let request = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
            let mut round = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let byte = request[round % request.len()];
                for slot in slow.iter_mut() {
                    let alive = slot.as_mut().is_some_and(|s| s.write_all(&[byte]).is_ok());
                    if !alive {
                        *slot = connect();
                        reconnects += 1;
                    }
                }
                for slot in idle.iter_mut() {
                    let mut buffer = [0u8; 64];
                    let closed = match slot.as_mut().map(|s| s.read(&mut buffer)) {
                        Some(Err(e)) => e.kind() != std::io::ErrorKind::WouldBlock,
                        // The end of the stream, or an answer followed by it.
                        Some(Ok(_)) | None => true,
                    };
                    if closed {
                        *slot = connect().inspect(|s| {
                            let _ = s.set_nonblocking(true);
                        });
                        reconnects += 1;
                    }
                }
                round += 1;
                rounds.store(round, std::sync::atomic::Ordering::Relaxed);
                // The attack's pace: one byte per slow client every 4 s.
                for _ in 0..40 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            reconnects
        })
    };
    // The attack has its full size once every client connected and the slow ones sent their first byte; then
    // the scenario's own time: 2 s for the server to take in the 400 connections (and cut the ones over its
    // limit) before the probes are measured.
    eventually(PATIENCE, "the attack's first round", || {
        (rounds.load(std::sync::atomic::Ordering::Relaxed) >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));

    let mut worst = Duration::ZERO;
    let mut answers = 0;
    let measure_until = Instant::now() + Duration::from_secs(30);
    let mut failures = Vec::new();
    while Instant::now() < measure_until {
        for path in ["/healthz", "/readyz"] {
            let (status, elapsed) = timed_get(probes, path);
            answers += 1;
            worst = worst.max(elapsed);
            if status != 200 || elapsed >= Duration::from_secs(1) {
                failures.push(format!("{path}: {status} after {elapsed:?}"));
            }
        }
        // The probes' pace, as a kubelet's would be (but 4 times a second).
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reconnects = attacker.join().unwrap();
    println!(
        "{answers} probe answers under attack, the slowest after {worst:?}; the attackers reconnected {reconnects} times"
    );
    assert!(
        failures.is_empty(),
        "probes failed or were slow: {failures:?}"
    );
    assert!(
        reconnects >= 200,
        "the server cut off the slow and idle clients ({reconnects} reconnects)"
    );
    assert!(controller.is_running());
}
