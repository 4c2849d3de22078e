//! What a run needs before its first step: its tasks, the model (new, or the run's `last/`),
//! the feature cache of its frozen layers, the trainer's state (new or resumed), the batch-plan
//! file, and in a data-parallel launch the settings every rank must share. The loop that
//! follows is `trainer.rs`.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::Tensor;

use super::feature_cache::{CacheDepth, FeatureCache, RunCaches};
use super::freeze::FreezeRule;
use super::optimizer::AdamW;
use super::run_dir::RunDir;
use super::settings::TrainSettings;
use super::state::{FileFingerprint, TrainerState};
use crate::checkpoint::{self, TrainableModel, TrainingSpec};
use crate::data::distinct_texts::most_rows_with_one_text;
use crate::data::sampler::{TaskRows, TaskSampler};
use crate::distributed::data_parallel::{self, broadcast_weights};
use crate::distributed::gradient_sync::GradientSync;
use crate::distributed::ProcessGroup;
use crate::model::loaded::LoadedModel;
use crate::model::names;
use crate::model::spec::{ModelSpec, TaskKind};
use crate::model::tokenizer::{truncation_note, SentenceTokenizer};
use crate::model::MultiTaskModel;
use crate::precision::Precision;
use crate::progress::Progress;
use crate::tasks::{self, Frozen, TrainingTask};

/// A cache's sentences (token ids), as passes batched apart ([`FeatureCache::build`]).
type Passes<'a> = Vec<Vec<&'a [i64]>>;

/// What the feature cache will hold, checked against `--feature-cache-budget` before the run
/// shows its start (a refused run prints its one error line alone).
pub(super) struct CachePlan<'t> {
    depth: CacheDepth,
    training: Vec<&'t [i64]>,
    dev: Vec<Vec<i64>>,
    precision: Precision,
}

impl CachePlan<'_> {
    /// The sentences of each cache to build, as passes batched apart: in an fp32 run one
    /// cache, the training sentences then the dev ones; in another precision the training
    /// sentences in it and the dev ones apart, in fp32 (a sentence in both is in each).
    fn caches(&self) -> (Passes<'_>, Option<Passes<'_>>) {
        let dev: Vec<&[i64]> = self.dev.iter().map(Vec::as_slice).collect();
        match self.precision {
            Precision::Fp32 => (vec![self.training.clone(), dev], None),
            _ => (vec![self.training.clone()], Some(vec![dev])),
        }
    }
}

/// The frozen part of the backbone is computed once per training and dev sentence when the
/// run freezes a prefix of it (and neither `--no-feature-cache` nor `--freeze all` says
/// otherwise): training sentences at the training `precision` (resolved), dev sentences in
/// fp32. Refused when it would not fit `--feature-cache-budget` (for a resumed run,
/// `resumed_run`, with what can change on resume).
pub(super) fn plan_feature_cache<'t>(
    settings: &TrainSettings,
    loaded: &LoadedModel,
    tasks: &'t [Box<dyn TrainingTask>],
    precision: Precision,
    resumed_run: Option<&Path>,
) -> Result<Option<CachePlan<'t>>> {
    let Some(depth) = CacheDepth::of(loaded) else { return Ok(None) };
    if !settings.feature_cache || loaded.weights.values().all(|t| !t.requires_grad()) {
        return Ok(None);
    }
    let dev_texts: Vec<&str> = tasks.iter().flat_map(|t| t.dev_texts()).collect();
    let dev = loaded.tokenizer.encode_batch(&dev_texts, loaded.spec.max_length);
    let training: Vec<&[i64]> = tasks.iter().flat_map(|t| t.train_texts()).collect();
    let plan = CachePlan { depth, training, dev, precision };
    let hidden = loaded.config.hidden_size();
    let (training, dev) = plan.caches();
    let estimate = |passes: Passes| FeatureCache::estimate_bytes(depth, &passes.concat(), hidden);
    let bytes = estimate(training) + dev.map_or(0, estimate);
    let budget = settings.feature_cache_budget_mb.saturating_mul(1024 * 1024);
    if bytes > budget {
        // A resumed run keeps its settings; its cache grows where --precision auto now
        // resolves to bf16, which keeps the dev sentences in a cache of their own.
        let remedy = match resumed_run {
            None => "raise the budget, or pass --no-feature-cache to run the frozen layers every step".to_string(),
            Some(run) => format!(
                "resume where the run started (--device{}), or raise feature_cache_budget_mb in {}",
                match settings.precision {
                    Precision::Auto => format!(", and --precision auto picks {precision} here"),
                    _ => String::new(),
                },
                run.join("settings.json").display()
            ),
        };
        bail!(
            "the feature cache ({}) would take about {} MB, more than --feature-cache-budget {} MB; {remedy}",
            depth.describe(),
            bytes.div_ceil(1024 * 1024),
            settings.feature_cache_budget_mb
        );
    }
    Ok(Some(plan))
}

/// Builds the cache `plan` describes, with a progress bar and a line saying what it holds.
pub(super) fn build_feature_cache(
    settings: &TrainSettings,
    loaded: &LoadedModel,
    plan: CachePlan,
    quiet: bool,
) -> Result<RunCaches> {
    let (depth, precision) = (plan.depth, plan.precision);
    let (training, dev) = plan.caches();
    let started = Instant::now();
    // Batches of the training's size (--batch-size or --batch-tokens), so that the build
    // holds no larger batch than a training step does: with --eval-batch-size's 64 rows of
    // the longest sentences, the cached run's peak RSS was ~70 MB above the uncached run's
    // (docs/benchmarks.md), for a build 1.5% faster.
    let build = |passes: &[Vec<&[i64]>], precision| {
        FeatureCache::build(loaded, depth, passes, settings.batch_limit(), precision, &Progress::new(quiet))
    };
    let caches = RunCaches {
        training: build(&training, precision)?,
        dev: dev.map(|dev| build(&dev, Precision::Fp32)).transpose()?,
    };
    if !quiet {
        let sentences = match &caches.dev {
            Some(dev) => format!(
                "{} training sentences in {precision} and {} dev sentences in fp32",
                caches.training.len(),
                dev.len()
            ),
            None => format!("{} distinct sentences", caches.training.len()),
        };
        crate::stderrln!(
            "feature cache: {} of {sentences} ({:.1} MB) in {:.1}s; the frozen layers run once, without dropout (--no-feature-cache runs them every step)",
            depth.describe(),
            // MB as the budget counts them (2^20 bytes).
            caches.bytes() as f64 / (1024.0 * 1024.0),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(caches)
}

/// The model a run trains, with its tasks tokenised and told what is frozen.
pub(super) struct PreparedModel {
    pub model: MultiTaskModel,
    pub loaded: LoadedModel,
    /// The freshly initialised tensors (new heads, a new projection).
    pub new_tensors: Vec<String>,
    /// Notes on layers that start afresh, new layers left frozen and texts cut to the limit.
    pub notes: Vec<String>,
    pub encoder_frozen: bool,
    /// The tasks whose heads are frozen.
    pub frozen_heads: Vec<String>,
}

/// Loads the model (`load_model`), sets `--dropout`, tokenises the tasks, applies `--freeze`
/// and tells each task what it froze.
pub(super) fn prepare_model(
    settings: &TrainSettings,
    tasks: &mut [Box<dyn TrainingTask>],
    device: tch::Device,
    resume_from: Option<&Path>,
) -> Result<PreparedModel> {
    let TrainableModel { model, mut loaded, new_tensors, replaced } = load_model(settings, tasks, device, resume_from)?;
    if let Some(p) = settings.dropout {
        loaded.config.set_dropout(p);
    }
    let mut notes = replaced;
    let truncation_notes = tokenize_tasks(tasks, &loaded.tokenizer, settings.max_length);
    let num_layers = loaded.config.num_layers() as usize;
    notes.extend(freeze(&settings.freeze, &model.vs, tasks, num_layers, &loaded.spec, &new_tensors)?);
    if loaded.config.fixed_positions() {
        // As transformers creates it: requires_grad False, whatever else trains.
        let table = names::weight(&names::embeddings(&loaded.config).position);
        if let Some(tensor) = model.vs.variables().get(&table) {
            let _ = tensor.set_requires_grad(false);
        }
    }
    notes.extend(truncation_notes);
    let encoder_frozen = FreezeRule::encoder_frozen(&model.vs);
    let mut frozen_heads = Vec::new();
    for task in tasks.iter_mut() {
        let head = FreezeRule::head_frozen(&model.vs, &task.source().name);
        if head {
            frozen_heads.push(task.source().name.clone());
        }
        task.note_frozen(Frozen { encoder: encoder_frozen, head });
    }
    Ok(PreparedModel { model, loaded, new_tensors, notes, encoder_frozen, frozen_heads })
}

/// Tokenises every task's training texts; a note per task whose texts `max_length` cuts.
fn tokenize_tasks(
    tasks: &mut [Box<dyn TrainingTask>],
    tokenizer: &SentenceTokenizer,
    max_length: usize,
) -> Vec<String> {
    let mut notes = Vec::new();
    for task in tasks {
        let truncated = task.tokenize(tokenizer, max_length);
        if truncated > 0 {
            let total = task.train_texts().len();
            let note = truncation_note(truncated, total, "training text", max_length);
            notes.push(format!("note: task '{}': {note}", task.source().name));
        }
    }
    notes
}

/// The model to train: from `--model`, or from the run's `last/` when resuming (which must
/// hold every tensor). Seeds libtorch first, so new layers start the same for one seed.
fn load_model(
    settings: &TrainSettings,
    tasks: &mut [Box<dyn TrainingTask>],
    device: tch::Device,
    resume_from: Option<&Path>,
) -> Result<TrainableModel> {
    tch::manual_seed(settings.seed as i64);
    let start_from = match resume_from {
        Some(last) => last.to_string_lossy().into_owned(),
        None => settings.model.clone(),
    };
    let start = checkpoint::TrainingStart::open(&start_from)?;
    for saved in start.saved_tasks() {
        if let Some(task) = tasks.iter_mut().find(|t| t.source().name == saved.name) {
            task.keep_label_order(&saved.labels);
        }
    }
    let wanted = TrainingSpec {
        pooling: settings.pooling,
        projection_dim: settings.projection_dim,
        max_length: settings.max_length,
        tasks: tasks.iter().map(|t| t.spec()).collect(),
    };
    let trainable = start.load(device, wanted)?;
    if resume_from.is_some() && !trainable.new_tensors.is_empty() {
        bail!(
            "{} does not hold every tensor of the run's model (missing {})",
            start_from,
            trainable.new_tensors.join(", ")
        );
    }
    Ok(trainable)
}

/// Checks `--model` before anything is written or removed: that it opens, and, when
/// `--overwrite` will replace the run directory's checkpoints, that it is not one of them.
pub(super) fn check_model_before_overwrite(settings: &TrainSettings, overwrite: bool) -> Result<()> {
    checkpoint::check_opens(&settings.model)?;
    let (Ok(model), Ok(out)) = (Path::new(&settings.model).canonicalize(), settings.out.canonicalize()) else {
        return Ok(());
    };
    if overwrite && (model.starts_with(out.join("best")) || model.starts_with(out.join("last"))) {
        bail!(
            "--model {} is a checkpoint of --out {}, which --overwrite would delete; copy it elsewhere first, or choose another --out",
            settings.model,
            settings.out.display()
        );
    }
    Ok(())
}

/// Applies `--freeze` to the model's variables, after checking the rules against the model
/// and the tasks. Returns a note when it freezes a new, randomly initialised layer (among
/// `new_tensors`), which then stays random.
fn freeze(
    rules: &[FreezeRule],
    vs: &VarStore,
    tasks: &[Box<dyn TrainingTask>],
    num_layers: usize,
    spec: &ModelSpec,
    new_tensors: &[String],
) -> Result<Option<String>> {
    let task_names: Vec<&str> = tasks.iter().map(|t| t.source().name.as_str()).collect();
    FreezeRule::validate(rules, num_layers, &task_names, spec)?;
    let with_heads: Vec<(&str, bool)> =
        tasks.iter().map(|t| (t.source().name.as_str(), t.kind() == TaskKind::Classification)).collect();
    let variables: Vec<String> = vs.variables().into_keys().collect();
    FreezeRule::check_encoder_only_tasks(rules, &variables, &with_heads)?;
    let frozen = FreezeRule::apply(rules, vs);
    let random = names::layers_of(new_tensors.iter().filter(|n| frozen.contains(n)).map(String::as_str));
    Ok((!random.is_empty()).then(|| {
        format!(
            "note: {} {} new (randomly initialised) and frozen, so it stays random: what it outputs means nothing",
            random.join(", "),
            if random.len() == 1 { "is" } else { "are" }
        )
    }))
}

/// A new run's state, or the one saved in `resume_from` (restoring the optimizer from it);
/// a resumed run's data files must be the ones it started with.
pub(super) fn initial_state(
    settings: &TrainSettings,
    tasks: &[Box<dyn TrainingTask>],
    run: &RunDir,
    resume_from: Option<&Path>,
    optimizer: &mut AdamW,
    world: usize,
) -> Result<TrainerState> {
    let fingerprints = data_fingerprints(settings)?;
    let Some(last) = resume_from else {
        check_token_budget(settings, tasks, world)?;
        let rows = tasks.iter().map(|t| task_rows(settings, t.as_ref(), world)).collect();
        return Ok(TrainerState {
            step: 0,
            micro_batches: 0,
            examples: 0,
            sampler: TaskSampler::new(settings.sampling, settings.batch_limit(), rows, settings.seed)
                .with_shares(&tasks.iter().map(|t| t.source().share).collect::<Vec<_>>()),
            best: None,
            evals_without_improvement: 0,
            data: fingerprints,
            world_size: world,
            window: None,
        });
    };
    let mut state = TrainerState::read(last, optimizer)?;
    if state.world_size != world {
        bail!(
            "{} was trained by {} process{}; resume it with the same number (WORLD_SIZE={}), not {world}: each rank's share of every batch, and so the run, depends on it",
            run.root.display(),
            state.world_size,
            if state.world_size == 1 { "" } else { "es" },
            state.world_size
        );
    }
    // By content: a run resumed from another folder names its files by other paths.
    if fingerprints.len() != state.data.len() {
        bail!("the run's data files are not the ones it started with (compare {} with the files now); resuming would not continue the same run", run.settings().display());
    }
    let same = |a: &FileFingerprint, b: &FileFingerprint| (a.bytes, &a.fnv1a) == (b.bytes, &b.fnv1a);
    if let Some(now) = fingerprints.iter().zip(&state.data).find(|(now, then)| !same(now, then)).map(|(now, _)| now) {
        bail!(
            "{} changed since this run started (its size or content differs); resuming would not continue the same run",
            now.path
        );
    }
    let rows = tasks.iter().map(|t| task_rows(settings, t.as_ref(), world)).collect();
    state.sampler = state
        .sampler
        .with_rows(rows, settings.batch_limit())
        .with_context(|| format!("{} is damaged", last.display()))?;
    Ok(state)
}

/// Refuses a `--batch-tokens` budget that cannot hold 2 of the longest rows of a task whose
/// loss compares a batch's rows (per rank where each rank compares its own,
/// `TrainSettings::compared_rows`): a row alone in its batch, or in its rank's share, gives
/// loss 0 and trains nothing, as `--batch-size 1` would.
fn check_token_budget(settings: &TrainSettings, tasks: &[Box<dyn TrainingTask>], world: usize) -> Result<()> {
    let (Some(budget), limit) = (settings.batch_tokens, settings.batch_limit()) else { return Ok(()) };
    for task in tasks {
        let Some((kind, loss, per_rank)) = settings.compared_rows(task.source(), world) else { continue };
        let per_batch = 2 * per_rank;
        let longest = task.row_lengths().into_iter().max().unwrap_or(0);
        let texts = task.texts_per_row();
        if !limit.fits(per_batch, longest, texts) {
            let ranks = if per_rank > 1 { format!(" ({world} ranks x 2)") } else { String::new() };
            bail!(
                "--batch-tokens {budget}: task '{}' is a {kind} task whose longest rows ({texts} texts of {longest} tokens) must fit {per_batch} to a batch{ranks} for its loss ({loss}); give --batch-tokens {} or more",
                task.source().name,
                per_batch * texts * longest
            );
        }
    }
    Ok(())
}

/// What the sampler knows of `task`'s rows: lengths, texts per row, the texts no two rows
/// of a batch may share, and the fewest rows its loss trains with (2 per rank where the
/// loss compares a batch's rows, `TrainSettings::compared_rows`).
fn task_rows(settings: &TrainSettings, task: &dyn TrainingTask, world: usize) -> TaskRows {
    let min_rows = settings.compared_rows(task.source(), world).map_or(1, |(_, _, per_rank)| 2 * per_rank);
    TaskRows {
        lengths: task.row_lengths(),
        texts_per_row: task.texts_per_row(),
        exclusive: task.exclusive_texts(),
        min_rows,
    }
}

/// Plans one pass of each task whose loss compares a batch's rows (pairs, CoSENT) and
/// refuses one whose rows can never share a batch (every two rows share some text); notes
/// one whose pass keeps batches too short for the loss (a text in more rows than a pass has
/// batches, or too few rows to go round), where rows train nothing.
fn check_compared_batches(
    settings: &TrainSettings,
    tasks: &[Box<dyn TrainingTask>],
    world: usize,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for task in tasks {
        let rows = task_rows(settings, task.as_ref(), world);
        if rows.min_rows < 2 {
            continue;
        }
        let pass = rows.planned_pass(settings.batch_limit());
        let (name, total) = (&task.source().name, rows.lengths.len());
        if pass.iter().all(|batch| batch.len() == 1) && rows.exclusive.is_some() {
            bail!(
                "task '{name}': {}: every two rows share a text, and no batch holds a text twice, so every batch would hold one row; in-batch negatives need rows with different texts",
                task.source().train.display()
            );
        }
        if pass.iter().all(|batch| batch.len() < rows.min_rows) {
            let largest = pass.iter().map(Vec::len).max().unwrap_or(0);
            // Without texts kept apart, only the number of rows limits a batch.
            let cause = match rows.exclusive {
                Some(_) => "no batch holds a text twice, so its batches hold",
                None => "its rows make batches of",
            };
            bail!(
                "task '{name}': {}: {cause} at most {largest} rows, fewer than 2 for each of the {world} ranks: some rank's share would be a lone row, whose loss is 0; run fewer ranks{}",
                task.source().train.display(),
                match task.source().kind {
                    Some(TaskKind::Pairs) => ", or pass --gather-across-ranks",
                    _ => ", or give it more rows",
                }
            );
        }
        let short = pass.iter().filter(|batch| batch.len() < rows.min_rows).count();
        if short == 0 {
            continue;
        }
        let most = rows.exclusive.as_deref().map_or(1, most_rows_with_one_text);
        let cause = match most {
            1 => format!("its {total} rows do not go round"),
            _ => format!("one text is in {most} of its {total} rows, and no batch holds a text twice"),
        };
        let too_short = match rows.min_rows {
            2 => "a lone row, whose loss is 0".to_string(),
            n => format!("under {n} rows, which leaves some rank a lone row, whose loss is 0"),
        };
        notes.push(format!(
            "note: task '{name}': {cause}, so a pass takes {} batches, {short} of them {too_short}",
            pass.len()
        ));
    }
    Ok(notes)
}

/// What a new run says before it trains: the batches' checks (which may refuse the run),
/// rows over the token budget, each task's data notes, the backbone rate the run's size
/// chose and flags the model makes inert. A resumed run said it at its start.
pub(super) fn start_up_notes(
    settings: &TrainSettings,
    tasks: &[Box<dyn TrainingTask>],
    world: usize,
    typed_flags: &[String],
    loaded: &LoadedModel,
) -> Result<Vec<String>> {
    let mut notes = check_compared_batches(settings, tasks, world)?;
    notes.extend(model_flag_notes(settings, typed_flags, loaded));
    notes.extend(oversized_row_notes(settings, tasks));
    for task in tasks {
        notes.extend(task.data_notes().into_iter().map(|note| format!("note: task '{}': {note}", task.source().name)));
        let source = task.source();
        let same = |dev: &PathBuf| checkpoint::same_place(&source.train.to_string_lossy(), &dev.to_string_lossy());
        if source.dev.as_ref().is_some_and(same) {
            notes.push(format!(
                "note: task '{}': its dev file is its training file, so its dev metrics (and the choice of best/) measure fit, not what the model does on new text",
                source.name
            ));
        }
    }
    notes.extend(settings.backbone_rate_note(tasks.iter().map(|t| t.train_rows()).sum()));
    Ok(notes)
}

/// Flags the loaded model makes inert: `--lr-projection` where it has no projection (the
/// model folder decides when `--projection-dim` is not given); `--dropout` where the feature
/// cache computes the whole backbone once (`--freeze backbone`, or the embeddings and every
/// block); and the default `--max-length` where it is shorter than the base model's own limit.
fn model_flag_notes(settings: &TrainSettings, typed_flags: &[String], loaded: &LoadedModel) -> Vec<String> {
    let typed = |flag: &str| typed_flags.iter().any(|f| f == flag);
    let spec = &loaded.spec;
    let mut notes = Vec::new();
    // Dropout lives only in the backbone, and the cache computes a frozen one without it.
    let trains = !settings.freeze.iter().any(|rule| matches!(rule, FreezeRule::All));
    if typed("dropout") && trains && settings.feature_cache && CacheDepth::of(loaded) == Some(CacheDepth::Pooled) {
        notes.push(
            "note: --dropout has no effect: the feature cache computes the frozen backbone once, without dropout (--no-feature-cache runs it every step, with dropout)"
                .to_string(),
        );
    }
    let base_limit = || checkpoint::folder_max_length(&settings.model).filter(|&(_, trained)| !trained);
    let own_limit = (!typed("max_length")).then(base_limit).flatten().map(|(own, _)| own);
    if let Some(own) = own_limit.filter(|&own| own > settings.max_length) {
        notes.push(format!(
            "note: texts are cut at {0} tokens (--max-length's default for training), where the model reads up to {own}; the checkpoint keeps {0} for encode (--max-length {own} keeps the model's)",
            settings.max_length
        ));
    }
    if typed("lr_projection") && spec.projection_dim.is_none() {
        notes.push(
            "note: --lr-projection has no effect: the model has no projection (--projection-dim N adds one)"
                .to_string(),
        );
    }
    notes
}

/// The training record of the checkpoint a run resumes from (`training` in its
/// `sentence_mtl.json`): the settings and what they resolved to on the machine that saved it.
/// The model loaded for training has a spec of its own, which records none yet.
pub(super) fn saved_training(last: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(last.join(checkpoint::SPEC_FILE)).ok()?;
    let spec: serde_json::Value = serde_json::from_str(&text).ok()?;
    spec.get("training").cloned()
}

/// On a resume: a note when the precision differs from the one the saved steps trained in
/// (`--precision auto` resolves per machine: bf16 on a CPU with AMX, fp32 on one without).
pub(super) fn precision_change_note(
    saved: Option<&serde_json::Value>,
    asked: Precision,
    resolved: Precision,
) -> Option<String> {
    let before = saved?.get("precision_used")?.as_str()?;
    (before != resolved.to_string()).then(|| {
        format!("note: the steps before this resume trained in {before}; --precision {asked} resolves to {resolved} on this machine, so the rest trains in {resolved}")
    })
}

/// On a CPU resume: a note when this process sums on another number of threads than the
/// saved steps did, which changes the last bits of every sum from here on.
pub(super) fn threads_change_note(saved: Option<&serde_json::Value>, device: tch::Device) -> Option<String> {
    let before = saved?.get("threads_used")?.as_u64()?;
    let now = tch::get_num_threads();
    (device == tch::Device::Cpu && before != now as u64).then(|| {
        format!("note: the steps before this resume ran on {before} CPU threads and these run on {now}; sums split otherwise differ in their last bits, so the weights will not be bit-identical to an uninterrupted run's (--threads {before} keeps them so)")
    })
}

/// A note for each task with rows longer than `--batch-tokens` holds: each of those trains in
/// a batch of its own, bigger than the budget (`BatchLimit::fits` lets one row always fit).
fn oversized_row_notes(settings: &TrainSettings, tasks: &[Box<dyn TrainingTask>]) -> Vec<String> {
    let Some(budget) = settings.batch_tokens else { return Vec::new() };
    let mut notes = Vec::new();
    for task in tasks {
        let texts = task.texts_per_row();
        let lengths = task.row_lengths();
        let over = lengths.iter().filter(|&&len| len * texts > budget).count();
        if over > 0 {
            let longest = lengths.iter().max().copied().unwrap_or(0) * texts;
            notes.push(format!(
                "note: task '{}': {over} of its {} rows take more than --batch-tokens {budget} ({longest} padded tokens at the most); each trains in a batch of its own",
                task.source().name,
                lengths.len()
            ));
        }
    }
    notes
}

pub(super) fn read_tasks(settings: &TrainSettings) -> Result<Vec<Box<dyn TrainingTask>>> {
    settings.tasks.iter().map(|source| tasks::read(source, settings)).collect()
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

/// What every rank of a data-parallel launch must agree on: each setting (as `--flag`), the
/// model's and each data file's contents, the run's position and the program's version.
/// Paths are each rank's own (nodes may hold copies in different places).
fn agreed_fields(
    settings: &TrainSettings,
    state: &TrainerState,
    loaded: &LoadedModel,
) -> Result<Vec<(String, String)>> {
    let mut without_paths = settings.clone();
    // Ranks may read copies of the model and data at paths of their own (node-local disks):
    // what is compared is their content.
    without_paths.model = String::new();
    for task in &mut without_paths.tasks {
        task.train = PathBuf::new();
        task.dev = task.dev.as_ref().map(|_| PathBuf::new());
    }
    let serde_json::Value::Object(mut fields) = serde_json::to_value(&without_paths)? else {
        bail!("settings are not a JSON object")
    };
    // The ranks compare their lists position by position, so a field serde leaves out when
    // unset is listed anyway, and the list is in name order.
    fields.entry("batch_tokens").or_insert(serde_json::Value::Null);
    let mut out: Vec<(String, String)> = fields
        .into_iter()
        // A rank's thread count is its own.
        .filter(|(name, _)| name != "threads")
        .map(|(name, value)| (flag_of(&name), if value.is_null() { "not given".into() } else { value.to_string() }))
        .collect();
    // A resumed run's --out is what its settings.json recorded, not a flag typed now.
    if state.step > 0 {
        out.iter_mut().filter(|(name, _)| name == "--out").for_each(|(name, _)| *name = "--resume run's --out".into());
    }
    out.sort();
    out.push(("--model".into(), format!("config, vocabulary and shapes fnv1a {}", loaded.fingerprint(false))));
    out.extend(loaded.spec.pipeline_settings().map(|(name, value)| (name.to_string(), value)));
    out.extend(data_file_fields(settings, &state.data));
    out.push(("resumed step".into(), state.step.to_string()));
    out.push(("sentence-mtl version".into(), env!("CARGO_PKG_VERSION").into()));
    Ok(out)
}

/// `("task 'q' training file", "5120 bytes, fnv1a 0123456789abcdef")` for each data file, in
/// the order of `data_fingerprints`.
fn data_file_fields(settings: &TrainSettings, data: &[FileFingerprint]) -> Vec<(String, String)> {
    let files = settings.tasks.iter().flat_map(|task| {
        let dev = task.dev.as_ref().map(|_| (task.name.as_str(), "dev"));
        std::iter::once((task.name.as_str(), "training")).chain(dev)
    });
    files
        .zip(data)
        .map(|((name, which), f)| {
            (format!("task '{name}' {which} file"), format!("{} bytes, fnv1a {}", f.bytes, f.fnv1a))
        })
        .collect()
}

/// The flag that sets a `TrainSettings` field (`tasks` is the repeated `--task`).
fn flag_of(field: &str) -> String {
    match field {
        "tasks" => "--task".to_string(),
        _ => format!("--{}", field.replace('_', "-")),
    }
}

/// The `--save-batch-plan` file, created for writing (rank 0 alone passes a path).
pub(super) fn open_batch_plan(path: Option<&Path>) -> Result<Option<BufWriter<std::fs::File>>> {
    let Some(path) = path else { return Ok(None) };
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Some(BufWriter::new(file)))
}

/// Joins a data-parallel launch's training: refuses ranks whose settings, data or position
/// differ, gives every rank rank 0's weights, and sets up the gradients' all-reduce.
pub(super) fn join_data_parallel<'a>(
    group: &'a ProcessGroup,
    settings: &TrainSettings,
    state: &TrainerState,
    prepared: &PreparedModel,
    optimizer: &AdamW,
) -> Result<GradientSync<'a>> {
    data_parallel::agree_on_settings(group, &agreed_fields(settings, state, &prepared.loaded)?)?;
    broadcast_weights(group, &prepared.model.vs)?;
    GradientSync::new(group, optimizer.parameters().map(Tensor::shallow_clone).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_in_another_precision_says_so() {
        let saved = serde_json::json!({"precision": "auto", "precision_used": "bf16"});
        let note = precision_change_note(Some(&saved), Precision::Auto, Precision::Fp32).unwrap();
        assert!(note.contains("trained in bf16; --precision auto resolves to fp32"), "{note}");
        assert_eq!(precision_change_note(Some(&saved), Precision::Auto, Precision::Bf16), None);
        assert_eq!(precision_change_note(None, Precision::Auto, Precision::Fp32), None, "an older checkpoint");
    }

    #[test]
    fn a_cpu_resume_on_other_threads_says_so() {
        let now = tch::get_num_threads() as u64;
        let saved = serde_json::json!({"threads_used": now + 1});
        let note = threads_change_note(Some(&saved), tch::Device::Cpu).unwrap();
        assert!(note.contains(&format!("ran on {} CPU threads and these run on {now}", now + 1)), "{note}");
        assert!(note.contains(&format!("(--threads {} keeps them so)", now + 1)), "{note}");
        assert_eq!(threads_change_note(Some(&saved), tch::Device::Cuda(0)), None);
        assert_eq!(threads_change_note(Some(&serde_json::json!({"threads_used": now})), tch::Device::Cpu), None);
        assert_eq!(threads_change_note(Some(&serde_json::json!({})), tch::Device::Cpu), None, "an older checkpoint");
    }
}
