//! End-to-end tests: the real binary on tiny models and small data, checked against
//! Hugging Face's own implementations where numbers are involved.

mod bad_input;
mod common;
mod distributed;
mod encode;
mod eval;
mod export;
mod hub;
mod parity;
mod resilience;
mod toy_data;
mod train;
