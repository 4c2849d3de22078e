//! The learning-rate schedule (`--lr-schedule`): a linear warm-up, then linear decay to 0 (HF's
//! `get_linear_schedule_with_warmup`), half a cosine down to 0 (`get_cosine_schedule_with_warmup`)
//! or a constant rate (`get_constant_schedule_with_warmup`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Linear,
    Cosine,
    Constant,
}

crate::value_names!(LrSchedule, "--lr-schedule", [Linear => "linear", Cosine => "cosine", Constant => "constant"]);

impl LrSchedule {
    /// Multiplier of every group's base learning rate at optimizer step `step` (0-based):
    /// `step / warmup` while warming up (as in HF, the first step has factor 0), then the
    /// schedule's shape from 1 at the end of the warm-up to 0 at `total` (constant: 1).
    pub fn factor(self, step: usize, warmup: usize, total: usize) -> f64 {
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let span = total.saturating_sub(warmup).max(1) as f64;
        let progress = (step - warmup) as f64 / span;
        match self {
            Self::Linear => (total.saturating_sub(step) as f64 / span).max(0.0),
            Self::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
            Self::Constant => 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warms_up_then_decays_to_zero() {
        let f: Vec<f64> = (0..=10).map(|s| LrSchedule::Linear.factor(s, 4, 10)).collect();
        assert_eq!(&f[..5], &[0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(f[7], 0.5);
        assert_eq!(f[10], 0.0);
    }

    #[test]
    fn no_warmup_starts_at_full_rate() {
        assert_eq!(LrSchedule::Linear.factor(0, 0, 10), 1.0);
        assert_eq!(LrSchedule::Linear.factor(5, 0, 10), 0.5);
    }

    #[test]
    fn cosine_and_constant_shapes() {
        // Half way through the decay the cosine is at 1/2, at the end at 0.
        assert!((LrSchedule::Cosine.factor(7, 4, 10) - 0.5).abs() < 1e-12);
        assert!(LrSchedule::Cosine.factor(10, 4, 10).abs() < 1e-12);
        assert_eq!(LrSchedule::Cosine.factor(2, 4, 10), 0.5);
        assert_eq!(LrSchedule::Constant.factor(9, 4, 10), 1.0);
        assert_eq!(LrSchedule::Constant.factor(1, 4, 10), 0.25);
    }
}
