//! Multi-task training: settings, freezing, parameter groups, AdamW, schedule, the loop.

pub mod evaluate;
pub mod freeze;
pub mod optimizer;
pub mod param_groups;
pub mod precision;
pub mod run_log;
pub mod schedule;
pub mod settings;
pub mod task_data;
pub mod trainer;
