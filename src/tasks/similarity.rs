//! Similarity (`sentence1,sentence2,score`): graded pairs. The loss reads the cosine of the two
//! embeddings: CoSENT (the default; only the order of scores matters) or cosine-MSE (the score
//! mapped onto [0, 1] by the training range, which the checkpoint records). Scored by the
//! Spearman and Pearson correlation of cosine and gold score.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::losses::{cosent, cosine_mse, pairwise_cosine, DEFAULT_SCALE};
use super::{TaskScore, TrainBatch, TrainingTask};
use crate::data::scored_pairs::ScoredPairs;
use crate::device::upload;
use crate::inference::Encoder;
use crate::metrics::correlation::{pearson, spearman};
use crate::model::fused_forward::FusedForward;
use crate::model::spec::{HeadInput, TaskKind, TaskSpec};
use crate::model::tokenizer::SentenceTokenizer;
use crate::progress::Progress;
use crate::report::similarity::SimilarityReport;
use crate::train::settings::TaskSource;

/// `--similarity-loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimilarityLoss {
    #[default]
    Cosent,
    CosineMse,
}

crate::value_names!(SimilarityLoss, "--similarity-loss", [Cosent => "cosent", CosineMse => "cosine-mse"]);

pub struct SimilarityTask {
    source: TaskSource,
    loss: SimilarityLoss,
    train: ScoredPairs,
    /// The training scores' (lowest, highest).
    range: (f64, f64),
    /// Token ids of each row's first and second sentence (filled by `tokenize`).
    tokens: [Vec<Vec<i64>>; 2],
    dev: Option<ScoredPairs>,
}

impl SimilarityTask {
    pub fn read(source: &TaskSource) -> Result<Self> {
        let context = || format!("task '{}'", source.name);
        let train = ScoredPairs::read(&source.train).with_context(context)?;
        let dev = source.dev.as_deref().map(ScoredPairs::read).transpose().with_context(context)?;
        Ok(Self {
            source: source.clone(),
            loss: source.similarity_loss.unwrap_or_default(),
            range: train.score_range(),
            train,
            tokens: [Vec::new(), Vec::new()],
            dev,
        })
    }
}

/// The cosine similarity the encoder's embeddings give each pair, as `encode`'s would, within
/// [-1, 1]: rounding puts an identical pair's at 1.0000001 or at 1, and sentence-transformers'
/// evaluator, whose identical pairs tie at 1, ranks them alike only when they are clamped.
pub fn cosines(encoder: &Encoder, first: &[String], second: &[String], progress: &Progress) -> Result<Vec<f64>> {
    let a = encoder.embed(first, progress)?;
    let b = encoder.embed(second, progress)?;
    Ok(Vec::<f64>::try_from(pairwise_cosine(&a, &b).clamp(-1.0, 1.0).to_kind(Kind::Double))?)
}

/// Spearman and Pearson correlation of the encoder's cosines with the pairs' scores.
pub fn score(encoder: &Encoder, pairs: &ScoredPairs) -> Result<TaskScore> {
    let predicted = cosines(encoder, &pairs.first, &pairs.second, &Progress::hidden())?;
    Ok(TaskScore::Similarity {
        spearman: spearman(&predicted, &pairs.scores),
        pearson: pearson(&predicted, &pairs.scores),
        pairs: pairs.len(),
    })
}

impl TrainingTask for SimilarityTask {
    fn source(&self) -> &TaskSource {
        &self.source
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Similarity
    }

    fn spec(&self) -> TaskSpec {
        TaskSpec {
            name: self.source.name.clone(),
            kind: TaskKind::Similarity,
            labels: Vec::new(),
            text_column: None,
            label_column: None,
            score_range: Some([self.range.0, self.range.1]),
            loss: Some(self.loss.to_string()),
            head_input: HeadInput::Features,
        }
    }

    fn tokenize(&mut self, tokenizer: &SentenceTokenizer, max_length: usize) -> usize {
        let (first, truncated_first) = tokenizer.encode_batch_counting_truncated(&self.train.first, max_length);
        let (second, truncated_second) = tokenizer.encode_batch_counting_truncated(&self.train.second, max_length);
        self.tokens = [first, second];
        truncated_first + truncated_second
    }

    fn train_texts(&self) -> Vec<&[i64]> {
        self.tokens.iter().flatten().map(Vec::as_slice).collect()
    }

    fn dev_texts(&self) -> Vec<&str> {
        self.dev.iter().flat_map(|d| d.first.iter().chain(&d.second).map(String::as_str)).collect()
    }

    fn row_lengths(&self) -> Vec<usize> {
        self.tokens[0].iter().zip(&self.tokens[1]).map(|(a, b)| a.len().max(b.len())).collect()
    }

    fn texts_per_row(&self) -> usize {
        2
    }

    fn train_rows(&self) -> usize {
        self.train.len()
    }

    fn dev_rows(&self) -> Option<usize> {
        self.dev.as_ref().map(ScoredPairs::len)
    }

    fn summary(&self) -> String {
        format!("scores {} to {}, {}", self.range.0, self.range.1, self.loss)
    }

    fn batch(&self, rows: &[usize], device: Device) -> TrainBatch<'_> {
        let columns = self.tokens.iter().map(|column| rows.iter().map(|&r| column[r].as_slice()).collect()).collect();
        let scores: Vec<f32> = rows.iter().map(|&r| self.train.scores[r] as f32).collect();
        TrainBatch::of_columns(columns, Some(upload(Tensor::from_slice(&scores), device)))
    }

    /// The embeddings `[2 * rows, dim]`: first sentences, then second ones.
    fn outputs(&self, forward: &FusedForward, features: &Tensor) -> Result<Tensor> {
        Ok(forward.embedding(features))
    }

    fn loss(&self, outputs: &Tensor, batch: &TrainBatch) -> Tensor {
        let rows = batch.rows as i64;
        let cos = pairwise_cosine(&outputs.narrow(0, 0, rows), &outputs.narrow(0, rows, rows));
        let scores = batch.targets.as_ref().expect("similarity batches have scores");
        match self.loss {
            SimilarityLoss::Cosent => cosent(&cos, scores, DEFAULT_SCALE),
            SimilarityLoss::CosineMse => cosine_mse(&cos, scores, self.range),
        }
    }

    fn evaluate(&self, encoder: &Encoder) -> Result<Option<TaskScore>> {
        self.dev.as_ref().map(|dev| score(encoder, dev)).transpose()
    }
}

/// The evaluation report of the encoder's embeddings on a similarity file.
pub fn report(encoder: &Encoder, task: &str, path: &std::path::Path, progress: &Progress) -> Result<SimilarityReport> {
    let pairs = ScoredPairs::read(path)?;
    let predicted = cosines(encoder, &pairs.first, &pairs.second, progress)?;
    Ok(SimilarityReport {
        task: task.to_string(),
        data: path.to_path_buf(),
        first: pairs.first,
        second: pairs.second,
        gold: pairs.scores,
        predicted,
    })
}
