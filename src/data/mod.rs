//! Data in: CSV files, sentence lists, label sets, tokenised batches, task sampling.

pub mod batching;
pub mod csv_file;
pub mod labelled;
pub mod sampler;
pub mod sentences;
