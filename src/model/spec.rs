//! What a model is besides its tensors: pooling, projection, normalisation, length limit and
//! the tasks with their labels. A checkpoint stores it as `sentence_mtl.json`; for a plain
//! Hugging Face folder it comes from defaults and the sentence-transformers configuration.

use serde::{Deserialize, Serialize};

use crate::model::pooling::Pooling;

/// Version of the `sentence_mtl.json` layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Used when neither the flags nor the model folder say otherwise.
pub const DEFAULT_MAX_LENGTH: usize = 128;
/// Width of a new projection when `train` is not told otherwise.
pub const DEFAULT_PROJECTION_DIM: i64 = 256;

/// Everything besides the tensors that is needed to rebuild a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    pub format_version: u32,
    /// `distilbert` or `bert`; must agree with `config.json`.
    pub model_type: String,
    pub pooling: Pooling,
    /// Width of the `projection` layer, `None` when sentence features are the pooled states.
    pub projection_dim: Option<i64>,
    /// Whether `encode` L2-normalises embeddings (heads read the un-normalised features unless
    /// their task's `head_input` says otherwise).
    pub normalize: bool,
    /// Token limit per sentence, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
    pub tasks: Vec<TaskSpec>,
    /// Where the backbone weights originally came from (a folder or hub id).
    pub base_model: String,
    /// The resolved training settings of the run that wrote this checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Dev metrics at the time of saving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// Checkpoints from before task kinds have no `kind`: their tasks are classification.
    #[serde(default)]
    pub kind: TaskKind,
    /// Class names (classification); a class's index in this list is its id and its row in
    /// the head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The columns a classification task reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// The lowest and highest training score (similarity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
    /// The training loss: cross-entropy, cosent, cosine-mse or multiple-negatives-ranking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    /// What the task's head reads (classification).
    #[serde(default, skip_serializing_if = "HeadInput::is_features")]
    pub head_input: HeadInput,
}

/// What a classification head reads: the sentence features, or the embeddings `encode`
/// returns (the features normalised, when the model normalises), as SetFit's head does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadInput {
    #[default]
    Features,
    Embedding,
}

impl HeadInput {
    fn is_features(&self) -> bool {
        *self == Self::Features
    }
}

impl TaskSpec {
    /// A classification task with these labels, read from these columns.
    pub fn classification(name: &str, labels: Vec<String>, text_column: &str, label_column: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: TaskKind::Classification,
            labels,
            text_column: Some(text_column.to_string()),
            label_column: Some(label_column.to_string()),
            score_range: None,
            loss: Some("cross-entropy".into()),
            head_input: HeadInput::Features,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    #[default]
    Classification,
    Similarity,
    Pairs,
}

pub const KINDS: [TaskKind; 3] = [TaskKind::Classification, TaskKind::Similarity, TaskKind::Pairs];

crate::value_names!(TaskKind, "task kind", [Classification => "classification", Similarity => "similarity", Pairs => "pairs"]);

impl TaskKind {
    /// Only classification tasks have a head; the others train the embeddings themselves.
    pub fn has_head(self) -> bool {
        self == Self::Classification
    }

    /// The name of the dev metric `best/` is chosen by.
    pub fn main_metric(self) -> &'static str {
        match self {
            Self::Classification => "macro-F1",
            Self::Similarity => "Spearman",
            Self::Pairs => "MRR@10",
        }
    }
}

impl ModelSpec {
    /// Refuses values a hand-edited `file` may hold that no model has: a projection of no
    /// width (`null` is none) and a token limit without room for `[CLS]` and `[SEP]`.
    pub fn check_recorded(&self, file: &std::path::Path) -> anyhow::Result<()> {
        if let Some(width) = self.projection_dim.filter(|&w| w < 1) {
            anyhow::bail!(
                "{}: projection_dim {width} is no projection width (at least 1; null for none)",
                file.display()
            );
        }
        if self.max_length < 2 {
            anyhow::bail!(
                "{}: max_length {} leaves no room for [CLS] and [SEP] (at least 2)",
                file.display(),
                self.max_length
            );
        }
        Ok(())
    }

    /// How the model makes embeddings of hidden states, named as the ranks of a launch
    /// compare it: each rank takes it from its flags, else from its own model folder.
    pub fn pipeline_settings(&self) -> [(&'static str, String); 2] {
        let normalised = if self.normalize { "normalised" } else { "not normalised" };
        [
            ("pooling (--pooling, else the model folder's)", self.pooling.to_string()),
            ("normalisation (--normalize, else the model folder's)", normalised.to_string()),
        ]
    }

    /// The tasks with a head (classification), in order.
    pub fn head_tasks(&self) -> impl Iterator<Item = &TaskSpec> {
        self.tasks.iter().filter(|t| t.kind.has_head())
    }

    /// The task `predict --task` names, else the model's only task with a head.
    pub fn chosen_head_task(&self, name: Option<&str>) -> anyhow::Result<&TaskSpec> {
        if let Some(name) = name {
            return self.head_task(name);
        }
        let heads: Vec<&TaskSpec> = self.head_tasks().collect();
        match heads.as_slice() {
            [only] => Ok(only),
            [] => anyhow::bail!(
                "this model has no classification head to label sentences with; encode gives its embeddings"
            ),
            several => anyhow::bail!(
                "this model has several classification heads; choose one with --task ({})",
                several.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// A task with a head, for `predict` and the heads' logits.
    pub fn head_task(&self, name: &str) -> anyhow::Result<&TaskSpec> {
        let task = self.task(name)?;
        if !task.kind.has_head() {
            anyhow::bail!(
                "task '{name}' is a {} task: it has no head (what it trains is the embeddings `encode` returns)",
                task.kind
            );
        }
        Ok(task)
    }

    pub fn task(&self, name: &str) -> anyhow::Result<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name).ok_or_else(|| self.unknown_task(name))
    }

    /// The error for a task name this model does not have.
    pub fn unknown_task(&self, name: &str) -> anyhow::Error {
        // `predict` serves classification tasks only: the others are marked, not left to a
        // second failed try.
        let known: Vec<String> = self
            .tasks
            .iter()
            .map(|t| match t.kind {
                TaskKind::Classification => t.name.clone(),
                kind => format!("{} ({kind}, no head)", t.name),
            })
            .collect();
        if known.is_empty() {
            anyhow::anyhow!("unknown task '{name}': this model has no task heads (train one with `sentence-mtl train`)")
        } else {
            anyhow::anyhow!("unknown task '{name}' (this model has: {})", known.join(", "))
        }
    }

    /// Width of the sentence features the heads read: the projection's, else the backbone's.
    pub fn feature_width(&self, hidden_size: i64) -> i64 {
        self.projection_dim.unwrap_or(hidden_size)
    }
}

/// Flags that override what the model folder says.
#[derive(Debug, Clone, Default)]
pub struct SpecOverrides {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub max_length: Option<usize>,
}

impl SpecOverrides {
    pub fn apply(&self, spec: &mut ModelSpec) {
        if let Some(p) = self.pooling {
            spec.pooling = p;
        }
        if let Some(n) = self.normalize {
            spec.normalize = n;
        }
        if let Some(m) = self.max_length {
            spec.max_length = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tasks: serde_json::Value) -> ModelSpec {
        serde_json::from_value(serde_json::json!({
            "format_version": FORMAT_VERSION, "model_type": "bert", "pooling": "mean", "projection_dim": null,
            "normalize": false, "max_length": 8, "base_model": "m", "tasks": tasks,
        }))
        .unwrap()
    }

    #[test]
    fn predict_without_a_task_uses_the_only_head() {
        let similar = serde_json::json!({"name": "s", "kind": "similarity"});
        let one = spec(serde_json::json!([similar, {"name": "a", "labels": ["x", "y"]}]));
        assert_eq!(one.chosen_head_task(None).unwrap().name, "a");
        let two = spec(serde_json::json!([{"name": "a", "labels": ["x"]}, {"name": "b", "labels": ["y"]}]));
        let err = two.chosen_head_task(None).unwrap_err().to_string();
        assert_eq!(err, "this model has several classification heads; choose one with --task (a, b)");
        assert_eq!(two.chosen_head_task(Some("b")).unwrap().name, "b");
        let none = spec(serde_json::json!([similar]));
        assert!(none
            .chosen_head_task(None)
            .unwrap_err()
            .to_string()
            .starts_with("this model has no classification head"));
    }
}
