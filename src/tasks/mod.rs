//! Task kinds. A kind knows its columns, what the model computes for a batch, its loss and its
//! dev metric; the trainer and `eval` see a task only through [`TrainingTask`] and
//! [`TaskScore`].
//!
//! - `classification` (`text,label`): a head per task, cross-entropy, accuracy and macro-F1.
//! - `similarity` (`sentence1,sentence2,score`): the cosine of the two embeddings, CoSENT or
//!   cosine-MSE, Spearman and Pearson correlation with the scores.
//! - `pairs` (`anchor,positive[,negative]`): in-batch negatives (MultipleNegativesRankingLoss),
//!   MRR@10 and recall@1/@10 of every dev anchor searched among all dev positives (and
//!   negatives).
//!
//! The embeddings a similarity or pairs loss sees are exactly `encode`'s (pooling, projection,
//! normalisation as the model says), so what is trained is what is served.

pub mod batch;
pub mod classification;
pub mod losses;
pub mod pairs;
pub mod similarity;

use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::cli::task_values::PerTaskValue;
use crate::data::csv_file::{delimiter_hint, header_at, missing_column_hint, read_header};
use crate::inference::Encoder;
use crate::model::fused_forward::FusedForward;
use crate::model::spec::{TaskKind, TaskSpec, KINDS};
use crate::model::tokenizer::SentenceTokenizer;
use crate::train::logistic_regression::LinearHead;
use crate::train::settings::{TaskSource, TrainSettings};

pub use batch::TrainBatch;

/// The columns a classification file is read from (`--text-column`, `--label-column`).
#[derive(Debug, Clone, Copy)]
pub struct LabelColumns<'a> {
    pub text: &'a str,
    pub label: &'a str,
}

/// The columns a file of `kind` must have.
fn required_columns(kind: TaskKind, columns: LabelColumns<'_>) -> Vec<&str> {
    match kind {
        TaskKind::Classification => vec![columns.text, columns.label],
        TaskKind::Similarity => crate::data::scored_pairs::COLUMNS.to_vec(),
        TaskKind::Pairs => vec![crate::data::text_pairs::ANCHOR, crate::data::text_pairs::POSITIVE],
    }
}

/// `pairs needs anchor, positive (and optionally negative)`; with the header seen, the columns
/// it lacks when it has some of them.
fn describe_columns(kind: TaskKind, columns: LabelColumns<'_>, header: &[String]) -> String {
    let required = required_columns(kind, columns);
    let mut text = format!("{kind} needs {}", required.join(", "));
    if kind == TaskKind::Pairs {
        text.push_str(" (and optionally negative)");
    }
    let missing: Vec<&str> = required.iter().copied().filter(|c| !header.iter().any(|h| h == c)).collect();
    if !missing.is_empty() && missing.len() < required.len() {
        text.push_str(&format!(" (no {})", missing.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")));
    }
    // Names are case-sensitive: point at `Text` standing for `text`, and at the flags that
    // rename a classification file's columns.
    let other_case: Vec<String> = missing
        .iter()
        .filter_map(|c| header.iter().find(|h| h.eq_ignore_ascii_case(c)).map(|h| format!("'{h}' for '{c}'")))
        .collect();
    if !other_case.is_empty() {
        let rename = if kind == TaskKind::Classification { ", or pass --text-column/--label-column" } else { "" };
        text.push_str(&format!(" (column names are case-sensitive: {}; rename them{rename})", other_case.join(", ")));
    }
    text
}

/// Notes for values of a classification column flag (`--text-column`, `--label-column`)
/// that apply to no classification task: `NAME=COL` naming a task of another kind, or a
/// value for all tasks when none is a classification task. `kinds`: each task's name and kind.
pub fn column_flag_notes(flag: &str, values: &[PerTaskValue], kinds: &[(&str, TaskKind)]) -> Vec<String> {
    let kind_of = |name: &str| kinds.iter().find(|(n, _)| *n == name).map(|(_, k)| *k);
    let any_classification = kinds.iter().any(|(_, k)| *k == TaskKind::Classification);
    values
        .iter()
        .filter_map(|value| match value.task.as_deref().map(|name| (name, kind_of(name))) {
            Some((name, Some(kind))) if kind != TaskKind::Classification => Some(format!(
                "{flag} {value} has no effect: task '{name}' is a {kind} task, whose columns are named {}",
                column_names(kind)
            )),
            None if !any_classification => {
                Some(format!("{flag} {value} has no effect: no task is a classification task"))
            }
            _ => None,
        })
        .collect()
}

/// The fixed column names of a similarity or pairs file.
fn column_names(kind: TaskKind) -> String {
    let columns = required_columns(kind, LabelColumns { text: "text", label: "label" }).join(", ");
    match kind {
        TaskKind::Pairs => format!("{columns} (and optionally {})", crate::data::text_pairs::NEGATIVE),
        _ => columns,
    }
}

/// The kind of a data file: `given` (from `--task-kind`, or the model's task) when its header
/// has that kind's columns, else the one kind whose columns the header has.
pub fn kind_of_file(path: &Path, given: Option<TaskKind>, columns: LabelColumns<'_>) -> Result<TaskKind> {
    let header = read_header(path)?;
    let fits = |kind: TaskKind| required_columns(kind, columns).iter().all(|c| header.iter().any(|h| h == c));
    let columns_seen = crate::data::csv_file::describe_header(&header);
    let delimiter = delimiter_hint(&header);
    if let Some(kind) = given {
        if !fits(kind) {
            let delimiter_hint = delimiter.map(|hint| format!("; {hint}")).unwrap_or_default();
            let flags = match (kind, delimiter_hint.is_empty()) {
                (TaskKind::Classification, true) => {
                    "; --text-column and --label-column [NAME=]COL name the columns to read"
                }
                _ => "",
            };
            bail!(
                "{}: the header ({columns_seen}) is not a {kind} file: {}{delimiter_hint}{flags}",
                header_at(path),
                describe_columns(kind, columns, &header)
            );
        }
        return Ok(kind);
    }
    let fitting: Vec<TaskKind> = KINDS.into_iter().filter(|k| fits(*k)).collect();
    match fitting.as_slice() {
        [kind] => Ok(*kind),
        [] => {
            let expected: Vec<String> = KINDS.iter().map(|k| describe_columns(*k, columns, &header)).collect();
            let hint = score_named_label(&header).or(delimiter).map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}; --text-column and --label-column [NAME=]COL name a classification file's columns (similarity and pairs columns must have the names above)",
                    missing_column_hint(&header)
                )
            });
            bail!("{}: the header ({columns_seen}) fits no task kind: {}; {hint}", header_at(path), expected.join("; "))
        }
        several => {
            let names: Vec<String> = several.iter().map(|k| k.to_string()).collect();
            bail!(
                "{}: the header ({columns_seen}) fits several task kinds ({}); choose one with --task-kind NAME=KIND",
                header_at(path),
                names.join(", ")
            )
        }
    }
}

/// The hint for GLUE's STS-B layout, whose similarity score is in a column named `label`.
fn score_named_label(header: &[String]) -> Option<&'static str> {
    let has = |name: &str| header.iter().any(|h| h == name);
    (has("sentence1") && has("sentence2") && has("label") && !has("score"))
        .then_some("a similarity file names its score column 'score' (GLUE's STS-B calls it 'label'): rename it")
}

/// A task's dev score, by kind. The main metric (macro-F1, Spearman, MRR@10) chooses `best/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskScore {
    Classification {
        accuracy: f64,
        macro_f1: f64,
        examples: usize,
    },
    Similarity {
        // Undefined (NaN, written `null`) for constant cosines or scores.
        #[serde(deserialize_with = "crate::metrics::null_as_nan")]
        spearman: f64,
        #[serde(deserialize_with = "crate::metrics::null_as_nan")]
        pearson: f64,
        pairs: usize,
    },
    Pairs {
        mrr_at_10: f64,
        recall_at_1: f64,
        recall_at_10: f64,
        queries: usize,
    },
}

impl TaskScore {
    pub fn kind(&self) -> TaskKind {
        match self {
            Self::Classification { .. } => TaskKind::Classification,
            Self::Similarity { .. } => TaskKind::Similarity,
            Self::Pairs { .. } => TaskKind::Pairs,
        }
    }

    /// The kind's main metric.
    pub fn main(&self) -> f64 {
        match self {
            Self::Classification { macro_f1, .. } => *macro_f1,
            Self::Similarity { spearman, .. } => *spearman,
            Self::Pairs { mrr_at_10, .. } => *mrr_at_10,
        }
    }

    /// A second metric shown beside the main one (accuracy, Pearson, recall@1).
    pub fn secondary(&self) -> (&'static str, f64) {
        match self {
            Self::Classification { accuracy, .. } => ("accuracy", *accuracy),
            Self::Similarity { pearson, .. } => ("Pearson", *pearson),
            Self::Pairs { recall_at_1, .. } => ("recall@1", *recall_at_1),
        }
    }

    /// Dev rows (pairs, queries) the score is over.
    pub fn examples(&self) -> usize {
        match self {
            Self::Classification { examples, .. } => *examples,
            Self::Similarity { pairs, .. } => *pairs,
            Self::Pairs { queries, .. } => *queries,
        }
    }

    /// The metrics as `name value` pairs, for tables.
    pub fn describe(&self) -> String {
        match self {
            Self::Classification { accuracy, macro_f1, .. } => {
                format!("accuracy {accuracy:.4}, macro-F1 {macro_f1:.4}")
            }
            Self::Similarity { spearman, pearson, .. } => format!("Spearman {spearman:.4}, Pearson {pearson:.4}"),
            Self::Pairs { mrr_at_10, recall_at_1, recall_at_10, .. } => {
                format!("MRR@10 {mrr_at_10:.4}, recall@1 {recall_at_1:.4}, recall@10 {recall_at_10:.4}")
            }
        }
    }
}

/// A task as the trainer sees it.
pub trait TrainingTask {
    fn source(&self) -> &TaskSource;
    fn kind(&self) -> TaskKind;
    /// What the checkpoint records about the task.
    fn spec(&self) -> TaskSpec;
    /// Tokenises the training texts, once per run; returns how many were longer than
    /// `max_length` tokens and were truncated.
    fn tokenize(&mut self, tokenizer: &SentenceTokenizer, max_length: usize) -> usize;
    /// Every training text's token ids (after `tokenize`), for the feature cache.
    fn train_texts(&self) -> Vec<&[i64]>;
    /// Every dev text, for the feature cache.
    fn dev_texts(&self) -> Vec<&str>;
    /// Tokens of each training row (its longest text), for length-grouped batches.
    fn row_lengths(&self) -> Vec<usize>;
    /// Texts per training row that go through the encoder (for token budgets).
    fn texts_per_row(&self) -> usize {
        1
    }
    /// For each training row, keys of its texts that no other row of its batch may share;
    /// `None` when any rows may share a batch.
    fn exclusive_texts(&self) -> Option<Vec<Vec<u64>>> {
        None
    }
    fn train_rows(&self) -> usize;
    /// Whether the task trains in small-data mode (`train::small_data`).
    fn small_data(&self) -> bool {
        false
    }
    /// Told before the first step what `--freeze` keeps: a loss on the embeddings alone is a
    /// constant when nothing that feeds them trains, and a frozen head is not refitted.
    fn note_frozen(&mut self, _frozen: Frozen) {}
    /// Told the labels in the order the starting checkpoint's head of this task has them: a
    /// task with the same labels takes that order, so the head goes on (a run resumed, or
    /// trained further, from before labels that are numbers sorted as numbers).
    fn keep_label_order(&mut self, _saved: &[String]) {}
    fn dev_rows(&self) -> Option<usize>;
    /// What a new run says about the task's data before it trains (each a sentence).
    fn data_notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// One line for the run's overview: classes, score range, loss.
    fn summary(&self) -> String;
    /// The training rows `rows` as a batch (targets on `device`).
    fn batch(&self, rows: &[usize], device: Device) -> TrainBatch<'_>;
    /// What the loss reads, from the batch texts' sentence features `[texts, dim]` (training's
    /// forward, under the run's autocast): a head's logits, or `encode`'s embeddings.
    fn outputs(&self, forward: &FusedForward, features: &Tensor) -> Result<Tensor>;
    /// The loss of fp32 `outputs` on `batch` (a scalar).
    fn loss(&self, outputs: &Tensor, batch: &TrainBatch) -> Tensor;
    /// For an in-batch-negatives loss: its scale; a data-parallel run with
    /// `--gather-across-ranks` then computes it over every rank's candidates
    /// (`distributed::gathered_negatives`). `None`: the loss is the task's own.
    fn in_batch_negatives_scale(&self) -> Option<f64> {
        None
    }
    /// Small-data mode's last stage (`train::small_data`): the task's head fitted anew on the
    /// final body's inputs of its training rows; `None` for a task that keeps its head.
    fn refit_head(&self, _encoder: &Encoder) -> Result<Option<LinearHead>> {
        Ok(None)
    }
    /// The dev score, `None` without a dev set.
    fn evaluate(&self, encoder: &Encoder) -> Result<Option<TaskScore>>;
}

/// What `--freeze` keeps of the parts a task trains.
#[derive(Debug, Clone, Copy)]
pub struct Frozen {
    /// Nothing that feeds the embeddings trains (backbone frozen, no trainable projection).
    pub encoder: bool,
    /// The task's own head (`--freeze head:NAME`).
    pub head: bool,
}

/// Reads a task's files as the kind its settings say.
pub fn read(source: &TaskSource, settings: &TrainSettings) -> Result<Box<dyn TrainingTask>> {
    Ok(match source.kind.unwrap_or_default() {
        TaskKind::Classification => Box::new(classification::ClassificationTask::read(source, settings)?),
        TaskKind::Similarity => Box::new(similarity::SimilarityTask::read(source)?),
        TaskKind::Pairs => Box::new(pairs::PairsTask::read(source, settings)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_flags_for_tasks_without_such_columns_get_a_note() {
        let values: Vec<PerTaskValue> =
            ["sts=foo", "review", "q=question"].iter().map(|v| v.parse().unwrap()).collect();
        let kinds = [("sts", TaskKind::Similarity), ("q", TaskKind::Classification), ("p", TaskKind::Pairs)];
        let notes = column_flag_notes("--text-column", &values, &kinds);
        assert_eq!(
            notes,
            ["--text-column sts=foo has no effect: task 'sts' is a similarity task, whose columns are named sentence1, sentence2, score"]
        );
        let notes = column_flag_notes("--label-column", &values[1..2], &kinds[..1]);
        assert_eq!(notes, ["--label-column review has no effect: no task is a classification task"]);
        let pairs: Vec<PerTaskValue> = vec!["p=x".parse().unwrap()];
        let notes = column_flag_notes("--text-column", &pairs, &kinds);
        assert!(notes[0].ends_with("a pairs task, whose columns are named anchor, positive (and optionally negative)"));
    }

    fn header(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const DEFAULT: LabelColumns<'static> = LabelColumns { text: "text", label: "label" };

    #[test]
    fn kinds_come_from_the_header() {
        for (text, kind) in [
            ("text,label\n", TaskKind::Classification),
            ("sentence1,sentence2,score\n", TaskKind::Similarity),
            ("anchor,positive,negative\n", TaskKind::Pairs),
            ("\u{feff}label,text\n", TaskKind::Classification),
        ] {
            let (_dir, path) = header(text);
            assert_eq!(kind_of_file(&path, None, DEFAULT).unwrap(), kind, "{text}");
        }
        let (_dir, path) = header("sentence,category\n");
        let columns = LabelColumns { text: "sentence", label: "category" };
        assert_eq!(kind_of_file(&path, None, columns).unwrap(), TaskKind::Classification);
    }

    #[test]
    fn headers_that_fit_no_kind_or_contradict_the_flag_are_errors() {
        let (_dir, path) = header("question,answer\n");
        let err = kind_of_file(&path, None, DEFAULT).unwrap_err().to_string();
        assert!(err.contains("fits no task kind: classification needs text, label; similarity needs sentence1, sentence2, score; pairs needs anchor, positive (and optionally negative)"), "{err}");
        let (_dir, path) = header("sentence1,sentence2,label\n");
        let err = kind_of_file(&path, None, DEFAULT).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "a similarity file names its score column 'score' (GLUE's STS-B calls it 'label'): rename it"
            ),
            "{err}"
        );
        let (_dir, path) = header("text,label\n");
        let err = kind_of_file(&path, Some(TaskKind::Similarity), DEFAULT).unwrap_err().to_string();
        assert!(err.ends_with("f.csv:1: the header (text, label) is not a similarity file: similarity needs sentence1, sentence2, score"), "{err}");
        let (_dir, path) = header("text,category\n");
        let err = kind_of_file(&path, None, DEFAULT).unwrap_err().to_string();
        assert!(err.contains("classification needs text, label (no 'label'); similarity"), "{err}");
        let (_dir, path) = header("text,label,anchor,positive\n");
        let err = kind_of_file(&path, None, DEFAULT).unwrap_err().to_string();
        assert!(err.contains("fits several task kinds (classification, pairs)"), "{err}");
        assert_eq!(kind_of_file(&path, Some(TaskKind::Pairs), DEFAULT).unwrap(), TaskKind::Pairs);
    }

    #[test]
    fn scores_deserialise_by_their_fields() {
        let old: TaskScore = serde_json::from_str(r#"{"accuracy":0.5,"macro_f1":0.4,"examples":3}"#).unwrap();
        assert_eq!(old.kind(), TaskKind::Classification);
        let s: TaskScore = serde_json::from_str(r#"{"spearman":0.8,"pearson":0.7,"pairs":9}"#).unwrap();
        assert_eq!((s.kind(), s.main()), (TaskKind::Similarity, 0.8));
        let p = TaskScore::Pairs { mrr_at_10: 0.5, recall_at_1: 0.4, recall_at_10: 0.9, queries: 2 };
        let back: TaskScore = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
