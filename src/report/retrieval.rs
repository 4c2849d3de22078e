//! A pairs task's evaluation report: every distinct anchor searched among all distinct
//! positives, with MRR@10, recall@1 and recall@10, and each query's best rank.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use super::table::count;
use super::{write_csv, TaskFile, TaskReport};
use crate::metrics::retrieval::RetrievalRanks;

pub struct RetrievalReport {
    pub task: String,
    pub data: PathBuf,
    pub queries: Vec<String>,
    pub candidates: usize,
    /// The relevant candidates' ranks, per query.
    pub ranks: RetrievalRanks,
    /// Per query, its first relevant candidate's text.
    pub first_relevant: Vec<String>,
}

impl TaskReport for RetrievalReport {
    fn to_json(&self) -> Value {
        let scores = self.ranks.scores();
        json!({
            "kind": "pairs",
            "data": self.data,
            "queries": self.queries.len(),
            "candidates": self.candidates,
            "mrr_at_10": scores.mrr_at_10,
            "recall_at_1": scores.recall_at_1,
            "recall_at_10": scores.recall_at_10,
        })
    }

    fn render_text(&self) -> String {
        let scores = self.ranks.scores();
        format!(
            "task {}: {} searched among {} from {}, MRR@10 {:.4}, recall@1 {:.4}, recall@10 {:.4}\n",
            self.task,
            match self.queries.len() {
                1 => "1 query".to_string(),
                n => format!("{n} queries"),
            },
            count(self.candidates, "candidate"),
            self.data.display(),
            scores.mrr_at_10,
            scores.recall_at_1,
            scores.recall_at_10
        )
    }

    /// `predictions_<task>.csv`: per query (`anchor`), a relevant candidate (`positive`) and the
    /// best rank of its relevant candidates (`rank`, 1 = found first).
    fn write_files(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let rows: Vec<[String; 3]> = self
            .queries
            .iter()
            .zip(&self.first_relevant)
            .zip(&self.ranks.ranks)
            .map(|((q, p), r)| [q.clone(), p.clone(), r.first().map(|r| r.to_string()).unwrap_or_default()])
            .collect();
        let path = TaskFile::Predictions.path(out, &self.task, "csv");
        write_csv(&path, ["anchor", "positive", "rank"], &rows)?;
        Ok(vec![path])
    }
}
