//! A task's data made ready for training: labels fixed from the training file, texts
//! tokenised once, dev rows mapped to class ids.

use anyhow::{bail, Context, Result};

use crate::data::labelled::{LabelSet, LabelledData, UnknownLabelPolicy};
use crate::model::spec::TaskSpec;
use crate::model::tokenizer::SentenceTokenizer;

use super::settings::TaskSource;

pub struct TaskData {
    pub source: TaskSource,
    pub labels: LabelSet,
    pub train: LabelledData,
    /// Class id of every training row.
    pub train_classes: Vec<i64>,
    /// Token ids of every training row (filled by [`TaskData::tokenize`]).
    pub train_tokens: Vec<Vec<i64>>,
    pub dev: Option<DevSet>,
}

pub struct DevSet {
    pub data: LabelledData,
    pub classes: Vec<usize>,
}

impl TaskData {
    /// Reads the task's CSVs. Dev labels unknown to the training data are an error.
    pub fn read(source: &TaskSource) -> Result<Self> {
        let context = || format!("task '{}'", source.name);
        let train =
            LabelledData::read(&source.train, &source.text_column, &source.label_column).with_context(context)?;
        let labels = LabelSet::from_labels(&train.labels);
        let (train_classes, _, _) = train.class_ids(&labels, UnknownLabelPolicy::Error)?;
        let dev = match &source.dev {
            Some(path) => {
                let data = LabelledData::read(path, &source.text_column, &source.label_column).with_context(context)?;
                let (classes, _, unknown) = data.class_ids(&labels, UnknownLabelPolicy::Skip)?;
                if !unknown.is_empty() {
                    bail!(
                        "task '{}': {}: {} dev row(s) have labels that the training file {} does not have: {} (training labels: {})",
                        source.name,
                        path.display(),
                        unknown.rows,
                        source.train.display(),
                        unknown.describe(),
                        labels.names().join(", ")
                    );
                }
                Some(DevSet { data, classes })
            }
            None => None,
        };
        Ok(Self {
            source: source.clone(),
            labels,
            train,
            train_classes: train_classes.into_iter().map(|c| c as i64).collect(),
            train_tokens: Vec::new(),
            dev,
        })
    }

    pub fn tokenize(&mut self, tokenizer: &SentenceTokenizer, max_length: usize) {
        self.train_tokens = tokenizer.encode_batch(&self.train.texts, max_length);
    }

    pub fn spec(&self) -> TaskSpec {
        TaskSpec {
            name: self.source.name.clone(),
            labels: self.labels.names().to_vec(),
            text_column: self.source.text_column.clone(),
            label_column: self.source.label_column.clone(),
        }
    }
}
