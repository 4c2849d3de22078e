//! Human-facing reports: terminal tables, one report per task kind (text, JSON and files for
//! `eval --out`), and pictures.

pub mod classification;
pub mod plots;
pub mod retrieval;
pub mod similarity;
pub mod table;
pub mod text_backend;

use std::path::{Path, PathBuf};

use anyhow::Result;

/// One task's evaluation, as `eval` prints and writes it.
pub trait TaskReport {
    /// The task's entry in `metrics.json`; its first field is the task's `kind`.
    fn to_json(&self) -> serde_json::Value;
    /// The report for the terminal.
    fn render_text(&self) -> String;
    /// Writes the report's files (predictions, tables, pictures) into `out`; returns their paths.
    fn write_files(&self, out: &Path) -> Result<Vec<PathBuf>>;
    /// What may surprise in the numbers themselves, for notes before the report.
    fn metric_notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// What the files leave out, for notes after they are written.
    fn file_notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The note for a task whose model gave outputs that are not numbers (NaN or infinite): broken
/// weights, or an overflow. Its metrics then describe no model, and nothing else says why.
fn non_finite_note(task: &str, bad: usize, total: usize, what: &str) -> Option<String> {
    (bad > 0).then(|| {
        format!(
            "task '{task}': the model's outputs are not finite (NaN or infinite) for {bad} of {total} {what}, so its metrics mean nothing; the weights are broken, or overflowed (--precision bf16?)"
        )
    })
}

/// The per-task files reports write into `eval --out`, named `<prefix><task>.<ext>`.
#[derive(Clone, Copy)]
pub enum TaskFile {
    Predictions,
    Confusion,
    Similarity,
}

impl TaskFile {
    fn prefix(self) -> &'static str {
        match self {
            Self::Predictions => "predictions_",
            Self::Confusion => "confusion_",
            Self::Similarity => "similarity_",
        }
    }

    /// `out/<prefix><task>.<ext>`.
    pub fn path(self, out: &Path, task: &str, ext: &str) -> PathBuf {
        out.join(format!("{}{task}.{ext}", self.prefix()))
    }
}

/// A data file's path as `metrics.json` records it: absolute (as its `model` is), so that the
/// report can be followed from another folder.
pub fn recorded_path(data: &Path) -> PathBuf {
    crate::checkpoint::resolved(data)
}

/// Writes `rows` under `header` as a CSV file, atomically.
pub fn write_csv<const N: usize>(path: &Path, header: [&str; N], rows: &[[String; N]]) -> Result<()> {
    crate::atomic_write::write_file_with(path, |file| {
        let mut csv = csv::Writer::from_writer(file);
        csv.write_record(header)?;
        for row in rows {
            csv.write_record(row)?;
        }
        csv.flush()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_paths_are_recorded_absolute() {
        let recorded = recorded_path(Path::new("no_such_folder/../dev.csv"));
        assert!(recorded.is_absolute(), "{recorded:?}");
        assert_eq!(recorded, std::env::current_dir().unwrap().canonicalize().unwrap().join("dev.csv"));
    }
}
