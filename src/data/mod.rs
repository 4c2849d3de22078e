//! Data in: CSV files (labelled texts, scored sentence pairs, retrieval pairs), sentence
//! lists, label sets, tokenised batches, task sampling.

pub mod batching;
pub mod csv_file;
pub mod distinct_texts;
pub mod labelled;
pub mod sampler;
pub mod scored_pairs;
pub mod sentences;
pub mod text_pairs;
