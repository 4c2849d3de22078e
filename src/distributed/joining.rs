//! What joining a launch's process group needs besides the shim's call: checking
//! `GLOO_SOCKET_IFNAME`, a watchdog for a `MASTER_PORT` that never answers, and the one-line
//! message for each way joining fails.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};

use super::launch::Launch;

/// Refuses a `GLOO_SOCKET_IFNAME` that names an interface this machine does not have (Gloo
/// would fail in its handshake with a less direct message).
pub(super) fn refuse_unknown_interfaces(names: &str) -> Result<()> {
    let present: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    if present.is_empty() {
        return Ok(()); // no way to tell here; Gloo will say
    }
    if let Some(missing) = names.split(',').filter(|n| !n.is_empty()).find(|n| !present.iter().any(|p| p == n)) {
        let mut present = present;
        present.sort();
        bail!(
            "environment variable GLOO_SOCKET_IFNAME={names}: this machine has no network interface {missing} (it has {})",
            present.join(", ")
        );
    }
    Ok(())
}

/// When Gloo would listen on a loopback address although the rendezvous host is another
/// machine's address: this machine's hostname resolves to loopback (as Debian's
/// `/etc/hosts` makes it) and `GLOO_SOCKET_IFNAME` is unset. Ranks on other machines cannot
/// reach it there.
fn loopback_hint(launch: &Launch) -> String {
    use std::net::ToSocketAddrs;
    let master_is_loopback = (launch.master_addr.as_str(), 0)
        .to_socket_addrs()
        .map(|mut addrs| addrs.all(|a| a.ip().is_loopback()))
        .unwrap_or(false);
    if launch.gloo_interfaces.is_some() || master_is_loopback {
        return String::new();
    }
    let mut name = [0u8; 256];
    // SAFETY: a writable buffer of the given length; gethostname NUL-terminates within it.
    if unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) } != 0 {
        return String::new();
    }
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    let host = String::from_utf8_lossy(&name[..end]).into_owned();
    match (host.as_str(), 0).to_socket_addrs().ok().and_then(|mut addrs| addrs.next()) {
        Some(addr) if addr.ip().is_loopback() => format!(
            "; this machine's hostname {host} resolves to {}, a loopback address, so Gloo listens where other machines cannot reach it: set GLOO_SOCKET_IFNAME to the network interface that reaches MASTER_ADDR (e.g. GLOO_SOCKET_IFNAME=eth0), as for PyTorch",
            addr.ip()
        ),
        _ => String::new(),
    }
}

/// Who serves the launch's rendezvous store: rank 0, or torchrun's agent.
pub(super) fn store_host(launch: &Launch) -> &'static str {
    if launch.agent_store_prefix.is_some() {
        "torchrun's agent"
    } else {
        "rank 0"
    }
}

/// Why joining failed, from the shim's `cause` (1: another launch's store, 2: another
/// WORLD_SIZE, 3: a reply that is no store's, 4: another build than rank 0's, 5: the store
/// went away during the handshake, 6: ranks that never came, listed in `message`) and message.
pub(super) fn join_failure(launch: &Launch, timeout: Duration, cause: i32, message: &str) -> anyhow::Error {
    let (rank, world, address) = (launch.rank, launch.world, format!("{}:{}", launch.master_addr, launch.master_port));
    let seconds = timeout.as_secs();
    if cause == 5 {
        let host = store_host(launch);
        return anyhow!("rank {rank}: {host} stopped while the ranks were joining (the rendezvous store at {address} is gone); {host}'s own error line says why, unless it was killed");
    }
    if cause == 6 {
        let (ranks, them, their) =
            if message.contains(',') { ("ranks", "them", "their") } else { ("rank", "it", "its") };
        return anyhow!(
            "rank {rank}: {ranks} {message} of {world} did not join the process group at {address} within {seconds}s (--dist-timeout): where {them} stopped at start, {their} own error line says why; else start {them} with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE"
        );
    }
    if cause == 2 {
        return anyhow!(
            "rank {rank}: the ranks were started with different WORLD_SIZE: {message}; every rank must get the same"
        );
    }
    if cause == 4 {
        return anyhow!(
            "rank {rank}: the ranks run different builds of sentence-mtl: {message}; install the same one on every machine"
        );
    }
    // Newer c10d clients ping the store when they connect, and say so when the answer is
    // not a store's.
    if cause == 3 || message.contains("Ping failed") {
        return anyhow!("rank {rank}: cannot join the process group at {address}: no c10d store answers there ({message}); is another program listening on MASTER_PORT?");
    }
    if cause == 1 {
        return anyhow!("rank {rank}: another launch is using MASTER_PORT {} ({message}, more than WORLD_SIZE={world}); give each launch its own MASTER_PORT", launch.master_port);
    }
    if message.contains("EADDRINUSE") {
        return anyhow!("rank {rank}: MASTER_PORT {} is in use on {} (by another launch or program); give this launch a free MASTER_PORT", launch.master_port, launch.master_addr);
    }
    // c10d's socket says "The client socket has ..." when the store itself is out of reach,
    // where Gloo listens plays no part.
    let store_unreached = message.contains("client socket");
    if rank == 0 && launch.agent_store_prefix.is_none() {
        if store_unreached {
            // Rank 0 serves the store on this machine, and its own connection to it failed.
            return anyhow!(
                "rank 0: cannot reach its own rendezvous store at {address} within {seconds}s ({message}): MASTER_ADDR must be an address of rank 0's machine that the other ranks reach"
            );
        }
        // Rank 0 hosts the store itself, so what it waited for is the other ranks.
        return anyhow!(
            "rank 0: not every rank of {world} joined the process group at {address} within {seconds}s (--dist-timeout): start rank{} {} with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE ({message}){}",
            if world > 2 { "s" } else { "" },
            if world > 2 { format!("1 to {}", world - 1) } else { "1".to_string() },
            loopback_hint(launch)
        );
    }
    // c10d's store protocol changes between torch versions: a worker built on one
    // cannot talk to the agent of another, and only sees the connection closed.
    let agent_hint = if launch.agent_store_prefix.is_some() {
        format!(
            "; under torchrun, its torch must be the version this binary is built on (libtorch {})",
            env!("SENTENCE_MTL_LIBTORCH_VERSION")
        )
    } else {
        String::new()
    };
    let hint = if store_unreached { String::new() } else { loopback_hint(launch) };
    anyhow!(
        "rank {rank}: cannot join the process group of {world} at {address} within {seconds}s (MASTER_ADDR, MASTER_PORT; --dist-timeout): {message}{agent_hint}{hint}"
    )
}

/// Ends the process when joining takes longer than the store's connection and Gloo's
/// handshake may (each waits up to `--dist-timeout`): c10d's client waits without a limit for
/// the first answer of a program that accepts connections on `MASTER_PORT` but is no store,
/// and sometimes for a store whose host stopped after counting this rank in.
pub(super) struct JoinWatchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl JoinWatchdog {
    /// `store_answered` is set (by the shim) once the store has counted this rank in. Past
    /// `--dist-timeout` and 2 s, when the join should have ended either way, the store's port
    /// is tried each second: a refused connection means its host stopped, and the rank says so
    /// at once instead of waiting out the limit.
    pub(super) fn start(launch: &Launch, timeout: Duration, store_answered: Arc<AtomicI32>) -> Self {
        let limit = timeout * 2 + Duration::from_secs(5);
        let (rank, world, address) =
            (launch.rank, launch.world, format!("{}:{}", launch.master_addr, launch.master_port));
        let start = format!(
            "error: rank {rank}: cannot join the process group of {world} at {address} within {}s (twice --dist-timeout, and 5 s)",
            limit.as_secs()
        );
        let host = store_host(launch);
        let gone = format!("error: rank {rank}: {host} stopped while the ranks were joining (the rendezvous store at {address} is gone); {host}'s own error line says why, unless it was killed");
        // Rank 0 serves the store itself: when its handshake hangs, another rank stalled.
        let serves_the_store = rank == 0 && launch.agent_store_prefix.is_none();
        let (done, waiting) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut wait = timeout + Duration::from_secs(2);
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(wait) {
                let answered = store_answered.load(Ordering::Acquire) == 1;
                let message = if answered && refuses_connections(&address) {
                    &gone
                } else if started.elapsed() >= limit {
                    &if serves_the_store {
                        format!("{start}: the handshake with the other ranks never finished; one of them stalled (a stopped process, or a machine that stopped answering)")
                    } else if answered {
                        format!("{start}: the store counted this rank in, then the handshake never finished; {host} (which serves the store) may have stopped: its own error says why")
                    } else {
                        format!("{start}: no c10d store answers there; is another program listening on MASTER_PORT?")
                    }
                } else {
                    wait = Duration::from_secs(1).min(limit.saturating_sub(started.elapsed()));
                    continue;
                };
                crate::stderrln!("{message}");
                // SAFETY: _exit(1) ends the process at once; the join it cuts short holds
                // nothing that must be written out.
                unsafe { libc::_exit(1) }
            }
        });
        Self { done, thread }
    }

    pub(super) fn stop(self) {
        let _ = self.done.send(());
        let _ = self.thread.join();
    }
}

/// Whether nothing listens at `address` (host:port) any more: a connection is refused.
fn refuses_connections(address: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Some(addr) = address.to_socket_addrs().ok().and_then(|mut addrs| addrs.next()) else { return false };
    matches!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(rank: usize) -> Launch {
        Launch {
            rank,
            world: 2,
            local_rank: rank,
            master_addr: "192.0.2.1".into(),
            master_port: 29500,
            agent_store_prefix: None,
            gloo_interfaces: None,
        }
    }

    /// The loopback hint comes with failures Gloo's listening address can cause, not with a
    /// store that cannot be reached, whatever this machine's hostname resolves to.
    #[test]
    fn only_a_reached_store_gets_the_loopback_hint() {
        let timeout = Duration::from_secs(2);
        let store = "The client socket has timed out after 2s while trying to connect to (192.0.2.1, 29500).";
        let unreached = join_failure(&launch(1), timeout, 0, store).to_string();
        assert!(!unreached.contains("GLOO_SOCKET_IFNAME"), "{unreached}");
        let hint = loopback_hint(&launch(1));
        if hint.is_empty() {
            crate::test_skipped(
                "only_a_reached_store_gets_the_loopback_hint",
                "this machine's hostname does not resolve to loopback",
            );
            return;
        }
        let gloo = "Gloo connectFullMesh failed: Connection refused";
        assert!(join_failure(&launch(1), timeout, 0, gloo).to_string().ends_with(&hint));
        let waiting = join_failure(&launch(0), timeout, 0, "Socket Timeout").to_string();
        assert!(waiting.ends_with(&hint), "rank 0 waits for others: {waiting}");
    }

    /// Rank 0 serves the store on its own machine: when its own connection fails, MASTER_ADDR
    /// is not that machine, and the other ranks are not to blame.
    #[test]
    fn rank_0_that_cannot_reach_its_store_blames_master_addr() {
        let store = "The client socket has timed out after 2s while trying to connect to (192.0.2.1, 29500).";
        let message = join_failure(&launch(0), Duration::from_secs(2), 0, store).to_string();
        assert!(message.starts_with("rank 0: cannot reach its own rendezvous store at 192.0.2.1:29500"), "{message}");
        assert!(message.contains("MASTER_ADDR must be an address of rank 0's machine"), "{message}");
        assert!(!message.contains("start rank 1") && !message.contains("GLOO_SOCKET_IFNAME"), "{message}");
    }

    /// The shim's causes 5 and 6 (its host gone, ranks missing) read as what happened.
    #[test]
    fn names_a_stopped_store_host_and_the_missing_ranks() {
        let timeout = Duration::from_secs(5);
        let gone = join_failure(&launch(1), timeout, 5, "the store went away during the handshake").to_string();
        assert!(gone.starts_with("rank 1: rank 0 stopped while the ranks were joining"), "{gone}");
        let mut three = launch(0);
        three.world = 3;
        let one = join_failure(&three, timeout, 6, "2").to_string();
        assert!(
            one.starts_with("rank 0: rank 2 of 3 did not join the process group at 192.0.2.1:29500 within 5s"),
            "{one}"
        );
        assert!(
            one.ends_with(
                "its own error line says why; else start it with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE"
            ),
            "{one}"
        );
        let two = join_failure(&three, timeout, 6, "1, 2").to_string();
        assert!(two.contains("ranks 1, 2 of 3 did not join") && two.contains("start them"), "{two}");
    }
}
