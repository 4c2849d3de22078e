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
        let action = action_calling(handler);
        let mut previous = Vec::new();
        // SAFETY: a zeroed sigaction is valid; sigaction() only reads `action` and writes `old`.
        unsafe {
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

    /// The same signals handled by `handler` from now on, with no moment at their previous
    /// dispositions in between (dropping these and installing anew would leave one, in which
    /// a signal ends the process unhandled). Dropping the result restores the dispositions
    /// these replaced.
    pub fn hand_over(mut self, handler: extern "C" fn(libc::c_int)) -> Self {
        let action = action_calling(handler);
        let previous = std::mem::take(&mut self.previous);
        for (signal, _) in &previous {
            // SAFETY: sigaction() only reads `action`.
            unsafe { libc::sigaction(*signal, &action, std::ptr::null_mut()) };
        }
        Self { previous }
    }
}

/// A disposition calling `handler`, which blocks the other stop signals while it runs; as
/// signal() installs them, a read or write the signal lands in goes on (SA_RESTART).
fn action_calling(handler: extern "C" fn(libc::c_int)) -> libc::sigaction {
    // SAFETY: a zeroed sigaction is valid, and sigemptyset/sigaddset only write its mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut action.sa_mask, signal);
        }
        action
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

#[cfg(test)]
mod tests {
    use super::*;

    extern "C" fn first(_: libc::c_int) {}
    extern "C" fn second(_: libc::c_int) {}

    fn disposition(signal: libc::c_int) -> libc::sighandler_t {
        // SAFETY: only reads the current disposition.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut current);
            current.sa_sigaction
        }
    }

    #[test]
    fn a_hand_over_switches_handlers_and_its_drop_restores_the_first_dispositions() {
        let handled: Vec<libc::c_int> = STOP_SIGNALS.into_iter().filter(|&s| disposition(s) != libc::SIG_IGN).collect();
        let before: Vec<_> = handled.iter().map(|&s| disposition(s)).collect();
        let handlers = Handlers::install(first);
        assert!(handled.iter().all(|&s| disposition(s) == first as *const () as libc::sighandler_t));
        let handlers = handlers.hand_over(second);
        assert!(handled.iter().all(|&s| disposition(s) == second as *const () as libc::sighandler_t));
        drop(handlers);
        assert_eq!(handled.iter().map(|&s| disposition(s)).collect::<Vec<_>>(), before);
    }
}
