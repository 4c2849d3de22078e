//! The frozen part of the backbone, computed once per sentence: when training freezes the
//! whole backbone, each sentence's pooled states; when it freezes the embeddings and the
//! bottom K blocks, each sentence's states after block K. Every step and every dev evaluation
//! then runs only the trainable rest (the top blocks, pooling, projection, heads) from them.
//!
//! The cached part runs in inference mode, so a frozen backbone's dropout is off (the
//! features are those `encode` computes), and at the precision of what reads it: training
//! sentences at the training forward's, dev sentences in fp32 as dev sets are scored (one
//! cache for both in an fp32 run; `RunCaches`). Entries are keyed by token ids, so a sentence that
//! appears in several tasks or rows is computed once, and one that is not cached (a text
//! `eval` brings later) is simply run through the whole model. The cache lives in memory for
//! one process: it never goes into a checkpoint, and a resumed run builds it again (the frozen
//! weights and length-sorted batches are the same, so it is the same).

use std::collections::HashMap;

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::data::batching::{length_sorted_batches, pad_batch, BatchLimit};
use crate::device::upload;
use crate::model::fused_forward::FusedForward;
use crate::model::loaded::LoadedModel;
use crate::model::names::{self, BackboneLayer};
use crate::precision::{autocast, Precision};
use crate::progress::Progress;

/// What the cache holds per sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheDepth {
    /// Pooled states `[hidden]` (the whole backbone is frozen).
    Pooled,
    /// States after the bottom `k` blocks `[tokens, hidden]` (embeddings and those blocks frozen).
    BelowBlock(i64),
}

impl CacheDepth {
    /// The frozen prefix of the backbone, from its variables' `requires_grad`: `None` when the
    /// embeddings train (then no block's output is fixed) or no block is frozen.
    pub fn of(model: &LoadedModel) -> Option<Self> {
        let layers = model.config.num_layers();
        let frozen = |wanted: BackboneLayer| {
            model
                .weights
                .iter()
                .filter(|(name, _)| names::layer_of(name) == Some(wanted))
                .all(|(_, t)| !t.requires_grad())
        };
        if !frozen(BackboneLayer::Embeddings) {
            return None;
        }
        let k = (0..layers).take_while(|&i| frozen(BackboneLayer::Block(i as usize))).count() as i64;
        match k {
            0 => None,
            k if k == layers => Some(Self::Pooled),
            k => Some(Self::BelowBlock(k)),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::Pooled => "pooled states of the frozen backbone".into(),
            Self::BelowBlock(k) => format!("states after the {k} frozen bottom blocks"),
        }
    }
}

pub struct FeatureCache {
    depth: CacheDepth,
    /// Token ids → entry.
    index: HashMap<Vec<i64>, usize>,
    /// Pooled: `[entries, hidden]`. BelowBlock: `[tokens of all entries, hidden]`, entry `e`'s
    /// rows at `spans[e]`.
    values: Tensor,
    spans: Vec<(i64, i64)>,
}

impl FeatureCache {
    /// Bytes the cache would take for these sentences (f32 states), each distinct one once,
    /// as [`FeatureCache::build`] keeps them.
    pub fn estimate_bytes(depth: CacheDepth, sequences: &[&[i64]], hidden: i64) -> u64 {
        let distinct: std::collections::HashSet<&[i64]> = sequences.iter().copied().collect();
        let rows: u64 = match depth {
            CacheDepth::Pooled => distinct.len() as u64,
            CacheDepth::BelowBlock(_) => distinct.iter().map(|s| s.len() as u64).sum(),
        };
        rows * hidden as u64 * 4
    }

    /// Runs the frozen part over every distinct sentence, in length-sorted batches of `batch`
    /// as inference makes them, at `precision` (a resolved one); the states are kept in fp32.
    /// Each of `passes` is batched on its own (its sentences not in an earlier pass), so that
    /// the training sentences' numbers do not depend on the dev set beside them. The states
    /// go into one tensor allocated up front, so the build holds the cache and one batch.
    pub fn build(
        model: &LoadedModel,
        depth: CacheDepth,
        passes: &[Vec<&[i64]>],
        batch: BatchLimit,
        precision: Precision,
        progress: &Progress,
    ) -> Result<Self> {
        let mut index = HashMap::new();
        let mut distinct: Vec<&[i64]> = Vec::new();
        let mut pass_ends = Vec::with_capacity(passes.len());
        for pass in passes {
            for s in pass {
                index.entry(s.to_vec()).or_insert_with(|| {
                    distinct.push(s);
                    distinct.len() - 1
                });
            }
            pass_ends.push(distinct.len());
        }
        let lengths: Vec<usize> = distinct.iter().map(|s| s.len()).collect();
        let spans = spans_of(&lengths);
        let rows = match depth {
            CacheDepth::Pooled => distinct.len() as i64,
            CacheDepth::BelowBlock(_) => spans.last().map_or(0, |&(start, len)| start + len),
        };
        let mut values = Tensor::zeros([rows, model.config.hidden_size()], (Kind::Float, model.device));
        let forward = model.forward();
        let bar = progress.bar(distinct.len() as u64, "sentences cached");
        tch::no_grad(|| -> Result<()> {
            let mut first = 0;
            for end in pass_ends {
                for batch in length_sorted_batches(&lengths[first..end], batch) {
                    let entries: Vec<usize> = batch.iter().map(|&i| first + i).collect();
                    let texts: Vec<&[i64]> = entries.iter().map(|&e| distinct[e]).collect();
                    let (ids, mask) = pad_batch(&texts, model.tokenizer.pad_id(), model.device);
                    let states = autocast(precision, model.device, || -> Result<Tensor> {
                        Ok(match depth {
                            CacheDepth::Pooled => {
                                model.spec.pooling.forward(&forward.hidden_states(&ids, &mask)?, &mask)
                            }
                            CacheDepth::BelowBlock(k) => forward.states_below(&ids, &mask, k)?,
                        })
                    })?;
                    store(&mut values, depth, &entries, &states.to_kind(Kind::Float), &spans);
                    bar.inc(entries.len() as u64);
                }
                first = end;
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(Self { depth, index, values, spans })
    }

    pub fn depth(&self) -> CacheDepth {
        self.depth
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        (self.values.numel() * 4) as u64
    }

    /// Sentence features `[batch, dim]` (before normalisation) of `sequences`, from their
    /// cached states through the trainable rest of the model (with dropout when `train`);
    /// `None` when a sequence is not cached.
    pub fn features(&self, forward: &FusedForward, sequences: &[&[i64]], train: bool) -> Result<Option<Tensor>> {
        let Some(entries) = sequences.iter().map(|s| self.index.get(*s).copied()).collect::<Option<Vec<usize>>>()
        else {
            return Ok(None);
        };
        let features = match self.depth {
            CacheDepth::Pooled => {
                let rows = Tensor::from_slice(&entries.iter().map(|&e| e as i64).collect::<Vec<_>>());
                forward.project(&self.values.index_select(0, &upload(rows, self.values.device())))?
            }
            CacheDepth::BelowBlock(k) => {
                let states: Vec<Tensor> =
                    entries.iter().map(|&e| self.values.narrow(0, self.spans[e].0, self.spans[e].1)).collect();
                let padded = Tensor::pad_sequence(&states, true, 0.0);
                let mask = mask_of(&entries.iter().map(|&e| self.spans[e].1).collect::<Vec<_>>(), padded.size()[1]);
                forward.features_from_states(padded, &upload(mask, self.values.device()), k, train)?
            }
        };
        Ok(Some(features))
    }
}

/// A run's cached features: its training sentences' at the training precision, and its dev
/// sentences' in fp32 (how dev sets are scored), which is one cache when training is in fp32.
pub struct RunCaches {
    pub training: FeatureCache,
    /// `None` when `training` serves dev evaluation too.
    pub dev: Option<FeatureCache>,
}

impl RunCaches {
    /// What dev evaluation (in fp32) reads.
    pub fn fp32(&self) -> &FeatureCache {
        self.dev.as_ref().unwrap_or(&self.training)
    }

    pub fn bytes(&self) -> u64 {
        self.training.bytes() + self.dev.as_ref().map_or(0, FeatureCache::bytes)
    }
}

/// Where each entry's rows start in a cache of `[tokens of all entries, hidden]`, and how
/// many they are.
fn spans_of(lengths: &[usize]) -> Vec<(i64, i64)> {
    let mut start = 0;
    lengths
        .iter()
        .map(|&len| {
            let span = (start, len as i64);
            start += len as i64;
            span
        })
        .collect()
}

/// Copies one batch's states into the cache: pooled `[batch, hidden]` into the entries' rows,
/// or `[batch, width, hidden]`, each row cut to its entry's length, into its span.
fn store(values: &mut Tensor, depth: CacheDepth, entries: &[usize], states: &Tensor, spans: &[(i64, i64)]) {
    match depth {
        CacheDepth::Pooled => {
            let rows = Tensor::from_slice(&entries.iter().map(|&e| e as i64).collect::<Vec<_>>());
            let _ = values.index_copy_(0, &upload(rows, values.device()), states);
        }
        CacheDepth::BelowBlock(_) => {
            for (row, &entry) in entries.iter().enumerate() {
                let (start, len) = spans[entry];
                values.narrow(0, start, len).copy_(&states.get(row as i64).narrow(0, 0, len));
            }
        }
    }
}

/// The attention mask `[batch, width]` (Int64, 1 = real token) of sequences of `lengths`.
fn mask_of(lengths: &[i64], width: i64) -> Tensor {
    let mask: Vec<i64> = lengths.iter().flat_map(|&len| (0..width).map(move |i| i64::from(i < len))).collect();
    Tensor::from_slice(&mask).view([lengths.len() as i64, width])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sentence given twice (an anchor with several positives, a text two tasks share) is
    /// counted once, as the cache holds it.
    #[test]
    fn the_estimate_counts_each_distinct_sentence_once() {
        let (a, b): (&[i64], &[i64]) = (&[101, 7, 102], &[101, 8, 9, 102]);
        assert_eq!(FeatureCache::estimate_bytes(CacheDepth::Pooled, &[a, b, a, a], 4), 2 * 4 * 4);
        assert_eq!(FeatureCache::estimate_bytes(CacheDepth::BelowBlock(2), &[a, b, b], 4), 7 * 4 * 4);
    }

    /// Each batch's rows land at their entries whatever the batches' order, each cut to its
    /// entry's length.
    #[test]
    fn stores_batches_at_their_entries() {
        let spans = spans_of(&[2, 1, 3]);
        assert_eq!(spans, vec![(0, 2), (2, 1), (3, 3)]);
        let mut values = Tensor::zeros([6, 2], (Kind::Float, tch::Device::Cpu));
        // Two batches, length-sorted as built: entries 2 then 0 (padded to 3), then 1.
        let states = Tensor::arange(2 * 3 * 2, (Kind::Float, tch::Device::Cpu)).view([2, 3, 2]);
        store(&mut values, CacheDepth::BelowBlock(1), &[2, 0], &states, &spans);
        let lone = Tensor::full([1, 1, 2], -1.0, (Kind::Float, tch::Device::Cpu));
        store(&mut values, CacheDepth::BelowBlock(1), &[1], &lone, &spans);
        let rows = Vec::<Vec<f32>>::try_from(values).unwrap();
        assert_eq!(rows, [[6., 7.], [8., 9.], [-1., -1.], [0., 1.], [2., 3.], [4., 5.]]);
        let mut pooled = Tensor::zeros([3, 2], (Kind::Float, tch::Device::Cpu));
        let states = Tensor::arange(4, (Kind::Float, tch::Device::Cpu)).view([2, 2]);
        store(&mut pooled, CacheDepth::Pooled, &[2, 0], &states, &spans);
        assert_eq!(Vec::<Vec<f32>>::try_from(pooled).unwrap(), [[2., 3.], [0., 0.], [0., 1.]]);
    }
}
