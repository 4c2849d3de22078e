//! One optimizer step: the accumulated batches' forward and backward (this rank's share of
//! each in a data-parallel launch), clipping and AdamW.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::{Kind, Tensor};

use super::Trainer;
use crate::data::batching::pad_batch;
use crate::device::upload;
use crate::distributed;
use crate::distributed::data_parallel;
use crate::distributed::gathered_negatives::RankShares;
use crate::model::fused_forward::FusedForward;
use crate::precision;
use crate::rng::Rng;
use crate::tasks::{TrainBatch, TrainingTask};

/// One drawn batch, as the step's accounting sees it: this rank's weighted loss (0-dim, on
/// the device) and tokens (summed across ranks before they are read), and the whole batch's rows.
struct MicroBatch {
    task: usize,
    rows: usize,
    loss: Tensor,
    tokens: usize,
    padded_tokens: usize,
}

impl Trainer<'_> {
    /// One optimizer step: `--grad-accum` batches (an epoch's last step: what is left of it)
    /// forward and backward, clipping, AdamW.
    pub(super) fn step(&mut self) -> Result<()> {
        let step_started = Instant::now();
        let factor = self.settings.lr_schedule.factor(self.state.step, self.length.warmup, self.length.total_steps);
        self.optimizer.set_lr_factor(factor);
        let accum = self.length.batches_in_step(self.state.step);
        let mut drawn = Vec::with_capacity(accum);
        let mut last_root = None;
        for i in 0..accum {
            let (batch, root) = self.micro_batch(accum)?;
            drawn.push(batch);
            match root {
                Some(root) if i + 1 < accum => root.f_backward()?,
                root => last_root = root,
            }
        }
        let summed = self.last_backward(&drawn, last_root)?;
        self.account(&drawn, summed);
        let norm = self.optimizer.clip_grad_norm(self.settings.max_grad_norm)?;
        self.window.add_grad_norm(self.state.step + 1, drawn.iter().map(|d| d.task).collect(), norm);
        self.optimizer.step()?;
        self.optimizer.zero_grad();
        self.state.step += 1;
        let seconds = step_started.elapsed().as_secs_f64();
        self.timing.train += seconds;
        self.window.seconds += seconds;
        self.bar.inc(1);
        Ok(())
    }

    /// One batch of one task (in a data-parallel launch, this rank's share of it): forward
    /// and loss, and the tensor to run backward from (`None` for an empty share). The loss
    /// is weighted by the share's fraction of the batch's rows, so the ranks' gradients sum
    /// to the whole batch's, and by 1 / `accum`, the batches of this step, which it averages.
    fn micro_batch(&mut self, accum: usize) -> Result<(MicroBatch, Option<Tensor>)> {
        let (t, rows) = self.draw()?;
        let task = &self.tasks[t];
        let (rank, world) = distributed::rank_and_world(self.group);
        let mine = data_parallel::share(&rows, rank, world);
        let mut drawn = MicroBatch { task: t, rows: rows.len(), loss: Tensor::from(0f32), tokens: 0, padded_tokens: 0 };
        let gathered = match (self.group, self.settings.gather_across_ranks, task.in_batch_negatives_scale()) {
            (Some(group), true, Some(scale)) => Some((RankShares::new(group, rows.len()), scale)),
            _ => None,
        };
        if mine.is_empty() && gathered.is_none() {
            return Ok((drawn, None));
        }
        let batch = task.batch(mine, self.loaded.device);
        let outputs = self.outputs(task.as_ref(), &batch, true)?;
        let weight = task.source().weight / accum as f64;
        let root = match gathered {
            Some((shares, scale)) => {
                let objective =
                    shares.objective(&outputs, task.texts_per_row(), self.embedding_dim(), scale, weight)?;
                drawn.loss = objective.weighted_loss;
                objective.backward
            }
            None => {
                let loss = task.loss(&outputs, &batch) * (mine.len() as f64 / rows.len() as f64);
                drawn.loss = loss.detach();
                Some(loss * weight)
            }
        };
        (drawn.tokens, drawn.padded_tokens) = (batch.tokens(), batch.padded_tokens());
        Ok((drawn, root))
    }

    /// The next batch's task and rows (recorded in `--save-batch-plan`), with dropout seeded
    /// for it: masks depend only on (seed, batch number, rank), so a resumed run draws the same.
    fn draw(&mut self) -> Result<(usize, Vec<usize>)> {
        let (t, rows) = self.state.sampler.next_batch();
        if let Some(plan) = &mut self.batch_plan {
            let line = serde_json::json!({"step": self.state.step, "task": self.tasks[t].source().name, "rows": rows});
            writeln!(plan, "{line}")?;
        }
        let (rank, world) = distributed::rank_and_world(self.group);
        let batch_number = self.state.micro_batches * world as u64 + rank as u64;
        tch::manual_seed(Rng::derived_seed(self.settings.seed, batch_number));
        self.state.micro_batches += 1;
        Ok((t, rows))
    }

    /// What `task`'s loss reads for this rank's `batch`, in fp32 (`[0, dim]` for an empty
    /// share), with dropout when `train`.
    pub(super) fn outputs(&self, task: &dyn TrainingTask, batch: &TrainBatch, train: bool) -> Result<Tensor> {
        if batch.rows == 0 {
            return Ok(Tensor::zeros([0, self.embedding_dim()], (Kind::Float, self.loaded.device)));
        }
        let outputs = precision::autocast(self.precision, self.loaded.device, || {
            let forward = self.loaded.forward();
            task.outputs(&forward, &self.sentence_features(&forward, batch, train)?)
        })?;
        Ok(outputs.to_kind(Kind::Float))
    }

    /// Width of the sentence features and embeddings: the projection's, else the hidden size.
    fn embedding_dim(&self) -> i64 {
        self.loaded.spec.feature_width(self.loaded.config.hidden_size())
    }

    /// The step's last backward (from `root`). In a data-parallel launch the gradients are
    /// summed across ranks as it runs, and the step's token counts with them (host values:
    /// the losses stay on the device, summed once per logging window): returns those sums.
    fn last_backward(&mut self, drawn: &[MicroBatch], root: Option<Tensor>) -> Result<Option<Vec<f64>>> {
        let Some(sync) = &self.gradient_sync else {
            if let Some(root) = root {
                root.f_backward()?;
            }
            return Ok(None);
        };
        let scalars: Vec<f64> = drawn.iter().flat_map(|d| [d.tokens as f64, d.padded_tokens as f64]).collect();
        let synced = sync.backward(root.as_ref(), &scalars)?;
        self.timing.buckets += synced.buckets;
        self.timing.overlapped_buckets += synced.overlapped_buckets;
        Ok(Some(synced.scalars))
    }

    /// Adds the step to the logging window, its losses left on the device (this rank's share
    /// in a launch), its real and padded tokens per batch as `summed` across ranks if given.
    fn account(&mut self, drawn: &[MicroBatch], summed: Option<Vec<f64>>) {
        let tokens =
            summed.unwrap_or_else(|| drawn.iter().flat_map(|d| [d.tokens as f64, d.padded_tokens as f64]).collect());
        for (i, d) in drawn.iter().enumerate() {
            let (real, padded) = (tokens[2 * i] as usize, tokens[2 * i + 1] as usize);
            self.window.add_loss(self.state.step + 1, d.task, d.loss.shallow_clone());
            self.window.examples += d.rows;
            self.window.tokens += real;
            self.timing.tokens += real;
            self.timing.padded_tokens += padded;
            self.state.examples += d.rows;
            self.run_examples += d.rows;
        }
    }

    /// Training's sentence features `[texts, dim]` of a batch's texts, with dropout when
    /// `train`: from the feature cache when the run has one, else through the whole model, in
    /// the batch's forward groups (texts of similar length together; `tasks::batch`).
    fn sentence_features(&self, forward: &FusedForward, batch: &TrainBatch, train: bool) -> Result<Tensor> {
        if let Some(cache) = &self.cache {
            return cache
                .training
                .features(forward, &batch.texts, train)?
                .context("a training text is missing from the feature cache");
        }
        let plan = batch.forward_groups();
        let groups = plan.groups.iter().map(|texts| {
            let (ids, mask) = pad_batch(texts, self.loaded.tokenizer.pad_id(), self.loaded.device);
            forward.features_t(&ids, &mask, train)
        });
        let features = Tensor::cat(&groups.collect::<Result<Vec<_>>>()?, 0);
        Ok(match &plan.order {
            Some(order) => features.index_select(0, &upload(Tensor::from_slice(order), self.loaded.device)),
            None => features,
        })
    }
}
