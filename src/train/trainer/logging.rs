//! The logging window: losses and gradient norms read back once per window (the first one
//! that is not finite stops the run), then logged and shown.

use std::time::Instant;

use anyhow::Result;

use super::Trainer;
use crate::train::log::{LogRecord, StepRecord};
use crate::train::plain_progress::PlainProgress;
use crate::train::window::{NonFinite, Window};

impl Trainer<'_> {
    /// Reads the window's pending losses and gradient norms; one that is not finite stops
    /// the run, naming the task and the step. Reading them back waits for the device's
    /// queued work, the steps' time too: it counts in the window's rate and in the run's (a
    /// GPU runs behind the host between reads).
    pub(super) fn settle_losses(&mut self) -> Result<()> {
        let started = Instant::now();
        let settled = self.window.settle(self.group.map(|g| (g, self.loaded.device)));
        let seconds = started.elapsed().as_secs_f64();
        self.window.seconds += seconds;
        self.timing.train += seconds;
        let Some(bad) = settled? else { return Ok(()) };
        let name = |t: usize| format!("'{}'", self.tasks[t].source().name);
        let what = match bad {
            NonFinite::Loss { step, task, value } => {
                format!("the loss of task {} became {value} at step {step} (learning rate too high?)", name(task))
            }
            NonFinite::GradNorm { step, mut tasks, value } => {
                tasks.sort_unstable();
                tasks.dedup();
                let batches = match tasks.len() {
                    1 => "a batch of task",
                    _ => "batches of tasks",
                };
                let tasks: Vec<String> = tasks.into_iter().map(name).collect();
                format!(
                    "the gradient norm became {value} at step {step}, on {batches} {} (a --task-weight or learning rate too high?)",
                    tasks.join(" and ")
                )
            }
        };
        Err(self.stopped(&what))
    }

    /// Logs the steps since the last window, when the run stops before the window's end;
    /// when it stops right at a window's end, shows that window's line if it was held back.
    pub(super) fn log_unlogged_steps(&mut self) -> Result<()> {
        if self.window.examples > 0 {
            return self.log_window(true);
        }
        if let Some(line) = self.plain_progress.as_mut().and_then(PlainProgress::held_line) {
            crate::stderrln!("{line}");
        }
        Ok(())
    }

    /// Logs the window's mean losses, rates and throughput, and shows them on the bar (and
    /// in a plain progress line when one is due, as it always is at the run's `last` step).
    pub(super) fn log_window(&mut self, last: bool) -> Result<()> {
        self.settle_losses()?;
        let seconds = self.window.seconds.max(1e-9);
        let window = &self.window;
        let loss =
            window.mean_losses().into_iter().map(|(t, mean)| (self.tasks[t].source().name.clone(), mean)).collect();
        let rates = self.optimizer.learning_rates();
        let record = StepRecord {
            step: self.state.step,
            epoch: self.length.epoch(self.state.step),
            loss,
            grad_norm: window.grad_norm(),
            // The "/no-decay" twins share their group's rate.
            lr: rates.iter().filter(|(n, _)| !n.ends_with("/no-decay")).cloned().collect(),
            examples_per_sec: window.examples as f64 / seconds,
            tokens_per_sec: window.tokens as f64 / seconds,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        // The top block's rate (--lr-backbone): groups come bottom first.
        let top_lr = rates
            .iter()
            .rev()
            .find(|(n, _)| n.starts_with("layer."))
            .or(rates.first())
            .map(|(_, lr)| *lr)
            .unwrap_or(0.0);
        let losses: Vec<String> = record.loss.iter().map(|(n, l)| format!("{n} {l:.3}")).collect();
        self.bar.set_message(format!(
            "loss {} | lr {top_lr:.1e} | {:.0} ex/s",
            losses.join(" "),
            record.examples_per_sec
        ));
        if let Some(line) =
            self.plain_progress.as_mut().and_then(|p| p.line(&record, self.length.total_steps, top_lr, last))
        {
            crate::stderrln!("{line}");
        }
        self.log.write(&LogRecord::Step(record))?;
        self.window = Window::new(self.tasks.len());
        Ok(())
    }
}
