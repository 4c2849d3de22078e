//! How a data-parallel launch describes this process: the variables `torchrun` sets
//! (`WORLD_SIZE`, `RANK`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), or a shell loop that
//! sets them the same way.

use anyhow::{bail, Context, Result};

/// This process's place in a launch of `world` processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Which of its machine's GPUs this process uses (`cuda:LOCAL_RANK`).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Under torchrun, whose agent serves the store at `MASTER_ADDR:MASTER_PORT` itself
    /// (`TORCHELASTIC_USE_AGENT_STORE`): the key prefix of this attempt, as PyTorch's workers
    /// use (`/worker/attempt_<TORCHELASTIC_RESTART_COUNT>`). `None`: rank 0 serves the store.
    pub agent_store_prefix: Option<String>,
    /// `GLOO_SOCKET_IFNAME`: the network interfaces Gloo binds to (comma-separated), as
    /// PyTorch reads it; `None`: the address this machine's hostname resolves to.
    pub gloo_interfaces: Option<String>,
}

impl Launch {
    /// The launch this process belongs to; `None` when `WORLD_SIZE` is unset, or 1 without
    /// `MASTER_PORT` (one process, no process group). `WORLD_SIZE=1` with `MASTER_PORT`, as
    /// `torchrun --nproc-per-node 1` sets them, is a launch of one: a process group as
    /// PyTorch forms one, with its collectives (which is how their overhead is measured).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// `RANK` alone, when it is a whole number: for naming the rank in an error about the
    /// other launch variables.
    pub fn rank_in_env() -> Option<usize> {
        std::env::var("RANK").ok()?.trim().parse().ok()
    }

    /// As [`Launch::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(text) => text
                    .trim()
                    .parse::<usize>()
                    .map(Some)
                    .with_context(|| format!("environment variable {name}={text:?} is not a whole number")),
            }
        };
        let world = match number("WORLD_SIZE")? {
            // A rank other than 0 alone would run as a one-process job and write its own
            // outputs over rank 0's.
            None => match number("RANK")? {
                Some(rank) if rank > 0 => {
                    bail!("environment variable RANK={rank} is set but WORLD_SIZE is not (torchrun sets both)")
                }
                _ => return Ok(None),
            },
            Some(1) if var("MASTER_PORT").is_none() => match number("RANK")? {
                Some(rank) if rank > 0 => {
                    bail!("environment variable RANK={rank} is out of range for WORLD_SIZE=1 (0 to 0)")
                }
                _ => return Ok(None),
            },
            Some(0) => bail!("environment variable WORLD_SIZE=0: a launch needs at least one process"),
            Some(n) => n,
        };
        let Some(rank) = number("RANK")? else {
            bail!("environment variable WORLD_SIZE={world} is set but RANK is not (torchrun sets both)")
        };
        if rank >= world {
            bail!("environment variable RANK={rank} is out of range for WORLD_SIZE={world} (0 to {})", world - 1);
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(rank);
        let master_addr = var("MASTER_ADDR").map_or_else(|| "127.0.0.1".into(), |addr| addr.trim().to_string());
        if master_addr.is_empty() {
            bail!("environment variable MASTER_ADDR is empty");
        }
        let master_port = match var("MASTER_PORT") {
            None => 29500,
            Some(text) => match text.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => bail!("environment variable MASTER_PORT={text:?} is not a port number (1 to 65535)"),
            },
        };
        let agent_store_prefix = match var("TORCHELASTIC_USE_AGENT_STORE").as_deref().map(str::trim) {
            Some("True" | "true" | "1") => {
                Some(format!("/worker/attempt_{}", number("TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0)))
            }
            _ => None,
        };
        let gloo_interfaces = var("GLOO_SOCKET_IFNAME").map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Ok(Some(Self { rank, world, local_rank, master_addr, master_port, agent_store_prefix, gloo_interfaces }))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        Launch::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn reads_torchrun_variables_and_defaults_the_rest() {
        assert_eq!(launch(&[]).unwrap(), None);
        assert_eq!(launch(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        let err = launch(&[("WORLD_SIZE", "1"), ("RANK", "1")]).unwrap_err().to_string();
        assert!(err.contains("RANK=1 is out of range for WORLD_SIZE=1"), "{err}");
        let alone = launch(&[("WORLD_SIZE", "1"), ("RANK", "0"), ("MASTER_PORT", "29400")]).unwrap().unwrap();
        assert_eq!((alone.world, alone.rank, alone.master_port), (1, 0, 29400));
        let got = launch(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", " node1\n"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        let expected = Launch {
            rank: 3,
            world: 4,
            local_rank: 1,
            master_addr: "node1".into(),
            master_port: 1234,
            agent_store_prefix: None,
            gloo_interfaces: None,
        };
        assert_eq!(got, expected);
        let got = launch(&[("WORLD_SIZE", "2"), ("RANK", "1")]).unwrap().unwrap();
        assert_eq!((got.local_rank, got.master_addr.as_str(), got.master_port), (1, "127.0.0.1", 29500));
        let vars = [
            ("WORLD_SIZE", "2"),
            ("RANK", "0"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "3"),
        ];
        let got = launch(&vars).unwrap().unwrap();
        assert_eq!(got.agent_store_prefix.as_deref(), Some("/worker/attempt_3"));
    }

    #[test]
    fn bad_variables_are_named() {
        let err = |vars: &[(&str, &str)]| launch(vars).unwrap_err().to_string();
        assert!(err(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE=\"two\" is not a whole number"));
        assert!(err(&[("WORLD_SIZE", "2")]).contains("RANK is not"));
        assert!(err(&[("RANK", "1")]).contains("RANK=1 is set but WORLD_SIZE is not"));
        assert_eq!(launch(&[("RANK", "0")]).unwrap(), None);
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "2")]).contains("RANK=2 is out of range for WORLD_SIZE=2"));
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")]).contains("MASTER_PORT=\"70000\""));
    }
}
