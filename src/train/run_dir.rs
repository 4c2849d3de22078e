//! The run directory `train --out` makes: `best/` and `last/` checkpoints, `train_log.jsonl`
//! and `settings.json` (the resolved settings and the command line).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::log::{read_log, LogRecord};
use super::new_run::SHELF_PREFIX;
use super::settings::TrainSettings;
use super::state::STATE_FILE;

pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn best(&self) -> PathBuf {
        self.root.join("best")
    }
    pub fn last(&self) -> PathBuf {
        self.root.join("last")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("train_log.jsonl")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    /// The entries a run writes in its folder (and `--overwrite` sets aside).
    pub fn own_entries(&self) -> [PathBuf; 4] {
        [self.settings(), self.log(), self.best(), self.last()]
    }

    /// Refuses a `--out` that holds anything unless `overwrite` (saying what it holds: a run
    /// to resume, a finished one, other files), and a run that another process is training.
    /// `NewRun::create` then takes it.
    pub(super) fn refuse_taken(&self, overwrite: bool) -> Result<()> {
        let root = &self.root;
        crate::checkpoint::refuse_output_inside(root, "--out")?;
        if root.exists() && !root.is_dir() {
            bail!("--out {} exists and is not a folder", root.display());
        }
        self.refuse_in_use()?;
        self.refuse_set_aside_run()?;
        let non_empty = root.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false);
        if !non_empty {
            return Ok(());
        }
        if !self.holds_a_run() {
            return self.refuse_other_files(overwrite);
        }
        if overwrite {
            return Ok(());
        }
        if !self.last().join(STATE_FILE).is_file() {
            // Its checkpoint may be moved aside by a killed save: --overwrite would delete it.
            self.refuse_moved_aside_last()?;
            bail!(
                "run directory {} already holds a run that saved no checkpoint to resume; pass --overwrite to start it again, or choose another --out",
                root.display()
            );
        }
        if let Some(step) = self.finished_at()? {
            bail!(
                "run directory {} holds a run that finished at step {step} (best checkpoint {}); pass --overwrite to replace it, or choose another --out",
                root.display(),
                self.best().display()
            );
        }
        bail!(
            "run directory {} already exists and is not empty; continue it with --resume {}, pass --overwrite to replace its run, or choose another --out",
            root.display(),
            root.display()
        )
    }

    /// Refuses an output file (`flag`'s) that would replace a run's `settings.json` or
    /// `train_log.jsonl`, which `--resume` and `eval`'s curves read.
    pub fn refuse_output_over_own_file(path: &Path, flag: &str) -> Result<()> {
        let resolved = crate::checkpoint::resolved(path);
        let Some(run) = resolved.parent().map(|root| RunDir { root: root.to_path_buf() }) else { return Ok(()) };
        if run.holds_a_run() && [run.settings(), run.log()].contains(&resolved) {
            bail!(
                "{flag} {} would replace a file of the training run in {}; write it elsewhere",
                path.display(),
                run.root.display()
            );
        }
        Ok(())
    }

    /// Whether `settings.json` is one a run wrote (`write_settings`): a file of that name
    /// is common in other folders, and `--overwrite` must not take it for a run's.
    fn holds_a_run(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.settings()) else { return false };
        serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| written_by_a_run(&v))
    }

    /// A folder of files that are no run's: `--overwrite` may write a run among them, unless
    /// one of them has the name of a run's file, which the run would set aside and delete.
    fn refuse_other_files(&self, overwrite: bool) -> Result<()> {
        let root = self.root.display();
        let taken: Vec<String> = self
            .own_entries()
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        match (taken.is_empty(), overwrite) {
            (true, true) => Ok(()),
            (true, false) => bail!(
                "--out {root} already holds files and is not a run directory; choose another --out, or pass --overwrite to write the run among them"
            ),
            (false, _) => bail!(
                "--out {root} already holds files and is not a run directory, and its {} would be replaced by the run's; choose another --out",
                taken.join(", ")
            ),
        }
    }

    /// An existing run to resume: it needs its settings and a resumable `last/`.
    pub fn open(root: &Path) -> Result<Self> {
        let run = Self { root: root.to_path_buf() };
        if !root.is_dir() {
            bail!("--resume {}: no such run directory", root.display());
        }
        if !run.settings().is_file() {
            let parent = root.parent().filter(|p| p.join("settings.json").is_file());
            if let Some(parent) = parent {
                bail!(
                    "{} is a checkpoint; --resume takes its run directory, --resume {}",
                    root.display(),
                    parent.display()
                );
            }
            bail!("{} is not a sentence-mtl run directory (no settings.json)", root.display());
        }
        let text = std::fs::read_to_string(run.settings())
            .with_context(|| format!("cannot read {}", run.settings().display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is damaged", run.settings().display()))?;
        if !written_by_a_run(&value) {
            bail!("{} is not a sentence-mtl run directory (its settings.json is not one a run wrote)", root.display());
        }
        if !run.last().join(STATE_FILE).is_file() {
            run.refuse_moved_aside_last()?;
            // An --overwrite killed before its first save left the run it replaced aside.
            run.refuse_set_aside_run()?;
            // A run in progress has no last/ until its first save: say that it is in use.
            run.refuse_in_use()?;
            bail!(
                "{} has no resumable checkpoint (last/{STATE_FILE} is missing: the run stopped before its first save); start it again with --overwrite",
                root.display()
            );
        }
        Ok(run)
    }

    /// Takes the run for this process to resume: its lock (`lock`), then the staging folders a
    /// killed process left. A data-parallel launch's rank 0 alone takes it.
    pub fn take_for_resume(&self) -> Result<()> {
        self.lock()?;
        self.remove_stale_staging();
        Ok(())
    }

    /// Refuses to resume a run that finished: its log ends with the summary a run writes when
    /// it reaches its last step or stops early (an interrupted run's log does not).
    pub fn refuse_finished(&self) -> Result<()> {
        if let Some(step) = self.finished_at()? {
            bail!(
                "{} finished at step {step}; --resume continues an interrupted run. To train it further, start a new run from it: --model {} --out NEW_DIR (its optimizer and schedule start anew; its best checkpoint is {})",
                self.root.display(),
                self.last().display(),
                self.best().display()
            );
        }
        Ok(())
    }

    /// The last step of a run that finished (its log ends with a summary), else `None`.
    fn finished_at(&self) -> Result<Option<usize>> {
        if !self.log().is_file() {
            return Ok(None);
        }
        match read_log(&self.log())?.last() {
            Some(LogRecord::Summary(summary)) => Ok(Some(summary.step)),
            _ => Ok(None),
        }
    }

    /// Writes `settings.json`: the resolved settings, the command line, the folder it ran in
    /// (which relative data paths are relative to) and our version.
    pub fn write_settings(&self, settings: &TrainSettings, command_line: &[String]) -> Result<()> {
        let started_in = std::env::current_dir().context("cannot read the current directory")?;
        let json = serde_json::json!({
            "settings": settings,
            "command_line": command_line,
            "started_in": started_in.to_string_lossy(),
            "version": env!("CARGO_PKG_VERSION"),
        });
        crate::atomic_write::write_file(&self.settings(), serde_json::to_string_pretty(&json)?.as_bytes())
    }

    /// The settings a run was started with, its relative paths resolved from the folder it
    /// started in, so that it resumes from any other.
    pub fn read_settings(&self) -> Result<TrainSettings> {
        let text = std::fs::read_to_string(self.settings())
            .with_context(|| format!("cannot read {}", self.settings().display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is damaged", self.settings().display()))?;
        let mut settings: TrainSettings = serde_json::from_value(value["settings"].clone())
            .with_context(|| format!("{} is damaged", self.settings().display()))?;
        if let Some(started_in) = value["started_in"].as_str() {
            settings.resolve_paths(Path::new(started_in));
        }
        settings
            .check_ranges()
            .with_context(|| format!("{} holds a setting out of range", self.settings().display()))?;
        Ok(settings)
    }

    /// Refuses to resume when a data file the run recorded is gone, saying where the path
    /// comes from and how to point the run at a file that moved.
    pub fn refuse_missing_data(&self, settings: &TrainSettings) -> Result<()> {
        for task in &settings.tasks {
            let files = std::iter::once(("training", &task.train)).chain(task.dev.iter().map(|dev| ("dev", dev)));
            for (which, path) in files {
                if !path.exists() {
                    bail!(
                        "task '{}': its {which} file {} is not there; --resume reads the files the run started with, at the paths {} records (relative ones from its \"started_in\" folder): put the file back, or edit its path there (the run checks that the content is the one it trained on)",
                        task.name,
                        path.display(),
                        self.settings().display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Holds an exclusive lock on the run's `settings.json` until the process ends, so that
    /// no second process trains the same run at once (two resumes, or `--overwrite` over a
    /// run in progress), which would interleave their logs and remove each other's saves.
    pub fn lock(&self) -> Result<()> {
        static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
        let file = std::fs::File::open(self.settings())
            .with_context(|| format!("cannot open {}", self.settings().display()))?;
        if !try_lock(&file) {
            return Err(self.in_use());
        }
        HELD.lock().map_err(|_| anyhow::anyhow!("run lock poisoned"))?.push(file);
        Ok(())
    }

    fn in_use(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "run directory {} is in use: another sentence-mtl process is training it (wait for it to end, or stop it)",
            self.root.display()
        )
    }

    /// Refuses a run directory whose run another process is training.
    fn refuse_in_use(&self) -> Result<()> {
        let Ok(file) = std::fs::File::open(self.settings()) else { return Ok(()) };
        if !try_lock(&file) {
            return Err(self.in_use());
        }
        Ok(()) // the lock ends with `file`
    }

    /// Refuses a folder holding a run that an `--overwrite` set aside (`NewRun`) and did not
    /// put back or drop: its process is still starting, or was killed before it could.
    fn refuse_set_aside_run(&self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(()) };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(SHELF_PREFIX).and_then(|p| p.parse::<u32>().ok()) else { continue };
            let shelf = entry.path();
            if pid != std::process::id() && runs_this_program(pid) {
                bail!("run directory {} is in use: process {pid} is starting a run there", self.root.display());
            }
            bail!(
                "{} holds a run that an --overwrite set aside and did not finish replacing (its process ended first); to get that run back, {}; or remove {}; then run again",
                self.root.display(),
                self.how_to_put_back(&shelf),
                shelf.display()
            );
        }
        Ok(())
    }

    /// How to put back the run set aside in `shelf`: what the new run wrote before it ended
    /// is in the way, the entries written after the last one went onto the shelf (an old
    /// entry that a kill left unmoved is older, and stays where it is).
    fn how_to_put_back(&self, shelf: &Path) -> String {
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let shelved_at = modified(shelf);
        let newer: Vec<String> = self
            .own_entries()
            .iter()
            .filter(|p| p.exists() && modified(p) >= shelved_at)
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        match newer.is_empty() {
            true => format!("move the contents of {} back into {}", shelf.display(), self.root.display()),
            false => format!(
                "remove the new run's {} from {} and move the contents of {} back into it",
                newer.join(", "),
                self.root.display(),
                shelf.display()
            ),
        }
    }

    /// A `last/` that a save killed between its two renames left moved aside (where the
    /// filesystem cannot swap folders in one step): said, with the command that puts it back,
    /// rather than taken for a run that never saved.
    fn refuse_moved_aside_last(&self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(()) };
        let aside = entries.flatten().map(|entry| entry.path()).find(|path| {
            path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".last.old-"))
                && path.join(STATE_FILE).is_file()
        });
        match aside {
            Some(aside) => bail!(
                "{} has no last/: a save that was killed moved it aside to {}; put it back (mv {} {}) and resume",
                self.root.display(),
                aside.display(),
                aside.display(),
                self.last().display()
            ),
            None => Ok(()),
        }
    }

    /// Staging folders left by a process killed while saving (`.last.new-<pid>`), and the old
    /// versions it moved aside where the checkpoint is back, whatever their PID: the run is
    /// this process's (its lock, or no other process held it at the start). Folders of the
    /// user's own, `.best.keep/` or `.last.2023/`, are never touched.
    pub(super) fn remove_stale_staging(&self) {
        crate::atomic_write::clear_staging_under_lock(&self.best());
        crate::atomic_write::clear_staging_under_lock(&self.last());
    }
}

/// Whether process `pid` exists and runs a program of this one's name: after a reboot or a
/// kill, the PID in a `.replaced-<pid>` folder may be some other program's by now.
fn runs_this_program(pid: u32) -> bool {
    let comm = |who: &str| std::fs::read_to_string(format!("/proc/{who}/comm")).ok();
    matches!((comm(&pid.to_string()), comm("self")), (Some(theirs), Some(ours)) if theirs == ours)
}

/// Whether a parsed `settings.json` has the shape `RunDir::write_settings` gives it.
fn written_by_a_run(settings: &serde_json::Value) -> bool {
    settings.get("settings").is_some_and(|s| s.is_object()) && settings.get("version").is_some()
}

/// An exclusive advisory lock on `file`, without waiting: false when another process holds it.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; it only sets an advisory lock.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_moved_aside_by_a_killed_save_is_pointed_at() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("settings.json"), r#"{"settings": {}, "version": "0.1.0"}"#).unwrap();
        let aside = dir.path().join(".last.old-4242");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join(STATE_FILE), "{}").unwrap();
        let err = RunDir::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("has no last/: a save that was killed moved it aside to"), "{err}");
        assert!(err.contains(&format!("mv {} ", aside.display())), "{err}");
        assert!(aside.join(STATE_FILE).is_file(), "the moved-aside checkpoint was touched");
        // A new run there is told the same, not to --overwrite the checkpoint away.
        let run = RunDir { root: dir.path().to_path_buf() };
        let err = run.refuse_taken(false).err().unwrap().to_string();
        assert!(err.contains("has no last/: a save that was killed moved it aside to"), "{err}");
    }
}
