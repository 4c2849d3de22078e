//! Progress for a stderr that is no terminal (a log file, `tee`, a Slurm job's output): where
//! a terminal shows the bar, a line per logging window, at most one every 30 seconds, and
//! the run's last.

use std::time::{Duration, Instant};

use super::log::StepRecord;

/// The least time between two lines, so that a long run's log stays readable.
const EVERY: Duration = Duration::from_secs(30);

pub(super) struct PlainProgress {
    last: Option<Instant>,
    /// The latest window's line when it was not shown, for a run that turns out to end there.
    held: Option<String>,
}

impl PlainProgress {
    pub fn new() -> Self {
        Self { last: None, held: None }
    }

    /// The line of the latest window when it was held back: the run stopped after it (early
    /// stopping at a logging step), so it is the run's last.
    pub fn held_line(&mut self) -> Option<String> {
        self.held.take()
    }

    /// The line for a logging window, when one is due: the first window's, then one 30
    /// seconds or more after the last, and that of the run's `last` step (its end, or where
    /// early stopping stopped it).
    pub fn line(&mut self, record: &StepRecord, total_steps: usize, top_lr: f64, last: bool) -> Option<String> {
        let losses: Vec<String> = record.loss.iter().map(|(task, loss)| format!("{task} {loss:.3}")).collect();
        let line = format!(
            "step {}/{total_steps} (epoch {:.2}): loss {} | lr {top_lr:.1e} | {:.0} examples/s",
            record.step,
            record.epoch,
            losses.join(", "),
            record.examples_per_sec
        );
        let now = Instant::now();
        if self.last.is_some_and(|at| now.duration_since(at) < EVERY) && !last {
            self.held = Some(line);
            return None;
        }
        self.last = Some(now);
        self.held = None;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_window_and_the_last_step_get_a_line_and_others_wait() {
        let record = |step: usize| StepRecord {
            step,
            epoch: step as f64 / 10.0,
            loss: [("trec".to_string(), 0.5), ("sst".to_string(), 0.25)].into_iter().collect(),
            grad_norm: 1.0,
            lr: Default::default(),
            examples_per_sec: 123.4,
            tokens_per_sec: 0.0,
            elapsed_s: 0.0,
        };
        let mut plain = PlainProgress::new();
        assert_eq!(
            plain.line(&record(10), 30, 5e-5, false).unwrap(),
            "step 10/30 (epoch 1.00): loss trec 0.500, sst 0.250 | lr 5.0e-5 | 123 examples/s"
        );
        assert!(plain.line(&record(20), 30, 5e-5, false).is_none(), "within 30 s of the last line");
        assert!(plain.held_line().unwrap().starts_with("step 20/30 "), "held for a run that ends there");
        assert_eq!(plain.held_line(), None);
        assert!(plain.line(&record(25), 30, 5e-5, true).is_some(), "the step early stopping ends the run at");
        assert!(plain.line(&record(30), 30, 5e-5, true).is_some(), "the last step");
    }
}
