//! Data-parallel runs on libtorch's own distributed layer (c10d), launched as `torchrun`
//! launches PyTorch: `launch` reads the launch's variables, `group` is the process group
//! and its collectives, `nccl` the NCCL backend of its CUDA tensors, `data_parallel` what a
//! training step and a run's start need of it, `gradient_sync` the gradients' all-reduce
//! during backward, `gathered_negatives` pairs tasks' in-batch negatives from every rank.

pub mod data_parallel;
pub mod gathered_negatives;
pub mod gradient_sync;
pub mod group;
mod joining;
pub mod launch;
pub mod nccl;

pub use group::{CollectiveFailed, ProcessGroup, Reduce};
pub use launch::Launch;

use anyhow::{bail, Result};
use tch::Device;

/// This process's (rank, world size): (0, 1) outside a launch.
pub fn rank_and_world(group: Option<&ProcessGroup>) -> (usize, usize) {
    group.map_or((0, 1), |g| (g.rank(), g.world()))
}

/// Whether this process writes results and prints: the only one, or rank 0 of a launch.
pub fn is_main(group: Option<&ProcessGroup>) -> bool {
    group.is_none_or(|g| g.launch.is_main())
}

/// The device this process runs on: in a launch, CUDA means this rank's `cuda:LOCAL_RANK`,
/// which must be one this process sees.
pub fn device_for(device: Device, group: Option<&ProcessGroup>) -> Result<Device> {
    match (device, group) {
        (Device::Cuda(_), Some(group)) => {
            cuda_of_local_rank(group.launch.local_rank, group.rank(), tch::Cuda::device_count() as usize)
        }
        (device, _) => Ok(device),
    }
}

/// `cuda:LOCAL_RANK`, refused when this process sees fewer devices: a launcher that gives
/// each process its own GPU (Slurm's `--gpus-per-task`, CUDA_VISIBLE_DEVICES per rank) leaves
/// it one, `cuda:0`, whatever its LOCAL_RANK.
fn cuda_of_local_rank(local_rank: usize, rank: usize, visible: usize) -> Result<Device> {
    if local_rank >= visible {
        let shown = crate::device::visible_devices_shown();
        bail!(
            "rank {rank}: its GPU would be cuda:{local_rank} (LOCAL_RANK, or RANK where LOCAL_RANK is unset), but this process sees {visible} CUDA device{}{shown}; set LOCAL_RANK to the process's GPU on its machine (0 where the launcher gives each process its own GPU)",
            if visible == 1 { "" } else { "s" }
        );
    }
    Ok(Device::Cuda(local_rank))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_rank_must_name_a_visible_device() {
        assert_eq!(cuda_of_local_rank(3, 11, 8).unwrap(), Device::Cuda(3));
        let err = cuda_of_local_rank(3, 11, 1).unwrap_err().to_string();
        assert!(err.starts_with("rank 11: its GPU would be cuda:3 (LOCAL_RANK, or RANK where"), "{err}");
        assert!(err.contains("this process sees 1 CUDA device"), "{err}");
    }
}
