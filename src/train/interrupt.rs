//! Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the loop to stop after
//! the current step and save a resumable checkpoint; a second one ends the process at once
//! (atomic checkpoint writes keep the previous one intact either way).

use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED.swap(signal, Ordering::SeqCst) != 0 {
        // Second signal: give up on a clean stop.
        // SAFETY: signal() and raise() are async-signal-safe.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
    }
}

/// While alive, SIGINT and SIGTERM request a stop instead of killing the process.
pub struct StopOnSignal {
    _private: (),
}

impl StopOnSignal {
    pub fn install() -> Self {
        RECEIVED.store(0, Ordering::SeqCst);
        // SAFETY: installs a handler that only touches an atomic (and re-raises).
        unsafe {
            libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        }
        Self { _private: () }
    }

    /// The signal received so far, if any.
    pub fn requested(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        // SAFETY: restores the default dispositions.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
        }
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The run stopped on a signal after saving; `main` exits with 128 + signal, as shells do.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "training interrupted by {}", signal_name(self.signal))
    }
}

impl std::error::Error for Interrupted {}
