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

use tch::Device;

/// This process's (rank, world size): (0, 1) outside a launch.
pub fn rank_and_world(group: Option<&ProcessGroup>) -> (usize, usize) {
    group.map_or((0, 1), |g| (g.rank(), g.world()))
}

/// Whether this process writes results and prints: the only one, or rank 0 of a launch.
pub fn is_main(group: Option<&ProcessGroup>) -> bool {
    group.is_none_or(|g| g.launch.is_main())
}

/// The device this process runs on: in a launch, CUDA means this rank's `cuda:LOCAL_RANK`.
pub fn device_for(device: Device, group: Option<&ProcessGroup>) -> Device {
    match (device, group) {
        (Device::Cuda(_), Some(group)) => Device::Cuda(group.launch.local_rank),
        (device, _) => device,
    }
}
