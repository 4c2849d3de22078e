//! Messages to the user on stderr. A training run outlives whatever reads them: `train 2>&1 |
//! tee log` loses its `tee` to the same Ctrl-C that asks the run to stop and save, and a log
//! viewer may close mid-run. `eprintln!` panics when stderr is a closed pipe; these macros drop
//! the message instead, so the run goes on to its save (with SIGPIPE ignored, as `train`
//! has it: other commands die quietly on a closed pipe, which `main` sets up).

use std::io::Write;

/// Writes `text` to stderr, dropping it when stderr is gone.
pub fn write_stderr(text: std::fmt::Arguments) {
    let _ = std::io::stderr().write_fmt(text);
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
