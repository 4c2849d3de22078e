//! Ctrl-C (SIGINT) and SIGTERM during training: the first one asks the loop to stop after
//! the current step and save a resumable checkpoint; a second one ends the process at once
//! (atomic checkpoint writes keep the previous one intact either way). Before the first step
//! (loading, the feature cache) there is nothing to save: a signal ends the process at once,
//! and a new run's files go with it, so that starting it again needs no `--overwrite`.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the handler says what it does (not under `--quiet`, nor on ranks other than 0).
static ANNOUNCE: AtomicBool = AtomicBool::new(false);

const STOPPING: &[u8] =
    b"\nstopping after this step to save a resumable last/ (Ctrl-C again to quit at once, without saving)\n";
const QUITTING: &[u8] = b"\nquitting without saving; --resume starts from the last save in last/, if there is one\n";

/// Writes `message` to stderr with write(2), which a signal handler may call (unlike
/// anything that locks or allocates).
fn announce(message: &[u8]) {
    if ANNOUNCE.load(Ordering::SeqCst) {
        // SAFETY: write() is async-signal-safe; the buffer is a static byte string.
        unsafe { libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len()) };
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    if RECEIVED.swap(signal, Ordering::SeqCst) == 0 {
        announce(STOPPING);
        return;
    }
    // Second signal: give up on a clean stop.
    announce(QUITTING);
    // SAFETY: signal() and raise() are async-signal-safe.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// While alive, SIGINT and SIGTERM request a stop instead of killing the process.
pub struct StopOnSignal {
    _private: (),
}

impl StopOnSignal {
    /// `announce`: say on stderr what each signal does, when it comes.
    pub fn install(announce: bool) -> Self {
        RECEIVED.store(0, Ordering::SeqCst);
        ANNOUNCE.store(announce, Ordering::SeqCst);
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

/// What a signal during a new run's start-up undoes (`NewRun::undo_on_signal`), in order:
/// files removed, entries moved back, folders removed when empty.
pub struct UndoOnSignal {
    pub remove_files: Vec<PathBuf>,
    pub move_back: Vec<(PathBuf, PathBuf)>,
    pub remove_folders: Vec<PathBuf>,
}

/// [`UndoOnSignal`] as C strings, made before the handler may need them.
struct PreparedUndo {
    remove_files: Vec<CString>,
    move_back: Vec<(CString, CString)>,
    remove_folders: Vec<CString>,
}

static UNDO: AtomicPtr<PreparedUndo> = AtomicPtr::new(std::ptr::null_mut());

const NOT_STARTED: &[u8] =
    b"\ninterrupted before training started: nothing was trained, and the new run's files are removed\n";

extern "C" fn on_start_up_signal(signal: libc::c_int) {
    let undo = UNDO.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: a non-null pointer is a leaked `PreparedUndo` that nothing frees; unlink(),
    // rename(), rmdir(), write(), signal() and raise() are async-signal-safe.
    unsafe {
        if let Some(undo) = undo.as_ref() {
            for file in &undo.remove_files {
                libc::unlink(file.as_ptr());
            }
            for (from, to) in &undo.move_back {
                libc::rename(from.as_ptr(), to.as_ptr());
            }
            for folder in &undo.remove_folders {
                libc::rmdir(folder.as_ptr());
            }
        }
        announce(NOT_STARTED);
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// While alive (a new run's start-up), SIGINT and SIGTERM undo what the run did to its
/// folder and end the process as the signal would.
pub struct QuitDuringStartUp {
    _private: (),
}

impl QuitDuringStartUp {
    /// `announce`: say on stderr what happened, when a signal comes.
    pub fn install(undo: UndoOnSignal, announce: bool) -> Self {
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default();
        let prepared = PreparedUndo {
            remove_files: undo.remove_files.iter().map(|p| c(p)).collect(),
            move_back: undo.move_back.iter().map(|(a, b)| (c(a), c(b))).collect(),
            remove_folders: undo.remove_folders.iter().map(|p| c(p)).collect(),
        };
        // Leaked on purpose: a handler may read it until the process ends (a few paths per run).
        UNDO.store(Box::into_raw(Box::new(prepared)), Ordering::SeqCst);
        ANNOUNCE.store(announce, Ordering::SeqCst);
        // SAFETY: installs a handler that only makes async-signal-safe calls.
        unsafe {
            libc::signal(libc::SIGINT, on_start_up_signal as *const () as libc::sighandler_t);
            libc::signal(libc::SIGTERM, on_start_up_signal as *const () as libc::sighandler_t);
        }
        Self { _private: () }
    }
}

impl Drop for QuitDuringStartUp {
    fn drop(&mut self) {
        UNDO.store(std::ptr::null_mut(), Ordering::SeqCst);
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
