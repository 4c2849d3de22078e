//! Stops before the end: on a signal (after saving `last/`, or giving back the run
//! `--overwrite` replaced) or a rank's failure, each saying how to go on.

use anyhow::anyhow;

use super::Trainer;
use crate::distributed::ProcessGroup;
use crate::train::interrupt::Interrupted;
use crate::train::new_run::NewRun;
use crate::train::signal_handlers::signal_name;

impl Trainer<'_> {
    /// A rank's failure in a launch, with where the run can go on from: `last/` as the last
    /// save left it, resumed by the same launch.
    pub(super) fn with_resume_hint(&self, failure: anyhow::Error) -> anyhow::Error {
        // Rank 0 may have stopped in the save this rank only knows it started.
        if let Some(step) = self.unconfirmed_save {
            let last = self.run.last();
            return match self.last_saved_step {
                Some(earlier) => anyhow!(
                    "{failure}; {} holds step {step} if rank 0 finished saving it, else step {earlier}: {}",
                    last.display(),
                    self.how_to_resume()
                ),
                None => anyhow!(
                    "{failure}; {} holds step {step} if rank 0 finished saving it ({}), else no checkpoint was saved yet: start the launch again{}",
                    last.display(),
                    self.how_to_resume(),
                    match self.options.overwrite {
                        // Rank 0 killed in its first save leaves the run it replaces set aside.
                        true => format!(" (the run its --overwrite set aside may be left in {}/.replaced-<pid>/, and that start says what to do with it)", self.run.root.display()),
                        false => String::new(),
                    }
                ),
            };
        }
        match self.last_saved_step {
            Some(step) if self.run.last().is_dir() || !self.is_main() => anyhow!(
                "{failure}; the run's last complete checkpoint is {} (step {step}): {}",
                self.run.last().display(),
                self.how_to_resume()
            ),
            // Rank 0, killed while its --overwrite had the old run set aside, could not put
            // it back; the next start names the folder and refuses until it is dealt with.
            _ if self.options.overwrite && !self.is_main() => anyhow!(
                "{failure}; no checkpoint was saved yet: start the launch again (if rank 0 was killed, the run its --overwrite set aside may be left in {}/.replaced-<pid>/, and that start says what to do with it)",
                self.run.root.display()
            ),
            _ => anyhow!("{failure}; no checkpoint was saved yet: start the launch again"),
        }
    }

    /// After a stop signal (Ctrl-C, SIGTERM, SIGHUP): save `last/` (unless this step just did)
    /// and say how to resume.
    /// A run that `--overwrite` set aside and no save replaced yet comes back instead: the
    /// first save would delete it, and the docs promise it back until then.
    pub(super) fn stop_on_signal(mut self, signal: i32, saved: bool) -> anyhow::Error {
        if !saved && self.new_run.as_ref().is_some_and(NewRun::replaces_a_run) {
            return self.give_back_replaced_run(signal);
        }
        if !saved {
            if let Err(e) = self.save_last(None) {
                return e;
            }
        }
        self.bar.finish_and_clear();
        if !self.is_main() {
            return Interrupted { signal }.into();
        }
        let torchrun = match self.group.map(ProcessGroup::world) {
            Some(world) => format!(
                "\n  e.g. on one machine: torchrun --no-python --nproc-per-node {world} {} train --resume {}",
                self.program(),
                self.run.root.display()
            ),
            None => String::new(),
        };
        crate::stderrln!(
            "stopped by {} after step {} of {}; saved a resumable checkpoint in {}\n{}{torchrun}",
            signal_name(signal),
            self.state.step,
            self.length.total_steps,
            self.run.last().display(),
            self.how_to_resume()
        );
        Interrupted { signal }.into()
    }

    /// Stops before the first save, dropping the new run: the run it replaced comes back.
    fn give_back_replaced_run(mut self, signal: i32) -> anyhow::Error {
        self.bar.finish_and_clear();
        drop(self.new_run.take());
        crate::stderrln!(
            "stopped by {} after step {} of {}, before this run's first save: nothing was saved, and the run --overwrite replaced is back in {} (--save-every N saves sooner)",
            signal_name(signal),
            self.state.step,
            self.length.total_steps,
            self.run.root.display()
        );
        Interrupted { signal }.into()
    }

    /// The program as this run was started (`sentence-mtl`, or the path it was run by).
    fn program(&self) -> &str {
        self.options.command_line.first().map_or("sentence-mtl", String::as_str)
    }

    /// `continue with: sentence-mtl train --resume RUN`, in a launch as the same launch.
    fn how_to_resume(&self) -> String {
        let resume = format!("{} train --resume {}", self.program(), self.run.root.display());
        match self.group.map(ProcessGroup::world) {
            Some(world) => format!("continue with the same launch of {world} processes, each running: {resume}"),
            None => format!("continue with: {resume}"),
        }
    }
}
