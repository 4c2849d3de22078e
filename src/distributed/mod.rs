//! Data-parallel runs on libtorch's own distributed layer (c10d), launched as `torchrun`
//! launches PyTorch: `launch` reads the launch's variables, `group` is the process group
//! and its collectives, `data_parallel` what a training step and a run's start need of it,
//! `gathered_negatives` pairs tasks' in-batch negatives from every rank.

pub mod data_parallel;
pub mod gathered_negatives;
pub mod group;
pub mod launch;

pub use group::{ProcessGroup, Reduce};
pub use launch::Launch;
