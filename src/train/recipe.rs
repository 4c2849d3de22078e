//! `--recipe`: named sets of the optimisation defaults (learning rates per group, layer decay,
//! warm-up, schedule, label smoothing), each overridden by its own flag. `seed` keeps the
//! seed's illustrative rates; `default` is chosen from the recipe study (docs/recipes.md).

use serde::{Deserialize, Serialize};

use super::schedule::LrSchedule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    #[default]
    Default,
    Seed,
}

/// The values a recipe gives the flags it covers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecipeValues {
    pub lr_backbone: f64,
    pub lr_projection: f64,
    pub lr_heads: f64,
    pub layer_decay: f64,
    pub warmup_ratio: f64,
    pub lr_schedule: LrSchedule,
    pub label_smoothing: f64,
}

impl Recipe {
    pub fn values(self) -> RecipeValues {
        match self {
            // The recipe study's pick (docs/recipes.md): an 8x higher backbone rate than the
            // seed's, the same rate for every block, no warm-up, linear decay (a constant rate
            // won at 1 epoch but over-trained by the third).
            Self::Default => RecipeValues {
                lr_backbone: 8e-5,
                lr_projection: 1e-4,
                lr_heads: 1e-3,
                layer_decay: 1.0,
                warmup_ratio: 0.0,
                lr_schedule: LrSchedule::Linear,
                label_smoothing: 0.0,
            },
            // The seed's rates: 1e-5 / 1e-4 / 1e-3, layer decay 0.9, 10% warm-up, linear decay.
            Self::Seed => RecipeValues {
                lr_backbone: 1e-5,
                lr_projection: 1e-4,
                lr_heads: 1e-3,
                layer_decay: 0.9,
                warmup_ratio: 0.1,
                lr_schedule: LrSchedule::Linear,
                label_smoothing: 0.0,
            },
        }
    }
}

crate::value_names!(Recipe, "--recipe", [Default => "default", Seed => "seed"]);
