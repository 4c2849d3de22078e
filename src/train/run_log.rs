//! `train_log.jsonl`: one JSON object per logged step and per evaluation, flushed as
//! written so a crash loses at most the line being written.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub struct RunLog {
    file: File,
}

impl RunLog {
    /// Opens the log for appending (a resumed run continues the same file).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open training log {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line).context("cannot write training log")?;
        self.file.flush().context("cannot write training log")
    }
}
