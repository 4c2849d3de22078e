//! sentence-mtl: sentence embeddings and multi-task fine-tuning of transformer encoders.
//!
//! Layout: `model/` holds tensor code (backbone, pooling, projection, heads), `data/` the
//! inputs (CSV, sentences, batches, task sampling), `train/` the training loop and its parts,
//! `checkpoint` the folder format every command shares, `metrics` the scores,
//! `commands/` one file per subcommand, `output/` and `report/` what users read.

pub mod atomic_write;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod console;
pub mod data;
pub mod device;
pub mod distributed;
pub mod export;
pub mod hash;
pub mod inference;
pub mod metrics;
pub mod model;
pub mod output;
pub mod panic_report;
pub mod precision;
pub mod progress;
pub mod report;
pub mod rng;
pub mod scratch_file;
pub mod tasks;
pub mod torch_shim;
pub mod train;

/// What `--version` prints: this version and the libtorch it is built on. Ranks of one launch
/// must all show the same.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (libtorch ",
    env!("SENTENCE_MTL_LIBTORCH_VERSION"),
    ", ",
    env!("SENTENCE_MTL_NCCL"),
    ")"
);

/// Says, loudly, that a test (unit or end-to-end) checked nothing here and why; the line also
/// goes to the file `SENTENCE_MTL_SKIP_LOG` names, which scripts/test.sh prints (cargo hides
/// a passing test's output).
#[doc(hidden)]
pub fn test_skipped(test: &str, why: &str) {
    use std::io::Write;
    crate::stderrln!("\n*** SKIPPED {test}: {why} ***\n");
    if let Some(log) = std::env::var_os("SENTENCE_MTL_SKIP_LOG") {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("SENTENCE_MTL_SKIP_LOG");
        file.write_all(format!("{test}: {why}\n").as_bytes()).expect("SENTENCE_MTL_SKIP_LOG is writable");
    }
}
