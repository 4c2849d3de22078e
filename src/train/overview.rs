//! What `train` prints for people: the run's overview at the start (model, tasks, optimizer
//! groups, trainable parameters) and each dev evaluation as a table.

use anyhow::Result;
use indicatif::ProgressBar;

use super::evaluate::Evaluation;
use super::param_groups::{group_table, human_count, LearningRates};
use super::settings::TrainSettings;
use super::task_data::TaskData;
use crate::device;
use crate::model::loaded::LoadedModel;
use crate::report::table::Table;

/// The model, its new layers, the tasks and the optimizer groups, on stderr.
pub struct Overview<'a> {
    pub settings: &'a TrainSettings,
    pub loaded: &'a LoadedModel,
    pub vs: &'a tch::nn::VarStore,
    pub tasks: &'a [TaskData],
    pub new_tensors: &'a [String],
    pub learning_rates: &'a LearningRates,
    /// (trainable, total) parameters.
    pub parameters: (i64, i64),
}

impl Overview<'_> {
    pub fn print(&self) -> Result<()> {
        let spec = &self.loaded.spec;
        let num_layers = self.loaded.config.num_layers() as usize;
        eprintln!(
            "model: {} ({} layers, {} pooling, projection {}), on {}",
            spec.base_model,
            num_layers,
            spec.pooling,
            spec.projection_dim.map(|d| d.to_string()).unwrap_or_else(|| "none".into()),
            device::describe(self.loaded.device)
        );
        if !self.new_tensors.is_empty() {
            let mut new_layers: Vec<String> = self
                .new_tensors
                .iter()
                .filter_map(|n| n.rsplit_once('.').map(|(layer, _)| layer.to_string()))
                .collect();
            new_layers.dedup();
            eprintln!("new layers (randomly initialised): {}", new_layers.join(", "));
        }
        let mut task_table = Table::new(["task", "train rows", "dev rows", "classes", "loss weight"]);
        for t in self.tasks {
            task_table.row([
                t.source.name.clone(),
                t.train.len().to_string(),
                t.dev.as_ref().map(|d| d.data.len().to_string()).unwrap_or_else(|| "-".into()),
                t.labels.len().to_string(),
                t.source.weight.to_string(),
            ]);
        }
        eprint!("{}", task_table.render());
        eprint!("{}", group_table(self.vs, num_layers, self.learning_rates, self.settings.weight_decay)?);
        let (trainable, total) = self.parameters;
        eprintln!(
            "trainable parameters: {} of {} ({:.1}%)",
            human_count(trainable),
            human_count(total),
            100.0 * trainable as f64 / total.max(1) as f64
        );
        Ok(())
    }
}

/// One evaluation's table, printed around the progress bar.
pub fn print_evaluation(evaluation: &Evaluation, bar: &ProgressBar) {
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
