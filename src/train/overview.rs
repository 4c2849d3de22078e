//! What `train` prints for people: the run's overview at the start (model, tasks, optimizer
//! groups, trainable parameters, notes) and each dev evaluation as a table.

use anyhow::Result;
use indicatif::ProgressBar;

use super::evaluate::Evaluation;
use super::param_groups::{group_table, human_count, parameter_counts};
use super::settings::TrainSettings;
use super::setup::PreparedModel;
use crate::device;
use crate::model::names;
use crate::precision::Precision;
use crate::report::table::{Align, Table};
use crate::tasks::TrainingTask;

/// The model, its new layers, the tasks and the optimizer groups, on stderr.
pub(super) struct Overview<'a> {
    pub settings: &'a TrainSettings,
    /// The model as the run trains it, with its notes (printed last, `note: ...`).
    pub prepared: &'a PreparedModel,
    pub tasks: &'a [Box<dyn TrainingTask>],
    /// `--precision` as resolved for the device.
    pub precision: Precision,
    /// The fraction of the batches each task gets (the sampler's, shares included).
    pub batch_shares: Vec<f64>,
}

impl Overview<'_> {
    pub fn print(&self) -> Result<()> {
        let PreparedModel { model: trained, loaded, new_tensors, notes, .. } = self.prepared;
        let spec = &loaded.spec;
        let num_layers = loaded.config.num_layers() as usize;
        // A checkpoint or export fine-tuned further names itself and the model it came from.
        let model = match crate::checkpoint::same_place(&self.settings.model, &spec.base_model) {
            true => spec.base_model.clone(),
            false => format!("{}, fine-tuned from {}", self.settings.model, spec.base_model),
        };
        crate::stderrln!(
            "model: {model} ({} layers, {} pooling, projection {}, sentences cut at {} tokens: --max-length), on {}, {}{}",
            num_layers,
            spec.pooling,
            spec.projection_dim.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
            spec.max_length,
            device::describe(loaded.device),
            self.precision,
            if self.settings.precision == Precision::Auto { " (--precision auto)" } else { "" }
        );
        if !new_tensors.is_empty() {
            let new_layers = names::layers_of(new_tensors.iter().map(String::as_str));
            crate::stderrln!("new layers (randomly initialised): {}", new_layers.join(", "));
        }
        let mut task_table =
            Table::new(["task", "kind", "train rows", "dev rows", "loss weight", "batch share", "details"])
                .align(6, Align::Left);
        for (t, share) in self.tasks.iter().zip(&self.batch_shares) {
            task_table.row([
                t.source().name.clone(),
                t.kind().to_string(),
                t.train_rows().to_string(),
                t.dev_rows().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                t.source().weight.to_string(),
                percent(*share),
                t.summary(),
            ]);
        }
        crate::stderr!("{}", task_table.render());
        let learning_rates = self.settings.learning_rates();
        crate::stderr!("{}", group_table(&trained.vs, num_layers, &learning_rates, self.settings.weight_decay)?);
        let (trainable, total) = parameter_counts(&trained.vs);
        crate::stderrln!(
            "trainable parameters: {} of {} ({:.1}%)",
            human_count(trainable),
            human_count(total),
            100.0 * trainable as f64 / total.max(1) as f64
        );
        for note in notes {
            crate::stderrln!("{note}");
        }
        Ok(())
    }
}

/// A fraction as a percentage: whole where it is one (50%), else to a tenth (37.5%), and
/// a share too small for a tenth is not shown as none.
fn percent(fraction: f64) -> String {
    let percent = 100.0 * fraction;
    if percent > 0.0 && percent < 0.05 {
        return "<0.1%".into();
    }
    match (percent - percent.round()).abs() < 0.05 {
        true => format!("{percent:.0}%"),
        false => format!("{percent:.1}%"),
    }
}

/// One evaluation's table, printed around the progress bar.
pub fn print_evaluation(evaluation: &Evaluation, order: &[&str], bar: &ProgressBar) {
    let text = format!(
        "step {}: mean of the main dev metrics {:.4}\n{}",
        evaluation.step,
        evaluation.mean_main_metric,
        score_table(&evaluation.tasks, order)
    );
    if bar.is_hidden() {
        crate::stderr!("{text}");
    } else {
        bar.suspend(|| crate::stderr!("{text}"));
    }
}

/// Dev scores as a table: each task's main metric, a second one, and the rows scored, in
/// `order` (the command line's).
pub fn score_table(scores: &std::collections::BTreeMap<String, crate::tasks::TaskScore>, order: &[&str]) -> String {
    let mut table = Table::new(["task", "kind", "main metric", "", "also", "examples"]);
    let mut rows: Vec<(&String, &crate::tasks::TaskScore)> = scores.iter().collect();
    rows.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(usize::MAX));
    for (name, score) in rows {
        let (second, value) = score.secondary();
        table.row([
            name.clone(),
            score.kind().to_string(),
            score.kind().main_metric().to_string(),
            format!("{:.4}", score.main()),
            format!("{second} {value:.4}"),
            score.examples().to_string(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shares_read_as_percentages() {
        assert_eq!(super::percent(0.5), "50%");
        assert_eq!(super::percent(0.375), "37.5%");
        assert_eq!(super::percent(1.0 / 3.0), "33.3%");
        assert_eq!(super::percent(1e-50), "<0.1%");
        assert_eq!(super::percent(0.0), "0%");
    }
}
