//! Pairs (`anchor,positive[,negative]`): retrieval-style pairs trained with in-batch negatives
//! (MultipleNegativesRankingLoss): each anchor must pick its own positive among the batch's
//! positives and hard negatives. A batch never holds two rows that share a text, which would
//! be a false negative. Scored by searching every dev anchor among all dev positives and
//! negatives: MRR@10, recall@1 and recall@10.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::losses::multiple_negatives_ranking;
use super::{TaskScore, TrainBatch, TrainingTask};
use crate::data::text_pairs::TextPairs;
use crate::hash::fnv1a;
use crate::inference::Encoder;
use crate::metrics::retrieval::RetrievalRanks;
use crate::model::fused_forward::FusedForward;
use crate::model::pooling::l2_normalize;
use crate::model::spec::{HeadInput, TaskKind, TaskSpec};
use crate::model::tokenizer::SentenceTokenizer;
use crate::progress::Progress;
use crate::report::retrieval::RetrievalReport;
use crate::train::settings::{TaskSource, TrainSettings};

pub struct PairsTask {
    source: TaskSource,
    /// Multiplier of the cosine similarities before the softmax (`--pairs-scale`).
    scale: f64,
    train: TextPairs,
    /// Token ids per column (anchors, positives, negatives if any), per row.
    tokens: Vec<Vec<Vec<i64>>>,
    dev: Option<TextPairs>,
}

impl PairsTask {
    pub fn read(source: &TaskSource, settings: &TrainSettings) -> Result<Self> {
        let context = || format!("task '{}'", source.name);
        let train = TextPairs::read(&source.train).with_context(context)?;
        if train.len() < 2 {
            bail!(
                "task '{}': {} has only 1 row; in-batch negatives need several rows (each row's positive is the others' negative)",
                source.name,
                source.train.display()
            );
        }
        // Rows that share a text never meet in a batch, so a column with one distinct text
        // means batches of one row, whose in-batch-negatives loss is 0: nothing would be learned.
        for (column, texts) in train.columns() {
            let distinct: std::collections::HashSet<&str> = texts.iter().map(String::as_str).collect();
            if distinct.len() < 2 {
                bail!(
                    "task '{}': {}: every row has the same {column}; no batch holds a text twice, so every batch would hold one row, and in-batch negatives need several",
                    source.name,
                    source.train.display()
                );
            }
        }
        let dev = source.dev.as_deref().map(read_search_set).transpose().with_context(context)?;
        Ok(Self { source: source.clone(), scale: settings.pairs_scale, train, tokens: Vec::new(), dev })
    }
}

/// A dev set as a search: its distinct anchors are the queries, its distinct positives and
/// negatives the candidates (in order of first appearance, each row's positive before its
/// negative), and a query's relevant candidates are the positives of its rows. Negatives are
/// distractors: relevant to no query unless they are also some row's positive.
pub struct Search<'a> {
    pub queries: Vec<&'a str>,
    pub candidates: Vec<&'a str>,
    pub relevant: Vec<Vec<usize>>,
}

impl<'a> Search<'a> {
    pub fn of(pairs: &'a TextPairs) -> Self {
        let mut search = Self { queries: Vec::new(), candidates: Vec::new(), relevant: Vec::new() };
        let (mut query_ids, mut candidate_ids) = (HashMap::new(), HashMap::new());
        let mut candidate = |text: &'a str, candidates: &mut Vec<&'a str>| -> usize {
            *candidate_ids.entry(text).or_insert_with(|| {
                candidates.push(text);
                candidates.len() - 1
            })
        };
        for (row, (anchor, positive)) in pairs.anchors.iter().zip(&pairs.positives).enumerate() {
            let q = *query_ids.entry(anchor.as_str()).or_insert_with(|| {
                search.queries.push(anchor.as_str());
                search.relevant.push(Vec::new());
                search.queries.len() - 1
            });
            let c = candidate(positive, &mut search.candidates);
            if !search.relevant[q].contains(&c) {
                search.relevant[q].push(c);
            }
            if let Some(negatives) = &pairs.negatives {
                candidate(&negatives[row], &mut search.candidates);
            }
        }
        search
    }

    /// The same search with the candidates the encoder sees as one input (an uncased
    /// tokenizer's `Paris` and `paris`, texts that differ only past `max_length`) merged into
    /// the first of them: apart, they tie, and the tie rule (equal scores rank in candidate
    /// order) would put a query's positive behind its earlier copy.
    pub fn merging_equal_inputs(self, encoder: &Encoder) -> Self {
        let model = encoder.model;
        let token_ids = model.tokenizer.encode_batch(&self.candidates, model.spec.max_length);
        let mut first_of: HashMap<&[i64], usize> = HashMap::new();
        let mut candidates = Vec::new();
        let merged: Vec<usize> = token_ids
            .iter()
            .zip(&self.candidates)
            .map(|(ids, &text)| {
                *first_of.entry(ids.as_slice()).or_insert_with(|| {
                    candidates.push(text);
                    candidates.len() - 1
                })
            })
            .collect();
        let relevant = self
            .relevant
            .iter()
            .map(|wanted| {
                let mut kept: Vec<usize> = Vec::new();
                for c in wanted.iter().map(|&c| merged[c]) {
                    if !kept.contains(&c) {
                        kept.push(c);
                    }
                }
                kept
            })
            .collect();
        Self { queries: self.queries, candidates, relevant }
    }

    /// Where each query's relevant candidates rank under the encoder's cosine similarity.
    pub fn ranks(&self, encoder: &Encoder, progress: &Progress) -> Result<RetrievalRanks> {
        let owned = |texts: &[&str]| texts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let queries = l2_normalize(&encoder.embed(&owned(&self.queries), progress)?);
        let candidates = l2_normalize(&encoder.embed(&owned(&self.candidates), progress)?);
        let mut ranks = RetrievalRanks::from_scores(&[], self.candidates.len(), &[]);
        // A chunk of queries at a time keeps the score matrix small for large dev sets.
        const CHUNK: usize = 256;
        for (i, relevant) in self.relevant.chunks(CHUNK).enumerate() {
            let chunk = queries.narrow(0, (i * CHUNK) as i64, relevant.len() as i64);
            let scores = Vec::<f32>::try_from(chunk.matmul(&candidates.tr()).flatten(0, -1).to_kind(Kind::Float))?;
            ranks.extend(&scores, self.candidates.len(), relevant);
        }
        Ok(ranks)
    }
}

/// MRR@10 and recall@1/@10 of the encoder on a dev set.
pub fn score(encoder: &Encoder, pairs: &TextPairs) -> Result<TaskScore> {
    let search = Search::of(pairs).merging_equal_inputs(encoder);
    let scores = search.ranks(encoder, &Progress::hidden())?.scores();
    Ok(TaskScore::Pairs {
        mrr_at_10: scores.mrr_at_10,
        recall_at_1: scores.recall_at_1,
        recall_at_10: scores.recall_at_10,
        queries: search.queries.len(),
    })
}

impl TrainingTask for PairsTask {
    fn source(&self) -> &TaskSource {
        &self.source
    }

    fn kind(&self) -> TaskKind {
        TaskKind::Pairs
    }

    fn spec(&self) -> TaskSpec {
        TaskSpec {
            name: self.source.name.clone(),
            kind: TaskKind::Pairs,
            labels: Vec::new(),
            text_column: None,
            label_column: None,
            score_range: None,
            loss: Some(format!("multiple-negatives-ranking (scale {})", self.scale)),
            head_input: HeadInput::Features,
        }
    }

    fn tokenize(&mut self, tokenizer: &SentenceTokenizer, max_length: usize) -> usize {
        let mut columns = vec![&self.train.anchors, &self.train.positives];
        columns.extend(self.train.negatives.as_ref());
        let (tokens, truncated): (Vec<_>, Vec<usize>) =
            columns.into_iter().map(|texts| tokenizer.encode_batch_counting_truncated(texts, max_length)).unzip();
        self.tokens = tokens;
        truncated.into_iter().sum()
    }

    fn train_texts(&self) -> Vec<&[i64]> {
        self.tokens.iter().flatten().map(Vec::as_slice).collect()
    }

    fn dev_texts(&self) -> Vec<&str> {
        let Some(dev) = &self.dev else { return Vec::new() };
        dev.columns().flat_map(|(_, texts)| texts.iter().map(String::as_str)).collect()
    }

    fn row_lengths(&self) -> Vec<usize> {
        (0..self.train.len()).map(|r| self.tokens.iter().map(|c| c[r].len()).max().unwrap_or(0)).collect()
    }

    fn texts_per_row(&self) -> usize {
        self.tokens.len()
    }

    /// Keyed by token ids, as the model reads the texts: "Paris" and "paris " are one text to
    /// a lower-casing tokenizer, and would be each other's false negative.
    fn exclusive_texts(&self) -> Option<Vec<Vec<u64>>> {
        debug_assert!(!self.tokens.is_empty(), "pairs rows are keyed after tokenising");
        let key = |ids: &[i64]| fnv1a(&ids.iter().flat_map(|id| id.to_le_bytes()).collect::<Vec<u8>>());
        Some((0..self.train.len()).map(|r| self.tokens.iter().map(|column| key(&column[r])).collect()).collect())
    }

    fn train_rows(&self) -> usize {
        self.train.len()
    }

    fn dev_rows(&self) -> Option<usize> {
        self.dev.as_ref().map(TextPairs::len)
    }

    fn summary(&self) -> String {
        let negatives = if self.train.negatives.is_some() { ", hard negatives" } else { "" };
        format!("in-batch negatives{negatives}, scale {}", self.scale)
    }

    fn batch(&self, rows: &[usize], _device: Device) -> TrainBatch<'_> {
        let columns = self.tokens.iter().map(|column| rows.iter().map(|&r| column[r].as_slice()).collect()).collect();
        TrainBatch::of_columns(columns, None)
    }

    /// The embeddings `[columns * rows, dim]`: anchors, positives, then negatives if any.
    fn outputs(&self, forward: &FusedForward, features: &Tensor) -> Result<Tensor> {
        Ok(forward.embedding(features))
    }

    fn loss(&self, outputs: &Tensor, batch: &TrainBatch) -> Tensor {
        let rows = batch.rows as i64;
        let anchors = outputs.narrow(0, 0, rows);
        let candidates = outputs.narrow(0, rows, outputs.size()[0] - rows);
        multiple_negatives_ranking(&anchors, &candidates, self.scale)
    }

    fn in_batch_negatives_scale(&self) -> Option<f64> {
        Some(self.scale)
    }

    fn evaluate(&self, encoder: &Encoder) -> Result<Option<TaskScore>> {
        self.dev.as_ref().map(|dev| score(encoder, dev)).transpose()
    }
}

/// Reads a pairs dev set, refused as [`refuse_one_candidate`] says.
fn read_search_set(path: &std::path::Path) -> Result<TextPairs> {
    let pairs = TextPairs::read(path)?;
    refuse_one_candidate(&Search::of(&pairs), path)?;
    Ok(pairs)
}

/// A search of a single candidate text (a dev set, or `eval`'s file) is refused: every query
/// would find it first, whatever the embeddings.
fn refuse_one_candidate(search: &Search, path: &std::path::Path) -> Result<()> {
    if search.candidates.len() < 2 {
        bail!(
            "{}: one candidate text (positives and negatives, as the model reads them) to search, which every query finds first whatever the model, so its retrieval metrics would always be 1; give several rows with different positives",
            path.display()
        );
    }
    Ok(())
}

/// The evaluation report of the encoder's embeddings on a pairs file.
pub fn report(encoder: &Encoder, task: &str, path: &std::path::Path, progress: &Progress) -> Result<RetrievalReport> {
    let pairs = TextPairs::read(path)?;
    let search = Search::of(&pairs).merging_equal_inputs(encoder);
    refuse_one_candidate(&search, path)?;
    let ranks = search.ranks(encoder, progress)?;
    Ok(RetrievalReport {
        task: task.to_string(),
        data: path.to_path_buf(),
        queries: search.queries.iter().map(|q| q.to_string()).collect(),
        candidates: search.candidates.len(),
        best_relevant: ranks.best_relevant.iter().map(|&c| search.candidates[c].to_string()).collect(),
        top: ranks.top.iter().map(|&c| search.candidates[c].to_string()).collect(),
        ranks,
    })
}
