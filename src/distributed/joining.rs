//! What joining a launch's process group needs besides the shim's call: checking
//! `GLOO_SOCKET_IFNAME`, a watchdog for a `MASTER_PORT` that never answers, and the one-line
//! message for each way joining fails.

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

/// Why joining failed, from the shim's `cause` (1: another launch's store, 2: another
/// WORLD_SIZE, 3: a reply that is no store's, 4: another build than rank 0's) and message.
pub(super) fn join_failure(launch: &Launch, timeout: Duration, cause: i32, message: &str) -> anyhow::Error {
    let (rank, world, address) = (launch.rank, launch.world, format!("{}:{}", launch.master_addr, launch.master_port));
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
    if rank == 0 && launch.agent_store_prefix.is_none() {
        // Rank 0 hosts the store itself, so what it waited for is the other ranks.
        return anyhow!(
            "rank 0: not every rank of {world} joined the process group at {address} within {}s (--dist-timeout): start rank{} {} with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE ({message}){}",
            timeout.as_secs(),
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
    // c10d's socket says "The client socket has ..." when the store itself is out of reach,
    // where Gloo listens plays no part.
    let hint = if message.contains("client socket") { String::new() } else { loopback_hint(launch) };
    anyhow!(
        "rank {rank}: cannot join the process group of {world} at {address} within {}s (MASTER_ADDR, MASTER_PORT; --dist-timeout): {message}{agent_hint}{hint}",
        timeout.as_secs(),
    )
}

/// Ends the process when joining takes longer than the store's connection and Gloo's
/// handshake may (each waits up to `--dist-timeout`): c10d's client waits without a limit for
/// the first answer of a program that accepts connections on `MASTER_PORT` but is no store.
pub(super) struct JoinWatchdog {
    done: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl JoinWatchdog {
    pub(super) fn start(launch: &Launch, timeout: Duration) -> Self {
        let limit = timeout * 2 + Duration::from_secs(5);
        let message = format!(
            "error: rank {}: cannot join the process group of {} at {}:{} within {}s (twice --dist-timeout, and 5 s): no c10d store answers there; is another program listening on MASTER_PORT?",
            launch.rank,
            launch.world,
            launch.master_addr,
            launch.master_port,
            limit.as_secs()
        );
        let (done, waiting) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = waiting.recv_timeout(limit) {
                crate::stderrln!("{message}");
                // SAFETY: _exit(2) ends the process at once; the join it cuts short holds
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
        assert!(join_failure(&launch(0), timeout, 0, store).to_string().ends_with(&hint), "rank 0 waits for others");
    }
}
