//! `train`'s flags turned into validated, serialisable settings (saved as `settings.json`
//! in the run directory and inside every checkpoint).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::checkpoint::folder_max_length;
use crate::cli::task_values::{names_equal_but_for_case, PerTask, TaskArg};
use crate::cli::TrainArgs;
use crate::data::batching::BatchLimit;
use crate::data::sampler::SamplingStrategy;
use crate::device::DeviceChoice;
use crate::model::pooling::Pooling;
use crate::model::spec::{TaskKind, DEFAULT_MAX_LENGTH};
use crate::precision::Precision;
use crate::tasks::classification::ClassWeights;
use crate::tasks::similarity::SimilarityLoss;
use crate::tasks::{kind_of_file, LabelColumns};
use crate::train::freeze::FreezeRule;
use crate::train::param_groups::LearningRates;
use crate::train::recipe::{Recipe, SMALL_RUN_ROWS};
use crate::train::schedule::LrSchedule;
use crate::train::small_data::SmallData;

/// One task of a run: where its data is and how much its loss counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSource {
    pub name: String,
    pub train: PathBuf,
    pub dev: Option<PathBuf>,
    /// `--text-column` and `--label-column` of a classification task (`None` for the other
    /// kinds, whose columns are fixed; runs from before recorded `text`/`label` for them too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    pub weight: f64,
    /// `--task-share`: the task's share of the batches relative to the other tasks'.
    #[serde(default = "one")]
    pub share: f64,
    /// `--task-kind`, else the training file's header's kind (resolved when the run starts;
    /// `None` only in settings of runs from before task kinds, which were classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TaskKind>,
    /// `--similarity-loss` (similarity tasks; CoSENT when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_loss: Option<SimilarityLoss>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainSettings {
    pub model: String,
    pub tasks: Vec<TaskSource>,
    pub out: PathBuf,
    pub pooling: Option<Pooling>,
    pub projection_dim: Option<i64>,
    pub max_length: usize,
    pub sampling: SamplingStrategy,
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    /// `--batch-tokens`: batches limited by padded tokens instead of `batch_size` rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_tokens: Option<usize>,
    pub grad_accum: usize,
    /// `--recipe`: where the optimisation values below came from unless a flag set them.
    #[serde(default = "seed_recipe")]
    pub recipe: Recipe,
    pub lr_backbone: f64,
    /// Whether `lr_backbone` is the recipe's for the run's size (no `--lr-backbone`): set by
    /// [`TrainSettings::fit_backbone_rate`] once the training rows are counted.
    #[serde(default)]
    pub lr_backbone_by_size: bool,
    pub lr_projection: f64,
    pub lr_heads: f64,
    pub layer_decay: f64,
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub label_smoothing: f64,
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// `--small-data`; runs from before the mode had none.
    #[serde(default = "small_data_off")]
    pub small_data: SmallData,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub warmup_steps: Option<usize>,
    pub max_grad_norm: f64,
    pub freeze: Vec<FreezeRule>,
    pub seed: u64,
    pub eval_every: Option<usize>,
    pub patience: Option<usize>,
    pub log_every: usize,
    #[serde(default)]
    pub save_every: Option<usize>,
    pub eval_batch_size: usize,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub threads: Option<usize>,
    /// Scale of pairs tasks' cosine similarities in their loss.
    #[serde(default = "default_pairs_scale")]
    pub pairs_scale: f64,
    /// `--gather-across-ranks`: in a data-parallel run, pairs tasks' in-batch negatives come
    /// from every rank's share of the batch, not only this rank's.
    #[serde(default)]
    pub gather_across_ranks: bool,
    /// `--dropout`: the backbone's dropout probabilities in training, instead of config.json's.
    #[serde(default)]
    pub dropout: Option<f64>,
    /// Whether a frozen prefix of the backbone is computed once (`--no-feature-cache` turns it off).
    #[serde(default = "yes")]
    pub feature_cache: bool,
    /// `--feature-cache-budget`, in MB.
    #[serde(default = "default_feature_cache_budget")]
    pub feature_cache_budget_mb: u64,
}

impl TaskSource {
    /// The column a classification task's texts are in.
    pub fn text_column(&self) -> &str {
        self.text_column.as_deref().unwrap_or("text")
    }

    /// The column a classification task's labels are in.
    pub fn label_column(&self) -> &str {
        self.label_column.as_deref().unwrap_or("label")
    }
}

fn one() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

fn default_feature_cache_budget() -> u64 {
    crate::cli::DEFAULT_FEATURE_CACHE_BUDGET_MB
}

fn small_data_off() -> SmallData {
    SmallData::Off
}

/// Runs from before recipes used the seed's values.
fn seed_recipe() -> Recipe {
    Recipe::Seed
}

fn default_pairs_scale() -> f64 {
    crate::tasks::losses::DEFAULT_SCALE
}

/// The largest `--pairs-scale`.
const MAX_PAIRS_SCALE: f64 = 10_000.0;

fn positive_finite(flag: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} must be a positive number, got {value}");
    }
    Ok(())
}

fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

impl TrainSettings {
    /// How big a training batch may be.
    pub fn batch_limit(&self) -> BatchLimit {
        match self.batch_tokens {
            Some(n) => BatchLimit::Tokens(n),
            None => BatchLimit::Rows(self.batch_size),
        }
    }

    /// Sets the recipe's backbone rate for a run of `training_rows` (unless `--lr-backbone`
    /// gave one).
    pub fn fit_backbone_rate(&mut self, training_rows: usize) {
        if self.lr_backbone_by_size {
            self.lr_backbone = self.recipe.values().backbone_rate(training_rows);
        }
    }

    /// The line that says the backbone got the recipe's small-run rate, when it did.
    pub fn backbone_rate_note(&self, training_rows: usize) -> Option<String> {
        let recipe = self.recipe.values();
        // A frozen backbone takes no rate: saying which one it got would only confuse.
        let backbone_frozen = self.freeze.iter().any(|r| matches!(r, FreezeRule::Backbone | FreezeRule::All));
        let small_rate = training_rows < SMALL_RUN_ROWS && recipe.rate_depends_on_size();
        (self.lr_backbone_by_size && !backbone_frozen && small_rate).then(|| {
            format!(
                "backbone learning rate {:e}: the {} recipe's rate for runs of fewer than {SMALL_RUN_ROWS} training rows (this one has {training_rows}; {:e} from {SMALL_RUN_ROWS}); --lr-backbone sets another",
                self.lr_backbone, self.recipe, recipe.lr_backbone
            )
        })
    }

    /// The base rates of the optimizer groups.
    pub fn learning_rates(&self) -> LearningRates {
        LearningRates {
            backbone: self.lr_backbone,
            projection: self.lr_projection,
            heads: self.lr_heads,
            layer_decay: self.layer_decay,
        }
    }

    pub fn from_args(args: &TrainArgs) -> Result<Self> {
        let tasks = task_sources(args)?;
        let recipe = args.recipe.values();
        let freeze = FreezeRule::combine(&args.freeze)?;
        let model = args.model.clone().context("--model is required")?;
        let settings = Self {
            tasks,
            out: args.out.clone().context("--out is required")?,
            pooling: args.pooling,
            projection_dim: args.projection_dim,
            max_length: args.max_length.unwrap_or_else(|| default_max_length(&model)),
            model,
            sampling: args.sampling.with_temperature(args.temperature)?,
            epochs: args.epochs,
            max_steps: args.max_steps,
            batch_size: args.batch_size,
            batch_tokens: args.batch_tokens,
            grad_accum: args.grad_accum,
            recipe: args.recipe,
            lr_backbone: args.lr_backbone.unwrap_or(recipe.lr_backbone),
            lr_backbone_by_size: args.lr_backbone.is_none() && recipe.rate_depends_on_size(),
            lr_projection: args.lr_projection.unwrap_or(recipe.lr_projection),
            lr_heads: args.lr_heads.unwrap_or(recipe.lr_heads),
            layer_decay: args.layer_decay.unwrap_or(recipe.layer_decay),
            lr_schedule: args.lr_schedule.unwrap_or(recipe.lr_schedule),
            label_smoothing: args.label_smoothing.unwrap_or(recipe.label_smoothing),
            class_weights: args.class_weights,
            small_data: args.small_data,
            weight_decay: args.weight_decay,
            warmup_ratio: args.warmup_ratio.unwrap_or(recipe.warmup_ratio),
            warmup_steps: args.warmup_steps,
            max_grad_norm: args.max_grad_norm,
            freeze,
            seed: args.seed,
            eval_every: args.eval_every,
            patience: args.patience,
            log_every: args.log_every,
            save_every: args.save_every,
            eval_batch_size: args.eval_batch_size,
            device: args.device.device,
            precision: args.precision,
            threads: args.device.threads,
            pairs_scale: args.pairs_scale,
            gather_across_ranks: args.gather_across_ranks,
            dropout: args.dropout,
            feature_cache: !args.no_feature_cache,
            feature_cache_budget_mb: args.feature_cache_budget,
        };
        settings.check_ranges()?;
        Ok(settings)
    }

    /// Makes the data files' relative paths, and a relative model folder that exists there,
    /// paths from `dir` (the folder the run started in): so the run resumes from any folder,
    /// and its checkpoints record where their data was (a hub id stays as it is).
    pub fn resolve_paths(&mut self, dir: &Path) {
        // Without `..` and links where the file is there to ask (a missing one keeps its
        // path for the error that names it).
        let resolved = |path: &Path| dir.join(path).canonicalize().unwrap_or_else(|_| dir.join(path));
        for task in &mut self.tasks {
            task.train = resolved(&task.train);
            task.dev = task.dev.as_deref().map(resolved);
        }
        if Path::new(&self.model).is_relative() && dir.join(&self.model).exists() {
            self.model = resolved(Path::new(&self.model)).to_string_lossy().into_owned();
        }
    }

    /// Refuses a `--batch-size` that leaves a task whose loss compares the rows of a batch
    /// with each other fewer than 2 rows per batch, or, in a launch of `world` ranks, on a
    /// rank: a pairs task's in-batch negatives (each rank contrasts its own rows unless
    /// `--gather-across-ranks`) and a similarity task's CoSENT loss (each rank ranks its own
    /// rows' pairs). One row gives loss 0: nothing trained. `--batch-tokens` budgets are
    /// checked once rows are tokenized.
    pub fn check_rows_per_batch(&self, world: usize) -> Result<()> {
        if self.batch_tokens.is_some() {
            return Ok(());
        }
        for task in &self.tasks {
            let Some((kind, loss, per_rank)) = self.compared_rows(task, world) else { continue };
            if self.batch_size / per_rank >= 2 {
                continue;
            }
            if per_rank == 1 {
                bail!(
                    "--batch-size {}: task '{}' is a {kind} task, whose loss ({loss}) needs at least 2 rows per batch",
                    self.batch_size,
                    task.name
                );
            }
            bail!(
                "--batch-size {} over {world} ranks gives some ranks {} of each batch of task '{}', a {kind} task whose loss ({loss}) needs at least 2 rows on each rank; give --batch-size {} or more{}",
                self.batch_size,
                if self.batch_size < world { "no row" } else { "only 1 row" },
                task.name,
                2 * world,
                if kind == TaskKind::Pairs { ", or --gather-across-ranks" } else { "" }
            );
        }
        Ok(())
    }

    /// For a task whose loss compares a batch's rows with each other: its kind, the loss, and
    /// over how many ranks each batch's rows are compared apart.
    pub fn compared_rows(&self, task: &TaskSource, world: usize) -> Option<(TaskKind, &'static str, usize)> {
        match (task.kind?, task.similarity_loss.unwrap_or_default()) {
            (TaskKind::Pairs, _) => {
                Some((TaskKind::Pairs, "in-batch negatives", if self.gather_across_ranks { 1 } else { world }))
            }
            (TaskKind::Similarity, SimilarityLoss::Cosent) => Some((TaskKind::Similarity, "CoSENT", world)),
            _ => None,
        }
    }

    /// Refuses numbers outside what each flag means, naming the flag (for the command line,
    /// and for a run's `settings.json` when it resumes).
    pub fn check_ranges(&self) -> Result<()> {
        if let Some(d) = self.projection_dim.filter(|&d| d < 0) {
            bail!("--projection-dim must be >= 0, got {d}");
        }
        if !(self.label_smoothing.is_finite() && (0.0..1.0).contains(&self.label_smoothing)) {
            bail!("--label-smoothing must be in [0, 1), got {}", self.label_smoothing);
        }
        positive_finite("--lr-backbone", self.lr_backbone)?;
        positive_finite("--pairs-scale", self.pairs_scale)?;
        // Far above any temperature in use (CLIP caps its scale at 100), and far below where
        // the scaled cosines or their gradients overflow fp32 into a NaN loss.
        if self.pairs_scale > MAX_PAIRS_SCALE {
            bail!(
                "--pairs-scale must be at most {MAX_PAIRS_SCALE} (a softmax temperature of 1e-4), got {}",
                self.pairs_scale
            );
        }
        if let Some(p) = self.dropout {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                bail!("--dropout must be in [0, 1), got {p}");
            }
        }
        positive_finite("--lr-projection", self.lr_projection)?;
        positive_finite("--lr-heads", self.lr_heads)?;
        if !(self.layer_decay.is_finite() && self.layer_decay > 0.0 && self.layer_decay <= 1.0) {
            bail!("--layer-decay must be in (0, 1], got {}", self.layer_decay);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("--weight-decay must be a number >= 0, got {}", self.weight_decay);
        }
        if !(self.warmup_ratio.is_finite() && (0.0..=1.0).contains(&self.warmup_ratio)) {
            bail!("--warmup-ratio must be in [0, 1], got {}", self.warmup_ratio);
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            bail!("--max-grad-norm must be a number >= 0, got {}", self.max_grad_norm);
        }
        at_least_one("--batch-size", self.batch_size)?;
        if let Some(n) = self.batch_tokens {
            at_least_one("--batch-tokens", n)?;
        }
        at_least_one("--eval-batch-size", self.eval_batch_size)?;
        at_least_one("--grad-accum", self.grad_accum)?;
        at_least_one("--log-every", self.log_every)?;
        if self.epochs == 0 && self.max_steps.is_none() {
            bail!("--epochs must be at least 1 (or give --max-steps)");
        }
        if let Some(n) = self.max_steps {
            at_least_one("--max-steps", n)?;
        }
        if let Some(n) = self.eval_every {
            at_least_one("--eval-every", n)?;
        }
        if let Some(n) = self.patience {
            at_least_one("--patience", n)?;
        }
        if let Some(n) = self.save_every {
            at_least_one("--save-every", n)?;
        }
        if self.max_length < 2 {
            bail!("--max-length must be at least 2 ([CLS] and [SEP])");
        }
        Ok(())
    }
}

/// The kind of a task's files: `given` (`--task-kind`) or the training file's header's; the dev
/// file must be of the same kind.
fn task_kind(
    name: &str,
    train: &Path,
    dev: Option<&Path>,
    given: Option<TaskKind>,
    text: &str,
    label: &str,
) -> Result<TaskKind> {
    let columns = LabelColumns { text, label };
    let context = || format!("task '{name}'");
    let kind = kind_of_file(train, given, columns).with_context(context)?;
    if let Some(dev) = dev {
        kind_of_file(dev, Some(kind), columns).with_context(context)?;
    }
    Ok(kind)
}

/// `--max-length` when not given: the checkpoint's own limit when training goes on from one,
/// else 128, or the base model's limit where that is lower (a model of 64 positions), as
/// `encode` caps it.
fn default_max_length(model: &str) -> usize {
    match folder_max_length(model) {
        Some((trained, true)) => trained,
        // A limit below 2 holds no [CLS] and [SEP]: it is no limit a run could keep.
        Some((own, false)) if own >= 2 => own.min(DEFAULT_MAX_LENGTH),
        Some((_, false)) => DEFAULT_MAX_LENGTH,
        None => DEFAULT_MAX_LENGTH,
    }
}

/// A task's `--task-weight` or `--task-share`: 1 when not given, else a finite number
/// that passes `allowed` (described by `rule`).
fn task_number(flag: &str, task: &str, given: Option<&str>, allowed: fn(f64) -> bool, rule: &str) -> Result<f64> {
    let Some(text) = given else { return Ok(1.0) };
    let value: f64 = text.parse().with_context(|| format!("{flag} {task}={text}: not a number"))?;
    if !(value.is_finite() && allowed(value)) {
        bail!("{flag} {task}={text}: must be a finite number {rule}");
    }
    Ok(value)
}

/// `--task NAME=TRAIN.csv[,DEV.csv]` with the per-task kind, column, loss and weight flags
/// applied.
fn task_sources(args: &TrainArgs) -> Result<Vec<TaskSource>> {
    TaskArg::check_unique(&args.tasks)?;
    let names: Vec<&str> = args.tasks.iter().map(|t| t.name.as_str()).collect();
    if let Some((a, b)) = names_equal_but_for_case(&names) {
        bail!("tasks '{a}' and '{b}' differ only in case: `eval --out` could not report them both (its files per task would be one on macOS and Windows); rename one");
    }
    let text_columns = PerTask::resolve("--text-column", &args.text_columns, &names)?;
    let label_columns = PerTask::resolve("--label-column", &args.label_columns, &names)?;
    let weights = PerTask::resolve_named("--task-weight", "NAME=W", &args.task_weights, &names)?;
    let shares = PerTask::resolve_named("--task-share", "NAME=S", &args.task_shares, &names)?;
    let kinds = PerTask::resolve_named("--task-kind", "NAME=KIND", &args.task_kinds, &names)?;
    let losses = PerTask::resolve("--similarity-loss", &args.similarity_losses, &names)?;
    args.tasks
        .iter()
        .map(|task| {
            let mut paths = task.value.split(',').map(str::trim);
            let train = paths
                .next()
                .filter(|p| !p.is_empty())
                .with_context(|| format!("--task {}: no training file", task.text))?;
            let dev = match paths.next() {
                Some("") => bail!(
                    "--task {}: nothing after the comma; give TRAIN.csv,DEV.csv, or TRAIN.csv alone for no dev set",
                    task.text
                ),
                other => other.map(PathBuf::from),
            };
            if paths.next().is_some() {
                bail!("--task {}: expected at most two files (TRAIN.csv,DEV.csv)", task.text);
            }
            let weight = task_number("--task-weight", &task.name, weights.get(&task.name), |w| w >= 0.0, ">= 0")?;
            // Shares count relative to each other; past a million they only overflow sums.
            let in_range = |s: f64| s > 0.0 && s <= 1e6;
            let share =
                task_number("--task-share", &task.name, shares.get(&task.name), in_range, "above 0 and at most 1e6")?;
            let text_column = text_columns.get(&task.name).unwrap_or("text");
            let label_column = label_columns.get(&task.name).unwrap_or("label");
            let given = kinds
                .get(&task.name)
                .map(|k| k.parse::<TaskKind>().with_context(|| format!("--task-kind {}={k}", task.name)))
                .transpose()?;
            let kind = task_kind(&task.name, Path::new(train), dev.as_deref(), given, text_column, label_column)?;
            // Parsed for every task, so that a mistyped loss is refused even where no task uses it.
            let parsed_loss = losses.get(&task.name).map(str::parse::<SimilarityLoss>).transpose()?;
            let similarity_loss = match (losses.get(&task.name), kind) {
                (Some(_), TaskKind::Similarity) => parsed_loss,
                (Some(loss), _) if losses.is_own(&task.name) => {
                    bail!(
                        "--similarity-loss {}={loss}: task '{}' is a {kind} task, not a similarity task",
                        task.name,
                        task.name
                    )
                }
                _ => None,
            };
            if kind == TaskKind::Classification && text_column == label_column {
                bail!(
                    "--text-column and --label-column of task '{}' are both '{text_column}': its texts and labels must be two columns",
                    task.name
                );
            }
            let columns = (kind == TaskKind::Classification).then_some((text_column, label_column));
            Ok(TaskSource {
                name: task.name.clone(),
                train: PathBuf::from(train),
                dev,
                text_column: columns.map(|(text, _)| text.to_string()),
                label_column: columns.map(|(_, label)| label.to_string()),
                weight,
                share,
                kind: Some(kind),
                similarity_loss,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn settings(args: &[&str]) -> TrainSettings {
        let cli =
            Cli::try_parse_from([&["sentence-mtl", "train", "--model", "m", "--out", "o"], args].concat()).unwrap();
        let Command::Train(train) = cli.command else { unreachable!() };
        TrainSettings::from_args(&train).unwrap()
    }

    #[test]
    fn columns_are_recorded_for_classification_tasks_only() {
        let dir = tempfile::tempdir().unwrap();
        let sts = dir.path().join("sts.csv");
        let topics = dir.path().join("topics.csv");
        std::fs::write(&sts, "sentence1,sentence2,score\na,b,1.0\n").unwrap();
        std::fs::write(&topics, "question,topic\na,x\nb,y\n").unwrap();
        let s = settings(&[
            "--task",
            &format!("sts={}", sts.display()),
            "--task",
            &format!("topics={}", topics.display()),
            "--text-column",
            "topics=question",
            "--label-column",
            "topics=topic",
        ]);
        let [sts, topics] = &s.tasks[..] else { panic!("{:?}", s.tasks) };
        assert_eq!((sts.text_column.as_deref(), sts.label_column.as_deref()), (None, None));
        assert_eq!((topics.text_column(), topics.label_column()), ("question", "topic"));
        let saved = serde_json::to_value(&s).unwrap();
        assert!(saved["tasks"][0].get("text_column").is_none(), "{saved}");
    }

    #[test]
    fn only_a_recipe_whose_rate_depends_on_size_fits_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.csv");
        std::fs::write(&data, "text,label\na,x\nb,y\n").unwrap();
        let task = format!("t={}", data.display());
        assert!(settings(&["--task", &task]).lr_backbone_by_size);
        assert!(!settings(&["--task", &task, "--recipe", "seed"]).lr_backbone_by_size);
        assert!(!settings(&["--task", &task, "--lr-backbone", "3e-5"]).lr_backbone_by_size);
    }
}
