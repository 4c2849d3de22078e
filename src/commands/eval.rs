//! `sentence-mtl eval`: accuracy, F1 and confusion matrices per task on labelled CSVs, as
//! tables, JSON and pictures.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::atomic_write;
use crate::cli::EvalArgs;
use crate::commands::encode::open_model;
use crate::data::labelled::{LabelSet, LabelledData};
use crate::inference::class_probabilities;
use crate::metrics::ConfusionMatrix;
use crate::model::spec::SpecOverrides;
use crate::report::classification::TaskReport;
use crate::report::plots::{confusion_heatmap, read_training_curves, training_curves};
use crate::train::settings::check_task_name;

struct EvalTask {
    name: String,
    path: PathBuf,
}

fn parse_tasks(values: &[String]) -> Result<Vec<EvalTask>> {
    let mut tasks: Vec<EvalTask> = Vec::new();
    for value in values {
        let (name, path) = value.split_once('=').with_context(|| format!("--task {value}: expected NAME=FILE.csv"))?;
        check_task_name(name).with_context(|| format!("--task {value}"))?;
        if path.is_empty() {
            bail!("--task {value}: no file");
        }
        if tasks.iter().any(|t| t.name == name) {
            bail!("--task {value}: task '{name}' is given twice");
        }
        tasks.push(EvalTask { name: name.to_string(), path: PathBuf::from(path) });
    }
    Ok(tasks)
}

/// `[NAME=]COL` overrides for one task, else `default`.
fn column_for(values: &[String], task: &str, default: &str) -> String {
    let mut chosen = default.to_string();
    for value in values {
        match value.split_once('=') {
            Some((name, column)) if name == task => return column.to_string(),
            Some(_) => {}
            None => chosen = value.clone(),
        }
    }
    chosen
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let started = Instant::now();
    let skip_unknown = match args.unknown_labels.as_str() {
        "error" => false,
        "skip" => true,
        other => bail!("unknown --unknown-labels '{other}' (expected error or skip)"),
    };
    let tasks = parse_tasks(&args.tasks)?;
    let overrides = SpecOverrides { max_length: args.model.max_length, ..Default::default() };
    let (loaded, progress) = open_model(&args.model, &overrides)?;
    for task in &tasks {
        loaded.spec.task(&task.name)?;
    }

    let mut reports = Vec::new();
    let mut predictions = Vec::new();
    for task in &tasks {
        let spec = loaded.spec.task(&task.name)?;
        let text_column = column_for(&args.text_columns, &task.name, &spec.text_column);
        let label_column = column_for(&args.label_columns, &task.name, &spec.label_column);
        let data = LabelledData::read(&task.path, &text_column, &label_column)?;
        let labels = LabelSet::from_names(spec.labels.clone());
        let (truth, kept, skipped) = data.class_ids(&labels, skip_unknown)?;
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
    fn columns_default_then_all_then_per_task() {
        assert_eq!(column_for(&[], "a", "text"), "text");
        assert_eq!(column_for(&["sentence".into()], "a", "text"), "sentence");
        assert_eq!(column_for(&["sentence".into(), "a=q".into()], "a", "text"), "q");
        assert_eq!(column_for(&["b=q".into()], "a", "text"), "text");
    }

    #[test]
    fn timestamp_shape() {
        let t = utc_timestamp();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
