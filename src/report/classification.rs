//! A classification task's evaluation report: scikit-learn-style classification report and
//! confusion matrix as terminal tables, as JSON, as CSV and as a heatmap, with each row's
//! prediction.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Value};

use super::plots::{confusion_heatmap, HEATMAP_MAX_CLASSES};
use super::table::{count, Align, Table};
use super::{write_csv, TaskFile, TaskReport};
use crate::data::labelled::{quoted_list, UnknownLabels};
use crate::metrics::classification::{Average, ConfusionMatrix};

pub struct ClassificationReport {
    pub task: String,
    pub data: PathBuf,
    pub labels: Vec<String>,
    pub matrix: ConfusionMatrix,
    /// Rows left out with `--unknown-labels skip`.
    pub skipped: UnknownLabels,
    /// Per row, in input order: text, true label, predicted label, its probability, the row's
    /// line in the file.
    pub predictions: Vec<[String; 5]>,
    /// Rows whose class probabilities are not finite (a broken model's).
    pub non_finite: usize,
}

/// The most class names a note lists.
const LABELS_NAMED: usize = 5;

fn average_json(a: Average) -> Value {
    json!({ "precision": a.precision, "recall": a.recall, "f1": a.f1 })
}

impl TaskReport for ClassificationReport {
    /// Every number of the report (docs/usage.md lists the metrics.json fields).
    fn to_json(&self) -> Value {
        let per_class: serde_json::Map<String, Value> = self
            .labels
            .iter()
            .zip(self.matrix.per_class())
            .map(|(label, m)| {
                (
                    label.clone(),
                    json!({ "precision": m.precision, "recall": m.recall, "f1": m.f1, "support": m.support }),
                )
            })
            .collect();
        let macro_avg = self.matrix.macro_average();
        let weighted = self.matrix.weighted_average();
        json!({
            "kind": "classification",
            "data": super::recorded_path(&self.data),
            "rows": self.matrix.total(),
            "skipped_unknown_labels": {
                "rows": self.skipped.rows,
                "labels": self.skipped.labels.iter().map(|(l, _, n)| (l.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
            },
            "accuracy": self.matrix.accuracy(),
            "macro_f1": macro_avg.f1,
            "weighted_f1": weighted.f1,
            "macro_avg": average_json(macro_avg),
            "weighted_avg": average_json(weighted),
            "per_class": per_class,
            "confusion_matrix": { "labels": self.labels, "matrix": self.matrix.rows() },
        })
    }

    /// The classification report (as scikit-learn prints it, 4 digits) and the confusion
    /// matrix, for the terminal.
    fn render_text(&self) -> String {
        let mut out = format!(
            "task {}: {} from {}, accuracy {:.4}, macro-F1 {:.4}\n",
            self.task,
            count(self.matrix.total() as usize, "row"),
            self.data.display(),
            self.matrix.accuracy(),
            self.matrix.macro_average().f1
        );
        if !self.skipped.is_empty() {
            out.push_str(&format!(
                "skipped {} row(s) with labels the model was not trained on: {}\n",
                self.skipped.rows,
                self.skipped.describe()
            ));
        }
        out.push('\n');
        let mut report = Table::new(["", "precision", "recall", "f1-score", "support"]).align(0, Align::Right);
        for (label, m) in self.labels.iter().zip(self.matrix.per_class()) {
            report.row([label.clone(), f4(m.precision), f4(m.recall), f4(m.f1), m.support.to_string()]);
        }
        report.separator();
        let total = self.matrix.total().to_string();
        report.row(["accuracy".into(), String::new(), String::new(), f4(self.matrix.accuracy()), total.clone()]);
        for (name, avg) in
            [("macro avg", self.matrix.macro_average()), ("weighted avg", self.matrix.weighted_average())]
        {
            report.row([name.into(), f4(avg.precision), f4(avg.recall), f4(avg.f1), total.clone()]);
        }
        out.push_str(&report.render());
        out.push_str(&self.confusion_text());
        out
    }

    /// Classes with no rows that were never predicted: their F1 is 0 by scikit-learn's
    /// convention, and they pull the macro averages down.
    fn metric_notes(&self) -> Vec<String> {
        let rows = self.predictions.len();
        if let Some(note) = super::non_finite_note(&self.task, self.non_finite, rows, "rows") {
            return vec![note];
        }
        let absent: Vec<&String> = (0..self.labels.len())
            .filter(|&c| {
                (0..self.labels.len()).all(|other| self.matrix.count(c, other) + self.matrix.count(other, c) == 0)
            })
            .map(|c| &self.labels[c])
            .collect();
        if absent.is_empty() {
            return Vec::new();
        }
        vec![format!(
            "task '{}': {} of the model's {} classes ({}) have no rows in {} and were never predicted; they count 0 in the macro averages, as in scikit-learn's classification_report given every class (labels=)",
            self.task,
            absent.len(),
            self.labels.len(),
            quoted_list(&absent, LABELS_NAMED),
            self.data.display()
        )]
    }

    /// `confusion_<task>.csv` and `.png` (up to [`HEATMAP_MAX_CLASSES`]), and
    /// `predictions_<task>.csv` (`text`, `label`, `predicted`, `probability`, `line`, input order).
    fn write_files(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let csv_path = TaskFile::Confusion.path(out, &self.task, "csv");
        crate::atomic_write::write_file(&csv_path, &self.confusion_csv()?)?;
        let mut written = vec![csv_path];
        if self.labels.len() <= HEATMAP_MAX_CLASSES {
            let png_path = TaskFile::Confusion.path(out, &self.task, "png");
            let mut title = format!(
                "{}: confusion matrix ({} rows, accuracy {:.4})",
                self.task,
                self.matrix.total(),
                self.matrix.accuracy()
            );
            // A broken model's predictions are argmax over NaN: the picture must say so.
            if self.non_finite > 0 {
                title.push_str(&format!(
                    " - outputs NaN or infinite for {} of {} rows",
                    self.non_finite,
                    self.matrix.total()
                ));
            }
            confusion_heatmap(&png_path, &title, &self.labels, &self.matrix.rows())?;
            written.push(png_path);
        }
        let predictions_path = TaskFile::Predictions.path(out, &self.task, "csv");
        write_csv(&predictions_path, ["text", "label", "predicted", "probability", "line"], &self.predictions)?;
        written.push(predictions_path);
        Ok(written)
    }

    fn file_notes(&self) -> Vec<String> {
        let classes = self.labels.len();
        if classes <= HEATMAP_MAX_CLASSES {
            return Vec::new();
        }
        vec![format!(
            "task '{}' has {classes} classes, more than the {HEATMAP_MAX_CLASSES} a confusion heatmap is drawn for: its matrix is in {}, not in a picture",
            self.task,
            TaskFile::Confusion.path(Path::new(""), &self.task, "csv").display()
        )]
    }
}

/// The widest confusion matrix printed on the terminal, in characters.
const CONFUSION_MAX_WIDTH: usize = 160;

impl ClassificationReport {
    /// The confusion matrix as a table, or where it is too wide to read on a terminal (many
    /// or long labels), a line saying where to find it.
    fn confusion_text(&self) -> String {
        let mut header = vec!["true \\ predicted".to_string()];
        header.extend(self.labels.iter().cloned());
        let mut confusion = Table::new(header);
        for (label, row) in self.labels.iter().zip(self.matrix.rows()) {
            let mut cells = vec![label.clone()];
            cells.extend(row.iter().map(u64::to_string));
            confusion.row(cells);
        }
        let table = confusion.render();
        let width = table.lines().map(|line| line.chars().count()).max().unwrap_or(0);
        if width > CONFUSION_MAX_WIDTH {
            let n = self.labels.len();
            let picture = if n <= HEATMAP_MAX_CLASSES { " and .png" } else { "" };
            return format!(
                "\nconfusion matrix ({n} x {n} classes, {width} characters wide): too wide to show here; it is in --out's confusion_{}.csv{picture}, and in --json's output\n",
                self.task
            );
        }
        format!("\nconfusion matrix (rows: true, columns: predicted)\n{table}")
    }

    /// `confusion_<task>.csv`: header `true\predicted,<labels...>`, one row per true class.
    pub fn confusion_csv(&self) -> Result<Vec<u8>> {
        let mut csv = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["true\\predicted".to_string()];
        header.extend(self.labels.iter().cloned());
        csv.write_record(&header)?;
        for (label, row) in self.labels.iter().zip(self.matrix.rows()) {
            let mut record = vec![label.clone()];
            record.extend(row.iter().map(u64::to_string));
            csv.write_record(&record)?;
        }
        csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn f4(x: f64) -> String {
    format!("{x:.4}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ClassificationReport {
        ClassificationReport {
            task: "t".into(),
            data: "d.csv".into(),
            labels: vec!["neg".into(), "pos".into()],
            matrix: ConfusionMatrix::from_predictions(2, &[0, 0, 1, 1], &[0, 1, 1, 1]),
            skipped: UnknownLabels::default(),
            predictions: Vec::new(),
            non_finite: 0,
        }
    }

    #[test]
    fn outputs_that_are_not_numbers_get_a_note() {
        assert!(report().metric_notes().is_empty());
        let broken = ClassificationReport { non_finite: 4, predictions: vec![Default::default(); 4], ..report() };
        let notes = broken.metric_notes();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("task 't': the model's outputs are not finite (NaN or infinite) for 4 of 4 rows"),
            "{notes:?}"
        );
    }

    #[test]
    fn text_report_has_sklearn_rows() {
        let text = report().render_text();
        assert!(text.contains("accuracy 0.7500"), "{text}");
        assert!(text.contains("   neg     1.0000  0.5000    0.6667        2"), "{text}");
        assert!(text.contains("macro avg"), "{text}");
        assert!(
            text.contains("true \\ predicted  neg  pos\nneg                 1    1\npos                 0    2"),
            "{text}"
        );
    }

    #[test]
    fn a_confusion_matrix_too_wide_for_a_terminal_says_where_it_is() {
        let classes = 47;
        let truth: Vec<usize> = (0..classes).collect();
        let wide = ClassificationReport {
            labels: (0..classes).map(|c| format!("LABEL:{c}")).collect(),
            matrix: ConfusionMatrix::from_predictions(classes, &truth, &truth),
            ..report()
        };
        let text = wide.render_text();
        assert!(text.contains("confusion matrix (47 x 47 classes, "), "{text}");
        assert!(text.contains("too wide to show here; it is in --out's confusion_t.csv and .png"), "{text}");
        assert!(text.lines().all(|line| line.chars().count() <= CONFUSION_MAX_WIDTH), "{text}");
    }

    /// Past `HEATMAP_MAX_CLASSES` the matrix is written as CSV only (a picture of 1000 classes
    /// took 1.5 GB of pixels), and a note says where it is.
    #[test]
    fn a_heatmap_is_drawn_up_to_its_most_classes() {
        let out = tempfile::tempdir().unwrap();
        for classes in [HEATMAP_MAX_CLASSES, HEATMAP_MAX_CLASSES + 1] {
            let truth: Vec<usize> = (0..classes).collect();
            let task = format!("t{classes}");
            let many = ClassificationReport {
                task: task.clone(),
                labels: (0..classes).map(|c| format!("c{c}")).collect(),
                matrix: ConfusionMatrix::from_predictions(classes, &truth, &truth),
                ..report()
            };
            let written = many.write_files(out.path()).unwrap();
            let png = out.path().join(format!("confusion_{task}.png"));
            let drawn = classes <= HEATMAP_MAX_CLASSES;
            assert_eq!((png.is_file(), written.contains(&png)), (drawn, drawn), "{classes} classes");
            assert!(out.path().join(format!("confusion_{task}.csv")).is_file());
            let notes = many.file_notes();
            match drawn {
                true => assert!(notes.is_empty(), "{notes:?}"),
                false => assert_eq!(notes, [format!("task '{task}' has 101 classes, more than the 100 a confusion heatmap is drawn for: its matrix is in confusion_{task}.csv, not in a picture")]),
            }
            let picture = if drawn { " and .png" } else { "" };
            assert!(many.render_text().contains(&format!("it is in --out's confusion_{task}.csv{picture}, and")));
        }
    }

    #[test]
    fn json_and_csv_carry_the_matrix() {
        let r = report();
        let j = r.to_json();
        assert_eq!(j["confusion_matrix"]["matrix"], json!([[1, 1], [0, 2]]));
        assert_eq!(j["per_class"]["pos"]["support"], 2);
        assert_eq!(
            String::from_utf8(r.confusion_csv().unwrap()).unwrap(),
            "true\\predicted,neg,pos\nneg,1,1\npos,0,2\n"
        );
    }
}
