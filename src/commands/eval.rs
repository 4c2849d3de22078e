//! `sentence-mtl eval`: scores per task as tables, JSON and pictures. A task the model was
//! trained on is scored as its kind; a similarity or pairs file also works for a task the
//! model does not have (the embeddings themselves are scored), so a pre-trained model can be
//! compared with its fine-tuned self.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::runtime::{encoder, join_launch, open_model, output_setting};
use crate::atomic_write;
use crate::cli::task_values::{names_equal_but_for_case, PerTask, TaskArg};
use crate::cli::EvalArgs;
use crate::data::csv_file::{first_column_present, read_header};
use crate::data::labelled::UnknownLabelPolicy;
use crate::distributed::is_main;
use crate::inference::{Encoder, TruncationTally};
use crate::model::loaded::LoadedModel;
use crate::model::spec::{SpecOverrides, TaskKind};
use crate::model::tokenizer::truncation_note;
use crate::output::{print_stdout, same_file};
use crate::precision::Precision;
use crate::progress::Progress;
use crate::report::plots::{read_training_curves, training_curves};
use crate::report::text_backend::undrawable_chars;
use crate::report::TaskReport;
use crate::tasks::{self, column_flag_notes, kind_of_file, LabelColumns};
use crate::train::state::FileFingerprint;

struct EvalTask {
    name: String,
    path: PathBuf,
    /// `--task-kind`'s, if given.
    kind: Option<TaskKind>,
}

/// The task files' bytes, hashed, for the ranks of a launch to compare: each rank scores its
/// sentences but rank 0 reports with its own labels, so files that differ past the sentences
/// (a label, a score) would be reported as rank 0's without a word. In `--task`'s order,
/// without the names (`--task` itself is compared), as `train` compares its data files; a
/// file that cannot be read counts as its error, which the task's report then names.
fn files_content(tasks: &[EvalTask]) -> String {
    let fingerprints: Vec<String> = tasks
        .iter()
        .map(|task| match FileFingerprint::of(&task.path) {
            Ok(f) => format!("{} bytes, fnv1a {}", f.bytes, f.fnv1a),
            Err(e) => format!("unreadable ({e})"),
        })
        .collect();
    fingerprints.join(", ")
}

/// `--task NAME=FILE.csv`, each name once, each with a file.
fn eval_tasks(tasks: &[TaskArg]) -> Result<Vec<EvalTask>> {
    TaskArg::check_unique(tasks)?;
    tasks
        .iter()
        .map(|task| {
            if task.value.is_empty() {
                bail!("--task {}: no file", task.text);
            }
            if task.value.contains(',') && !Path::new(&task.value).exists() {
                bail!(
                    "--task {}: eval reads one file per task (train's NAME=TRAIN,DEV names two); give the file to evaluate, e.g. --task {}={}",
                    task.text,
                    task.name,
                    task.value.split(',').map(str::trim).rfind(|p| !p.is_empty()).unwrap_or_default()
                );
            }
            Ok(EvalTask { name: task.name.clone(), path: PathBuf::from(&task.value), kind: None })
        })
        .collect()
}

/// The column to read: the flag's; else the one the task was trained on, unless the file
/// lacks it and has the default (`text`, `label`), as `predict` falls back; else the default.
fn column_to_read(header: &[String], flag: Option<&str>, trained: Option<&str>, default: &str) -> String {
    let candidates: Vec<&str> = trained.into_iter().chain([default]).collect();
    // Neither in the file: the trained column, which the error then names.
    flag.or_else(|| first_column_present(header, &candidates)).unwrap_or(candidates[0]).to_string()
}

/// Refuses, before any task is scored, a `--task-kind` other than the kind the model trained
/// the task as (which is how its files are scored).
fn refuse_kinds_unlike_the_models(tasks: &[EvalTask], loaded: &LoadedModel) -> Result<()> {
    for task in tasks {
        let known = loaded.spec.tasks.iter().find(|t| t.name == task.name);
        if let (Some(given), Some(known)) = (task.kind, known.filter(|t| Some(t.kind) != task.kind)) {
            bail!(
                "--task-kind {}={given}: the model trained task '{}' as a {} task, which is how eval scores it",
                task.name,
                task.name,
                known.kind
            );
        }
    }
    Ok(())
}

/// Report files are named after their task ([`names_equal_but_for_case`]).
fn refuse_names_equal_but_for_case(names: &[&str]) -> Result<()> {
    if let Some((a, b)) = names_equal_but_for_case(names) {
        bail!("tasks '{a}' and '{b}' differ only in case: their report files in --out would be one file on macOS and Windows; rename one");
    }
    Ok(())
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    let mut tasks = eval_tasks(&args.tasks)?;
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let text_columns = PerTask::resolve("--text-column", &args.text_columns, &names)?;
    let label_columns = PerTask::resolve("--label-column", &args.label_columns, &names)?;
    let kinds = PerTask::resolve_named("--task-kind", "NAME=KIND", &args.task_kinds, &names)?;
    for task in &mut tasks {
        task.kind = kinds
            .get(&task.name)
            .map(|kind| kind.parse::<TaskKind>().with_context(|| format!("--task-kind {}={kind}", task.name)))
            .transpose()?;
    }
    if let Some(out) = &args.out {
        check_report_folder(out)?;
        refuse_names_equal_but_for_case(&names)?;
    }
    let overrides = SpecOverrides { max_length: args.model.max_length, ..Default::default() };
    let group = join_launch(&args.model.device)?;
    let (loaded, progress) = open_model(&args.model, &overrides, group.as_ref())?;
    refuse_kinds_unlike_the_models(&tasks, &loaded)?;
    let tally = TruncationTally::default();
    let job = [
        output_setting("--out", args.out.as_deref()),
        ("--task", names.join(", ")),
        ("--task files' content", group.as_ref().map(|_| files_content(&tasks)).unwrap_or_default()),
    ];
    let encoder = encoder(&args.model, &loaded, group.as_ref(), &job)?;
    let encoder = Encoder { truncated: Some(&tally), ..encoder };
    // Notes could not say which task they belong to; each task's are gathered instead.
    let progress = progress.without_notes();
    let mut evaluated = Vec::new();
    for task in &tasks {
        let columns = [&text_columns, &label_columns];
        let (kind, report) = task_report(&encoder, task, columns, args, &progress)?;
        evaluated.push(Evaluated { name: task.name.clone(), kind, report, truncated: tally.take() });
    }
    if !is_main(group.as_ref()) {
        return Ok(());
    }
    if !args.model.quiet {
        for note in notes(args, &evaluated, loaded.spec.max_length) {
            crate::stderrln!("note: {note}");
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = metrics_json(args, &loaded, encoder.precision, &evaluated, seconds);
    let written = match &args.out {
        Some(out) => write_reports(out, &metrics, &evaluated, &loaded)?,
        None => Vec::new(),
    };
    if args.json {
        print_stdout(&(serde_json::to_string_pretty(&metrics)? + "\n"))?;
    } else {
        let texts: Vec<String> = evaluated.iter().map(|e| e.report.render_text()).collect();
        print_stdout(&texts.join("\n"))?;
    }
    if !args.model.quiet && !written.is_empty() {
        crate::stderrln!();
        for path in written {
            crate::stderrln!("wrote {}", path.display());
        }
        let left_out = evaluated.iter().flat_map(|e| e.report.file_notes());
        for note in undrawable_note(&tasks, &loaded).into_iter().chain(left_out) {
            crate::stderrln!("note: {note}");
        }
    }
    Ok(())
}

/// What `metrics.json` and `--json` hold: the run's settings and every task's numbers.
fn metrics_json(
    args: &EvalArgs,
    loaded: &LoadedModel,
    precision: Precision,
    evaluated: &[Evaluated],
    seconds: f64,
) -> serde_json::Value {
    json!({
        "model": std::fs::canonicalize(&args.model.model).map_or(args.model.model.clone(), |p| p.display().to_string()),
        "evaluated_at": utc_timestamp(),
        // What changes the numbers besides the model and the data.
        "max_length": loaded.spec.max_length,
        // Per task, the texts longer than `max_length` tokens, which were cut to it.
        "truncated_texts": evaluated.iter().map(|e| (e.name.clone(), e.truncated.0.into())).collect::<serde_json::Map<_, _>>(),
        "precision": precision.to_string(),
        "unknown_labels": args.unknown_labels.to_string(),
        "seconds": seconds,
        "tasks": evaluated.iter().map(|e| (e.name.clone(), e.report.to_json())).collect::<serde_json::Map<_, _>>(),
    })
}

/// A task's report, with its kind and (cut, total) of the texts `--max-length` cut.
struct Evaluated {
    name: String,
    kind: TaskKind,
    report: Box<dyn TaskReport>,
    truncated: (usize, usize),
}

/// Column flags that did nothing, and per task what may surprise in its numbers and the
/// texts `--max-length` cut.
fn notes(args: &EvalArgs, evaluated: &[Evaluated], max_length: usize) -> Vec<String> {
    let kinds: Vec<(&str, TaskKind)> = evaluated.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    let mut notes = column_flag_notes("--text-column", &args.text_columns, &kinds);
    notes.extend(column_flag_notes("--label-column", &args.label_columns, &kinds));
    let classifies = kinds.iter().any(|(_, kind)| *kind == TaskKind::Classification);
    if args.unknown_labels == UnknownLabelPolicy::Skip && !classifies {
        notes.push("--unknown-labels skip has no effect: no task here is a classification task".into());
    }
    for Evaluated { name, truncated: (cut, total), report, .. } in evaluated {
        notes.extend(report.metric_notes());
        if *cut > 0 {
            notes.push(format!("task '{name}': {}", truncation_note(*cut, *total, "text", max_length)));
        }
    }
    notes
}

/// One task's kind and report: the kind the model knows it by, else its file's header's.
fn task_report(
    encoder: &Encoder,
    task: &EvalTask,
    [text_columns, label_columns]: [&PerTask; 2],
    args: &EvalArgs,
    progress: &Progress,
) -> Result<(TaskKind, Box<dyn TaskReport>)> {
    let loaded = encoder.model;
    let known = loaded.spec.tasks.iter().find(|t| t.name == task.name);
    // Unreadable files are reported where they are read, with their line.
    let header = read_header(&task.path).unwrap_or_default();
    let column =
        |flag: Option<&str>, trained: Option<&str>, default: &str| column_to_read(&header, flag, trained, default);
    let text = column(text_columns.get(&task.name), known.and_then(|t| t.text_column.as_deref()), "text");
    let label = column(label_columns.get(&task.name), known.and_then(|t| t.label_column.as_deref()), "label");
    let columns = LabelColumns { text: &text, label: &label };
    let in_task = || format!("task '{}'", task.name);
    let kind = kind_of_file(&task.path, task.kind.or(known.map(|t| t.kind)), columns).with_context(in_task)?;
    let report: Box<dyn TaskReport> = match (kind, known) {
        (TaskKind::Classification, Some(spec)) => Box::new(
            tasks::classification::report(encoder, spec, &task.path, columns, args.unknown_labels, progress)
                .with_context(in_task)?,
        ),
        // A classification file needs the head of a task the model was trained on.
        (TaskKind::Classification, None) => {
            return Err(loaded.spec.unknown_task(&task.name)).with_context(|| {
                format!(
                    "task '{}': {} is a classification file (text and label columns), scored by the model's head of that name; similarity and pairs files need none",
                    task.name,
                    task.path.display()
                )
            })
        }
        (TaskKind::Similarity, _) => {
            Box::new(tasks::similarity::report(encoder, &task.name, &task.path, progress).with_context(in_task)?)
        }
        (TaskKind::Pairs, _) => {
            Box::new(tasks::pairs::report(encoder, &task.name, &task.path, progress).with_context(in_task)?)
        }
    };
    Ok((kind, report))
}

/// Refuses, before any work, an `--out` that is a file, lies inside a checkpoint, or holds
/// files that are not an earlier report (which a new report replaces whole).
fn check_report_folder(out: &Path) -> Result<()> {
    crate::output::refuse_dangling_link(out, "--out")?;
    if out.exists() && !out.is_dir() {
        bail!("--out {} exists and is not a folder", out.display());
    }
    crate::checkpoint::refuse_output_inside(out, "--out")?;
    // Found now, not after every task is scored: the first folder above that is there (or
    // is a link to nothing) decides.
    let above = out.ancestors().skip(1).find(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_ok());
    if let Some(above) = above {
        crate::output::refuse_dangling_link(above, &format!("--out {}:", out.display()))?;
        if !above.is_dir() {
            bail!("--out {}: {} is not a folder", out.display(), above.display());
        }
    }
    atomic_write::check_writable(&out.join(METRICS_FILE))
        .map_err(|e| anyhow!("--out {} cannot be written: {e}", out.display()))?;
    // Finder's `.DS_Store` in a folder opened to look at does not make it the user's.
    let non_empty =
        out.read_dir().map(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name() != ".DS_Store"))).unwrap_or(false);
    if non_empty && earlier_report(out).is_none() {
        bail!(
            "--out {} already holds files that are not an eval report; choose an empty or new folder, or one an earlier eval wrote",
            out.display()
        );
    }
    Ok(())
}

const METRICS_FILE: &str = "metrics.json";

/// Where a report's `metrics.json` lists the other files it wrote (names in its folder).
const FILES_FIELD: &str = "files";

/// The `metrics.json` of a report an earlier `eval --out` wrote in `dir`, if it holds one.
fn earlier_report(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(METRICS_FILE)).ok()?;
    let metrics: serde_json::Value = serde_json::from_str(&text).ok()?;
    (metrics.get("evaluated_at").is_some() && metrics.get("tasks").is_some()).then_some(metrics)
}

/// The files an earlier report in `out` wrote: its `metrics.json` and the files it lists,
/// never a name it does not list, which may be a file of the user's own. (A report that
/// lists none, from before the list, gives just its `metrics.json`: its other files stay.)
fn earlier_report_files(out: &Path) -> Vec<PathBuf> {
    let Some(metrics) = earlier_report(out) else { return Vec::new() };
    let listed = metrics[FILES_FIELD].as_array().into_iter().flatten().filter_map(|name| name.as_str());
    let plain_names = listed.filter(|name| {
        let path = Path::new(name);
        path.components().count() == 1 && path.file_name().is_some_and(|n| n == path.as_os_str())
    });
    let files = std::iter::once(out.join(METRICS_FILE)).chain(plain_names.map(|name| out.join(name)));
    files.filter(|path| path.is_file()).collect()
}

/// `metrics` as a report's `metrics.json` holds it: with the names of the other files it wrote.
fn metrics_file_text(metrics: &serde_json::Value, written: &[PathBuf]) -> Result<String> {
    let mut metrics = metrics.clone();
    let names = written.iter().filter_map(|path| path.file_name()).map(|n| n.to_string_lossy().into_owned());
    metrics[FILES_FIELD] = names.collect::<Vec<_>>().into();
    Ok(serde_json::to_string_pretty(&metrics)? + "\n")
}

/// Every report's files, `curves.png` for a run's checkpoint, and `metrics.json`, which marks
/// the folder as a report: first in a new folder, last over an earlier report (whose own
/// stays in place until then); then the earlier report's files the new one did not replace.
/// A failure on the way leaves a folder that a new `eval --out` takes.
fn write_reports(
    out: &Path,
    metrics: &serde_json::Value,
    evaluated: &[Evaluated],
    loaded: &LoadedModel,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create --out {}", out.display()))?;
    let earlier = earlier_report_files(out);
    let metrics_path = out.join(METRICS_FILE);
    if earlier.is_empty() {
        atomic_write::write_file(&metrics_path, metrics_file_text(metrics, &[])?.as_bytes())?;
    }
    let mut written = Vec::new();
    for Evaluated { report, .. } in evaluated {
        written.extend(report.write_files(out)?);
    }
    if let Some(log) = training_log_of(&loaded.dir) {
        written.extend(write_curves(out, &log, loaded)?);
    }
    atomic_write::write_file(&metrics_path, metrics_file_text(metrics, &written)?.as_bytes())?;
    written.insert(0, metrics_path);
    // By file, not by name: on a case-insensitive disk (macOS) the earlier report's
    // `predictions_STSB.csv` is this one's `predictions_stsb.csv`.
    for stale in earlier.iter().filter(|path| !written.iter().any(|w| same_file(w, path))) {
        std::fs::remove_file(stale).with_context(|| format!("cannot remove {}", stale.display()))?;
    }
    Ok(written)
}

/// The most characters of the run's path `curves.png`'s title shows: with the rest of the
/// title, what its 1200 px hold.
const RUN_PATH_CHARS: usize = 60;

/// `path` as shown, or its last components after `…/` when it is longer than `max`
/// characters (the last one whole, however long).
fn path_tail(path: &Path, max: usize) -> String {
    let shown = path.display().to_string();
    if shown.chars().count() <= max {
        return shown;
    }
    let parts: Vec<String> = path.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let mut tail = parts.last().cloned().unwrap_or_default();
    for part in parts.iter().rev().skip(1) {
        let longer = format!("{part}/{tail}");
        if longer.chars().count() + 2 > max {
            break;
        }
        tail = longer;
    }
    format!("…/{tail}")
}

/// `out/curves.png` from a run's training log, when it has curves.
fn write_curves(out: &Path, log: &Path, loaded: &LoadedModel) -> Result<Option<PathBuf>> {
    let curves = read_training_curves(log)?;
    if curves.is_empty() {
        return Ok(None);
    }
    let run = log.parent().unwrap_or(Path::new("."));
    let path = out.join("curves.png");
    // Which point of the run the evaluated checkpoint is (best/ is often not the end).
    let step = loaded.spec.metrics.as_ref().and_then(|m| m["step"].as_u64()).or_else(|| saved_step(&loaded.dir));
    let folder = loaded.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let run = path_tail(run, RUN_PATH_CHARS);
    let title = match step {
        Some(step) => format!("training run {run} ({folder}/ evaluated here: step {step})"),
        None => format!("training run {run}"),
    };
    training_curves(&path, &title, &curves)?;
    Ok(Some(path))
}

/// The step a checkpoint saved without dev scores holds (the `last/` of a stopped run, or of
/// `--save-every`), from its trainer state.
fn saved_step(checkpoint: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(checkpoint.join(crate::train::state::STATE_FILE)).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

/// Which characters of the labels the pictures cannot draw (task names are ASCII): the
/// embedded font covers Latin, Greek, Cyrillic and more, not CJK, and embedding a CJK font
/// would add megabytes.
fn undrawable_note(tasks: &[EvalTask], loaded: &LoadedModel) -> Option<String> {
    let labels = loaded.spec.tasks.iter().filter(|t| tasks.iter().any(|e| e.name == t.name)).flat_map(|t| &t.labels);
    let missing = undrawable_chars(labels.map(String::as_str));
    (!missing.is_empty()).then(|| {
        let shown: String = missing.iter().take(5).collect();
        format!(
            "the pictures' font has no glyphs for {} character{} of the labels ({shown}{}), which they show as boxes; the CSV and JSON files have them",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() > 5 { "..." } else { "" }
        )
    })
}

/// The run's `train_log.jsonl` when the model is a run's `best/` or `last/` checkpoint.
fn training_log_of(model_dir: &Path) -> Option<PathBuf> {
    let log = model_dir.parent()?.join("train_log.jsonl");
    log.is_file().then_some(log)
}

/// Current time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_run_paths_keep_their_end() {
        assert_eq!(path_tail(Path::new("runs/a"), 60), "runs/a");
        let deep =
            Path::new("/home/me/experiments_2024/ablation_study_of_everything/lr_sweep_4e-5_seed_1234/run_final");
        let shown = path_tail(deep, 60);
        assert_eq!(shown, "…/lr_sweep_4e-5_seed_1234/run_final");
        let one_long = "x".repeat(80);
        assert_eq!(path_tail(&Path::new("/a").join(&one_long), 60), format!("…/{one_long}"));
    }

    #[test]
    fn timestamp_shape() {
        let t = utc_timestamp();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
