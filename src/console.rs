//! Messages to the user on stderr. A training run outlives whatever reads them: `train 2>&1 |
//! tee log` loses its `tee` to the same Ctrl-C that asks the run to stop and save, and a log
//! viewer may close mid-run. `eprintln!` panics when stderr is a closed pipe; these macros drop
//! the message instead, so the run goes on to its save (with SIGPIPE ignored, as `train`
//! has it). Other commands die quietly when stdout's reader is gone (`main` sets that up),
//! but not when stderr's is: `encode -o FILE 2>&1 | head -1` still writes FILE.

use std::io::Write;

/// Writes `text` to stderr, dropping it when stderr is gone.
pub fn write_stderr(text: std::fmt::Arguments) {
    without_sigpipe(|| {
        let _ = std::io::stderr().write_fmt(text);
    });
}

/// Runs `write` with SIGPIPE blocked in this thread, and discards the SIGPIPE a write to a
/// closed pipe raised meanwhile: the write fails with EPIPE instead of ending the process.
fn without_sigpipe(write: impl FnOnce()) {
    // SAFETY: plain signal-mask calls on sets initialised by sigemptyset; the signal
    // disposition is untouched, and the mask is restored before returning.
    unsafe {
        let mut pipe: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut before);
        write();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        if libc::sigpending(&mut pending) == 0 && libc::sigismember(&pending, libc::SIGPIPE) == 1 {
            let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            libc::sigtimedwait(&pipe, std::ptr::null_mut(), &now);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
    }
}

/// Lets writes to a closed pipe fail (and the messages drop) instead of killing the process.
pub fn keep_running_on_closed_pipe() {
    // SAFETY: sets a signal disposition; no handler runs, so nothing else is affected.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// `eprint!` that drops the message when stderr is a closed pipe.
#[macro_export]
macro_rules! stderr {
    ($($arg:tt)*) => { $crate::console::write_stderr(format_args!($($arg)*)) };
}

/// `eprintln!` that drops the message when stderr is a closed pipe.
#[macro_export]
macro_rules! stderrln {
    () => { $crate::console::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}
