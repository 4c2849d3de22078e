//! Small-data mode (`--small-data auto|on|off`). With a few labelled rows per class a plain
//! fine-tune takes a handful of steps and its randomly started head barely shapes the
//! embeddings. As SetFit does, the mode trains the embeddings on pairs built from the labels
//! (same class: cosine 1, different classes: cosine 0, the two kinds weighted equally, as
//! SetFit's oversampling does), here over the pairs of every batch and beside the head's
//! cross-entropy, and it runs at least [`MIN_STEPS`] optimizer steps. `auto` turns it on for a
//! classification task with at most [`ROWS_PER_CLASS`] training rows per class on average
//! (docs/recipes.md has the few-shot measurements behind both numbers).

use serde::{Deserialize, Serialize};

/// `auto` turns the mode on for a classification task with at most this many rows per class.
pub const ROWS_PER_CLASS: usize = 128;

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
            Self::Auto => rows <= ROWS_PER_CLASS * classes.max(1),
        }
    }
}

/// The run's optimizer steps: `planned`, raised to [`MIN_STEPS`] in small-data mode.
pub fn total_steps(planned: usize, small_data: bool) -> usize {
    if small_data {
        planned.max(MIN_STEPS)
    } else {
        planned
    }
}

/// The line a run in small-data mode starts with: which tasks (`name`, training rows), and the
/// steps it runs against the `planned` ones.
pub fn announcement(tasks: &[(&str, usize)], planned: usize, total: usize) -> String {
    let tasks: Vec<String> = tasks.iter().map(|(name, rows)| format!("'{name}' ({rows} rows)")).collect();
    let steps = if total > planned {
        format!("{total} optimizer steps instead of {planned}")
    } else {
        format!("{total} optimizer steps")
    };
    format!(
        "small-data mode for {}: label-pair cosine loss on the embeddings beside cross-entropy (as SetFit), {steps}; --small-data off turns it off",
        tasks.join(", ")
    )
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
        assert!(SmallData::On.applies(100_000, 2));
        assert!(!SmallData::Off.applies(16, 2));
        assert_eq!(total_steps(3, true), MIN_STEPS);
        assert_eq!(total_steps(3, false), 3);
        assert_eq!(total_steps(MIN_STEPS + 5, true), MIN_STEPS + 5);
        let line = announcement(&[("trec", 48)], 6, MIN_STEPS);
        assert!(line.starts_with("small-data mode for 'trec' (48 rows): "), "{line}");
        assert!(line.contains("200 optimizer steps instead of 6; --small-data off"), "{line}");
    }
}
