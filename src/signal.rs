//! SIGTERM and SIGINT, turned into the shutdown flag.
//!
//! A signal handler may only do async-signal-safe things, so it writes the signal's number into a pipe and a
//! named thread, blocked reading the other end (no polling), turns that into [`Shutdown::trigger`]. Declaring
//! libc's `signal` and `write` directly keeps a signal-handling crate out of the binary; std already links the
//! C library that provides them, glibc and musl alike.

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::shutdown::Shutdown;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The writing end of the pipe, for the handler; -1 until installed.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
}

extern "C" fn record(signum: i32) {
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = signum as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local byte. A full pipe only drops a
        // repeat of a signal already on its way.
        unsafe {
            write(fd, &byte, 1);
        }
    }
}

/// Installs the handlers and starts the thread that triggers `shutdown` when a signal arrives.
pub fn install(shutdown: Shutdown) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (mut reader, writer) = UnixStream::pair()?;
    WAKE_FD.store(writer.into_raw_fd(), Ordering::SeqCst);
    // SAFETY: `record` only loads an atomic and calls write(2), both async-signal-safe; the handler is 'static.
    unsafe {
        signal(SIGTERM, record);
        signal(SIGINT, record);
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            if reader.read_exact(&mut byte).is_err() {
                return;
            }
            let name = if i32::from(byte[0]) == SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            log::info!("received {name}; shutting down");
            shutdown.trigger();
        })
}
