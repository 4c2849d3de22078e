//! How long a run is in optimizer steps: in all, per epoch, warming up, and between
//! evaluations. (The learning rate's shape over those steps is `schedule`'s.)

use super::settings::TrainSettings;
use super::small_data::RunShape;

/// The run's length in optimizer steps.
pub(super) struct RunLength {
    pub total_steps: usize,
    /// The steps `--max-steps` or `--epochs` ask for, before small-data mode's minimum.
    pub planned_steps: usize,
    pub steps_per_epoch: usize,
    /// The sampler's batches in an epoch, and `--grad-accum`: an epoch's last step takes
    /// what is left of them.
    batches_per_epoch: usize,
    grad_accum: usize,
    pub warmup: usize,
    /// Steps between evaluations and saves of `last/` (`--eval-every`, else an epoch; a run
    /// that small-data mode lengthened keeps `--epochs` evaluations instead of one per tiny
    /// epoch, each of which would save the model and the optimizer's moments).
    pub eval_interval: usize,
}

/// The flags a run's length comes from.
struct Asked {
    max_steps: Option<usize>,
    epochs: usize,
    grad_accum: usize,
    warmup_steps: Option<usize>,
    warmup_ratio: f64,
    eval_every: Option<usize>,
}

impl RunLength {
    /// The length of a run whose sampler draws `batches_per_epoch` batches an epoch.
    pub fn new(settings: &TrainSettings, batches_per_epoch: usize, small_data: RunShape) -> Self {
        let asked = Asked {
            max_steps: settings.max_steps,
            epochs: settings.epochs,
            grad_accum: settings.grad_accum,
            warmup_steps: settings.warmup_steps,
            warmup_ratio: settings.warmup_ratio,
            eval_every: settings.eval_every,
        };
        Self::of(&asked, batches_per_epoch, small_data)
    }

    fn of(asked: &Asked, batches_per_epoch: usize, small_data: RunShape) -> Self {
        let steps_per_epoch = batches_per_epoch.div_ceil(asked.grad_accum).max(1);
        let planned_steps = asked.max_steps.unwrap_or(asked.epochs.saturating_mul(steps_per_epoch));
        let total_steps = match asked.max_steps {
            Some(steps) => steps,
            None => small_data.total_steps(planned_steps),
        };
        let warmup = asked.warmup_steps.unwrap_or((asked.warmup_ratio * total_steps as f64).ceil() as usize);
        let eval_interval =
            asked.eval_every.unwrap_or_else(|| small_data.eval_interval(steps_per_epoch, total_steps, asked.epochs));
        let (batches_per_epoch, grad_accum) = (batches_per_epoch.max(1), asked.grad_accum);
        Self { total_steps, planned_steps, steps_per_epoch, batches_per_epoch, grad_accum, warmup, eval_interval }
    }

    /// The batches step `step` (from 0) accumulates: `--grad-accum`, but what is left of the
    /// epoch at its last step, so that an epoch is one pass of the sampler and the next
    /// starts afresh (as HF Trainer's short last step of an epoch).
    pub fn batches_in_step(&self, step: usize) -> usize {
        let in_epoch = step % self.steps_per_epoch;
        if in_epoch + 1 < self.steps_per_epoch {
            self.grad_accum
        } else {
            self.batches_per_epoch - in_epoch * self.grad_accum
        }
    }

    /// A note when `--grad-accum` is more than an epoch's batches: every step is then one
    /// epoch, of fewer batches than asked.
    pub fn accumulation_note(&self) -> Option<String> {
        (self.grad_accum > self.batches_per_epoch).then(|| {
            format!(
                "note: --grad-accum {} is more than an epoch's {} batches: each step accumulates the epoch's {}",
                self.grad_accum, self.batches_per_epoch, self.batches_per_epoch
            )
        })
    }

    /// The epochs `step` steps make, with a fraction.
    pub fn epoch(&self, step: usize) -> f64 {
        step as f64 / self.steps_per_epoch as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::small_data;

    fn asked() -> Asked {
        Asked { max_steps: None, epochs: 3, grad_accum: 1, warmup_steps: None, warmup_ratio: 0.1, eval_every: None }
    }

    #[test]
    fn epochs_make_the_length_and_an_epoch_is_the_evaluation_interval() {
        let length = RunLength::of(&Asked { grad_accum: 2, ..asked() }, 41, RunShape::Off);
        assert_eq!((length.steps_per_epoch, length.total_steps, length.eval_interval), (21, 63, 21));
        assert_eq!(length.warmup, 7, "10% of 63 steps, rounded up");
        assert_eq!(length.epoch(42), 2.0);
        // 41 batches an epoch: 20 steps of 2, then one of the last batch; every epoch alike.
        let per_step: Vec<usize> = (0..63).map(|s| length.batches_in_step(s)).collect();
        assert_eq!(per_step[..21].iter().sum::<usize>(), 41);
        assert_eq!((per_step[19], per_step[20], per_step[21], per_step[62]), (2, 1, 2, 1));
        let even = RunLength::of(&Asked { grad_accum: 4, ..asked() }, 8, RunShape::Off);
        assert!((0..6).all(|s| even.batches_in_step(s) == 4));
        let one_step = RunLength::of(&Asked { grad_accum: 8, ..asked() }, 3, RunShape::Off);
        assert_eq!((one_step.steps_per_epoch, one_step.batches_in_step(1)), (1, 3));
        let note = one_step.accumulation_note().unwrap();
        assert!(note.ends_with("--grad-accum 8 is more than an epoch's 3 batches: each step accumulates the epoch's 3"));
        assert_eq!(length.accumulation_note(), None);
    }

    #[test]
    fn flags_set_the_length_warm_up_and_interval() {
        let asked = Asked { max_steps: Some(50), warmup_steps: Some(4), eval_every: Some(10), ..asked() };
        let length = RunLength::of(&asked, 1000, RunShape::Lengthened);
        assert_eq!((length.total_steps, length.planned_steps, length.warmup, length.eval_interval), (50, 50, 4, 10));
    }

    /// Small-data mode lengthens a run of tiny epochs to its minimum, and keeps `--epochs`
    /// evaluations rather than one per tiny epoch, `--max-steps` or not; with the encoder
    /// frozen it keeps the planned length.
    #[test]
    fn a_run_small_data_mode_lengthened_evaluates_epochs_times() {
        let length = RunLength::of(&asked(), 2, RunShape::Lengthened);
        assert_eq!((length.planned_steps, length.total_steps), (6, small_data::MIN_STEPS));
        assert_eq!(length.eval_interval, small_data::MIN_STEPS.div_ceil(3));
        assert_eq!(RunLength::of(&asked(), 2, RunShape::Off).total_steps, 6);
        let frozen = RunLength::of(&asked(), 2, RunShape::FewerEvaluations);
        assert_eq!((frozen.total_steps, frozen.eval_interval), (6, 2));
        let max_steps = Asked { max_steps: Some(20), ..asked() };
        assert_eq!(RunLength::of(&max_steps, 1, RunShape::Lengthened).eval_interval, 7);
        assert_eq!(RunLength::of(&max_steps, 1, RunShape::Off).eval_interval, 1);
    }
}
