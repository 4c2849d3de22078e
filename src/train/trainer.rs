//! The training loop: alternating task batches, AdamW with per-group rates and a warm-up/
//! decay schedule, clipping, accumulation, periodic dev evaluation, best/last checkpoints,
//! resumable state, and a clean stop on Ctrl-C/SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde_json::json;
use tch::{Kind, Tensor};

use crate::checkpoint::{self, TrainableModel, TrainingSpec};
use crate::data::batching::pad_batch;
use crate::data::sampler::{SamplingStrategy, TaskSampler};
use crate::device::{self, DeviceChoice};
use crate::model::loaded::LoadedModel;
use crate::model::spec::ModelSpec;
use crate::precision;
use crate::progress::Progress;
use crate::report::table::Table;

use super::evaluate::{evaluate, Evaluation};
use super::freeze::FreezeRule;
use super::interrupt::{signal_name, Interrupted, StopOnSignal};
use super::optimizer::AdamW;
use super::param_groups::{build_groups, group_table, human_count, parameter_counts, LearningRates};
use super::run_log::RunLog;
use super::schedule::linear_warmup_decay;
use super::settings::TrainSettings;
use super::state::{FileFingerprint, TrainerState};
use super::task_data::TaskData;

/// The files of a run directory.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn best(&self) -> PathBuf {
        self.root.join("best")
    }
    pub fn last(&self) -> PathBuf {
        self.root.join("last")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("train_log.jsonl")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }

    /// Creates the run directory. An existing non-empty one is refused unless `overwrite`,
    /// and then only the files a run writes are removed; anything else stays.
    fn create(root: &Path, overwrite: bool) -> Result<Self> {
        let run = Self { root: root.to_path_buf() };
        let non_empty = root.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false);
        if non_empty {
            if !overwrite {
                bail!(
                    "run directory {} already exists and is not empty; continue it with --resume {}, pass --overwrite to replace its run, or choose another --out",
                    root.display(),
                    root.display()
                );
            }
            for dir in [run.best(), run.last()] {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
                }
            }
            for file in [run.log(), run.settings()] {
                if file.exists() {
                    std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
                }
            }
        }
        std::fs::create_dir_all(root).with_context(|| format!("cannot create run directory {}", root.display()))?;
        run.remove_stale_staging();
        Ok(run)
    }

    /// An existing run to resume: it needs its settings and a resumable `last/`.
    fn open(root: &Path) -> Result<Self> {
        let run = Self { root: root.to_path_buf() };
        if !run.settings().is_file() {
            bail!("{} is not a sentence-mtl run directory (no settings.json)", root.display());
        }
        if !run.last().join(super::state::STATE_FILE).is_file() {
            bail!("{} has no resumable checkpoint (last/{} is missing)", root.display(), super::state::STATE_FILE);
        }
        run.remove_stale_staging();
        Ok(run)
    }

    /// Staging folders left by a process killed while saving (`.last.new-<pid>`).
    fn remove_stale_staging(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if (name.starts_with(".best.") || name.starts_with(".last.")) && entry.path().is_dir() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// The settings a run was started with.
    pub fn read_settings(&self) -> Result<TrainSettings> {
        let text = std::fs::read_to_string(self.settings())
            .with_context(|| format!("cannot read {}", self.settings().display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)?;
        serde_json::from_value(value["settings"].clone())
            .with_context(|| format!("{} is damaged", self.settings().display()))
    }
}

/// How a run ended.
pub struct TrainOutcome {
    /// The model as it is at the end of training (the weights saved in `last/`).
    pub model: LoadedModel,
    pub run: RunDir,
    pub steps: usize,
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
}

/// Starts a new run.
pub fn train(settings: &TrainSettings, options: &RunOptions) -> Result<TrainOutcome> {
    let tasks: Vec<TaskData> = settings.tasks.iter().map(TaskData::read).collect::<Result<_>>()?;
    let run = RunDir::create(&settings.out, options.overwrite)?;
    let settings_json =
        json!({ "settings": settings, "command_line": options.command_line, "version": env!("CARGO_PKG_VERSION") });
    crate::atomic_write::write_file(&run.settings(), serde_json::to_string_pretty(&settings_json)?.as_bytes())?;
    run_loop(settings, options, run, tasks, None)
}

/// Continues an interrupted run from its `last/` checkpoint with the run's own settings
/// (optionally on another device or thread count).
pub fn resume(
    root: &Path,
    options: &RunOptions,
    device: Option<DeviceChoice>,
    threads: Option<usize>,
) -> Result<TrainOutcome> {
    let run = RunDir::open(root)?;
    let mut settings = run.read_settings()?;
    if let Some(device) = device {
        settings.device = device;
    }
    if threads.is_some() {
        settings.threads = threads;
    }
    let tasks: Vec<TaskData> = settings.tasks.iter().map(TaskData::read).collect::<Result<_>>()?;
    let last = run.last();
    run_loop(&settings, options, run, tasks, Some(last))
}

fn data_fingerprints(settings: &TrainSettings) -> Result<Vec<FileFingerprint>> {
    let mut out = Vec::new();
    for task in &settings.tasks {
        out.push(FileFingerprint::of(&task.train)?);
        if let Some(dev) = &task.dev {
            out.push(FileFingerprint::of(dev)?);
        }
    }
    Ok(out)
}

/// Where a run's time went (training steps only, evaluations, checkpoint writes) and how
/// many real and padded tokens the steps processed; logged as the run's `summary` record.
#[derive(Default)]
struct Timing {
    train: f64,
    eval: f64,
    save: f64,
    tokens: usize,
    padded_tokens: usize,
}

/// Loss and throughput since the last log line.
struct Window {
    loss_sum: Vec<f64>,
    batches: Vec<usize>,
    examples: usize,
    tokens: usize,
    started: Instant,
}

impl Window {
    fn new(tasks: usize) -> Self {
        Self { loss_sum: vec![0.0; tasks], batches: vec![0; tasks], examples: 0, tokens: 0, started: Instant::now() }
    }
    fn mean_losses(&self, tasks: &[TaskData]) -> serde_json::Map<String, serde_json::Value> {
        tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| self.batches[*i] > 0)
            .map(|(i, t)| (t.source.name.clone(), json!(self.loss_sum[i] / self.batches[i] as f64)))
            .collect()
    }
}

fn run_loop(
    settings: &TrainSettings,
    options: &RunOptions,
    run: RunDir,
    mut tasks: Vec<TaskData>,
    resume_from: Option<PathBuf>,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    let say = |text: &str| {
        if !options.quiet {
            eprintln!("{text}");
        }
    };
    device::set_threads(settings.threads)?;
    let device = settings.device.resolve()?;
    precision::check(settings.precision, device)?;

    tch::manual_seed(settings.seed as i64);
    let wanted = TrainingSpec {
        pooling: settings.pooling,
        projection_dim: settings.projection_dim,
        max_length: settings.max_length,
        tasks: tasks.iter().map(TaskData::spec).collect(),
    };
    let start_from = match &resume_from {
        Some(last) => last.to_string_lossy().into_owned(),
        None => settings.model.clone(),
    };
    let TrainableModel { model, loaded, new_tensors } = checkpoint::load_for_training(&start_from, device, wanted)?;
    if resume_from.is_some() && !new_tensors.is_empty() {
        bail!("{} does not hold every tensor of the run's model (missing {})", start_from, new_tensors.join(", "));
    }
    let num_layers = loaded.config.num_layers() as usize;
    for task in &mut tasks {
        task.tokenize(&loaded.tokenizer, settings.max_length);
    }
    let task_names: Vec<&str> = tasks.iter().map(|t| t.source.name.as_str()).collect();
    FreezeRule::validate(&settings.freeze, num_layers, &task_names)?;
    FreezeRule::apply(&settings.freeze, &model.vs);

    let lrs = LearningRates {
        backbone: settings.lr_backbone,
        projection: settings.lr_projection,
        heads: settings.lr_heads,
        layer_decay: settings.layer_decay,
    };
    let (trainable, total) = parameter_counts(&model.vs);
    if !options.quiet {
        print_overview(settings, &loaded, &model.vs, &tasks, &new_tensors, num_layers, &lrs, device, trainable, total)?;
    }
    let mut log = RunLog::open(&run.log())?;

    if trainable == 0 {
        say("no trainable parameter (--freeze all): evaluating only, no training step");
        let evaluation = evaluate(&loaded, &tasks, settings.eval_batch_size, 0)?;
        if let Some(e) = &evaluation {
            log.write(&json!({"type": "eval", "step": 0, "epoch": 0.0, "tasks": e.tasks, "mean_macro_f1": e.mean_macro_f1, "best": true}))?;
            print_evaluation(e, &ProgressBar::hidden(), options.quiet);
        }
        let spec = spec_with(&loaded, settings, evaluation.as_ref());
        checkpoint::save(&run.last(), &loaded, &spec, &loaded.dir)?;
        checkpoint::save(&run.best(), &loaded, &spec, &loaded.dir)?;
        return Ok(TrainOutcome {
            model: loaded,
            run,
            steps: 0,
            best: evaluation,
            seconds: started.elapsed().as_secs_f64(),
            examples: 0,
        });
    }

    let groups = build_groups(&model.vs, num_layers, &lrs, settings.weight_decay)?;
    let mut optimizer = AdamW::new(groups);
    let lengths = tasks.iter().map(|t| t.train_tokens.iter().map(Vec::len).collect()).collect();
    let fingerprints = data_fingerprints(settings)?;
    let mut state = TrainerState {
        step: 0,
        micro_batches: 0,
        examples: 0,
        sampler: TaskSampler::new(settings.sampling, settings.batch_size, lengths, settings.seed),
        best: None,
        evals_without_improvement: 0,
        data: fingerprints.clone(),
    };
    // The original model folder provides config and tokenizer files for new checkpoints.
    let mut source_dir = loaded.dir.clone();
    if let Some(last) = &resume_from {
        state = TrainerState::read(last, &mut optimizer)?;
        if state.data != fingerprints {
            bail!("the training or dev data changed since this run started (compare {} with the files now); resuming would not continue the same run", run.settings().display());
        }
        source_dir = last.clone();
        say(&format!("resuming {} at step {}", run.root.display(), state.step));
    }

    let steps_per_epoch = state.sampler.batches_per_epoch().div_ceil(settings.grad_accum).max(1);
    let total_steps = settings.max_steps.unwrap_or(settings.epochs * steps_per_epoch);
    let warmup = settings.warmup_steps.unwrap_or((settings.warmup_ratio * total_steps as f64).ceil() as usize);
    say(&format!(
        "training: {total_steps} optimizer steps ({steps_per_epoch} per epoch, {} sampling, batch {} x {} accumulation), warm-up {warmup} steps",
        match settings.sampling {
            SamplingStrategy::RoundRobin => "round-robin".to_string(),
            SamplingStrategy::Proportional => "proportional".to_string(),
            SamplingStrategy::Temperature(t) => format!("temperature T={t}"),
        },
        settings.batch_size,
        settings.grad_accum
    ));

    let mut batch_plan = match &options.batch_plan {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let save_last = |state: &TrainerState, optimizer: &AdamW, evaluation: Option<&Evaluation>| -> Result<()> {
        let spec = spec_with(&loaded, settings, evaluation);
        checkpoint::save_with(&run.last(), &loaded, &spec, &source_dir, |folder| state.write(folder, optimizer))
    };
    let progress = Progress::new(options.quiet);
    let pad_id = loaded.tokenizer.pad_id();
    let mut last_saved_step: Option<usize> = resume_from.as_ref().map(|_| state.step);
    let mut window = Window::new(tasks.len());
    let mut bar = ProgressBar::hidden();
    let mut run_examples = 0usize;
    let mut timing = Timing::default();
    let signals = StopOnSignal::install();

    while state.step < total_steps {
        let step = state.step;
        if step.is_multiple_of(steps_per_epoch) || bar.is_hidden() {
            bar.finish_and_clear();
            let epoch_end = (step / steps_per_epoch + 1) * steps_per_epoch;
            bar = progress.bar((epoch_end.min(total_steps) - step) as u64, "steps");
            bar.set_prefix(format!("epoch {}", step / steps_per_epoch + 1));
        }
        let step_started = Instant::now();
        optimizer.set_lr_factor(linear_warmup_decay(step, warmup, total_steps));
        for _ in 0..settings.grad_accum {
            let (t, rows) = state.sampler.next_batch();
            let task = &tasks[t];
            if let Some(plan) = &mut batch_plan {
                writeln!(plan, "{}", json!({"step": step, "task": task.source.name, "rows": rows}))?;
            }
            let sequences: Vec<&[i64]> = rows.iter().map(|&r| task.train_tokens[r].as_slice()).collect();
            let (ids, mask) = pad_batch(&sequences, pad_id, device);
            let targets =
                Tensor::from_slice(&rows.iter().map(|&r| task.train_classes[r]).collect::<Vec<_>>()).to_device(device);
            // Dropout masks depend only on (seed, batch number): a resumed run draws the same ones.
            tch::manual_seed(settings.seed as i64 + 1 + state.micro_batches as i64);
            state.micro_batches += 1;
            let logits = precision::autocast(settings.precision, || {
                let forward = loaded.forward();
                forward.logits(&forward.features_t(&ids, &mask, true)?, &task.source.name)
            })?;
            let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(&targets);
            let loss_value = f64::try_from(&loss)?;
            if !loss_value.is_finite() {
                bail!(
                    "training stopped: the loss of task '{}' became {loss_value} at step {} (learning rate too high?); {}",
                    task.source.name,
                    step + 1,
                    match last_saved_step {
                        Some(s) => format!("the last good checkpoint is {} (step {s})", run.last().display()),
                        None => "no checkpoint had been saved yet".to_string(),
                    }
                );
            }
            (loss * (task.source.weight / settings.grad_accum as f64)).backward();
            window.loss_sum[t] += loss_value;
            window.batches[t] += 1;
            window.examples += rows.len();
            let tokens = sequences.iter().map(|s| s.len()).sum::<usize>();
            window.tokens += tokens;
            timing.tokens += tokens;
            timing.padded_tokens += sequences.len() * sequences.iter().map(|s| s.len()).max().unwrap_or(0);
            state.examples += rows.len();
            run_examples += rows.len();
        }
        let grad_norm = optimizer.clip_grad_norm(settings.max_grad_norm)?;
        optimizer.step()?;
        optimizer.zero_grad();
        state.step += 1;
        let step = state.step;
        timing.train += step_started.elapsed().as_secs_f64();
        bar.inc(1);

        if step.is_multiple_of(settings.log_every) || step == total_steps {
            let seconds = window.started.elapsed().as_secs_f64().max(1e-9);
            let losses = window.mean_losses(&tasks);
            let lrs = optimizer.learning_rates();
            let top_lr =
                lrs.iter().find(|(n, _)| n.starts_with("layer.")).or(lrs.first()).map(|(_, lr)| *lr).unwrap_or(0.0);
            let rate = window.examples as f64 / seconds;
            log.write(&json!({
                "type": "step", "step": step, "epoch": step as f64 / steps_per_epoch as f64,
                "loss": losses, "grad_norm": grad_norm,
                // The "/no-decay" twins share their group's rate.
                "lr": lrs.iter().filter(|(n, _)| !n.ends_with("/no-decay")).map(|(n, lr)| (n.clone(), json!(lr))).collect::<serde_json::Map<_, _>>(),
                "examples_per_sec": rate, "tokens_per_sec": window.tokens as f64 / seconds,
                "elapsed_s": started.elapsed().as_secs_f64(),
            }))?;
            let loss_text: Vec<String> =
                losses.iter().map(|(n, l)| format!("{n} {:.3}", l.as_f64().unwrap_or(f64::NAN))).collect();
            bar.set_message(format!("loss {} | lr {top_lr:.1e} | {rate:.0} ex/s", loss_text.join(" ")));
            window = Window::new(tasks.len());
        }

        let eval_now = match settings.eval_every {
            Some(n) => step.is_multiple_of(n),
            None => step.is_multiple_of(steps_per_epoch),
        } || step == total_steps;
        let mut saved = false;
        if eval_now {
            let eval_started = Instant::now();
            let evaluation = evaluate(&loaded, &tasks, settings.eval_batch_size, step)?;
            timing.eval += eval_started.elapsed().as_secs_f64();
            let improved = match (&evaluation, &state.best) {
                (Some(e), Some(b)) => e.mean_macro_f1 > b.mean_macro_f1,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if let Some(e) = &evaluation {
                log.write(&json!({
                    "type": "eval", "step": step, "epoch": step as f64 / steps_per_epoch as f64,
                    "tasks": e.tasks, "mean_macro_f1": e.mean_macro_f1, "best": improved,
                }))?;
                print_evaluation(e, &bar, options.quiet);
            }
            let save_started = Instant::now();
            if improved {
                let spec = spec_with(&loaded, settings, evaluation.as_ref());
                checkpoint::save(&run.best(), &loaded, &spec, &source_dir)?;
                state.best = evaluation.clone();
                state.evals_without_improvement = 0;
            } else if evaluation.is_some() {
                state.evals_without_improvement += 1;
            }
            save_last(&state, &optimizer, evaluation.as_ref())?;
            timing.save += save_started.elapsed().as_secs_f64();
            saved = true;
            if evaluation.is_some() && settings.patience.is_some_and(|p| state.evals_without_improvement >= p) {
                bar.finish_and_clear();
                say(&format!(
                    "early stopping at step {step}: no better mean macro-F1 in {} evaluations",
                    state.evals_without_improvement
                ));
                break;
            }
        }
        if !saved && settings.save_every.is_some_and(|n| step.is_multiple_of(n)) {
            save_last(&state, &optimizer, None)?;
            saved = true;
        }
        if saved {
            last_saved_step = Some(step);
        }
        if let Some(signal) = signals.requested() {
            if !saved {
                save_last(&state, &optimizer, None)?;
            }
            bar.finish_and_clear();
            eprintln!(
                "stopped by {} after step {step} of {total_steps}; saved a resumable checkpoint in {}\ncontinue with: sentence-mtl train --resume {}",
                signal_name(signal),
                run.last().display(),
                run.root.display()
            );
            return Err(Interrupted { signal }.into());
        }
    }
    drop(signals);
    log.write(&json!({
        "type": "summary",
        "step": state.step,
        "examples": run_examples,
        "tokens": timing.tokens,
        "padded_tokens": timing.padded_tokens,
        "train_seconds": timing.train,
        "eval_seconds": timing.eval,
        "save_seconds": timing.save,
        "examples_per_sec": run_examples as f64 / timing.train.max(1e-9),
        "tokens_per_sec": timing.tokens as f64 / timing.train.max(1e-9),
    }))?;
    bar.finish_and_clear();
    if let Some(mut plan) = batch_plan {
        plan.flush()?;
    }
    if state.best.is_none() {
        // No dev set: the final weights are the best we know.
        let spec = spec_with(&loaded, settings, None);
        checkpoint::save(&run.best(), &loaded, &spec, &source_dir)?;
        say("no dev sets: best/ holds the final weights, as last/ does");
    }
    Ok(TrainOutcome {
        model: loaded,
        run,
        steps: state.step,
        best: state.best,
        seconds: started.elapsed().as_secs_f64(),
        examples: run_examples,
    })
}

#[allow(clippy::too_many_arguments)]
fn print_overview(
    settings: &TrainSettings,
    loaded: &LoadedModel,
    vs: &tch::nn::VarStore,
    tasks: &[TaskData],
    new_tensors: &[String],
    num_layers: usize,
    lrs: &LearningRates,
    device: tch::Device,
    trainable: i64,
    total: i64,
) -> Result<()> {
    eprintln!(
        "model: {} ({} layers, {} pooling, projection {}), on {}",
        loaded.spec.base_model,
        num_layers,
        loaded.spec.pooling,
        loaded.spec.projection_dim.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
        device::describe(device)
    );
    if !new_tensors.is_empty() {
        let mut new_layers: Vec<String> =
            new_tensors.iter().filter_map(|n| n.rsplit_once('.').map(|(layer, _)| layer.to_string())).collect();
        new_layers.dedup();
        eprintln!("new layers (randomly initialised): {}", new_layers.join(", "));
    }
    let mut task_table = Table::new(["task", "train rows", "dev rows", "classes", "loss weight"]);
    for t in tasks {
        task_table.row([
            t.source.name.clone(),
            t.train.len().to_string(),
            t.dev.as_ref().map(|d| d.data.len().to_string()).unwrap_or_else(|| "-".into()),
            t.labels.len().to_string(),
            t.source.weight.to_string(),
        ]);
    }
    eprint!("{}", task_table.render());
    eprint!("{}", group_table(vs, num_layers, lrs, settings.weight_decay)?);
    eprintln!(
        "trainable parameters: {} of {} ({:.1}%)",
        human_count(trainable),
        human_count(total),
        100.0 * trainable as f64 / total.max(1) as f64
    );
    Ok(())
}

fn spec_with(loaded: &LoadedModel, settings: &TrainSettings, evaluation: Option<&Evaluation>) -> ModelSpec {
    let mut spec = loaded.spec.clone();
    spec.training = serde_json::to_value(settings).ok();
    spec.metrics = evaluation.and_then(|e| serde_json::to_value(e).ok());
    spec
}

fn print_evaluation(evaluation: &Evaluation, bar: &ProgressBar, quiet: bool) {
    if quiet {
        return;
    }
    let mut table = Table::new(["task", "dev accuracy", "dev macro-F1", "examples"]);
    for (name, score) in &evaluation.tasks {
        table.row([
            name.clone(),
            format!("{:.4}", score.accuracy),
            format!("{:.4}", score.macro_f1),
            score.examples.to_string(),
        ]);
    }
    let text = format!("step {}: mean macro-F1 {:.4}\n{}", evaluation.step, evaluation.mean_macro_f1, table.render());
    if bar.is_hidden() {
        eprint!("{text}");
    } else {
        bar.suspend(|| eprint!("{text}"));
    }
}
