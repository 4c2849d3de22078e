//! `sentence-mtl train`: fine-tune a shared encoder with one head per task, or continue an
//! interrupted run with `--resume`.

use anyhow::{bail, Result};

use super::runtime::join_launch;
use crate::cli::TrainArgs;
use crate::data::sampler::SamplingStrategy;
use crate::distributed::{is_main, ProcessGroup};
use crate::model::spec::TaskKind;
use crate::output::{print_stdout, same_file};
use crate::tasks::column_flag_notes;
use crate::train::freeze::FreezeRule;
use crate::train::overview::score_table;
use crate::train::run_dir::RunDir;
use crate::train::settings::TrainSettings;
use crate::train::trainer::{resume, train, RunOptions, TrainOutcome};

/// Flags that may accompany `--resume`: they do not change what is computed, though on a CPU
/// another `--threads` changes its last bits (a note says so).
const ALLOWED_WITH_RESUME: &[&str] = &["resume", "device", "threads", "quiet", "dist_timeout"];

pub fn run(args: &TrainArgs) -> Result<()> {
    let group = join_launch(&args.device)?;
    let main = is_main(group.as_ref());
    let options = RunOptions {
        // Only rank 0 of a data-parallel launch shows progress and tables.
        quiet: args.quiet || !main,
        overwrite: args.overwrite,
        batch_plan: args.save_batch_plan.clone(),
        command_line: std::env::args().collect(),
        typed_flags: args.explicit.clone(),
    };
    let outcome = match &args.resume {
        Some(run) => {
            if let Some(flag) = args.explicit.iter().find(|f| !ALLOWED_WITH_RESUME.contains(&f.as_str())) {
                bail!(
                    "--resume continues a run with its own settings; --{} cannot be given with it (start a new run to change settings)",
                    flag.replace('_', "-")
                );
            }
            resume(
                run,
                &options,
                args.explicit.iter().any(|f| f == "device").then_some(args.device.device),
                args.device.threads,
                group.as_ref(),
            )?
        }
        None => {
            let settings = TrainSettings::from_args(args)?;
            let world = group.as_ref().map_or(1, ProcessGroup::world);
            settings.check_rows_per_batch(world)?;
            check_batch_plan_path(args.save_batch_plan.as_deref(), &settings)?;
            if !options.quiet {
                for note in flags_without_effect(args, &settings, world) {
                    crate::stderrln!("note: {note}");
                }
            }
            train(&settings, &options, group.as_ref())?
        }
    };
    if !main {
        return Ok(());
    }
    print_stdout(&outcome_text(&outcome))
}

/// Refuses a `--save-batch-plan` path whose writing would destroy something: a task's data
/// file, a file the run writes in `--out`, a file in a checkpoint, or any existing file but
/// an earlier plan (`.jsonl`).
fn check_batch_plan_path(path: Option<&std::path::Path>, settings: &TrainSettings) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let shown = path.display();
    if path.as_os_str() == "-" {
        bail!("--save-batch-plan -: the plan is a file (JSON lines), not stdout; name one, such as plan.jsonl");
    }
    if path.is_dir() {
        bail!("--save-batch-plan {shown} is a folder; name a file");
    }
    for task in &settings.tasks {
        if std::iter::once(&task.train).chain(&task.dev).any(|data| same_file(path, data)) {
            bail!(
                "--save-batch-plan {shown} is a data file of task '{}', which writing would replace; name another file",
                task.name
            );
        }
    }
    let run = RunDir { root: crate::checkpoint::resolved(&settings.out) };
    let resolved = crate::checkpoint::resolved(path);
    if run.own_entries().iter().any(|entry| resolved.starts_with(entry)) {
        bail!("--save-batch-plan {shown} is where the run writes its own files in --out; name another file");
    }
    crate::checkpoint::refuse_output_inside(path, "--save-batch-plan")?;
    let an_earlier_plan = path.extension().is_some_and(|e| e == "jsonl") && starts_like_a_batch_plan(path);
    if path.exists() && !an_earlier_plan {
        bail!("--save-batch-plan {shown} exists and is not an earlier batch plan (.jsonl); name another file");
    }
    Ok(())
}

/// Whether an existing `.jsonl` file is empty or starts with a batch plan's line (a run's
/// log, also `.jsonl`, does not).
fn starts_like_a_batch_plan(path: &std::path::Path) -> bool {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut line = String::new();
    if std::io::BufReader::new(file).read_line(&mut line).is_err() {
        return false;
    }
    line.trim().is_empty()
        || serde_json::from_str::<serde_json::Value>(&line)
            .is_ok_and(|v| ["step", "task", "rows"].iter().all(|key| v.get(key).is_some()))
}

/// What a finished run prints: where it went, and the best checkpoint's scores.
fn outcome_text(outcome: &TrainOutcome) -> String {
    let rate = outcome.examples as f64 / outcome.seconds.max(1e-9);
    let run = outcome.run.root.display();
    let mut text = match (outcome.steps, outcome.resumed_from) {
        // --freeze all: an evaluation (given a dev set) and saves, no step.
        (0, _) => format!(
            "{} without a training step in {:.1}s; run directory {run}\n",
            if outcome.best.is_some() { "evaluated and saved" } else { "saved (no dev set to evaluate)" },
            outcome.seconds
        ),
        (steps, resumed) => format!(
            "{} to step {steps} in {:.1}s ({rate:.1} examples/s, evaluation and saving included); run directory {run}\n",
            resumed.map_or("trained".to_string(), |step| format!("resumed at step {step} and trained")),
            outcome.seconds,
        ),
    };
    // Said at the start too, but `--quiet` leaves that out, and the run is not the one asked
    // for; unless it stopped early within the plan, which the lengthening then did not change.
    if let Some((total, planned)) = outcome.lengthened.filter(|&(_, planned)| outcome.steps > planned) {
        text += &format!(
            "small-data mode lengthened the run to {} from the {planned} planned (--small-data off keeps the plan)\n",
            crate::report::table::count(total, "optimizer step")
        );
    }
    if let Some(best) = &outcome.best {
        text += &format!(
            "best checkpoint {} (step {}, mean of the main dev metrics {:.4}):\n",
            outcome.run.best().display(),
            best.step,
            best.mean_main_metric
        );
        let order: Vec<&str> = outcome.model.spec.tasks.iter().map(|t| t.name.as_str()).collect();
        text += &score_table(&best.tasks, &order);
    }
    text
}

/// Flags typed on the command line that this run's other settings make inert: worth a note,
/// not an error (scripts often pass one set of flags to several runs).
fn flags_without_effect(args: &TrainArgs, settings: &TrainSettings, world: usize) -> Vec<String> {
    let typed = |flag: &str| args.explicit.iter().any(|f| f == flag);
    let mut notes = schedule_notes(&typed, settings);
    notes.extend(task_kind_notes(&typed, settings, world));
    notes.extend(feature_cache_notes(&typed, settings));
    notes.extend(frozen_backbone_notes(&typed, settings));
    for task in settings.tasks.iter().filter(|t| t.weight == 0.0) {
        notes.push(format!(
            "task '{}' has --task-weight 0: its loss adds no gradient, but it still takes its turns of the batches (--task-share sets how many), and the optimizer steps of those turns still move the weights by momentum and weight decay",
            task.name
        ));
    }
    let kinds: Vec<(&str, TaskKind)> =
        settings.tasks.iter().map(|t| (t.name.as_str(), t.kind.unwrap_or_default())).collect();
    notes.extend(column_flag_notes("--text-column", &args.text_columns, &kinds));
    notes.extend(column_flag_notes("--label-column", &args.label_columns, &kinds));
    notes
}

/// Flags of the run's length, evaluation and sampling that other settings make inert.
fn schedule_notes(typed: &dyn Fn(&str) -> bool, settings: &TrainSettings) -> Vec<String> {
    let no_dev = settings.tasks.iter().all(|t| t.dev.is_none());
    let mut notes = Vec::new();
    if typed("patience") && no_dev {
        notes.push("--patience has no effect: no task has a dev set (--task NAME=TRAIN.csv,DEV.csv)".to_string());
    }
    if typed("temperature") && !matches!(settings.sampling, SamplingStrategy::Temperature(_)) {
        notes.push(format!(
            "--temperature has no effect: it applies to --sampling temperature, and this run samples {}",
            settings.sampling
        ));
    }
    if typed("warmup_ratio") && typed("warmup_steps") {
        notes.push("--warmup-ratio has no effect: --warmup-steps sets the warm-up".to_string());
    }
    if typed("epochs") && typed("max_steps") {
        notes.push("--epochs has no effect: --max-steps sets the run's length".to_string());
    }
    if typed("eval_every") && no_dev {
        notes.push(
            "--eval-every only sets how often last/ is saved: no task has a dev set to evaluate (--task NAME=TRAIN.csv,DEV.csv)"
                .to_string(),
        );
    }
    notes
}

/// Flags of a task kind (or of a launch) that no task of the run is.
fn task_kind_notes(typed: &dyn Fn(&str) -> bool, settings: &TrainSettings, world: usize) -> Vec<String> {
    let has_kind = |kind: TaskKind| settings.tasks.iter().any(|t| t.kind == Some(kind));
    let mut notes = Vec::new();
    if typed("pairs_scale") && !has_kind(TaskKind::Pairs) {
        notes.push("--pairs-scale has no effect: no task is a pairs task".to_string());
    }
    if !has_kind(TaskKind::Classification) {
        let classification_flags = [
            ("label_smoothing", "--label-smoothing"),
            ("class_weights", "--class-weights"),
            ("lr_heads", "--lr-heads"),
            ("small_data", "--small-data"),
        ];
        let flags = typed_among(typed, &classification_flags);
        if !flags.is_empty() {
            notes.push(format!("{} no effect: no task is a classification task", count_flags(&flags)));
        }
    }
    if typed("gather_across_ranks") && !has_kind(TaskKind::Pairs) {
        notes.push("--gather-across-ranks has no effect: no task is a pairs task".to_string());
    } else if typed("gather_across_ranks") && world == 1 {
        notes.push(
            "--gather-across-ranks has no effect: this is one process, not a data-parallel launch (WORLD_SIZE > 1)"
                .to_string(),
        );
    }
    if typed("similarity_losses") && !has_kind(TaskKind::Similarity) {
        notes.push("--similarity-loss has no effect: no task is a similarity task".to_string());
    }
    notes
}

/// The backbone's rates where no backbone layer trains.
fn frozen_backbone_notes(typed: &dyn Fn(&str) -> bool, settings: &TrainSettings) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(rule) = settings.freeze.iter().find(|r| matches!(r, FreezeRule::Backbone | FreezeRule::All)) {
        let rates = typed_among(typed, &[("lr_backbone", "--lr-backbone"), ("layer_decay", "--layer-decay")]);
        if !rates.is_empty() {
            let rule = if matches!(rule, FreezeRule::All) { "all" } else { "backbone" };
            notes.push(format!("{} no effect: --freeze {rule} trains no backbone layer", count_flags(&rates)));
        }
    }
    notes
}

/// The feature cache's flags where it is not built, and a cache `--freeze layers:K` misses.
fn feature_cache_notes(typed: &dyn Fn(&str) -> bool, settings: &TrainSettings) -> Vec<String> {
    let mut notes = Vec::new();
    let has = |rule: fn(&FreezeRule) -> bool| settings.freeze.iter().any(rule);
    let blocks = settings.freeze.iter().find_map(|r| if let FreezeRule::Layers(k) = r { Some(*k) } else { None });
    let embeddings_frozen = has(|r| matches!(r, FreezeRule::Embeddings | FreezeRule::Backbone | FreezeRule::All));
    // What the cache computes once: a frozen backbone, or frozen embeddings and bottom blocks.
    let frozen_prefix = has(|r| matches!(r, FreezeRule::Backbone)) || (embeddings_frozen && blocks.is_some());
    let why_none = if settings.freeze.is_empty() {
        Some("nothing is frozen (--freeze), so no feature cache is built")
    } else if has(|r| matches!(r, FreezeRule::All)) {
        Some("--freeze all trains nothing, so no feature cache is built")
    } else if !frozen_prefix && blocks.is_none() {
        Some("no feature cache is built without a frozen backbone (--freeze backbone, or embeddings and layers:K)")
    } else {
        None
    };
    let cache_flags = typed_among(
        typed,
        &[("no_feature_cache", "--no-feature-cache"), ("feature_cache_budget", "--feature-cache-budget")],
    );
    if let Some(why) = why_none {
        if !cache_flags.is_empty() {
            notes.push(format!("{} no effect: {why}", count_flags(&cache_flags)));
        }
        return notes;
    }
    if typed("no_feature_cache") && typed("feature_cache_budget") {
        notes.push("--feature-cache-budget has no effect: --no-feature-cache builds no cache".to_string());
    }
    if let (Some(k), false, true) = (blocks, embeddings_frozen, settings.feature_cache) {
        notes.push(format!(
            "no feature cache: --freeze layers:{k} leaves the embeddings training, so the frozen blocks run at every step; add --freeze embeddings to compute them once"
        ));
    }
    notes
}

/// The flags of `flags` (clap id, flag) typed on the command line, in that order.
fn typed_among(typed: &dyn Fn(&str) -> bool, flags: &[(&str, &'static str)]) -> Vec<&'static str> {
    flags.iter().filter(|(id, _)| typed(id)).map(|(_, flag)| *flag).collect()
}

/// `--a has`, or `--a, --b and --c have`.
fn count_flags(flags: &[&str]) -> String {
    match flags.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last} have", rest.join(", ")),
        _ => format!("{} has", flags.join("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inert_flags_are_listed_as_a_sentence() {
        assert_eq!(count_flags(&["--a"]), "--a has");
        assert_eq!(count_flags(&["--a", "--b"]), "--a and --b have");
        assert_eq!(count_flags(&["--a", "--b", "--c"]), "--a, --b and --c have");
    }
}
