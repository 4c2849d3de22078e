//! A task's data made ready for training: labels fixed from the training file, texts
//! tokenised once, dev rows mapped to class ids.

use anyhow::{bail, Context, Result};
use tch::{Device, Tensor};

use crate::data::batching::pad_batch;
use crate::data::labelled::{LabelSet, LabelledData, UnknownLabelPolicy};
use crate::model::fused_forward::FusedForward;
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

/// One training batch of a task, on the model's device.
pub struct TrainBatch {
    /// `[batch, seq]` token ids and attention mask (Int64).
    pub ids: Tensor,
    pub mask: Tensor,
    /// What the loss compares the outputs with: class ids `[batch]` (Int64).
    pub targets: Tensor,
    /// Rows (examples) in the batch.
    pub examples: usize,
    /// Real tokens, and tokens after padding.
    pub tokens: usize,
    pub padded_tokens: usize,
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

    /// The training rows `rows` as a padded batch on `device`.
    pub fn batch(&self, rows: &[usize], pad_id: i64, device: Device) -> TrainBatch {
        let sequences: Vec<&[i64]> = rows.iter().map(|&r| self.train_tokens[r].as_slice()).collect();
        let (ids, mask) = pad_batch(&sequences, pad_id, device);
        let targets =
            Tensor::from_slice(&rows.iter().map(|&r| self.train_classes[r]).collect::<Vec<_>>()).to_device(device);
        let longest = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
        TrainBatch {
            ids,
            mask,
            targets,
            examples: rows.len(),
            tokens: sequences.iter().map(|s| s.len()).sum(),
            padded_tokens: sequences.len() * longest,
        }
    }

    /// The model's outputs the loss reads: the head's logits `[batch, classes]`. Runs under
    /// the run's autocast, with dropout (training's forward).
    pub fn outputs(&self, forward: &FusedForward, batch: &TrainBatch) -> Result<Tensor> {
        forward.logits(&forward.features_t(&batch.ids, &batch.mask, true)?, &self.source.name)
    }

    /// The loss of fp32 `outputs` on `batch`: cross-entropy.
    pub fn loss(&self, outputs: &Tensor, batch: &TrainBatch) -> Tensor {
        outputs.cross_entropy_for_logits(&batch.targets)
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
