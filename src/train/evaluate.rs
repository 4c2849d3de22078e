//! Dev evaluation during training: every task with a dev set scored by its kind's metrics, and
//! the mean of the main metrics (macro-F1, Spearman, MRR@10) that chooses `best/`.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::inference::Encoder;
use crate::tasks::{TaskScore, TrainingTask};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: usize,
    pub tasks: BTreeMap<String, TaskScore>,
    /// The selection metric: the mean over tasks of each kind's main metric. (Runs from
    /// before task kinds, all classification, called it `mean_macro_f1`.)
    #[serde(alias = "mean_macro_f1", deserialize_with = "crate::metrics::null_as_nan")]
    pub mean_main_metric: f64,
}

/// Scores every task that has a dev set; `None` when no task has one.
pub fn evaluate(encoder: &Encoder, tasks: &[Box<dyn TrainingTask>], step: usize) -> Result<Option<Evaluation>> {
    let mut scores = BTreeMap::new();
    for task in tasks {
        if let Some(score) = task.evaluate(encoder)? {
            scores.insert(task.source().name.clone(), score);
        }
    }
    if scores.is_empty() {
        return Ok(None);
    }
    let mean_main_metric = scores.values().map(TaskScore::main).sum::<f64>() / scores.len() as f64;
    Ok(Some(Evaluation { step, tasks: scores, mean_main_metric }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's state and log keep evaluations as JSON, which has no NaN.
    #[test]
    fn an_undefined_correlation_survives_a_save() {
        let score = TaskScore::Similarity { spearman: f64::NAN, pearson: f64::NAN, pairs: 3 };
        let evaluation =
            Evaluation { step: 2, tasks: BTreeMap::from([("sts".to_string(), score)]), mean_main_metric: f64::NAN };
        let read: Evaluation = serde_json::from_str(&serde_json::to_string(&evaluation).unwrap()).unwrap();
        assert!(read.mean_main_metric.is_nan() && read.tasks["sts"].main().is_nan());
        assert_eq!(read.tasks["sts"].kind(), crate::model::spec::TaskKind::Similarity);
    }
}
