//! A similarity task's evaluation report: Spearman and Pearson correlation of the predicted
//! cosine with the gold scores, each pair's prediction, and a scatter of cosine against score.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use super::plots::similarity_scatter;
use super::table::count;
use super::{write_csv, TaskFile, TaskReport};
use crate::metrics::correlation::{is_constant, pearson, spearman};

pub struct SimilarityReport {
    pub task: String,
    pub data: PathBuf,
    pub first: Vec<String>,
    pub second: Vec<String>,
    pub gold: Vec<f64>,
    /// The model's cosine similarity of each pair.
    pub predicted: Vec<f64>,
}

impl SimilarityReport {
    /// Pairs whose cosine is NaN or infinite (a broken model's).
    fn not_finite(&self) -> usize {
        self.predicted.iter().filter(|c| !c.is_finite()).count()
    }

    pub fn spearman(&self) -> f64 {
        spearman(&self.predicted, &self.gold)
    }

    pub fn pearson(&self) -> f64 {
        pearson(&self.predicted, &self.gold)
    }
}

impl TaskReport for SimilarityReport {
    fn to_json(&self) -> Value {
        json!({
            "kind": "similarity",
            "data": super::recorded_path(&self.data),
            "pairs": self.gold.len(),
            "spearman": self.spearman(),
            "pearson": self.pearson(),
        })
    }

    fn render_text(&self) -> String {
        format!(
            "task {}: {} from {}, Spearman {:.4}, Pearson {:.4} (cosine similarity against the gold scores)\n",
            self.task,
            count(self.gold.len(), "pair"),
            self.data.display(),
            self.spearman(),
            self.pearson()
        )
    }

    /// A correlation with a constant is undefined (scipy gives NaN); it is reported as 0.
    fn metric_notes(&self) -> Vec<String> {
        if let Some(note) = super::non_finite_note(&self.task, self.not_finite(), self.predicted.len(), "pairs") {
            return vec![note];
        }
        if !is_constant(&self.predicted) || self.predicted.len() < 2 {
            return Vec::new();
        }
        vec![format!(
            "task '{}': every pair's cosine similarity is {:.4}, so the correlations are undefined (scipy gives NaN); they are reported as 0",
            self.task, self.predicted[0]
        )]
    }

    /// `predictions_<task>.csv` (`sentence1`, `sentence2`, `score`, `cosine`, input order) and
    /// `similarity_<task>.png`.
    fn write_files(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let rows: Vec<[String; 4]> = (0..self.gold.len())
            .map(|i| {
                [self.first[i].clone(), self.second[i].clone(), self.gold[i].to_string(), self.predicted[i].to_string()]
            })
            .collect();
        let csv_path = TaskFile::Predictions.path(out, &self.task, "csv");
        write_csv(&csv_path, ["sentence1", "sentence2", "score", "cosine"], &rows)?;
        let png_path = TaskFile::Similarity.path(out, &self.task, "png");
        let mut title = format!(
            "{}: cosine similarity against gold score ({} pairs, Spearman {:.4}, Pearson {:.4})",
            self.task,
            self.gold.len(),
            self.spearman(),
            self.pearson()
        );
        if self.not_finite() > 0 {
            title.push_str(&format!(" - {} of them NaN or infinite, not drawn", self.not_finite()));
        }
        similarity_scatter(&png_path, &title, &self.gold, &self.predicted)?;
        Ok(vec![csv_path, png_path])
    }
}
