//! A pairs task's evaluation report: every distinct anchor searched among all distinct
//! positives and negatives, with MRR@10, recall@1 and recall@10, and per query its best
//! relevant candidate's rank and what was found first.

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
    /// Per query, its best-ranked relevant candidate's text.
    pub best_relevant: Vec<String>,
    /// Per query, the text of the candidate ranked first.
    pub top: Vec<String>,
}

impl TaskReport for RetrievalReport {
    fn metric_notes(&self) -> Vec<String> {
        super::non_finite_note(&self.task, self.ranks.nan_queries, self.queries.len(), "queries").into_iter().collect()
    }

    fn to_json(&self) -> Value {
        let scores = self.ranks.scores();
        json!({
            "kind": "pairs",
            "data": super::recorded_path(&self.data),
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

    /// `predictions_<task>.csv`: per query (`anchor`), its best-ranked relevant candidate
    /// (`positive`), that candidate's rank (`rank`, 1 = found first) and the candidate found
    /// first (`top`: the positive itself when `rank` is 1).
    fn write_files(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let rows: Vec<[String; 4]> = (0..self.queries.len())
            .map(|q| {
                let rank = self.ranks.ranks[q].first().map(|r| r.to_string()).unwrap_or_default();
                [self.queries[q].clone(), self.best_relevant[q].clone(), rank, self.top[q].clone()]
            })
            .collect();
        let path = TaskFile::Predictions.path(out, &self.task, "csv");
        write_csv(&path, ["anchor", "positive", "rank", "top"], &rows)?;
        Ok(vec![path])
    }
}
