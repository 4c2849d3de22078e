//! One linear classification head per task, routed by task name.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::{nn, nn::Module, Tensor};

pub struct TaskHeads {
    /// `heads.<task>.weight [n_classes, features]`, `heads.<task>.bias [n_classes]`.
    heads: BTreeMap<String, nn::Linear>,
}

impl TaskHeads {
    /// Creates `heads.<name>` for each `(name, n_classes)`, reading `features`-wide inputs.
    pub fn new(root: &nn::Path, features: i64, tasks: &[(String, i64)]) -> Self {
        let heads_path = root / "heads";
        let heads = tasks
            .iter()
            .map(|(name, classes)| {
                (name.clone(), nn::linear(&heads_path / name.as_str(), features, *classes, Default::default()))
            })
            .collect();
        Self { heads }
    }

    /// Logits `[batch, n_classes]` of task `task` for sentence features `[batch, features]`.
    pub fn forward(&self, task: &str, features: &Tensor) -> Result<Tensor> {
        match self.heads.get(task) {
            Some(head) => Ok(head.forward(features)),
            None => bail!(
                "unknown task '{task}' (this model has: {})",
                self.heads.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.heads.keys().map(String::as_str)
    }
}
