//! Multi-task training: settings, freezing, parameter groups, AdamW, the learning-rate
//! schedule and the run's length, a run's set-up, the loop, resumable state, interruption
//! and the logging window. What each task kind computes lives in `tasks/`.

pub mod evaluate;
pub mod feature_cache;
pub mod freeze;
pub mod interrupt;
pub mod log;
pub mod logistic_regression;
pub mod new_run;
pub mod optimizer;
pub mod overview;
pub mod param_groups;
mod plain_progress;
pub mod recipe;
pub mod run_dir;
mod run_length;
pub mod schedule;
pub mod settings;
pub mod setup;
pub mod signal_handlers;
pub mod small_data;
pub mod start_up_signals;
pub mod state;
pub mod trainer;
pub mod window;
