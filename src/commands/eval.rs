//! `sentence-mtl eval`: accuracy, F1 and confusion matrices per task on labelled CSVs, as
//! tables, JSON and pictures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::runtime::open_model;
use crate::atomic_write;
use crate::cli::task_values::{PerTask, TaskArg};
use crate::cli::EvalArgs;
use crate::data::labelled::{LabelSet, LabelledData};
use crate::inference::class_probabilities;
use crate::metrics::ConfusionMatrix;
use crate::model::spec::SpecOverrides;
use crate::report::classification::TaskReport;
use crate::report::plots::{confusion_heatmap, read_training_curves, training_curves};

struct EvalTask {
    name: String,
    path: PathBuf,
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
            Ok(EvalTask { name: task.name.clone(), path: PathBuf::from(&task.value) })
        })
        .collect()
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    let tasks = eval_tasks(&args.tasks)?;
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    let text_columns = PerTask::resolve("--text-column", &args.text_columns, &names)?;
    let label_columns = PerTask::resolve("--label-column", &args.label_columns, &names)?;
    let overrides = SpecOverrides { max_length: args.model.max_length, ..Default::default() };
    let (loaded, progress) = open_model(&args.model, &overrides)?;
    for task in &tasks {
        loaded.spec.task(&task.name)?;
    }

    let mut reports = Vec::new();
    let mut predictions = Vec::new();
    for task in &tasks {
        let spec = loaded.spec.task(&task.name)?;
        let text_column = text_columns.get(&task.name).unwrap_or(&spec.text_column);
        let label_column = label_columns.get(&task.name).unwrap_or(&spec.label_column);
        let data = LabelledData::read(&task.path, text_column, label_column)?;
        let labels = LabelSet::from_names(spec.labels.clone());
        let (truth, kept, skipped) = data.class_ids(&labels, args.unknown_labels)?;
        if kept.is_empty() {
            bail!("{}: no rows left after skipping labels the model was not trained on", task.path.display());
        }
        let texts: Vec<String> = kept.iter().map(|&r| data.texts[r].clone()).collect();
        let probabilities = class_probabilities(&loaded, &task.name, &texts, args.model.batch_size, &progress)?;
        let (best_p, best_class) = probabilities.max_dim(-1, false);
        let best_p = Vec::<f32>::try_from(best_p)?;
        let predicted: Vec<usize> = Vec::<i64>::try_from(best_class)?.into_iter().map(|c| c as usize).collect();
        let matrix = ConfusionMatrix::from_predictions(labels.len(), &truth, &predicted);
        let rows: Vec<[String; 4]> = texts
            .iter()
            .zip(&truth)
            .zip(predicted.iter().zip(&best_p))
            .map(|((text, &t), (&p, &prob))| {
                [text.clone(), spec.labels[t].clone(), spec.labels[p].clone(), prob.to_string()]
            })
            .collect();
        predictions.push(rows);
        reports.push(TaskReport {
            task: task.name.clone(),
            data: task.path.clone(),
            labels: spec.labels.clone(),
            matrix,
            skipped,
        });
    }

    let metrics = json!({
        "model": args.model.model,
        "evaluated_at": utc_timestamp(),
        "seconds": started.elapsed().as_secs_f64(),
        "tasks": reports.iter().map(|r| (r.task.clone(), r.to_json())).collect::<serde_json::Map<_, _>>(),
    });
    let mut written = Vec::new();
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create --out {}", out.display()))?;
        let file = |name: &str| out.join(name);
        atomic_write::write_file(&file("metrics.json"), (serde_json::to_string_pretty(&metrics)? + "\n").as_bytes())?;
        written.push(file("metrics.json"));
        for (report, rows) in reports.iter().zip(&predictions) {
            let csv_path = file(&format!("confusion_{}.csv", report.task));
            atomic_write::write_file(&csv_path, &report.confusion_csv()?)?;
            let png_path = file(&format!("confusion_{}.png", report.task));
            let title = format!(
                "{}: confusion matrix ({} rows, accuracy {:.3})",
                report.task,
                report.matrix.total(),
                report.matrix.accuracy()
            );
            confusion_heatmap(&png_path, &title, &report.labels, &report.matrix.rows())?;
            let predictions_path = file(&format!("predictions_{}.csv", report.task));
            write_predictions_csv(&predictions_path, rows)?;
            written.extend([csv_path, png_path, predictions_path]);
        }
        if let Some(log) = training_log_of(&loaded.dir) {
            let curves = read_training_curves(&log)?;
            if !curves.is_empty() {
                let run = log.parent().unwrap_or(Path::new("."));
                training_curves(&file("curves.png"), &format!("training run {}", run.display()), &curves)?;
                written.push(file("curves.png"));
            }
        }
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        for (i, report) in reports.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", report.render_text());
        }
        if !args.model.quiet && !written.is_empty() {
            eprintln!();
            for path in written {
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// `predictions_<task>.csv`: text, label (true), predicted, probability; input order.
fn write_predictions_csv(path: &Path, rows: &[[String; 4]]) -> Result<()> {
    atomic_write::write_file_with(path, |file| {
        let mut csv = csv::Writer::from_writer(file);
        csv.write_record(["text", "label", "predicted", "probability"])?;
        for row in rows {
            csv.write_record(row)?;
        }
        csv.flush()?;
        Ok(())
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
    fn timestamp_shape() {
        let t = utc_timestamp();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
