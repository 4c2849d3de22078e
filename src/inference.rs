//! Running a loaded model over many sentences: tokenise once, batch by length, forward
//! under `no_grad`, and return results in input order. Sentences a frozen-backbone training
//! run has cached (`train::feature_cache`) start from their cached states. In a data-parallel
//! launch the ranks share the batches and every rank gets the whole result.

use std::cell::Cell;

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::data::batching::{length_sorted_batches, pad_batch, BatchLimit};
use crate::distributed::data_parallel::agree_on_settings;
use crate::distributed::{ProcessGroup, Reduce};
use crate::hash::{fnv1a_continue, FNV1A_START};
use crate::model::fused_forward::FusedForward;
use crate::model::loaded::{blocks_in_bf16, LoadedModel};
use crate::model::tokenizer::truncation_note;
use crate::precision::Precision;
use crate::progress::Progress;
use crate::train::feature_cache::FeatureCache;

/// Sentence features from a model, or from a cache of its frozen part where it has them, in
/// fp32 or with the transformer blocks in bf16 (`model::loaded::blocks_in_bf16`).
#[derive(Clone, Copy)]
pub struct Encoder<'a> {
    pub model: &'a LoadedModel,
    pub cache: Option<&'a FeatureCache>,
    /// A resolved precision (`Precision::resolve`).
    pub precision: Precision,
    /// How many sentences go through the model at once.
    pub batch: BatchLimit,
    /// With a process group, rank r runs batches r, r + world, ... (the same batches one
    /// process would run, so each row is computed exactly as there) and the results are
    /// summed across ranks, each row coming from the one rank that computed it.
    pub group: Option<&'a ProcessGroup>,
    /// Where to count the texts `--max-length` cuts, for work made of parts that report them
    /// each (`eval`'s tasks); without it, a cut is a note on the progress.
    pub truncated: Option<&'a TruncationTally>,
}

/// Texts an [`Encoder`] tokenised, and how many of them `--max-length` cut.
#[derive(Debug, Default)]
pub struct TruncationTally {
    cut: Cell<usize>,
    total: Cell<usize>,
}

impl TruncationTally {
    /// (cut, total) since the last call.
    pub fn take(&self) -> (usize, usize) {
        (self.cut.take(), self.total.take())
    }

    fn add(&self, cut: usize, total: usize) {
        self.cut.set(self.cut.get() + cut);
        self.total.set(self.total.get() + total);
    }
}

impl<'a> Encoder<'a> {
    /// The model in fp32, 32 sentences at a time.
    pub fn new(model: &'a LoadedModel) -> Self {
        Self {
            model,
            cache: None,
            precision: Precision::Fp32,
            batch: BatchLimit::Rows(32),
            group: None,
            truncated: None,
        }
    }

    pub fn with_batch(self, batch: BatchLimit) -> Self {
        Self { batch, ..self }
    }

    /// Runs `head(model, features) -> [batch, width]` over all `texts` and returns
    /// `[n_texts, width]` (f32, CPU) in input order. The forward pass is the fused one
    /// (`model::fused_forward`) over the model's current weights.
    fn run_batches(
        &self,
        texts: &[String],
        progress: &Progress,
        head: impl Fn(&FusedForward, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let loaded = self.model;
        let bf16_weights = (self.precision == Precision::Bf16).then(|| blocks_in_bf16(&loaded.weights));
        let model = match &bf16_weights {
            Some(weights) => FusedForward { weights, ..loaded.forward() },
            None => loaded.forward(),
        };
        if let Some(group) = self.group {
            self.agree_with_ranks(group, texts)?;
        }
        let token_ids = self.tokenize(texts, progress);
        let lengths: Vec<usize> = token_ids.iter().map(Vec::len).collect();
        let bar = progress.bar(texts.len() as u64, "sentences");
        let mut output: Option<Tensor> = None;
        tch::no_grad(|| -> Result<()> {
            let (rank, world) = crate::distributed::rank_and_world(self.group);
            for (number, batch) in length_sorted_batches(&lengths, self.batch).into_iter().enumerate() {
                if number % world != rank {
                    continue;
                }
                let sequences: Vec<&[i64]> = batch.iter().map(|&i| token_ids[i].as_slice()).collect();
                let cached = match self.cache {
                    Some(cache) => cache.features(&model, &sequences, false)?,
                    None => None,
                };
                let features = match cached {
                    Some(features) => features,
                    None => {
                        let (ids, mask) = pad_batch(&sequences, loaded.tokenizer.pad_id(), loaded.device);
                        model.features(&ids, &mask)?
                    }
                };
                let result = head(&model, &features)?;
                let result = result.to_kind(Kind::Float).to_device(Device::Cpu);
                let out = output.get_or_insert_with(|| {
                    Tensor::zeros([texts.len() as i64, result.size()[1]], (Kind::Float, Device::Cpu))
                });
                let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let _ = out.index_copy_(0, &index, &result);
                bar.inc(batch.len() as u64);
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        match self.group {
            Some(group) => gather_rows(group, output, texts.len()),
            None => Ok(output.unwrap_or_else(|| Tensor::zeros([0, 0], (Kind::Float, Device::Cpu)))),
        }
    }

    /// Token ids of `texts`, with a note (or a count) when the model's limit cuts some.
    fn tokenize(&self, texts: &[String], progress: &Progress) -> Vec<Vec<i64>> {
        let max_length = self.model.spec.max_length;
        let (token_ids, truncated) = self.model.tokenizer.encode_batch_counting_truncated(texts, max_length);
        match self.truncated {
            Some(tally) => tally.add(truncated, texts.len()),
            None if truncated > 0 => progress.note(&truncation_note(truncated, texts.len(), "text", max_length)),
            None => {}
        }
        token_ids
    }

    /// Refuses to run when the launch's ranks were given different sentences or batching:
    /// each rank plans the batches itself, and ranks that plan different ones would sum rows
    /// that do not belong together.
    fn agree_with_ranks(&self, group: &ProcessGroup, texts: &[String]) -> Result<()> {
        let input =
            texts.iter().fold(FNV1A_START, |hash, text| fnv1a_continue(fnv1a_continue(hash, text.as_bytes()), &[0]));
        let fields = [
            ("input", format!("{} sentences, hash {input:x}", texts.len())),
            ("--batch-size or --batch-tokens", self.batch.to_string()),
            ("--max-length", self.model.spec.max_length.to_string()),
            ("--precision", format!("{:?}", self.precision).to_lowercase()),
            ("sentence-mtl version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        agree_on_settings(group, &fields.map(|(name, value)| (name.to_string(), value)))
    }

    /// Sentence embeddings `[n, dim]` (normalised if the model says so).
    pub fn embed(&self, texts: &[String], progress: &Progress) -> Result<Tensor> {
        self.run_batches(texts, progress, |model, features| Ok(model.embedding(features)))
    }

    /// What one task's head reads, `[n, dim]` (`FusedForward::head_input`).
    pub fn head_inputs(&self, task: &str, texts: &[String], progress: &Progress) -> Result<Tensor> {
        self.run_batches(texts, progress, |model, features| model.head_input(features, task))
    }

    /// Logits `[n, n_classes]` of one task's head.
    pub fn class_logits(&self, task: &str, texts: &[String], progress: &Progress) -> Result<Tensor> {
        self.model.spec.head_task(task)?;
        self.run_batches(texts, progress, |model, features| model.logits(features, task))
    }

    /// Class probabilities `[n, n_classes]` of one task.
    pub fn class_probabilities(&self, task: &str, texts: &[String], progress: &Progress) -> Result<Tensor> {
        Ok(self.class_logits(task, texts, progress)?.softmax(-1, Kind::Float))
    }
}

/// Every rank's rows of `[n, width]` on every rank: each rank holds the rows it computed
/// (zeros elsewhere, or nothing when it ran no batch), and the sum across ranks is the result.
fn gather_rows(group: &ProcessGroup, output: Option<Tensor>, n: usize) -> Result<Tensor> {
    let mut width = Tensor::from_slice(&[output.as_ref().map_or(0, |o| o.size()[1])]);
    group.all_reduce_(&mut width, Reduce::Max, "gathering the sentences each rank encoded")?;
    let width = i64::try_from(&width)?;
    let mut all = output.unwrap_or_else(|| Tensor::zeros([n as i64, width], (Kind::Float, Device::Cpu)));
    group.all_reduce_(&mut all, Reduce::Sum, "gathering the sentences each rank encoded")?;
    Ok(all)
}

/// Class probabilities `[n, n_classes]` of one task.
pub fn class_probabilities(
    loaded: &LoadedModel,
    task: &str,
    texts: &[String],
    batch_size: usize,
    progress: &Progress,
) -> Result<Tensor> {
    Encoder::new(loaded).with_batch(BatchLimit::Rows(batch_size)).class_probabilities(task, texts, progress)
}
