//! Ctrl-C (SIGINT), SIGTERM and SIGHUP while a new run starts (its folder taken, the model
//! loading, the feature cache building): there is nothing to save yet, so the process ends at
//! once, and first undoes what the run did to its folder (`NewRun` keeps the plan up to date
//! as it moves things). The handler makes only async-signal-safe calls on paths prepared in
//! advance, and every step of the plan is harmless to repeat or to find done.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::signal_handlers::Handlers;

/// What to undo, in order: files removed, entries moved back, folders removed when empty.
#[derive(Debug, Default, Clone)]
pub struct UndoPlan {
    pub remove_files: Vec<PathBuf>,
    pub move_back: Vec<(PathBuf, PathBuf)>,
    pub remove_folders: Vec<PathBuf>,
}

impl UndoPlan {
    /// Carries the plan out now, as a signal would (a run dropped before its first save).
    pub fn carry_out(&self) {
        carry_out(&PreparedUndo::of(self));
    }
}

/// [`UndoPlan`] as C strings, made before the handler may need them.
struct PreparedUndo {
    remove_files: Vec<CString>,
    move_back: Vec<(CString, CString)>,
    remove_folders: Vec<CString>,
}

impl PreparedUndo {
    fn of(plan: &UndoPlan) -> Self {
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default();
        Self {
            remove_files: plan.remove_files.iter().map(|p| c(p)).collect(),
            move_back: plan.move_back.iter().map(|(a, b)| (c(a), c(b))).collect(),
            remove_folders: plan.remove_folders.iter().map(|p| c(p)).collect(),
        }
    }
}

/// The plan a signal carries out; null when there is none (or it is being carried out).
static PLAN: AtomicPtr<PreparedUndo> = AtomicPtr::new(std::ptr::null_mut());
static ANNOUNCE: AtomicBool = AtomicBool::new(false);

const NOT_STARTED: &[u8] =
    b"\ninterrupted before training started: nothing was trained; the run's folder is as it was before\n";

/// Carries out `plan` with unlink(), rename() and rmdir() only (async-signal-safe).
fn carry_out(plan: &PreparedUndo) {
    // SAFETY: NUL-terminated paths owned by `plan`, alive for the calls.
    unsafe {
        for file in &plan.remove_files {
            libc::unlink(file.as_ptr());
        }
        for (from, to) in &plan.move_back {
            libc::rename(from.as_ptr(), to.as_ptr());
        }
        for folder in &plan.remove_folders {
            libc::rmdir(folder.as_ptr());
        }
    }
}

/// Set while the main thread undoes a new run itself ([`Undoing`]): a signal then leaves it
/// to finish (and the process to end as it would) instead of cutting it short.
static UNDOING: AtomicBool = AtomicBool::new(false);

/// Whether the main thread is undoing a new run, which a signal must not interrupt.
pub fn undoing() -> bool {
    UNDOING.load(Ordering::SeqCst)
}

/// While alive, signals leave the main thread's undo alone ([`undoing`]).
pub struct Undoing;

impl Undoing {
    pub fn start() -> Self {
        UNDOING.store(true, Ordering::SeqCst);
        Self
    }
}

impl Drop for Undoing {
    fn drop(&mut self) {
        UNDOING.store(false, Ordering::SeqCst);
    }
}

/// Carries out the armed plan, if there is one, and disarms it: async-signal-safe, for the
/// training loop's handler too, whose second signal quits before the new run's first save.
pub fn undo_armed_plan() -> bool {
    let plan = PLAN.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: a non-null pointer is a leaked `PreparedUndo` that nothing frees.
    match unsafe { plan.as_ref() } {
        Some(plan) => {
            carry_out(plan);
            true
        }
        None => false,
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    if undoing() {
        return;
    }
    undo_armed_plan();
    // SAFETY: write(), signal() and raise() are async-signal-safe.
    unsafe {
        if ANNOUNCE.load(Ordering::SeqCst) {
            libc::write(libc::STDERR_FILENO, NOT_STARTED.as_ptr().cast(), NOT_STARTED.len());
        }
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// While alive, SIGINT, SIGTERM and SIGHUP (unless ignored, as under `nohup`) carry out the
/// current [`UndoPlan`] and end the process as the signal would. Each blocks the others while
/// it runs, so one undo is not cut short by a second signal. The plan stays armed after it
/// (`NewRun` disarms it before the first save), for the training loop's quit-at-once.
pub struct StartUpSignals {
    handlers: Handlers,
}

impl StartUpSignals {
    /// `announce`: say on stderr what happened, when a signal comes.
    pub fn install(announce: bool) -> Self {
        PLAN.store(std::ptr::null_mut(), Ordering::SeqCst);
        ANNOUNCE.store(announce, Ordering::SeqCst);
        // The handler only makes async-signal-safe calls.
        Self { handlers: Handlers::install(on_signal) }
    }

    /// The handlers, for the training loop's to take over (`StopOnSignal::take_over`).
    pub fn into_handlers(self) -> Handlers {
        self.handlers
    }

    /// What a signal from now on undoes.
    pub fn set_plan(&self, plan: &UndoPlan) {
        // Leaked on purpose: a handler may hold the previous one (a few paths per update).
        PLAN.store(Box::into_raw(Box::new(PreparedUndo::of(plan))), Ordering::SeqCst);
    }
}

/// Takes the plan away from a signal that comes now: the caller undoes it itself, and two
/// undoings at once could remove a file the other had just moved back. False when there was
/// none: never armed, or a signal's handler took it (and is undoing it, then ends the process).
pub fn disarm() -> bool {
    !PLAN.swap(std::ptr::null_mut(), Ordering::SeqCst).is_null()
}
