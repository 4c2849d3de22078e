//! `train_log.jsonl`, the run's record: one JSON object per logging window, per evaluation and
//! a final summary, written as they happen (flushed, so a crash loses at most the line being
//! written) and read back by `eval`'s training curves.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::tasks::TaskScore;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LogRecord {
    Step(StepRecord),
    Eval(EvalRecord),
    Summary(RunSummary),
}

/// A logging window of `--log-every` optimizer steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps done at the end of the window.
    pub step: usize,
    pub epoch: f64,
    /// Mean loss per task over the window's batches, in task order (tasks without a batch
    /// in the window are left out).
    pub loss: IndexMap<String, f64>,
    /// Global gradient norm before clipping, at the window's last step.
    pub grad_norm: f64,
    /// Learning rate per optimizer group at the window's last step, in depth order.
    pub lr: IndexMap<String, f64>,
    pub examples_per_sec: f64,
    pub tokens_per_sec: f64,
    /// Seconds since the process started training (or resuming).
    pub elapsed_s: f64,
}

/// A dev evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub step: usize,
    pub epoch: f64,
    pub tasks: BTreeMap<String, TaskScore>,
    /// The mean of the tasks' main metrics (`mean_macro_f1` in runs from before task kinds).
    #[serde(alias = "mean_macro_f1", deserialize_with = "crate::metrics::null_as_nan")]
    pub mean_main_metric: f64,
    /// Whether this evaluation became `best/`.
    pub best: bool,
}

/// Where the process's time went and how many tokens its steps processed: a resumed run's
/// summary covers the steps after `resumed_from`, the ones this process trained.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub step: usize,
    /// The step of the checkpoint this process resumed from; absent in a run trained at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<usize>,
    pub examples: usize,
    pub tokens: usize,
    pub padded_tokens: usize,
    /// Training steps only (not loading, evaluation or saving).
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub save_seconds: f64,
    pub examples_per_sec: f64,
    pub tokens_per_sec: f64,
    /// A data-parallel run's gradient buckets all-reduced, and how many of those started
    /// during the backward pass (DDP's overlap); absent in a one-process run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_buckets: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets_during_backward: Option<usize>,
}

/// The log being written.
pub struct RunLog {
    /// `None` for a rank of a data-parallel launch other than 0, which writes no log.
    file: Option<File>,
}

impl RunLog {
    /// Opens the log for appending. A resumed run continues the same file, from which the
    /// records past `resumed_at` (the step of the checkpoint it continues) are dropped first:
    /// the interrupted process wrote them after its last save, and they are about to be
    /// written again.
    pub fn open(path: &Path, resumed_at: Option<usize>) -> Result<Self> {
        if let Some(step) = resumed_at {
            drop_records_after(path, step)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open training log {}", path.display()))?;
        Ok(Self { file: Some(file) })
    }

    /// A log that writes nothing.
    pub fn discard() -> Self {
        Self { file: None }
    }

    pub fn write(&mut self, record: &LogRecord) -> Result<()> {
        let Some(file) = &mut self.file else { return Ok(()) };
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        file.write_all(&line).context("cannot write training log")?;
        file.flush().context("cannot write training log")
    }
}

/// Rewrites the log (atomically) without its records past `step`, and without a line cut off
/// mid-write.
fn drop_records_after(path: &Path, step: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        read => read.with_context(|| format!("cannot read training log {}", path.display()))?,
    };
    let kept: String = text
        .lines()
        .filter(|line| serde_json::from_str::<LogRecord>(line).is_ok_and(|record| record.step() <= step))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() == text.len() {
        return Ok(());
    }
    crate::atomic_write::write_file(path, kept.as_bytes())
}

impl LogRecord {
    /// Optimizer steps done when the record was written.
    pub fn step(&self) -> usize {
        match self {
            Self::Step(r) => r.step,
            Self::Eval(r) => r.step,
            Self::Summary(r) => r.step,
        }
    }
}

/// Every complete record of a log; a line that is cut off or unknown is skipped (a run may
/// have been killed while writing it).
pub fn read_log(path: &Path) -> Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_their_type_first() {
        let step = LogRecord::Step(StepRecord {
            step: 10,
            epoch: 0.5,
            loss: IndexMap::from([("b".to_string(), 0.5), ("a".to_string(), 1.0)]),
            grad_norm: 2.0,
            lr: IndexMap::from([("layer.0".to_string(), 1e-5)]),
            examples_per_sec: 3.0,
            tokens_per_sec: 4.0,
            elapsed_s: 5.0,
        });
        let line = serde_json::to_string(&step).unwrap();
        assert!(line.starts_with(r#"{"type":"step","step":10,"epoch":0.5,"loss":{"b":0.5,"a":1.0}"#), "{line}");
        assert_eq!(serde_json::from_str::<LogRecord>(&line).unwrap(), step);
    }

    #[test]
    fn reading_skips_a_cut_off_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train_log.jsonl");
        let summary = LogRecord::Summary(RunSummary { step: 3, ..Default::default() });
        let mut log = RunLog::open(&path, None).unwrap();
        log.write(&summary).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"type":"step","st"#).unwrap();
        assert_eq!(read_log(&path).unwrap(), vec![summary]);
    }

    #[test]
    fn a_resumed_log_drops_what_came_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train_log.jsonl");
        let summary = |step| LogRecord::Summary(RunSummary { step, ..Default::default() });
        let mut log = RunLog::open(&path, None).unwrap();
        for step in [2, 4, 6] {
            log.write(&summary(step)).unwrap();
        }
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"type":"step","st"#).unwrap();
        let mut log = RunLog::open(&path, Some(4)).unwrap();
        log.write(&summary(5)).unwrap();
        assert_eq!(read_log(&path).unwrap(), vec![summary(2), summary(4), summary(5)]);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
    }
}
