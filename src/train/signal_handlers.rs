//! Installing a training phase's signal handler, and putting back what was there before. A
//! signal the process was started ignoring stays ignored: `nohup` ignores SIGHUP so that a
//! closed terminal does not stop the run, and a handler would turn the hang-up into a stop.

/// What a training phase handles: Ctrl-C, `kill`, and a closed terminal (an ssh session that drops).
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// While alive, `handler` receives the [`STOP_SIGNALS`] the process does not ignore; each
/// blocks the others while the handler runs. Dropping it restores the previous dispositions.
pub struct Handlers {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Handlers {
    pub fn install(handler: extern "C" fn(libc::c_int)) -> Self {
        let mut previous = Vec::new();
        // SAFETY: a zeroed sigaction is valid; sigaction() only reads `action` and writes `old`.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as libc::sighandler_t;
            // As signal() installs them: a read or write the signal lands in goes on.
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            for signal in STOP_SIGNALS {
                libc::sigaddset(&mut action.sa_mask, signal);
            }
            for signal in STOP_SIGNALS {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 || old.sa_sigaction == libc::SIG_IGN {
                    continue;
                }
                if libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        Self { previous }
    }
}

impl Drop for Handlers {
    fn drop(&mut self) {
        // SAFETY: puts back dispositions sigaction() returned.
        unsafe {
            for (signal, old) in &self.previous {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}

/// The signal's name as a user knows it.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP (its terminal closed)",
        _ => "a signal",
    }
}
