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
//! weights and inference batches are the same, so it is the same).

use std::collections::HashMap;

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::data::batching::{length_sorted_batches, pad_batch, BatchLimit};
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

    /// Runs the frozen part over every distinct sentence, in length-sorted batches as
    /// inference makes them, at `precision` (a resolved one); the states are kept in fp32.
    pub fn build(
        model: &LoadedModel,
        depth: CacheDepth,
        sequences: &[&[i64]],
        batch: BatchLimit,
        precision: Precision,
        progress: &Progress,
    ) -> Result<Self> {
        let mut index = HashMap::new();
        let mut distinct: Vec<&[i64]> = Vec::new();
        for s in sequences {
            index.entry(s.to_vec()).or_insert_with(|| {
                distinct.push(s);
                distinct.len() - 1
            });
        }
        let forward = model.forward();
        let lengths: Vec<usize> = distinct.iter().map(|s| s.len()).collect();
        let bar = progress.bar(distinct.len() as u64, "sentences cached");
        let mut parts: Vec<(Vec<usize>, Tensor)> = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for batch in length_sorted_batches(&lengths, batch) {
                let texts: Vec<&[i64]> = batch.iter().map(|&i| distinct[i]).collect();
                let (ids, mask) = pad_batch(&texts, model.tokenizer.pad_id(), model.device);
                let states = autocast(precision, model.device, || -> Result<Tensor> {
                    Ok(match depth {
                        CacheDepth::Pooled => model.spec.pooling.forward(&forward.hidden_states(&ids, &mask)?, &mask),
                        CacheDepth::BelowBlock(k) => forward.states_below(&ids, &mask, k)?,
                    })
                })?;
                parts.push((batch.clone(), states.to_kind(Kind::Float)));
                bar.inc(batch.len() as u64);
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let (values, spans) = Self::assemble(depth, parts, &lengths);
        Ok(Self { depth, index, values, spans })
    }

    /// One tensor of every entry's states, in entry order.
    fn assemble(depth: CacheDepth, parts: Vec<(Vec<usize>, Tensor)>, lengths: &[usize]) -> (Tensor, Vec<(i64, i64)>) {
        let mut rows: Vec<Option<Tensor>> = (0..lengths.len()).map(|_| None).collect();
        for (batch, states) in parts {
            for (row, &entry) in batch.iter().enumerate() {
                let one = states.get(row as i64);
                rows[entry] = Some(match depth {
                    CacheDepth::Pooled => one,
                    CacheDepth::BelowBlock(_) => one.narrow(0, 0, lengths[entry] as i64),
                });
            }
        }
        let rows: Vec<Tensor> = rows.into_iter().map(|r| r.expect("every entry was computed")).collect();
        let mut spans = Vec::with_capacity(rows.len());
        let mut start = 0;
        for &len in lengths {
            spans.push((start, len as i64));
            start += len as i64;
        }
        let values = match depth {
            // No sentences (a bf16 run's fp32 dev cache when no task has a dev set): nothing
            // is ever looked up in it.
            _ if rows.is_empty() => Tensor::zeros([0], (Kind::Float, tch::Device::Cpu)),
            CacheDepth::Pooled => Tensor::stack(&rows, 0),
            CacheDepth::BelowBlock(_) => Tensor::cat(&rows, 0),
        };
        (values, spans)
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
                forward.project(&self.values.index_select(0, &rows.to_device(self.values.device())))?
            }
            CacheDepth::BelowBlock(k) => {
                let states: Vec<Tensor> =
                    entries.iter().map(|&e| self.values.narrow(0, self.spans[e].0, self.spans[e].1)).collect();
                let padded = Tensor::pad_sequence(&states, true, 0.0);
                let mask = mask_of(&entries.iter().map(|&e| self.spans[e].1).collect::<Vec<_>>(), padded.size()[1]);
                forward.features_from_states(padded, &mask.to_device(self.values.device()), k, train)?
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

    /// Sentences computed, over both caches.
    pub fn entries(&self) -> usize {
        self.training.len() + self.dev.as_ref().map_or(0, FeatureCache::len)
    }

    pub fn bytes(&self) -> u64 {
        self.training.bytes() + self.dev.as_ref().map_or(0, FeatureCache::bytes)
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

    /// Entries come out in entry order whatever the batches' order, each cut to its length,
    /// and no entries at all (a bf16 run's dev cache without dev sets) make an empty cache.
    #[test]
    fn assembles_entries_in_order_and_nothing_from_nothing() {
        let lengths = [2, 1, 3];
        // Two batches, length-sorted as built: entries 2 then 0 (padded to 3), then 1.
        let states = Tensor::arange(2 * 3 * 2, (Kind::Float, tch::Device::Cpu)).view([2, 3, 2]);
        let parts =
            vec![(vec![2, 0], states), (vec![1], Tensor::full([1, 1, 2], -1.0, (Kind::Float, tch::Device::Cpu)))];
        let (values, spans) = FeatureCache::assemble(CacheDepth::BelowBlock(1), parts, &lengths);
        assert_eq!(spans, vec![(0, 2), (2, 1), (3, 3)]);
        let rows = Vec::<Vec<f32>>::try_from(values).unwrap();
        assert_eq!(rows, [[6., 7.], [8., 9.], [-1., -1.], [0., 1.], [2., 3.], [4., 5.]]);
        for depth in [CacheDepth::Pooled, CacheDepth::BelowBlock(2)] {
            let (values, spans) = FeatureCache::assemble(depth, Vec::new(), &[]);
            assert_eq!((values.numel(), spans.len()), (0, 0));
        }
    }
}
