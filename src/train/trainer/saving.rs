//! Evaluations and checkpoints: dev scores, `best/`, a resumable `last/`, the checks before
//! anything is saved, and the end of the run.

use std::io::Write;
use std::time::Instant;

use anyhow::{anyhow, Result};

use super::{TrainOutcome, Trainer};
use crate::checkpoint;
use crate::data::batching::BatchLimit;
use crate::inference::Encoder;
use crate::model::spec::ModelSpec;
use crate::precision::Precision;
use crate::report::table::count;
use crate::train::evaluate::{evaluate, Evaluation};
use crate::train::feature_cache::RunCaches;
use crate::train::log::{EvalRecord, LogRecord, RunSummary};
use crate::train::new_run::NewRun;
use crate::train::overview::print_evaluation;
use crate::train::small_data::{self, TrainedHeads};

/// Training rows per task whose outputs are checked before a save (`check_before_save`).
const PROBE_ROWS: usize = 8;

/// What an evaluation at the end of a step decided.
pub(super) enum AfterEvaluation {
    Continue,
    EarlyStop,
}

impl Trainer<'_> {
    /// Before anything is saved from the weights: the window's losses and gradient norms are
    /// finite, and so are the outputs the weights give now for a few training rows of every
    /// task. A step can end with finite losses and gradients yet leave weights that overflow
    /// (a learning rate far too high); only the next forward shows it, and a checkpoint of
    /// such weights is not a good one to go back to.
    fn check_before_save(&mut self) -> Result<()> {
        self.settle_losses()?;
        if self.checked_step == Some(self.state.step) {
            return Ok(());
        }
        let _no_grad = tch::no_grad_guard();
        for task in &self.tasks {
            let rows: Vec<usize> = (0..task.train_rows().min(PROBE_ROWS)).collect();
            let outputs = self.outputs(task.as_ref(), &task.batch(&rows, self.loaded.device), false)?;
            if !bool::try_from(outputs.isfinite().all())? {
                return Err(self.stopped(&format!(
                    "the weights after step {} give outputs that are not finite for task '{}', though every loss so far was finite (learning rate too high?)",
                    self.state.step,
                    task.source().name
                )));
            }
        }
        self.checked_step = Some(self.state.step);
        Ok(())
    }

    /// The error that stops a run whose numbers went wrong: `what` happened, and what is left
    /// to go on from. Nothing is saved after it.
    pub(super) fn stopped(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "training stopped: {what}; {}",
            match self.last_saved_step {
                Some(s) => format!(
                    "the last good checkpoint is {last} (step {s}); to go on, start a new run from it with lower rates (--model {last} --out NEW_DIR --lr-backbone ...): --resume would repeat the same steps",
                    last = self.run.last().display()
                ),
                None if self.new_run.as_ref().is_some_and(NewRun::replaces_a_run) => {
                    "no checkpoint had been saved yet, and the run --overwrite replaced is back".to_string()
                }
                None => "no checkpoint had been saved yet".to_string(),
            }
        )
    }

    pub(super) fn evaluation_due(&self) -> bool {
        let step = self.state.step;
        step.is_multiple_of(self.length.eval_interval) || step == self.length.total_steps
    }

    /// Scores the dev sets, keeps `best/` when the mean main metric improved, always saves a
    /// resumable `last/`, and decides on early stopping.
    pub(super) fn evaluate_and_save(&mut self) -> Result<AfterEvaluation> {
        let step = self.state.step;
        let (evaluation, trained_heads) = self.score_dev()?;
        let save_started = Instant::now();
        let spends_patience = |p: usize| self.state.evals_without_improvement + 1 >= p;
        let patience_spent = evaluation.as_ref().is_some_and(|e| !self.improves(e))
            && self.settings.patience.is_some_and(spends_patience);
        // Patience spent at the last step is no early stop: the run ends there anyway.
        let early_stop = patience_spent && step < self.length.total_steps;
        if early_stop {
            // The steps since the last window are logged before the evaluation that ends the
            // run, as every window before an evaluation is.
            self.log_unlogged_steps()?;
        }
        self.keep_if_best(evaluation.as_ref())?;
        let mut scored = evaluation.as_ref();
        if early_stop {
            trained_heads.lines.iter().for_each(|line| self.say(line));
        } else if step < self.length.total_steps {
            // Training goes on from the heads it trained (and `last/` resumes from them), which
            // are not the refitted heads the scores are of: `last/` records no scores then.
            if trained_heads.replaced_any() {
                scored = None;
            }
            trained_heads.restore();
        }
        self.save_last(scored)?;
        self.timing.save += save_started.elapsed().as_secs_f64();
        if early_stop {
            self.bar.finish_and_clear();
            self.say(&format!(
                "early stopping at step {step}: no better mean of the main dev metrics in {}",
                count(self.state.evals_without_improvement, "evaluation")
            ));
            return Ok(AfterEvaluation::EarlyStop);
        }
        Ok(AfterEvaluation::Continue)
    }

    /// The dev sets' scores (none without dev sets), of the heads the run would end with
    /// (small-data mode refits them; the returned heads put the trained ones back).
    fn score_dev(&mut self) -> Result<(Option<Evaluation>, TrainedHeads)> {
        self.check_before_save()?;
        let step = self.state.step;
        let eval_started = Instant::now();
        let has_dev = self.tasks.iter().any(|t| t.dev_rows().is_some());
        let trained_heads = match has_dev || step == self.length.total_steps {
            true => small_data::refit_heads(&self.tasks, &self.fp32_encoder())?,
            false => TrainedHeads::none(),
        };
        if step == self.length.total_steps {
            trained_heads.lines.iter().for_each(|line| self.say(line));
        }
        let evaluation = evaluate(&self.fp32_encoder(), &self.tasks, step)?;
        self.timing.eval += eval_started.elapsed().as_secs_f64();
        Ok((evaluation, trained_heads))
    }

    /// Logs and shows an evaluation, saves `best/` when it beats the best so far, and counts
    /// the evaluations without improvement (patience).
    fn keep_if_best(&mut self, evaluation: Option<&Evaluation>) -> Result<()> {
        let Some(e) = evaluation else { return Ok(()) };
        let improved = self.improves(e);
        let step = self.state.step;
        self.log.write(&LogRecord::Eval(EvalRecord {
            step,
            epoch: self.length.epoch(step),
            tasks: e.tasks.clone(),
            mean_main_metric: e.mean_main_metric,
            best: improved,
        }))?;
        if !self.options.quiet {
            let order: Vec<&str> = self.tasks.iter().map(|t| t.source().name.as_str()).collect();
            print_evaluation(e, &order, &self.bar);
        }
        if !improved {
            self.state.evals_without_improvement += 1;
            return Ok(());
        }
        if self.is_main() {
            if let Some(new_run) = self.new_run.as_mut() {
                new_run.before_first_save();
            }
            checkpoint::save(&self.run.best(), &self.loaded, &self.spec_with(Some(e)), &self.source_dir)?;
        }
        self.state.best = Some(e.clone());
        self.state.evals_without_improvement = 0;
        Ok(())
    }

    /// Whether `e` beats the best evaluation so far (a NaN score, a correlation of NaN
    /// cosines, is beaten by any number).
    fn improves(&self, e: &Evaluation) -> bool {
        self.state.best.as_ref().is_none_or(|b| {
            e.mean_main_metric > b.mean_main_metric || (b.mean_main_metric.is_nan() && !e.mean_main_metric.is_nan())
        })
    }

    /// The model as it is now, in fp32 whatever the training precision (how dev sets are
    /// scored), over the run's feature cache and process group.
    fn fp32_encoder(&self) -> Encoder<'_> {
        Encoder {
            model: &self.loaded,
            cache: self.cache.as_ref().map(RunCaches::fp32),
            precision: Precision::Fp32,
            batch: BatchLimit::Rows(self.settings.eval_batch_size),
            group: self.group,
            truncated: None,
        }
    }

    /// A resumable `last/`: the model, the trainer's state and the optimizer's moments.
    pub(super) fn save_last(&mut self, evaluation: Option<&Evaluation>) -> Result<()> {
        self.check_before_save()?;
        if !self.is_main() {
            self.unconfirmed_save = Some(self.state.step);
            return Ok(());
        }
        let spec = self.spec_with(evaluation);
        if let Some(new_run) = self.new_run.as_mut() {
            new_run.before_first_save();
        }
        self.state.window = Some(self.window.totals());
        let (state, optimizer) = (&self.state, &self.optimizer);
        checkpoint::save_with(&self.run.last(), &self.loaded, &spec, &self.source_dir, |folder| {
            state.write(folder, optimizer)
        })?;
        self.last_saved_step = Some(self.state.step);
        if let Some(new_run) = self.new_run.take() {
            new_run.keep();
        }
        Ok(())
    }

    /// Makes sure `best/` exists, then logs the summary: a log that ends in a summary is a
    /// finished run, which `--resume` refuses, so nothing may be left to write after it.
    pub(super) fn finish(mut self) -> Result<TrainOutcome> {
        self.check_before_save()?;
        self.bar.finish_and_clear();
        if let Some(mut plan) = self.batch_plan.take() {
            plan.flush()?;
        }
        if self.state.best.is_none() && self.is_main() {
            // No dev set: the final weights are the best we know.
            checkpoint::save(&self.run.best(), &self.loaded, &self.spec_with(None), &self.source_dir)?;
            self.say("no dev sets: best/ holds the final weights, as last/ does");
        }
        let timing = &self.timing;
        let examples = self.run_examples;
        self.log.write(&LogRecord::Summary(RunSummary {
            step: self.state.step,
            resumed_from: self.resumed_from,
            examples,
            tokens: timing.tokens,
            padded_tokens: timing.padded_tokens,
            train_seconds: timing.train,
            eval_seconds: timing.eval,
            save_seconds: timing.save,
            examples_per_sec: examples as f64 / timing.train.max(1e-9),
            tokens_per_sec: timing.tokens as f64 / timing.train.max(1e-9),
            all_reduce_buckets: self.gradient_sync.as_ref().map(|_| timing.buckets),
            buckets_during_backward: self.gradient_sync.as_ref().map(|_| timing.overlapped_buckets),
        }))?;
        Ok(TrainOutcome {
            steps: self.state.step,
            resumed_from: self.resumed_from,
            best: self.state.best,
            seconds: self.started.elapsed().as_secs_f64(),
            examples,
            lengthened: (self.length.total_steps > self.length.planned_steps)
                .then_some((self.length.total_steps, self.length.planned_steps)),
            model: self.loaded,
            run: self.run,
        })
    }

    /// The checkpoint's spec: the model's, with the run's settings and these dev metrics.
    fn spec_with(&self, evaluation: Option<&Evaluation>) -> ModelSpec {
        let mut spec = self.loaded.spec.clone();
        spec.training = serde_json::to_value(self.settings).ok();
        // `--precision auto` as it resolved on the machine that trained, and the CPU threads
        // that summed its numbers (a resume on other threads is not bit-identical).
        if let Some(serde_json::Value::Object(training)) = &mut spec.training {
            training.insert("precision_used".into(), serde_json::Value::String(self.precision.to_string()));
            if self.loaded.device == tch::Device::Cpu {
                training.insert("threads_used".into(), tch::get_num_threads().into());
            }
        }
        spec.metrics = evaluation.and_then(|e| serde_json::to_value(e).ok());
        spec
    }
}
