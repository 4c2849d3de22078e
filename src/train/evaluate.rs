//! Dev-set evaluation during training: accuracy and macro-F1 per task.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::inference::class_probabilities;
use crate::metrics::ConfusionMatrix;
use crate::model::loaded::LoadedModel;
use crate::progress::Progress;

use super::task_data::TaskData;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub examples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: usize,
    pub tasks: BTreeMap<String, TaskScore>,
    /// The selection metric: mean of the tasks' macro-F1.
    pub mean_macro_f1: f64,
}

/// Predicted class (argmax) of every row of `[n, classes]` probabilities.
pub fn argmax_rows(probabilities: &Tensor) -> Vec<usize> {
    Vec::<i64>::try_from(probabilities.argmax(-1, false)).unwrap_or_default().into_iter().map(|c| c as usize).collect()
}

/// Scores every task that has a dev set; `None` when no task has one.
pub fn evaluate(
    loaded: &LoadedModel,
    tasks: &[TaskData],
    batch_size: usize,
    step: usize,
) -> Result<Option<Evaluation>> {
    let mut scores = BTreeMap::new();
    for task in tasks {
        let Some(dev) = &task.dev else { continue };
        let probabilities =
            class_probabilities(loaded, &task.source.name, &dev.data.texts, batch_size, &Progress::hidden())?;
        let predicted = argmax_rows(&probabilities);
        let matrix = ConfusionMatrix::from_predictions(task.labels.len(), &dev.classes, &predicted);
        scores.insert(
            task.source.name.clone(),
            TaskScore { accuracy: matrix.accuracy(), macro_f1: matrix.macro_average().f1, examples: dev.classes.len() },
        );
    }
    if scores.is_empty() {
        return Ok(None);
    }
    let mean_macro_f1 = scores.values().map(|s| s.macro_f1).sum::<f64>() / scores.len() as f64;
    Ok(Some(Evaluation { step, tasks: scores, mean_macro_f1 }))
}
