//! Small-data mode (`--small-data auto|on|off`). With a few labelled rows per class a plain
//! fine-tune takes a handful of steps and its randomly started head barely shapes the
//! embeddings. As SetFit does, the mode trains the embeddings on pairs built from the labels
//! (same class: cosine 1, different classes: cosine 0, the two kinds weighted equally, as
//! SetFit's oversampling does), here over the pairs of every batch and beside the head's
//! cross-entropy, and it runs at least [`MIN_STEPS`] optimizer steps. The head reads the
//! embeddings (normalised where the model normalises them), and after the last step it is fitted anew on the
//! final body ([`refit_heads`]), as SetFit fits its head once its body is trained; each dev
//! evaluation before scores a head fitted the same way on the body of its step. `auto` turns
//! the mode on for a classification task with at most [`ROWS_PER_CLASS`] training rows per
//! class on average and at most [`MAX_ROWS`] in all (docs/recipes.md has the few-shot and
//! many-class measurements behind these choices).

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::inference::Encoder;
use crate::model::names;
use crate::report::table::count;
use crate::tasks::TrainingTask;

/// `auto` turns the mode on for a classification task with at most this many rows per class.
pub const ROWS_PER_CLASS: usize = 128;

/// ... and at most this many rows in all. On TREC's 50 fine labels the mode gained 47.5
/// points of dev accuracy with 703 rows, was level with 1974 and lost 5.6 with all 4951
/// (99 per class), where plain fine-tuning has steps enough (docs/recipes.md, "How many rows").
pub const MAX_ROWS: usize = 2000;

/// The fewest optimizer steps of a run in small-data mode (unless `--max-steps` says otherwise).
pub const MIN_STEPS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmallData {
    #[default]
    Auto,
    On,
    Off,
}

impl SmallData {
    /// Whether a classification task of `rows` training rows in `classes` classes trains in
    /// small-data mode.
    pub fn applies(self, rows: usize, classes: usize) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Auto => rows <= ROWS_PER_CLASS * classes.max(1) && rows <= MAX_ROWS,
        }
    }
}

/// What small-data mode does to a run's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunShape {
    /// No task trains in small-data mode.
    Off,
    /// Every small-data task's encoder is frozen: its steps train only the head that the
    /// refit replaces, so more steps would change nothing; evaluations (each a refit) are
    /// kept to `--epochs` rather than one per tiny epoch.
    FewerEvaluations,
    /// At least [`MIN_STEPS`] optimizer steps, and `--epochs` evaluations over them.
    Lengthened,
}

impl RunShape {
    /// The shape of a run with a small-data task (`small_data`) whose encoder is frozen or not.
    pub fn of(small_data: bool, encoder_frozen: bool) -> Self {
        match (small_data, encoder_frozen) {
            (false, _) => Self::Off,
            (true, true) => Self::FewerEvaluations,
            (true, false) => Self::Lengthened,
        }
    }

    /// The run's optimizer steps: `planned`, raised to [`MIN_STEPS`] where it lengthens.
    pub fn total_steps(self, planned: usize) -> usize {
        match self {
            Self::Lengthened => planned.max(MIN_STEPS),
            Self::Off | Self::FewerEvaluations => planned,
        }
    }

    /// Steps between dev evaluations when `--eval-every` is not given: an epoch, but in
    /// small-data mode no fewer than make `epochs` evaluations of the `total` steps, since
    /// each refits the heads and saves `last/` (a run of tiny epochs would otherwise do that
    /// every step or two).
    pub fn eval_interval(self, steps_per_epoch: usize, total: usize, epochs: usize) -> usize {
        match self {
            Self::Off => steps_per_epoch,
            Self::FewerEvaluations | Self::Lengthened => steps_per_epoch.max(total.div_ceil(epochs.max(1))),
        }
    }
}

/// A task that trains in small-data mode, as the run's first line about it names it.
pub struct SmallTask<'a> {
    pub name: &'a str,
    pub rows: usize,
    /// `--freeze head:NAME` keeps its head: it is not fitted anew.
    pub head_frozen: bool,
}

/// The line a run in small-data mode starts with: which tasks, what trains them, which heads
/// are fitted anew, and the steps it runs against the `planned` ones.
pub fn announcement(tasks: &[SmallTask], planned: usize, total: usize, encoder_frozen: bool) -> String {
    let frozen: Vec<String> = tasks.iter().filter(|t| t.head_frozen).map(|t| format!("'{}'", t.name)).collect();
    let heads = match frozen.len() {
        0 => "the head fitted anew on the embeddings after the last step (as SetFit; dev evaluations score such a head too)".to_string(),
        n if n == tasks.len() => format!("the frozen head of {} kept as it is", frozen.join(", ")),
        _ => format!(
            "each head but the frozen one of {} fitted anew on the embeddings after the last step (as SetFit; dev evaluations score such heads too)",
            frozen.join(", ")
        ),
    };
    let tasks: Vec<String> = tasks.iter().map(|t| format!("'{}' ({} rows)", t.name, t.rows)).collect();
    let steps = if total > planned {
        format!("{} instead of {planned}", count(total, "optimizer step"))
    } else {
        count(total, "optimizer step")
    };
    let losses = match encoder_frozen {
        false => "label-pair cosine loss on the embeddings beside cross-entropy",
        true => "cross-entropy alone, over the planned steps (no label-pair loss and no lengthening: nothing that feeds the embeddings trains)",
    };
    format!("small-data mode for {}: {losses}, and {heads}, {steps}; --small-data off turns it off", tasks.join(", "))
}

/// The heads [`refit_heads`] replaced, as they were trained, to put back when training goes
/// on; and a line to show per refitted head.
pub struct TrainedHeads {
    /// (the head's variable, a copy of its trained value)
    trained: Vec<(Tensor, Tensor)>,
    pub lines: Vec<String>,
}

impl TrainedHeads {
    pub fn none() -> Self {
        Self { trained: Vec::new(), lines: Vec::new() }
    }

    /// Whether a head was refitted, so that the model scored is not the one training goes on with.
    pub fn replaced_any(&self) -> bool {
        !self.trained.is_empty()
    }

    /// Puts the trained heads back, bit for bit (training goes on from them).
    pub fn restore(self) {
        tch::no_grad(|| {
            for (mut variable, value) in self.trained {
                variable.copy_(&value);
            }
        });
    }
}

/// Each head a task refits (`TrainingTask::refit_head`) replaces the trained one in the model
/// `encoder` runs (a head kept by `--freeze` is not refitted: `ClassificationTask::note_frozen`).
/// Done at every evaluation, so that dev scores, `best/` and an early stop's checkpoints are of
/// the refitted heads, as the final model's are; the trained heads come back in between. Every
/// rank fits from the same gathered inputs, and then takes rank 0's head, so the ranks cannot
/// drift apart by a rounding.
pub fn refit_heads(tasks: &[Box<dyn TrainingTask>], encoder: &Encoder) -> Result<TrainedHeads> {
    let mut heads = TrainedHeads::none();
    for task in tasks {
        let name = &task.source().name;
        let head = names::head(name);
        let weights = &encoder.model.weights;
        let (Some(weight), Some(bias)) = (weights.get(&names::weight(&head)), weights.get(&names::bias(&head))) else {
            continue;
        };
        let Some(fitted) = task.refit_head(encoder)? else { continue };
        tch::no_grad(|| -> Result<()> {
            // `weights` are views of the trained variables: write through them.
            for (variable, value) in [(weight, &fitted.weight), (bias, &fitted.bias)] {
                let mut variable = variable.shallow_clone();
                heads.trained.push((variable.shallow_clone(), variable.copy()));
                variable.copy_(value);
                if let Some(group) = encoder.group {
                    group.broadcast_(&mut variable, 0, "the broadcast of the refitted head")?;
                }
            }
            Ok(())
        })?;
        heads.lines.push(format!(
            "small-data mode: the head of '{name}' fitted anew on the final embeddings of its {} training rows (logistic regression, C = {}, as SetFit){}",
            task.train_rows(),
            super::logistic_regression::C,
            match fitted.converged {
                true => "",
                false => "; warning: it stopped before it converged (as scikit-learn's ConvergenceWarning)",
            }
        ));
    }
    Ok(heads)
}

crate::value_names!(SmallData, "--small-data", [Auto => "auto", On => "on", Off => "off"]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_turns_on_at_the_rows_per_class_limit() {
        assert!(SmallData::Auto.applies(16, 2));
        assert!(SmallData::Auto.applies(ROWS_PER_CLASS * 6, 6));
        assert!(!SmallData::Auto.applies(ROWS_PER_CLASS * 6 + 1, 6));
        // TREC's fine labels: 99 rows per class, but 4951 rows.
        assert!(SmallData::Auto.applies(MAX_ROWS, 50));
        assert!(!SmallData::Auto.applies(4951, 50));
        assert!(SmallData::On.applies(100_000, 2));
        assert!(!SmallData::Off.applies(16, 2));
        assert_eq!(RunShape::Lengthened.total_steps(3), MIN_STEPS);
        assert_eq!(RunShape::Off.total_steps(3), 3);
        assert_eq!(RunShape::FewerEvaluations.total_steps(3), 3);
        assert_eq!(RunShape::Lengthened.total_steps(MIN_STEPS + 5), MIN_STEPS + 5);
        let line = announcement(&[SmallTask { name: "trec", rows: 48, head_frozen: false }], 6, MIN_STEPS, false);
        assert!(line.starts_with("small-data mode for 'trec' (48 rows): "), "{line}");
        assert!(line.contains("200 optimizer steps instead of 6; --small-data off"), "{line}");
    }
}
