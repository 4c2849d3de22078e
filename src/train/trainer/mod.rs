//! The training loop as a small type with named steps: [`Trainer::start`] sets the run up
//! (model, freezing, optimizer, resumed state: the pieces come from `setup.rs`), then each
//! optimizer [`Trainer::step`] runs the accumulated batches, and around it come the logging
//! window, evaluate-and-save, the stop on a signal and [`Trainer::finish`].
//!
//! The loop's parts live beside this file: `step.rs` (one optimizer step), `logging.rs`
//! (the logging window), `saving.rs` (evaluations, checkpoints, the end) and `stopping.rs`
//! (a signal's or a rank's stop, and how to resume).

mod logging;
mod saving;
mod step;
mod stopping;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use tch::Tensor;

use super::evaluate::Evaluation;
use super::feature_cache::RunCaches;
use super::interrupt::StopOnSignal;
use super::log::RunLog;
use super::new_run::NewRun;
use super::optimizer::AdamW;
use super::overview::Overview;
use super::param_groups::{build_groups, parameter_counts};
use super::plain_progress::PlainProgress;
use super::run_dir::RunDir;
use super::run_length::RunLength;
use super::settings::TrainSettings;
use super::setup;
use super::signal_handlers::signal_name;
use super::small_data::{self, SmallTask};
use super::start_up_signals::StartUpSignals;
use super::state::TrainerState;
use super::window::Window;
use crate::data::batching::BatchLimit;
use crate::data::sampler::SamplingStrategy;
use crate::device::DeviceChoice;
use crate::distributed::gradient_sync::GradientSync;
use crate::distributed::{self, CollectiveFailed, ProcessGroup, Reduce};
use crate::model::loaded::LoadedModel;
use crate::model::MultiTaskModel;
use crate::precision::{self, Precision};
use crate::progress::Progress;
use crate::report::table::count;
use crate::tasks::TrainingTask;
use saving::AfterEvaluation;

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
    /// (run's steps, planned steps) when small-data mode lengthened the run.
    pub lengthened: Option<(usize, usize)>,
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
    let main = distributed::is_main(group);
    // Before the folder is touched, so that a signal at any point finds a plan to undo it.
    let signals = main.then(|| StartUpSignals::install(!options.quiet));
    let (run, new_run) = if main {
        setup::check_model_before_overwrite(&settings, options.overwrite)?;
        let (run, new_run) = NewRun::create(&settings.out, options.overwrite, signals.as_ref())?;
        run.write_settings(&settings, &options.command_line)?;
        run.lock()?;
        (run, Some(new_run))
    } else {
        (RunDir { root: settings.out.clone() }, None)
    };
    // settings.json keeps the paths as typed, beside the folder they start from; checkpoints
    // get them resolved, as a resumed run's settings have them (`RunDir::read_settings`).
    settings.resolve_paths(&std::env::current_dir().context("cannot read the current directory")?);
    let settings = &settings;
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
    run.refuse_missing_data(&settings)?;
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
    /// On a rank other than 0: the step of rank 0's latest save, until the next collective
    /// shows that rank 0 came through it (then it is `last_saved_step`).
    unconfirmed_save: Option<usize>,
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
        let device = distributed::device_for(settings.device.resolve(options.quiet || !main)?, group)?;
        let precision = settings.precision.resolve(device)?;
        precision::choose_cpu_kernels(precision);
        let mut prepared = setup::prepare_model(settings, &mut tasks, device, resume_from.as_deref())?;
        let num_layers = prepared.loaded.config.num_layers() as usize;
        let groups = build_groups(&prepared.model.vs, num_layers, &settings.learning_rates(), settings.weight_decay)?;
        let mut optimizer = AdamW::new(groups);
        let world = group.map_or(1, ProcessGroup::world);
        let mut state = setup::initial_state(settings, &tasks, &run, resume_from.as_deref(), &mut optimizer, world)?;
        let names: Vec<&str> = tasks.iter().map(|t| t.source().name.as_str()).collect();
        let small_data = tasks.iter().any(|t| t.small_data());
        let shape = small_data::RunShape::of(small_data, prepared.encoder_frozen);
        let length = RunLength::new(settings, state.sampler.checked_batches_per_epoch(&names)?, shape);
        let resumed_from = resume_from.as_ref().map(|_| state.step);
        let resumed_window = state.window.take();
        prepared.notes.extend(match resume_from.as_deref().map(setup::saved_training) {
            None => setup::start_up_notes(settings, &tasks, world, &options.typed_flags, &prepared.loaded)?,
            Some(saved) => [
                setup::precision_change_note(saved.as_ref(), settings.precision, precision),
                setup::threads_change_note(saved.as_ref(), prepared.loaded.device),
            ]
            .into_iter()
            .flatten()
            .collect(),
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
            let batch_shares = state.sampler.task_shares();
            Overview { settings, prepared: &prepared, tasks: &tasks, precision, batch_shares }.print()?;
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
            unconfirmed_save: None,
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
        if self.stopped_early() {
            // Killed between the early stop's save and its summary: what is left is the end.
            self.say(&format!(
                "the run had stopped early at step {} (--patience) and was interrupted before it ended: it ends there",
                self.state.step
            ));
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
                self.log_window(step == self.length.total_steps)?;
            }
            let mut saved = false;
            if self.evaluation_due() {
                let decision = self.evaluate_and_save()?;
                saved = true;
                if let AfterEvaluation::EarlyStop = decision {
                    if let Some(signal) = signals.requested() {
                        self.say(&format!("{} came as the run stopped early: the run finishes", signal_name(signal)));
                    }
                    break;
                }
            } else if self.settings.save_every.is_some_and(|n| step.is_multiple_of(n)) {
                self.save_last(None)?;
                saved = true;
            }
            let signal = self.agreed_signal(signals.requested())?;
            // Rank 0 reached this collective, so the save before it finished.
            if let Some(step) = self.unconfirmed_save.take() {
                self.last_saved_step = Some(step);
            }
            if let Some(signal) = signal {
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

    /// Whether the run's state is an early stop's: its patience spent before the last step
    /// (an evaluation without improvement that does not stop the run leaves it unspent).
    fn stopped_early(&self) -> bool {
        let spent = self.settings.patience.is_some_and(|p| self.state.evals_without_improvement >= p);
        spent && self.state.step < self.length.total_steps
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
}
