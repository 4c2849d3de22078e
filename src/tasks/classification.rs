//! Classification (`text,label`): a head per task over the sentence features, cross-entropy,
//! scored by accuracy and macro-F1. Labels are fixed by the training file (sorted, so class
//! ids are stable); dev labels it does not have are an error.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::losses::label_pair_cosine;
use super::{Frozen, TaskScore, TrainBatch, TrainingTask};
use crate::data::labelled::{quoted, quoted_list, LabelSet, LabelledData, UnknownLabelPolicy};
use crate::device::upload;
use crate::inference::Encoder;
use crate::metrics::classification::ConfusionMatrix;
use crate::model::fused_forward::FusedForward;
use crate::model::spec::{HeadInput, TaskKind, TaskSpec};
use crate::model::tokenizer::SentenceTokenizer;
use crate::progress::Progress;
use crate::report::classification::ClassificationReport;
use crate::train::logistic_regression::{self, LinearHead};
use crate::train::settings::{TaskSource, TrainSettings};

/// `--class-weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    #[default]
    None,
    /// rows / (classes x the class's rows), as scikit-learn's `class_weight="balanced"`.
    Balanced,
}

crate::value_names!(ClassWeights, "--class-weights", [None => "none", Balanced => "balanced"]);

/// Balanced class weights of class ids `classes` (each `< n`): rows / (n x count); a class
/// without rows gets weight 0 (it never appears as a target).
pub fn balanced_weights(classes: &[i64], n: usize) -> Vec<f32> {
    let mut counts = vec![0usize; n];
    for &c in classes {
        counts[c as usize] += 1;
    }
    counts.iter().map(|&k| if k == 0 { 0.0 } else { classes.len() as f32 / (n * k) as f32 }).collect()
}

/// PyTorch's `cross_entropy(logits, targets, weight=class_weights,
/// label_smoothing=smoothing)`, averaged over the batch (weighted: divided by the sum of the
/// targets' weights). `logits` `[rows, classes]`, `targets` `[rows]`, `class_weights` `[classes]`.
fn cross_entropy(logits: &Tensor, targets: &Tensor, class_weights: Option<&Tensor>, smoothing: f64) -> Tensor {
    if smoothing == 0.0 && class_weights.is_none() {
        return logits.cross_entropy_for_logits(targets);
    }
    logits.cross_entropy_loss(targets, class_weights, tch::Reduction::Mean, -100, smoothing)
}

/// Training rows above which one class per row gets a note (a handful is a toy set).
const ONE_ROW_PER_CLASS_NOTED: usize = 10;

pub struct ClassificationTask {
    source: TaskSource,
    labels: LabelSet,
    /// Cross-entropy's label smoothing (`--label-smoothing`).
    label_smoothing: f64,
    /// Cross-entropy's class weights `[classes]` (`--class-weights balanced`).
    class_weights: Option<Tensor>,
    /// `class_weights` on the training's device, sent there once, at the first loss.
    class_weights_on_device: std::sync::OnceLock<Tensor>,
    /// Small-data mode (`--small-data`): SetFit's label-pair loss on the embeddings too, a head
    /// that reads the embeddings, refitted after the last step.
    small_data: bool,
    /// Small-data mode's label-pair loss is on: off when the encoder is frozen.
    label_pairs: bool,
    /// Small-data mode refits the head after the last step: not when it is frozen.
    refit: bool,
    train: LabelledData,
    /// Class id of every training row.
    train_classes: Vec<i64>,
    /// Token ids of every training row (filled by `tokenize`).
    train_tokens: Vec<Vec<i64>>,
    dev: Option<DevSet>,
}

struct DevSet {
    data: LabelledData,
    classes: Vec<usize>,
}

impl ClassificationTask {
    /// Classes without dev rows: dev macro-F1 (the main metric) counts each as 0, as
    /// scikit-learn's given every class, so it stays below 1 and the task counts less in the
    /// mean that chooses `best/`; `eval` says so of its reports too.
    fn absent_dev_classes_note(&self) -> Option<String> {
        let dev = self.dev.as_ref()?;
        let present: std::collections::HashSet<usize> = dev.classes.iter().copied().collect();
        let names = self.labels.names();
        let absent: Vec<&String> = (0..names.len()).filter(|c| !present.contains(c)).map(|c| &names[c]).collect();
        (!absent.is_empty()).then(|| {
            format!(
                "its dev set has no rows of {} of its {} classes ({}); dev macro-F1 counts each as 0 (as scikit-learn's given every class), so it is at most {:.3} and weighs this task less in the mean that chooses best/",
                absent.len(),
                names.len(),
                quoted_list(&absent, 5),
                (names.len() - absent.len()) as f64 / names.len() as f64
            )
        })
    }

    /// A note when every training row has a label of its own, as an id or text column named
    /// by `--label-column` gives (one example per class is a real few-shot set, so not refused).
    fn one_row_per_class_note(&self) -> Option<String> {
        let rows = self.train.len();
        (rows > ONE_ROW_PER_CLASS_NOTED && self.labels.len() == rows).then(|| {
            format!(
                "each of its {rows} training rows has a label of its own in column '{}', so every class has one example; if that column is not the labels, --label-column names another",
                self.source.label_column()
            )
        })
    }

    /// Reads the task's CSVs. Dev labels unknown to the training data are an error.
    pub fn read(source: &TaskSource, settings: &TrainSettings) -> Result<Self> {
        let context = || format!("task '{}'", source.name);
        let train =
            LabelledData::read(&source.train, source.text_column(), source.label_column()).with_context(context)?;
        let labels = LabelSet::from_labels(&train.labels);
        if let [only] = labels.names() {
            bail!(
                "task '{}': {}: every row has label {} (column '{}'); a classification task needs at least 2 classes",
                source.name,
                source.train.display(),
                quoted(only),
                source.label_column()
            );
        }
        if let Some((a, b)) = labels.one_number_twice() {
            bail!(
                "task '{}': {}: labels {} and {} are one number written two ways, which would make two classes (column '{}'); write each label one way",
                source.name,
                source.train.display(),
                quoted(a),
                quoted(b),
                source.label_column()
            );
        }
        let (train_classes, _, _) = train.class_ids(&labels, UnknownLabelPolicy::Error)?;
        let dev = match &source.dev {
            Some(path) => {
                let data =
                    LabelledData::read(path, source.text_column(), source.label_column()).with_context(context)?;
                let (classes, _, unknown) = data.class_ids(&labels, UnknownLabelPolicy::Skip).with_context(context)?;
                if !unknown.is_empty() {
                    bail!(
                        "task '{}': {}: {} dev row(s) have labels that the training file {} does not have: {} (training labels: {}){}",
                        source.name,
                        path.display(),
                        unknown.rows,
                        source.train.display(),
                        unknown.describe(),
                        quoted_list(labels.names(), crate::data::labelled::LABELS_NAMED),
                        unknown.written_another_way(&labels)
                    );
                }
                Some(DevSet { data, classes })
            }
            None => None,
        };
        let train_classes: Vec<i64> = train_classes.into_iter().map(|c| c as i64).collect();
        let class_weights = match settings.class_weights {
            ClassWeights::None => None,
            ClassWeights::Balanced => Some(Tensor::from_slice(&balanced_weights(&train_classes, labels.len()))),
        };
        let small_data = settings.small_data.applies(train.len(), labels.len());
        Ok(Self {
            source: source.clone(),
            labels,
            label_smoothing: settings.label_smoothing,
            class_weights,
            class_weights_on_device: std::sync::OnceLock::new(),
            small_data,
            label_pairs: small_data,
            refit: small_data,
            train,
            train_classes,
            train_tokens: Vec::new(),
            dev,
        })
    }
}

/// Accuracy and macro-F1 of the encoder's head `task` on labelled texts.
pub fn score(encoder: &Encoder, task: &str, texts: &[String], truth: &[usize], classes: usize) -> Result<TaskScore> {
    let probabilities = encoder.class_probabilities(task, texts, &Progress::hidden())?;
    let predicted = argmax_rows(&probabilities)?;
    let matrix = ConfusionMatrix::from_predictions(classes, truth, &predicted);
    Ok(TaskScore::Classification {
        accuracy: matrix.accuracy(),
        macro_f1: matrix.macro_average().f1,
        examples: truth.len(),
    })
}

/// Predicted class (argmax) of every row of `[n, classes]` probabilities.
pub fn argmax_rows(probabilities: &Tensor) -> Result<Vec<usize>> {
    Ok(Vec::<i64>::try_from(probabilities.argmax(-1, false))?.into_iter().map(|c| c as usize).collect())
}

impl TrainingTask for ClassificationTask {
    fn source(&self) -> &TaskSource {
        &self.source
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Classification
    }

    fn spec(&self) -> TaskSpec {
        let mut spec = TaskSpec::classification(
            &self.source.name,
            self.labels.names().to_vec(),
            self.source.text_column(),
            self.source.label_column(),
        );
        if self.small_data {
            // As SetFit's head, which reads the normalised embeddings its body was trained on.
            spec.head_input = HeadInput::Embedding;
            spec.loss = Some("label-pair cosine and cross-entropy, head refitted by logistic regression".into());
        }
        spec
    }

    fn tokenize(&mut self, tokenizer: &SentenceTokenizer, max_length: usize) -> usize {
        let truncated;
        (self.train_tokens, truncated) = tokenizer.encode_batch_counting_truncated(&self.train.texts, max_length);
        truncated
    }

    fn train_texts(&self) -> Vec<&[i64]> {
        self.train_tokens.iter().map(Vec::as_slice).collect()
    }

    fn dev_texts(&self) -> Vec<&str> {
        self.dev.iter().flat_map(|d| d.data.texts.iter().map(String::as_str)).collect()
    }

    fn row_lengths(&self) -> Vec<usize> {
        self.train_tokens.iter().map(Vec::len).collect()
    }

    fn train_rows(&self) -> usize {
        self.train.len()
    }

    fn data_notes(&self) -> Vec<String> {
        let numbers = self.labels.fractional_number().map(|example| format!(
            "its {} labels are numbers such as {example}, each trained as a class of its own; to learn scores of sentence pairs, give the columns sentence1,sentence2,score (a similarity task)",
            self.labels.len()
        ));
        let case = self.labels.equal_but_for_case().map(|(a, b)| {
            format!(
                "labels {} and {} differ only in case and train as two classes; write them alike if they are one",
                quoted(a),
                quoted(b)
            )
        });
        // The refitted head is scikit-learn's logistic regression, which has class weights
        // but no label smoothing.
        let smoothing = (self.refit && self.label_smoothing > 0.0).then(|| {
            "--label-smoothing has no effect on its small-data head, which is fitted anew by logistic regression before every evaluation and at the end".to_string()
        });
        numbers
            .into_iter()
            .chain(self.one_row_per_class_note())
            .chain(self.absent_dev_classes_note())
            .chain(case)
            .chain(smoothing)
            .collect()
    }

    fn keep_label_order(&mut self, saved: &[String]) {
        let same_labels = saved.len() == self.labels.len() && saved.iter().all(|l| self.labels.id(l).is_some());
        if !same_labels || saved == self.labels.names() {
            return;
        }
        let order = LabelSet::from_names(saved.to_vec());
        let new_id: Vec<usize> = self.labels.names().iter().filter_map(|l| order.id(l)).collect();
        for class in &mut self.train_classes {
            *class = new_id[*class as usize] as i64;
        }
        if let Some(dev) = &mut self.dev {
            dev.classes.iter_mut().for_each(|class| *class = new_id[*class]);
        }
        if self.class_weights.is_some() {
            self.class_weights = Some(Tensor::from_slice(&balanced_weights(&self.train_classes, order.len())));
            self.class_weights_on_device = std::sync::OnceLock::new();
        }
        self.labels = order;
    }

    fn dev_rows(&self) -> Option<usize> {
        self.dev.as_ref().map(|d| d.data.len())
    }

    fn summary(&self) -> String {
        let mut extras = String::new();
        if self.label_smoothing > 0.0 {
            extras.push_str(&format!(", label smoothing {}", self.label_smoothing));
        }
        if self.class_weights.is_some() {
            extras.push_str(", balanced class weights");
        }
        if self.small_data {
            let loss = match self.label_pairs {
                true => "label-pair cosine loss on the embeddings",
                false => "no label-pair loss (the encoder is frozen)",
            };
            let head = match self.refit {
                true => "head refitted after the last step",
                false => "head frozen, not refitted",
            };
            extras.push_str(&format!(", small-data mode: {loss}, {head}"));
        }
        format!("{} classes, cross-entropy{extras}", self.labels.len())
    }

    fn batch(&self, rows: &[usize], device: Device) -> TrainBatch<'_> {
        let texts: Vec<&[i64]> = rows.iter().map(|&r| self.train_tokens[r].as_slice()).collect();
        let classes: Vec<i64> = rows.iter().map(|&r| self.train_classes[r]).collect();
        TrainBatch::of_columns(vec![texts], Some(upload(Tensor::from_slice(&classes), device)))
    }

    fn small_data(&self) -> bool {
        self.small_data
    }

    fn note_frozen(&mut self, frozen: Frozen) {
        self.label_pairs &= !frozen.encoder;
        self.refit &= !frozen.head;
    }

    /// The head's logits `[batch, classes]`; in small-data mode followed by the embeddings,
    /// `[batch, classes + dim]`.
    fn outputs(&self, forward: &FusedForward, features: &Tensor) -> Result<Tensor> {
        if !self.small_data {
            return forward.logits(features, &self.source.name);
        }
        // As SetFit: the body learns from the label pairs alone, the head from cross-entropy
        // on the embeddings as they are.
        let logits = forward.logits(&features.detach(), &self.source.name)?;
        Ok(Tensor::cat(&[logits, forward.embedding(features)], 1))
    }

    fn loss(&self, outputs: &Tensor, batch: &TrainBatch) -> Tensor {
        let targets = batch.targets.as_ref().expect("classification batches have targets");
        let classes = self.labels.len() as i64;
        let logits = outputs.narrow(1, 0, classes);
        let weights = self
            .class_weights
            .as_ref()
            .map(|w| self.class_weights_on_device.get_or_init(|| upload(w.shallow_clone(), outputs.device())));
        let cross_entropy = cross_entropy(&logits, targets, weights, self.label_smoothing);
        if !self.label_pairs {
            return cross_entropy;
        }
        let embeddings = outputs.narrow(1, classes, outputs.size()[1] - classes);
        cross_entropy + label_pair_cosine(&embeddings, targets)
    }

    fn refit_head(&self, encoder: &Encoder) -> Result<Option<LinearHead>> {
        if !self.refit {
            return Ok(None);
        }
        let inputs = encoder.head_inputs(&self.source.name, &self.train.texts, &Progress::hidden())?;
        let classes = self.labels.len() as i64;
        Ok(Some(logistic_regression::fit(&inputs, &self.train_classes, classes, self.class_weights.as_ref())))
    }

    fn evaluate(&self, encoder: &Encoder) -> Result<Option<TaskScore>> {
        let Some(dev) = &self.dev else { return Ok(None) };
        score(encoder, &self.source.name, &dev.data.texts, &dev.classes, self.labels.len()).map(Some)
    }
}

/// The evaluation report of the encoder's head `spec` on a labelled file.
pub fn report(
    encoder: &Encoder,
    spec: &TaskSpec,
    path: &std::path::Path,
    columns: super::LabelColumns<'_>,
    unknown_labels: UnknownLabelPolicy,
    progress: &Progress,
) -> Result<ClassificationReport> {
    let data = LabelledData::read(path, columns.text, columns.label)?;
    let labels = LabelSet::from_names(spec.labels.clone());
    let (truth, kept, skipped) = data.class_ids(&labels, unknown_labels)?;
    if kept.is_empty() {
        bail!("{}: no rows left after skipping labels the model was not trained on", path.display());
    }
    let texts: Vec<String> = kept.iter().map(|&r| data.texts[r].clone()).collect();
    let probabilities = encoder.class_probabilities(&spec.name, &texts, progress)?;
    let (best_p, best_class) = probabilities.max_dim(-1, false);
    let best_p = Vec::<f32>::try_from(best_p)?;
    let predicted: Vec<usize> = Vec::<i64>::try_from(best_class)?.into_iter().map(|c| c as usize).collect();
    let matrix = ConfusionMatrix::from_predictions(labels.len(), &truth, &predicted);
    let predictions = kept
        .iter()
        .zip(texts)
        .zip(&truth)
        .zip(predicted.iter().zip(&best_p))
        .map(|(((&row, text), &t), (&p, &prob))| {
            let line = data.lines[row].to_string();
            [text, spec.labels[t].clone(), spec.labels[p].clone(), prob.to_string(), line]
        })
        .collect();
    Ok(ClassificationReport {
        task: spec.name.clone(),
        data: path.to_path_buf(),
        labels: spec.labels.clone(),
        matrix,
        skipped,
        predictions,
        non_finite: best_p.iter().filter(|p| !p.is_finite()).count(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's formula written out: `(1 - e) * nll + e / K * smooth`, where nll is the
    /// targets' weighted negative log-probabilities and smooth every class's, both divided
    /// by the sum of the targets' weights.
    fn cross_entropy_by_hand(logits: &[[f64; 3]], targets: &[usize], weights: [f64; 3], smoothing: f64) -> f64 {
        let (mut nll, mut smooth, mut weight_sum) = (0.0, 0.0, 0.0);
        for (row, &target) in logits.iter().zip(targets) {
            let log_sum = row.iter().map(|x| x.exp()).sum::<f64>().ln();
            let log_p: Vec<f64> = row.iter().map(|x| x - log_sum).collect();
            nll -= weights[target] * log_p[target];
            smooth -= (0..3).map(|c| weights[c] * log_p[c]).sum::<f64>();
            weight_sum += weights[target];
        }
        (1.0 - smoothing) * nll / weight_sum + smoothing / 3.0 * smooth / weight_sum
    }

    #[test]
    fn class_weights_and_label_smoothing_give_pytorchs_cross_entropy() {
        let logits = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-2.0, 1.5, 0.0], [1.0, 1.0, -3.0]];
        let targets = [0usize, 2, 1, 1];
        let logits_t = Tensor::from_slice(&logits.concat()).view([4, 3]).to_kind(tch::Kind::Float);
        let targets_t = Tensor::from_slice(&targets.map(|t| t as i64));
        let balanced = [4.0 / 3.0, 4.0 / 6.0, 4.0 / 3.0]; // one, two and one rows of 4
        let weights_t = Tensor::from_slice(&balanced.map(|w| w as f32));
        for (weights, smoothing) in [(None, 0.0), (None, 0.1), (Some(balanced), 0.0), (Some(balanced), 0.2)] {
            let loss = cross_entropy(&logits_t, &targets_t, weights.map(|_| &weights_t), smoothing).double_value(&[]);
            let expected = cross_entropy_by_hand(&logits, &targets, weights.unwrap_or([1.0; 3]), smoothing);
            assert!(
                (loss - expected).abs() < 1e-5,
                "weights {weights:?}, smoothing {smoothing}: {loss} against {expected}"
            );
        }
        // The cases differ, so each one checks something of its own.
        let plain = cross_entropy_by_hand(&logits, &targets, [1.0; 3], 0.0);
        assert!((cross_entropy_by_hand(&logits, &targets, balanced, 0.2) - plain).abs() > 1e-3);
        assert!((cross_entropy_by_hand(&logits, &targets, [1.0; 3], 0.1) - plain).abs() > 1e-3);
    }

    #[test]
    fn balanced_weights_as_scikit_learn() {
        // 6 rows, 3 classes with 3, 2 and 1 rows: 6 / (3 x count) = 2/3, 1, 2.
        let w = balanced_weights(&[0, 0, 0, 1, 1, 2], 3);
        assert_eq!(w, vec![2.0 / 3.0, 1.0, 2.0]);
        // A class without rows (not possible for labels read from the training file) gets 0.
        assert_eq!(balanced_weights(&[0, 0], 2), vec![0.5, 0.0]);
    }
}
