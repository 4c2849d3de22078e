//! One module per subcommand: each turns its flags into settings and runs.

pub mod encode;
pub mod eval;
pub mod export;
pub mod predict;
pub mod runtime;
pub mod train;
