//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during training: the first one asks the loop to stop after
//! the current step and save a resumable checkpoint (unless the run would thereby delete the run
//! `--overwrite` set aside: it gives that back instead); a second one ends the process at once
//! (atomic checkpoint writes keep the previous one intact either way). Before the first step
//! there is nothing to save: `start_up_signals` handles them then.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::signal_handlers::{signal_name, Handlers};
use super::start_up_signals::StartUpSignals;

static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the handler says what it does (not under `--quiet`, nor on ranks other than 0).
static ANNOUNCE: AtomicBool = AtomicBool::new(false);
/// A run `--overwrite` set aside waits for this run's first save, and a stop gives it back.
static REPLACED_RUN_WAITING: AtomicBool = AtomicBool::new(false);

/// Whether a stop now gives back the run `--overwrite` set aside (`NewRun` says).
pub fn set_replaced_run_waiting(waiting: bool) {
    REPLACED_RUN_WAITING.store(waiting, Ordering::SeqCst);
}

const STOPPING: &[u8] =
    b"\nstopping after this step to save a resumable last/ (a second Ctrl-C or signal quits at once, without saving)\n";
const QUITTING: &[u8] = b"\nquitting without saving; --resume starts from the last save in last/, if there is one\n";
const STOPPING_TO_GIVE_BACK: &[u8] =
    b"\nstopping after this step: this run has not saved yet, so the run --overwrite replaced comes back (a second Ctrl-C or signal quits at once)\n";
const QUITTING_UNDONE: &[u8] = b"\nquitting before this run's first save: its files are removed\n";
const QUITTING_GIVEN_BACK: &[u8] =
    b"\nquitting before this run's first save: its files are removed and the run --overwrite replaced is back\n";

/// Writes `message` to stderr with write(2), which a signal handler may call (unlike
/// anything that locks or allocates).
fn announce(message: &[u8]) {
    if ANNOUNCE.load(Ordering::SeqCst) {
        // SAFETY: write() is async-signal-safe; the buffer is a static byte string.
        unsafe { libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len()) };
    }
}

/// After a hang-up, the terminal is gone: the streams that were the terminal go to /dev/null,
/// so nothing (libtorch's own warnings included) writes to it while the stop saves.
fn detach_from_closed_terminal() {
    // SAFETY: open(), isatty() (an ioctl), dup2() and close() are async-signal-safe; the path
    // is a static NUL-terminated string.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null < 0 {
            return;
        }
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            if libc::isatty(fd) == 1 {
                libc::dup2(null, fd);
            }
        }
        libc::close(null);
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    if signal == libc::SIGHUP {
        detach_from_closed_terminal();
    }
    // The main thread is undoing a run that never saved: it ends the process when done.
    if super::start_up_signals::undoing() {
        return;
    }
    let giving_back = REPLACED_RUN_WAITING.load(Ordering::SeqCst);
    if RECEIVED.swap(signal, Ordering::SeqCst) == 0 {
        announce(if giving_back { STOPPING_TO_GIVE_BACK } else { STOPPING });
        return;
    }
    // Second signal: give up on a clean stop; a new run that has not saved yet undoes itself.
    announce(match (super::start_up_signals::undo_armed_plan(), giving_back) {
        (true, true) => QUITTING_GIVEN_BACK,
        (true, false) => QUITTING_UNDONE,
        (false, _) => QUITTING,
    });
    // SAFETY: signal() and raise() are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// While alive, SIGINT, SIGTERM and SIGHUP (unless ignored, as under `nohup`) request a stop
/// instead of killing the process.
pub struct StopOnSignal {
    _handlers: Handlers,
}

impl StopOnSignal {
    /// `announce`: say on stderr what each signal does, when it comes. Takes the signals over
    /// from `start_up`'s handlers, if given, with no moment unhandled in between.
    pub fn take_over(start_up: Option<StartUpSignals>, announce: bool) -> Self {
        RECEIVED.store(0, Ordering::SeqCst);
        ANNOUNCE.store(announce, Ordering::SeqCst);
        // The handler only touches atomics, writes and re-raises.
        let handlers = match start_up {
            Some(start_up) => start_up.into_handlers().hand_over(on_signal),
            None => Handlers::install(on_signal),
        };
        Self { _handlers: handlers }
    }

    /// The signal received so far, if any.
    pub fn requested(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
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
