//! The TCP connections under every HTTPS client of this process: one connect attempt per resolved address
//! within the connect timeout, no Nagle delay, keepalive probes, and every ACK sent at once.
//!
//! What must stay true: no socket waits on a peer without a bound. A read or write waits at most what the
//! request's timeouts leave (ureq's `NextTimeout`, including the per-read deadline of watches); a peer whose
//! host vanished without a word is noticed by keepalive within [`KEEPALIVE_IDLE`] + [`KEEPALIVE_COUNT`] ×
//! [`KEEPALIVE_INTERVAL`] even on a connection that only waits; and a peer that writes an answer in pieces
//! (head, then body, with Nagle's algorithm on its side) is never held up by our delayed ACK of the first
//! piece: `TCP_QUICKACK` is set again before every read, since Linux clears it by itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, ShutdownHandle,
    Transport,
};
use ureq::Timeout;

/// A connection without traffic for this long gets its first keepalive probe.
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered probes.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes before the kernel gives the connection up.
pub(crate) const KEEPALIVE_COUNT: u32 = 3;

/// Opens plain TCP connections (the first link of a chain that adds TLS), configured as the module says.
#[derive(Debug, Default)]
pub(crate) struct TcpConnector;

impl<In: Transport> Connector<In> for TcpConnector {
    type Out = Either<In, TcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if let Some(chained) = chained {
            // A proxy's CONNECT tunnel, made through this same connector.
            return Ok(Some(Either::A(chained)));
        }
        let budget = details.timeout.not_zero().map(|d| *d);
        let stream = connect_any(&details.addrs, budget, details.timeout.reason)?;
        configure(&stream)?;
        let config = details.config;
        let transport = TcpTransport {
            stream: Arc::new(stream),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
        };
        (details.register_shutdown)(transport.shutdown_handle())?;
        Ok(Some(Either::B(transport)))
    }
}

/// Tries each address in turn, each with an equal share of what is left of the connect budget, and
/// reports the last failure.
fn connect_any(
    addrs: &[SocketAddr],
    budget: Option<Duration>,
    reason: Timeout,
) -> Result<TcpStream, ureq::Error> {
    let started = std::time::Instant::now();
    let mut last: Option<ureq::Error> = None;
    for (index, addr) in addrs.iter().enumerate() {
        let attempt = match budget {
            Some(budget) => {
                let left = budget.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return Err(ureq::Error::Timeout(reason));
                }
                let share = left / (addrs.len() - index) as u32;
                TcpStream::connect_timeout(addr, share.max(Duration::from_millis(10)))
            }
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if is_timeout(&e) => last = Some(ureq::Error::Timeout(Timeout::Connect)),
            Err(e) => last = Some(ureq::Error::Io(e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        ureq::Error::Io(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "the host resolved to no address",
        ))
    }))
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    // Requests are written whole; waiting for the ACK of the previous segment only adds a round trip.
    stream.set_nodelay(true)?;
    socket::set_keepalive(stream, KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// One TCP connection. All I/O goes through `&TcpStream`, so the agent's shutdown handle can share it.
pub(crate) struct TcpTransport {
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

impl TcpTransport {
    /// The agent's handle to shut the socket down from another thread (interrupting a blocked read); it
    /// holds only a weak reference, so the socket closes with the transport.
    fn shutdown_handle(&self) -> Weak<dyn ShutdownHandle> {
        Arc::downgrade(&self.stream) as Weak<dyn ShutdownHandle>
    }
}

/// The time a read or write may take, or the timeout that has already run out.
fn bound(timeout: NextTimeout) -> Result<(Option<Duration>, Timeout), ureq::Error> {
    if timeout.after.is_zero() {
        return Err(ureq::Error::Timeout(timeout.reason));
    }
    Ok((timeout.not_zero().map(|d| *d), timeout.reason))
}

fn io_result<T>(result: io::Result<T>, reason: Timeout) -> Result<T, ureq::Error> {
    match result {
        Ok(value) => Ok(value),
        Err(e) if is_timeout(&e) => Err(ureq::Error::Timeout(reason)),
        Err(e) => Err(ureq::Error::Io(e)),
    }
}

impl Transport for TcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let (limit, reason) = bound(timeout.for_write())?;
        io_result(self.stream.set_write_timeout(limit), reason)?;
        let output = &self.buffers.output()[..amount];
        io_result((&*self.stream).write_all(output), reason)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let (limit, reason) = bound(timeout.for_read())?;
        io_result(self.stream.set_read_timeout(limit), reason)?;
        socket::ack_at_once(&self.stream);
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&*self.stream).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break io_result(other, reason)?,
            }
        };
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        // A pooled connection is open when reading would block: no byte and no end of stream waits.
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let open = matches!(
            (&*self.stream).read(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        );
        self.stream.set_nonblocking(false).is_ok() && open
    }
}

#[cfg(target_os = "linux")]
mod socket {
    //! The socket options std does not offer, set through the C library std already links.
    use std::ffi::c_void;
    use std::io;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    const SOL_SOCKET: i32 = 1;
    const SO_KEEPALIVE: i32 = 9;
    const IPPROTO_TCP: i32 = 6;
    const TCP_KEEPIDLE: i32 = 4;
    const TCP_KEEPINTVL: i32 = 5;
    const TCP_KEEPCNT: i32 = 6;
    const TCP_QUICKACK: i32 = 12;

    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const c_void, length: u32) -> i32;
    }

    #[cfg(test)]
    extern "C" {
        fn getsockopt(fd: i32, level: i32, name: i32, value: *mut c_void, length: *mut u32) -> i32;
    }

    fn set(stream: &TcpStream, level: i32, name: i32, value: i32) -> io::Result<()> {
        // SAFETY: the descriptor is open for the borrow's lifetime, and the value is an int of the given size.
        let result = unsafe {
            setsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as u32,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    #[cfg(test)]
    fn get(stream: &TcpStream, level: i32, name: i32) -> io::Result<i32> {
        let mut value: i32 = 0;
        let mut length = std::mem::size_of::<i32>() as u32;
        // SAFETY: as in `set`; the kernel writes at most `length` bytes into `value`.
        let result = unsafe {
            getsockopt(
                stream.as_raw_fd(),
                level,
                name,
                (&mut value as *mut i32).cast(),
                &mut length,
            )
        };
        if result == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn set_keepalive(
        stream: &TcpStream,
        idle: Duration,
        interval: Duration,
        count: u32,
    ) -> io::Result<()> {
        set(stream, SOL_SOCKET, SO_KEEPALIVE, 1)?;
        set(stream, IPPROTO_TCP, TCP_KEEPIDLE, idle.as_secs() as i32)?;
        set(
            stream,
            IPPROTO_TCP,
            TCP_KEEPINTVL,
            interval.as_secs() as i32,
        )?;
        set(stream, IPPROTO_TCP, TCP_KEEPCNT, count as i32)
    }

    pub(super) fn ack_at_once(stream: &TcpStream) {
        // Best effort: without it a piecewise answer only costs the delayed-ACK time.
        let _ = set(stream, IPPROTO_TCP, TCP_QUICKACK, 1);
    }

    #[cfg(test)]
    pub(super) fn keepalive(stream: &TcpStream) -> io::Result<(i32, i32, i32, i32)> {
        Ok((
            get(stream, SOL_SOCKET, SO_KEEPALIVE)?,
            get(stream, IPPROTO_TCP, TCP_KEEPIDLE)?,
            get(stream, IPPROTO_TCP, TCP_KEEPINTVL)?,
            get(stream, IPPROTO_TCP, TCP_KEEPCNT)?,
        ))
    }
}

#[cfg(not(target_os = "linux"))]
mod socket {
    //! Elsewhere the system's defaults stand (the controller runs on Linux).
    use std::io;
    use std::net::TcpStream;
    use std::time::Duration;

    pub(super) fn set_keepalive(_: &TcpStream, _: Duration, _: Duration, _: u32) -> io::Result<()> {
        Ok(())
    }

    pub(super) fn ack_at_once(_: &TcpStream) {}
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn connections_probe_their_peer_and_skip_nagle() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let stream =
            connect_any(&[addr], Some(Duration::from_secs(5)), Timeout::Connect).expect("connect");
        configure(&stream).expect("configure");
        assert!(stream.nodelay().expect("nodelay"));
        assert_eq!(
            socket::keepalive(&stream).expect("keepalive options"),
            (1, 30, 10, 3)
        );
    }

    #[test]
    fn every_address_is_tried_and_the_last_failure_reported() {
        // Two ports nobody listens on (bound, then released).
        let free: Vec<SocketAddr> = (0..2)
            .map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("address")
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let good = listener.local_addr().expect("address");
        let found = connect_any(
            &[free[0], free[1], good],
            Some(Duration::from_secs(5)),
            Timeout::Connect,
        )
        .expect("the third address answers");
        assert_eq!(found.peer_addr().expect("peer"), good);
        let refused = connect_any(&free, Some(Duration::from_secs(5)), Timeout::Connect)
            .expect_err("nobody listens");
        assert!(
            matches!(&refused, ureq::Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused),
            "{refused:?}"
        );
    }
}
