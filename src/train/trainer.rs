//! The training loop as a small type with named steps: [`Trainer::start`] sets the run up
//! (model, freezing, optimizer, resumed state: the pieces come from `setup.rs`), then each
//! optimizer [`Trainer::step`] runs the accumulated batches, and around it come the logging
//! window, evaluate-and-save, the stop on a signal and [`Trainer::finish`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use indicatif::ProgressBar;
use tch::{Kind, Tensor};

use super::evaluate::{evaluate, Evaluation};
use super::feature_cache::RunCaches;
use super::interrupt::{Interrupted, StopOnSignal};
use super::log::{EvalRecord, LogRecord, RunLog, RunSummary, StepRecord};
use super::new_run::NewRun;
use super::optimizer::AdamW;
use super::overview::{print_evaluation, Overview};
use super::param_groups::{build_groups, parameter_counts};
use super::plain_progress::PlainProgress;
use super::run_dir::RunDir;
use super::run_length::RunLength;
use super::settings::TrainSettings;
use super::setup;
use super::signal_handlers::signal_name;
use super::small_data::{self, SmallTask, TrainedHeads};
use super::start_up_signals::StartUpSignals;
use super::state::TrainerState;
use super::window::{NonFinite, Window};
use crate::checkpoint;
use crate::data::batching::{pad_batch, BatchLimit};
use crate::data::sampler::SamplingStrategy;
use crate::device::{upload, DeviceChoice};
use crate::distributed::data_parallel;
use crate::distributed::gathered_negatives::RankShares;
use crate::distributed::gradient_sync::GradientSync;
use crate::distributed::{self, CollectiveFailed, ProcessGroup, Reduce};
use crate::inference::Encoder;
use crate::model::fused_forward::FusedForward;
use crate::model::loaded::LoadedModel;
use crate::model::spec::ModelSpec;
use crate::model::MultiTaskModel;
use crate::precision::{self, Precision};
use crate::progress::Progress;
use crate::report::table::count;
use crate::tasks::{TrainBatch, TrainingTask};

/// Training rows per task whose outputs are checked before a save (`check_before_save`).
const PROBE_ROWS: usize = 8;

/// How a run ended.
pub struct TrainOutcome {
    /// The model as it is at the end of training (the weights saved in `last/`).
    pub model: LoadedModel,
    pub run: RunDir,
    pub steps: usize,
    /// The step this process resumed from, when it did; `seconds` and `examples` count from it.
    pub resumed_from: Option<usize>,
    pub best: Option<Evaluation>,
    pub seconds: f64,
    pub examples: usize,
}

/// Options that do not change the result.
pub struct RunOptions {
    pub quiet: bool,
    pub overwrite: bool,
    pub batch_plan: Option<PathBuf>,
    pub command_line: Vec<String>,
    /// The flags given on the command line (clap ids), for notes on those the loaded model
    /// makes inert.
    pub typed_flags: Vec<String>,
}

/// Starts a new run (in a data-parallel launch, rank 0 alone writes the run directory).
pub fn train(settings: &TrainSettings, options: &RunOptions, group: Option<&ProcessGroup>) -> Result<TrainOutcome> {
    let tasks = setup::read_tasks(settings)?;
    let mut settings = settings.clone();
    settings.fit_backbone_rate(tasks.iter().map(|t| t.train_rows()).sum());
    let settings = &settings;
    let main = distributed::is_main(group);
    // Before the folder is touched, so that a signal at any point finds a plan to undo it.
    let signals = main.then(|| StartUpSignals::install(!options.quiet));
    let (run, new_run) = if main {
        setup::check_model_before_overwrite(settings, options.overwrite)?;
        let (run, new_run) = NewRun::create(&settings.out, options.overwrite, signals.as_ref())?;
        run.write_settings(settings, &options.command_line)?;
        run.lock()?;
        (run, Some(new_run))
    } else {
        (RunDir { root: settings.out.clone() }, None)
    };
    // A panic counts as a failed start too (libtorch out of memory in a panicking operator);
    // either way `new_run` is dropped and undoes itself.
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Trainer::start(settings, options, run, new_run, tasks, None, group)
    }));
    match started {
        Ok(started) => started?.run(signals),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Continues an interrupted run from its `last/` checkpoint with the run's own settings
/// (optionally on another device or thread count).
pub fn resume(
    root: &Path,
    options: &RunOptions,
    device: Option<DeviceChoice>,
    threads: Option<usize>,
    group: Option<&ProcessGroup>,
) -> Result<TrainOutcome> {
    let run = RunDir::open(root)?;
    if distributed::is_main(group) {
        run.take_for_resume()?;
    }
    let mut settings = run.read_settings()?;
    run.refuse_finished()?;
    if let Some(device) = device {
        settings.device = device;
    }
    if threads.is_some() {
        settings.threads = threads;
    }
    let tasks = setup::read_tasks(&settings)?;
    let last = run.last();
    let trainer = Trainer::start(&settings, options, run, None, tasks, Some(last), group)?;
    trainer.run(None)
}

/// Where a run's time went and how many real and padded tokens its steps processed.
#[derive(Default)]
struct Timing {
    train: f64,
    eval: f64,
    save: f64,
    tokens: usize,
    padded_tokens: usize,
    /// A data-parallel run's gradient buckets, and those whose all-reduce overlapped backward.
    buckets: usize,
    overlapped_buckets: usize,
}

/// One drawn batch, as the step's accounting sees it: this rank's weighted loss (0-dim, on
/// the device) and tokens (summed across ranks before they are read), and the whole batch's rows.
struct MicroBatch {
    task: usize,
    rows: usize,
    loss: Tensor,
    tokens: usize,
    padded_tokens: usize,
}

/// What an evaluation at the end of a step decided.
enum AfterEvaluation {
    Continue,
    EarlyStop,
}

pub struct Trainer<'a> {
    settings: &'a TrainSettings,
    options: &'a RunOptions,
    run: RunDir,
    /// A new run until its first save (rank 0): dropped unsaved, it undoes itself.
    new_run: Option<NewRun>,
    tasks: Vec<Box<dyn TrainingTask>>,
    /// Keeps the variables alive; `loaded.weights` are views of them.
    _model: MultiTaskModel,
    loaded: LoadedModel,
    /// The frozen part's output per sentence, when the run caches it.
    cache: Option<RunCaches>,
    /// The training forward's precision, resolved for the device.
    precision: Precision,
    trainable_parameters: i64,
    optimizer: AdamW,
    state: TrainerState,
    length: RunLength,
    /// Where new checkpoints copy `config.json` and the tokenizer files from.
    source_dir: PathBuf,
    log: RunLog,
    window: Window,
    timing: Timing,
    progress: Progress,
    bar: ProgressBar,
    /// Lines instead of the bar, when stderr is no terminal (and the run is not quiet).
    plain_progress: Option<PlainProgress>,
    batch_plan: Option<std::io::BufWriter<std::fs::File>>,
    last_saved_step: Option<usize>,
    /// The step whose weights `check_before_save` last found to give finite outputs.
    checked_step: Option<usize>,
    /// The step of the checkpoint this process resumed from.
    resumed_from: Option<usize>,
    /// Examples trained on by this process (a resumed run counts from its resumption).
    run_examples: usize,
    started: Instant,
    /// The data-parallel launch's process group; `None` in a one-process run.
    group: Option<&'a ProcessGroup>,
    /// The gradients' all-reduce during backward, in a data-parallel launch.
    gradient_sync: Option<GradientSync<'a>>,
}

impl<'a> Trainer<'a> {
    /// Sets a run up: device, seed, the model with its new layers, tokenised tasks, freezing,
    /// the overview, the optimizer and, when resuming, the saved state.
    pub fn start(
        settings: &'a TrainSettings,
        options: &'a RunOptions,
        run: RunDir,
        new_run: Option<NewRun>,
        mut tasks: Vec<Box<dyn TrainingTask>>,
        resume_from: Option<PathBuf>,
        group: Option<&'a ProcessGroup>,
    ) -> Result<Self> {
        let started = Instant::now();
        let main = distributed::is_main(group);
        crate::device::set_threads(settings.threads, options.quiet || !main)?;
        let device = distributed::device_for(settings.device.resolve()?, group)?;
        let precision = settings.precision.resolve(device)?;
        let mut prepared = setup::prepare_model(settings, &mut tasks, device, resume_from.as_deref())?;
        let num_layers = prepared.loaded.config.num_layers() as usize;
        let groups = build_groups(&prepared.model.vs, num_layers, &settings.learning_rates(), settings.weight_decay)?;
        let mut optimizer = AdamW::new(groups);
        let world = group.map_or(1, ProcessGroup::world);
        let mut state = setup::initial_state(settings, &tasks, &run, resume_from.as_deref(), &mut optimizer, world)?;
        let names: Vec<&str> = tasks.iter().map(|t| t.source().name.as_str()).collect();
        let small_data = tasks.iter().any(|t| t.small_data());
        let length = RunLength::new(settings, state.sampler.checked_batches_per_epoch(&names)?, small_data);
        let resumed_from = resume_from.as_ref().map(|_| state.step);
        let resumed_window = state.window.take();
        let spec = &prepared.loaded.spec;
        prepared.notes.extend(match resumed_from {
            None => setup::start_up_notes(settings, &tasks, world, &options.typed_flags, spec)?,
            Some(_) => setup::precision_change_note(spec, settings.precision, precision).into_iter().collect(),
        });
        let log = match main {
            true => RunLog::open(&run.log(), resumed_from)?,
            false => RunLog::discard(),
        };
        // Refusals come before the overview, which would read as a start.
        let resumed_run = resumed_from.map(|_| run.root.as_path());
        let cache_plan = setup::plan_feature_cache(settings, &prepared.loaded, &tasks, precision, resumed_run)?;
        // Ranks that disagree are refused before the overview too.
        let gradient_sync = match group {
            Some(group) => Some(setup::join_data_parallel(group, settings, &state, &prepared, &optimizer)?),
            None => None,
        };
        // Opened (emptied) once nothing can refuse the start.
        let batch_plan = setup::open_batch_plan(options.batch_plan.as_deref().filter(|_| main))?;
        if !options.quiet {
            Overview { settings, prepared: &prepared, tasks: &tasks, precision }.print()?;
        }
        let setup::PreparedModel { model, loaded, encoder_frozen, frozen_heads, .. } = prepared;
        let cache = match cache_plan {
            Some(plan) => Some(setup::build_feature_cache(settings, &loaded, plan, options.quiet)?),
            None => None,
        };
        let source_dir = resume_from.unwrap_or_else(|| loaded.dir.clone());
        let progress = Progress::new(options.quiet);
        let task_count = tasks.len();
        let trainer = Self {
            settings,
            options,
            run,
            new_run,
            tasks,
            trainable_parameters: parameter_counts(&model.vs).0,
            _model: model,
            loaded,
            cache,
            precision,
            optimizer,
            last_saved_step: resumed_from,
            resumed_from,
            checked_step: None,
            state,
            length,
            source_dir,
            log,
            window: Window::resumed(task_count, resumed_window),
            timing: Timing::default(),
            progress,
            bar: ProgressBar::hidden(),
            plain_progress: (!options.quiet && !progress.is_visible()).then(PlainProgress::new),
            batch_plan,
            run_examples: 0,
            started,
            group,
            gradient_sync,
        };
        trainer.announce(resumed_from.is_some(), small_data, encoder_frozen, &frozen_heads);
        Ok(trainer)
    }

    /// Says that the run resumes, and that small-data mode lengthened it, when they do.
    fn announce(&self, resumed: bool, small_data: bool, encoder_frozen: bool, frozen_heads: &[String]) {
        if resumed {
            self.say(&format!("resuming {} at step {}", self.run.root.display(), self.state.step));
        }
        if self.new_run.as_ref().is_some_and(NewRun::replaces_a_run) {
            self.say(&format!(
                "replacing the run in {} (--overwrite); it comes back if this run stops before its first save",
                self.run.root.display()
            ));
        }
        if small_data && self.trainable_parameters > 0 {
            let small: Vec<SmallTask> = self
                .tasks
                .iter()
                .filter(|t| t.small_data())
                .map(|t| SmallTask {
                    name: &t.source().name,
                    rows: t.train_rows(),
                    head_frozen: frozen_heads.contains(&t.source().name),
                })
                .collect();
            let RunLength { planned_steps, total_steps, .. } = self.length;
            self.say(&small_data::announcement(&small, planned_steps, total_steps, encoder_frozen));
        }
    }

    /// Trains to the end (or an early stop), then finishes; a signal stops it after saving.
    /// The training loop's signal handling takes over from `start_up`'s, if given.
    pub fn run(mut self, start_up: Option<StartUpSignals>) -> Result<TrainOutcome> {
        // Installed before the evaluation-only path too: a signal then lets its save finish.
        let signals = StopOnSignal::take_over(start_up, !self.options.quiet);
        if self.trainable_parameters == 0 {
            let evaluating = self.settings.tasks.iter().any(|t| t.dev.is_some());
            self.say(&format!(
                "no trainable parameter: --freeze leaves nothing to train; {}no training step",
                if evaluating { "evaluating only, " } else { "" }
            ));
            self.evaluate_and_save()?;
            if let Some(signal) = signals.requested() {
                self.say(&format!("{} came at the last step: the run finishes", signal_name(signal)));
            }
            drop(signals);
            return self.finish();
        }
        self.say(&self.plan_line());
        match self.steps(&signals) {
            Ok(None) => {
                drop(signals);
                self.finish()
            }
            Ok(Some((signal, saved))) => Err(self.stop_on_signal(signal, saved)),
            Err(e) if e.is::<CollectiveFailed>() => Err(self.with_resume_hint(e)),
            Err(e) => Err(e),
        }
    }

    /// The steps to the end or an early stop (`None`), or to the step after which a signal
    /// stops the run (the signal, and whether that step saved `last/`).
    fn steps(&mut self, signals: &StopOnSignal) -> Result<Option<(i32, bool)>> {
        while self.state.step < self.length.total_steps {
            self.start_epoch_bar_if_due();
            self.step()?;
            let step = self.state.step;
            if step.is_multiple_of(self.settings.log_every) || step == self.length.total_steps {
                self.log_window()?;
            }
            let mut saved = false;
            if self.evaluation_due() {
                let decision = self.evaluate_and_save()?;
                saved = true;
                if let AfterEvaluation::EarlyStop = decision {
                    self.log_unlogged_steps()?;
                    break;
                }
            } else if self.settings.save_every.is_some_and(|n| step.is_multiple_of(n)) {
                self.save_last(None)?;
                saved = true;
            }
            if let Some(signal) = self.agreed_signal(signals.requested())? {
                if step == self.length.total_steps {
                    // Nothing would be left to resume: the run finishes as usual.
                    self.say(&format!("{} came at the last step: the run finishes", signal_name(signal)));
                    break;
                }
                // The window's steps are not logged here: `last/` keeps their losses, and the
                // resumed run logs the window whole, as the uninterrupted run does.
                return Ok(Some((signal, saved)));
            }
        }
        Ok(None)
    }

    /// A rank's failure in a launch, with where the run can go on from: `last/` as the last
    /// save left it, resumed by the same launch.
    fn with_resume_hint(&self, failure: anyhow::Error) -> anyhow::Error {
        match self.last_saved_step {
            Some(step) if self.run.last().is_dir() || !self.is_main() => anyhow!(
                "{failure}; the run's last complete checkpoint is {} (step {step}): {}",
                self.run.last().display(),
                self.how_to_resume()
            ),
            // Rank 0, killed while its --overwrite had the old run set aside, could not put
            // it back; the next start names the folder and refuses until it is dealt with.
            _ if self.options.overwrite && !self.is_main() => anyhow!(
                "{failure}; no checkpoint was saved yet: start the launch again (if rank 0 was killed, the run its --overwrite set aside may be left in {}/.replaced-<pid>/, and that start says what to do with it)",
                self.run.root.display()
            ),
            _ => anyhow!("{failure}; no checkpoint was saved yet: start the launch again"),
        }
    }

    /// Whether this process writes the run's files (rank 0, or the only process).
    fn is_main(&self) -> bool {
        distributed::is_main(self.group)
    }

    /// The stop signal any rank received this step, so every rank stops after the same step.
    fn agreed_signal(&self, signal: Option<i32>) -> Result<Option<i32>> {
        let Some(group) = self.group else { return Ok(signal) };
        let mut flag = Tensor::from_slice(&[signal.unwrap_or(0) as i64]);
        group.all_reduce_(&mut flag, Reduce::Max, "the end-of-step check for a stop signal on any rank")?;
        let agreed = i64::try_from(&flag)? as i32;
        Ok((agreed != 0).then_some(agreed))
    }

    fn say(&self, text: &str) {
        if !self.options.quiet {
            crate::stderrln!("{text}");
        }
    }

    fn plan_line(&self) -> String {
        let RunLength { total_steps, steps_per_epoch, warmup, .. } = self.length;
        let batch = match self.settings.batch_limit() {
            BatchLimit::Rows(n) => format!("batch {n}"),
            BatchLimit::Tokens(n) => format!("batches of up to {n} padded tokens"),
        };
        let about = if self.settings.batch_tokens.is_some() { "about " } else { "" };
        let across = match self.group {
            Some(g) => format!(", each batch shared by {} data-parallel processes ({})", g.world(), g.backend_name()),
            None => String::new(),
        };
        let tasks = &self.settings.tasks;
        let one_of_each = tasks.len() > 1
            && self.settings.grad_accum == tasks.len()
            && self.settings.sampling == SamplingStrategy::RoundRobin
            && tasks.iter().all(|t| t.share == tasks[0].share);
        let each = if one_of_each { ": one batch of every task per step" } else { "" };
        let mut line = format!(
            "training: {} ({about}{steps_per_epoch} per epoch, {} sampling, {batch} x {} accumulation{each}{across}), warm-up {}",
            count(total_steps, "optimizer step"),
            self.settings.sampling,
            self.settings.grad_accum,
            count(warmup, "step")
        );
        if warmup > total_steps {
            line += "\nnote: --warmup-steps is longer than the run: the learning rates never reach their set values";
        }
        if let Some(note) = self.length.accumulation_note() {
            line += &format!("\n{note}");
        }
        line
    }

    /// A progress bar per epoch (and a first one for a resumed run's partial epoch).
    fn start_epoch_bar_if_due(&mut self) {
        let step = self.state.step;
        let per_epoch = self.length.steps_per_epoch;
        if step.is_multiple_of(per_epoch) || self.bar.is_hidden() {
            self.bar.finish_and_clear();
            let epoch_end = (step / per_epoch + 1) * per_epoch;
            self.bar = self.progress.bar((epoch_end.min(self.length.total_steps) - step) as u64, "steps");
            self.bar.set_prefix(format!("epoch {}", step / per_epoch + 1));
        }
    }

    /// One optimizer step: `--grad-accum` batches (an epoch's last step: what is left of it)
    /// forward and backward, clipping, AdamW.
    fn step(&mut self) -> Result<()> {
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
                drawn.loss = Tensor::from(objective.weighted_loss);
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
        let batch_number = self.state.micro_batches as i64 * world as i64 + rank as i64;
        tch::manual_seed((self.settings.seed as i64).wrapping_add(1).wrapping_add(batch_number));
        self.state.micro_batches += 1;
        Ok((t, rows))
    }

    /// What `task`'s loss reads for this rank's `batch`, in fp32 (`[0, dim]` for an empty
    /// share), with dropout when `train`.
    fn outputs(&self, task: &dyn TrainingTask, batch: &TrainBatch, train: bool) -> Result<Tensor> {
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
    /// summed across ranks as it runs, and the step's losses and token counts with them
    /// (read back, as the collective needs them on the host): returns those sums.
    fn last_backward(&mut self, drawn: &[MicroBatch], root: Option<Tensor>) -> Result<Option<Vec<f64>>> {
        let Some(sync) = &self.gradient_sync else {
            if let Some(root) = root {
                root.f_backward()?;
            }
            return Ok(None);
        };
        let mut scalars = Vec::with_capacity(3 * drawn.len());
        for d in drawn {
            scalars.push(f64::try_from(&d.loss)?);
        }
        scalars.extend(drawn.iter().flat_map(|d| [d.tokens as f64, d.padded_tokens as f64]));
        let synced = sync.backward(root.as_ref(), &scalars)?;
        self.timing.buckets += synced.buckets;
        self.timing.overlapped_buckets += synced.overlapped_buckets;
        Ok(Some(synced.scalars))
    }

    /// Adds the step to the logging window, its losses left on the device unless `summed`
    /// across ranks (losses, then real and padded tokens per batch).
    fn account(&mut self, drawn: &[MicroBatch], summed: Option<Vec<f64>>) {
        let (losses, tokens): (Vec<Tensor>, Vec<f64>) = match summed {
            Some(summed) => {
                let (losses, tokens) = summed.split_at(drawn.len());
                (losses.iter().map(|&l| Tensor::from(l)).collect(), tokens.to_vec())
            }
            None => (
                drawn.iter().map(|d| d.loss.shallow_clone()).collect(),
                drawn.iter().flat_map(|d| [d.tokens as f64, d.padded_tokens as f64]).collect(),
            ),
        };
        for ((i, d), loss) in drawn.iter().enumerate().zip(losses) {
            let (real, padded) = (tokens[2 * i] as usize, tokens[2 * i + 1] as usize);
            self.window.add_loss(self.state.step + 1, d.task, loss);
            self.window.examples += d.rows;
            self.window.tokens += real;
            self.timing.tokens += real;
            self.timing.padded_tokens += padded;
            self.state.examples += d.rows;
            self.run_examples += d.rows;
        }
    }

    /// Reads the window's pending losses and gradient norms; one that is not finite stops
    /// the run, naming the task and the step.
    fn settle_losses(&mut self) -> Result<()> {
        let Err(bad) = self.window.settle() else { return Ok(()) };
        let name = |t: usize| format!("'{}'", self.tasks[t].source().name);
        let what = match bad {
            NonFinite::Loss { step, task, value } => {
                format!("the loss of task {} became {value} at step {step} (learning rate too high?)", name(task))
            }
            NonFinite::GradNorm { step, mut tasks, value } => {
                tasks.sort_unstable();
                tasks.dedup();
                let batches = match tasks.len() {
                    1 => "a batch of task",
                    _ => "batches of tasks",
                };
                let tasks: Vec<String> = tasks.into_iter().map(name).collect();
                format!(
                    "the gradient norm became {value} at step {step}, on {batches} {} (a --task-weight or learning rate too high?)",
                    tasks.join(" and ")
                )
            }
        };
        Err(self.stopped(&what))
    }

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
    fn stopped(&self, what: &str) -> anyhow::Error {
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

    /// Logs the steps since the last window, when the run stops before the window's end.
    fn log_unlogged_steps(&mut self) -> Result<()> {
        match self.window.examples {
            0 => Ok(()),
            _ => self.log_window(),
        }
    }

    /// Logs the window's mean losses, rates and throughput, and shows them on the bar.
    fn log_window(&mut self) -> Result<()> {
        // Reading the losses back waits for the device's queued work: the steps' time too.
        let settle_started = Instant::now();
        self.settle_losses()?;
        self.window.seconds += settle_started.elapsed().as_secs_f64();
        let seconds = self.window.seconds.max(1e-9);
        let window = &self.window;
        let loss =
            window.mean_losses().into_iter().map(|(t, mean)| (self.tasks[t].source().name.clone(), mean)).collect();
        let rates = self.optimizer.learning_rates();
        let record = StepRecord {
            step: self.state.step,
            epoch: self.length.epoch(self.state.step),
            loss,
            grad_norm: window.grad_norm(),
            // The "/no-decay" twins share their group's rate.
            lr: rates.iter().filter(|(n, _)| !n.ends_with("/no-decay")).cloned().collect(),
            examples_per_sec: window.examples as f64 / seconds,
            tokens_per_sec: window.tokens as f64 / seconds,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        let top_lr =
            rates.iter().find(|(n, _)| n.starts_with("layer.")).or(rates.first()).map(|(_, lr)| *lr).unwrap_or(0.0);
        let losses: Vec<String> = record.loss.iter().map(|(n, l)| format!("{n} {l:.3}")).collect();
        self.bar.set_message(format!(
            "loss {} | lr {top_lr:.1e} | {:.0} ex/s",
            losses.join(" "),
            record.examples_per_sec
        ));
        if let Some(line) = self.plain_progress.as_mut().and_then(|p| p.line(&record, self.length.total_steps, top_lr))
        {
            crate::stderrln!("{line}");
        }
        self.log.write(&LogRecord::Step(record))?;
        self.window = Window::new(self.tasks.len());
        Ok(())
    }

    fn evaluation_due(&self) -> bool {
        let step = self.state.step;
        step.is_multiple_of(self.length.eval_interval) || step == self.length.total_steps
    }

    /// Scores the dev sets, keeps `best/` when the mean main metric improved, always saves a
    /// resumable `last/`, and decides on early stopping.
    fn evaluate_and_save(&mut self) -> Result<AfterEvaluation> {
        let step = self.state.step;
        let (evaluation, trained_heads) = self.score_dev()?;
        let save_started = Instant::now();
        self.keep_if_best(evaluation.as_ref())?;
        let patience_spent = self.settings.patience.is_some_and(|p| self.state.evals_without_improvement >= p);
        // Patience spent at the last step is no early stop: the run ends there anyway.
        let early_stop = evaluation.is_some() && patience_spent && step < self.length.total_steps;
        if early_stop {
            trained_heads.lines.iter().for_each(|line| self.say(line));
        } else if step < self.length.total_steps {
            // Training goes on from the heads it trained (and `last/` resumes from them).
            trained_heads.restore();
        }
        self.save_last(evaluation.as_ref())?;
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
        // A NaN score (a correlation of NaN cosines) is beaten by any number.
        let improved = self.state.best.as_ref().is_none_or(|b| {
            e.mean_main_metric > b.mean_main_metric || (b.mean_main_metric.is_nan() && !e.mean_main_metric.is_nan())
        });
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
    fn save_last(&mut self, evaluation: Option<&Evaluation>) -> Result<()> {
        self.check_before_save()?;
        if !self.is_main() {
            self.last_saved_step = Some(self.state.step);
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

    /// After a stop signal (Ctrl-C, SIGTERM, SIGHUP): save `last/` (unless this step just did)
    /// and say how to resume.
    /// A run that `--overwrite` set aside and no save replaced yet comes back instead: the
    /// first save would delete it, and the docs promise it back until then.
    fn stop_on_signal(mut self, signal: i32, saved: bool) -> anyhow::Error {
        if !saved && self.new_run.as_ref().is_some_and(NewRun::replaces_a_run) {
            return self.give_back_replaced_run(signal);
        }
        if !saved {
            if let Err(e) = self.save_last(None) {
                return e;
            }
        }
        self.bar.finish_and_clear();
        if !self.is_main() {
            return Interrupted { signal }.into();
        }
        let torchrun = match self.group.map(ProcessGroup::world) {
            Some(world) => format!(
                "\n  e.g. on one machine: torchrun --no-python --nproc-per-node {world} {} train --resume {}",
                self.program(),
                self.run.root.display()
            ),
            None => String::new(),
        };
        crate::stderrln!(
            "stopped by {} after step {} of {}; saved a resumable checkpoint in {}\n{}{torchrun}",
            signal_name(signal),
            self.state.step,
            self.length.total_steps,
            self.run.last().display(),
            self.how_to_resume()
        );
        Interrupted { signal }.into()
    }

    /// Stops before the first save, dropping the new run: the run it replaced comes back.
    fn give_back_replaced_run(mut self, signal: i32) -> anyhow::Error {
        self.bar.finish_and_clear();
        drop(self.new_run.take());
        crate::stderrln!(
            "stopped by {} after step {} of {}, before this run's first save: nothing was saved, and the run --overwrite replaced is back in {} (--save-every N saves sooner)",
            signal_name(signal),
            self.state.step,
            self.length.total_steps,
            self.run.root.display()
        );
        Interrupted { signal }.into()
    }

    /// The program as this run was started (`sentence-mtl`, or the path it was run by).
    fn program(&self) -> &str {
        self.options.command_line.first().map_or("sentence-mtl", String::as_str)
    }

    /// `continue with: sentence-mtl train --resume RUN`, in a launch as the same launch.
    fn how_to_resume(&self) -> String {
        let resume = format!("{} train --resume {}", self.program(), self.run.root.display());
        match self.group.map(ProcessGroup::world) {
            Some(world) => format!("continue with the same launch of {world} processes, each running: {resume}"),
            None => format!("continue with: {resume}"),
        }
    }

    /// Makes sure `best/` exists, then logs the summary: a log that ends in a summary is a
    /// finished run, which `--resume` refuses, so nothing may be left to write after it.
    fn finish(mut self) -> Result<TrainOutcome> {
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
            model: self.loaded,
            run: self.run,
        })
    }

    /// The checkpoint's spec: the model's, with the run's settings and these dev metrics.
    fn spec_with(&self, evaluation: Option<&Evaluation>) -> ModelSpec {
        let mut spec = self.loaded.spec.clone();
        spec.training = serde_json::to_value(self.settings).ok();
        // `--precision auto` as it resolved on the machine that trained.
        if let Some(serde_json::Value::Object(training)) = &mut spec.training {
            training.insert("precision_used".into(), serde_json::Value::String(self.precision.to_string()));
        }
        spec.metrics = evaluation.and_then(|e| serde_json::to_value(e).ok());
        spec
    }
}
