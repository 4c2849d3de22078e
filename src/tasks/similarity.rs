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
use crate::model::pooling::l2_normalize;
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
/// [-1, 1]. An identical pair's is exactly 1, as in sentence-transformers' evaluator, where
/// identical pairs tie: each distinct text is embedded once (in batches of other lengths its
/// two embeddings could differ in their last bits), and the cosine of unit vectors `a`, `b`
/// is computed as `1 - |a - b|² / 2`, which is 1 for one vector twice where `a·b` can round
/// to 0.99999994.
pub fn cosines(encoder: &Encoder, first: &[String], second: &[String], progress: &Progress) -> Result<Vec<f64>> {
    let (distinct, rows) = distinct_texts([first, second]);
    pair_cosines(&encoder.embed(&distinct, progress)?, rows)
}

/// The cosines of the pairs of rows `first[i]`, `second[i]` of `embeddings` `[n, dim]`, as
/// [`cosines`] says.
fn pair_cosines(embeddings: &Tensor, [first, second]: [Vec<i64>; 2]) -> Result<Vec<f64>> {
    let unit = l2_normalize(&embeddings.to_kind(Kind::Double));
    let [a, b] = [first, second].map(|rows| unit.index_select(0, &Tensor::from_slice(&rows)));
    let half_square_distance = (&a - &b).square().sum_dim_intlist(-1, false, Kind::Double) / 2.0;
    let cosine = half_square_distance.neg().g_add_scalar(1.0).clamp(-1.0, 1.0);
    // A zero embedding stays zero when normalised: its dot product with anything is 0.
    let both_unit = a.abs().amax(-1, false).gt(0.0).logical_and(&b.abs().amax(-1, false).gt(0.0));
    Ok(Vec::<f64>::try_from(cosine.where_self(&both_unit, &cosine.zeros_like()))?)
}

/// The distinct texts of `columns`, in order of first appearance, and each column's texts as
/// rows of that list.
fn distinct_texts<const N: usize>(columns: [&[String]; N]) -> (Vec<String>, [Vec<i64>; N]) {
    let mut row_of: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let mut rows: [Vec<i64>; N] = std::array::from_fn(|_| Vec::new());
    for (texts, rows) in columns.into_iter().zip(&mut rows) {
        for text in texts {
            let row = *row_of.entry(text).or_insert_with(|| {
                distinct.push(text.clone());
                distinct.len() as i64 - 1
            });
            rows.push(row);
        }
    }
    (distinct, rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One embedding twice is exactly 1; a zero embedding is 0 with anything.
    #[test]
    fn pair_cosines_of_one_vector_twice_are_one_and_of_a_zero_vector_zero() {
        let embeddings =
            Tensor::from_slice(&[0.3f32, 0.7, 0.1, -0.3, -0.7, -0.1, 0.7, -0.3, 0.0, 0.0, 0.0, 0.0]).view([4, 3]);
        let cosines = pair_cosines(&embeddings, [vec![0, 0, 0, 3, 3], vec![0, 1, 3, 0, 3]]).unwrap();
        assert_eq!(cosines[..2], [1.0, -1.0]);
        assert_eq!(cosines[2..], [0.0, 0.0, 0.0]);
        let orthogonal = pair_cosines(&embeddings, [vec![0], vec![2]]).unwrap()[0];
        assert!(orthogonal.abs() < 1e-7, "{orthogonal}");
        let (first, rows) = distinct_texts([&["a".to_string(), "b".into()][..], &["b".to_string(), "c".into()][..]]);
        assert_eq!((first, rows), (vec!["a".to_string(), "b".into(), "c".into()], [vec![0, 1], vec![1, 2]]));
    }
}
