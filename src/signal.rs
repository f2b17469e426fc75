//! SIGTERM and SIGINT, turned into the shutdown flag.
//!
//! A signal handler may only touch atomics, so it records the signal and a named thread turns that into
//! [`Shutdown::trigger`]. Declaring libc's `signal` directly keeps a signal-handling crate out of the binary;
//! std already links the C library that provides it, glibc and musl alike.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::shutdown::Shutdown;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
}

extern "C" fn record(signum: i32) {
    RECEIVED.store(signum, Ordering::SeqCst);
}

/// Installs the handlers and starts the thread that triggers `shutdown` when a signal arrives.
pub fn install(shutdown: Shutdown) -> std::io::Result<std::thread::JoinHandle<()>> {
    // SAFETY: `record` only stores into an atomic, which is async-signal-safe; the handler pointer is 'static.
    unsafe {
        signal(SIGTERM, record);
        signal(SIGINT, record);
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let signum = RECEIVED.load(Ordering::SeqCst);
            if signum != 0 {
                let name = if signum == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                log::info!("received {name}; shutting down");
                shutdown.trigger();
                return;
            }
            if shutdown.sleep(Duration::from_millis(100)) {
                return;
            }
        })
}
