//! Starting a new run in its `--out` folder so that a run that saves nothing undoes itself:
//! its files go, and a run that `--overwrite` replaces comes back as it was. A run can fail
//! long after it took the folder (a flag the model refuses, the feature cache budget, a NaN at
//! the first step, Ctrl-C while loading), and the replaced run must not be lost to it; so it
//! is set aside in `.replaced-<pid>/`, not removed, until the new run's first save.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::interrupt;
use super::run_dir::RunDir;
use super::start_up_signals::{self, StartUpSignals, UndoPlan, Undoing};

/// The prefix of the folder a replaced run waits in.
pub const SHELF_PREFIX: &str = ".replaced-";

/// A new run until its first save: what it made, and what it set aside. Dropped before
/// [`NewRun::keep`], it undoes both.
pub struct NewRun {
    run: RunDir,
    /// `--out` and the folders above it that did not exist, innermost first: undoing removes
    /// them (each when empty).
    made_folders: Vec<PathBuf>,
    /// The replaced run's entries moved (or being moved) into the shelf, by name.
    set_aside: Vec<String>,
    /// Every entry is aside: `settings.json` and the log in the folder are the new run's.
    files_are_new: bool,
    /// A signal's handler holds the undo plan (until [`NewRun::before_first_save`]).
    armed: bool,
    kept: bool,
}

impl NewRun {
    /// Takes `--out` for a new run (`RunDir::refuse_taken` decides whether it may), setting an
    /// earlier run aside when `overwrite`. `signals`, when given, undo each step a signal cuts.
    pub fn create(root: &Path, overwrite: bool, signals: Option<&StartUpSignals>) -> Result<(RunDir, Self)> {
        let run = RunDir { root: root.to_path_buf() };
        run.refuse_taken(overwrite)?;
        let mut new = Self {
            run: RunDir { root: root.to_path_buf() },
            made_folders: missing_folders(root),
            set_aside: Vec::new(),
            files_are_new: false,
            armed: signals.is_some(),
            kept: false,
        };
        let follow = |new: &Self| {
            if let Some(signals) = signals {
                signals.set_plan(&new.undo_plan());
            }
        };
        follow(&new);
        std::fs::create_dir_all(root).with_context(|| format!("cannot create run directory {}", root.display()))?;
        let entries = run.own_entries();
        let present: Vec<&PathBuf> = entries.iter().filter(|p| p.exists()).collect();
        if !present.is_empty() {
            let shelf = new.shelf();
            std::fs::create_dir(&shelf).with_context(|| format!("cannot create {}", shelf.display()))?;
            for path in present {
                // In the plan before it moves: moving back what has not moved does nothing.
                new.set_aside.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
                follow(&new);
                std::fs::rename(path, shelf.join(new.set_aside.last().unwrap()))
                    .with_context(|| format!("cannot move {} aside", path.display()))?;
            }
        }
        new.files_are_new = true;
        follow(&new);
        interrupt::set_replaced_run_waiting(new.replaces_a_run());
        run.remove_stale_staging();
        Ok((run, new))
    }

    /// Before the first checkpoint is written: a signal no longer undoes the run, whose
    /// half-written save (a new `best/` where the old one would go back) its plan cannot
    /// clear away. A failure from here on is undone by `Drop`, in full.
    pub fn before_first_save(&mut self) {
        start_up_signals::disarm();
        self.armed = false;
        interrupt::set_replaced_run_waiting(false);
    }

    /// Where the replaced run waits for the new one's first save.
    fn shelf(&self) -> PathBuf {
        self.run.root.join(format!("{SHELF_PREFIX}{}", std::process::id()))
    }

    /// Whether `--overwrite` set an earlier run aside, which comes back if this one is dropped.
    pub fn replaces_a_run(&self) -> bool {
        !self.set_aside.is_empty()
    }

    /// The new run saved: the replaced run goes for good.
    pub fn keep(mut self) {
        self.before_first_save();
        self.kept = true;
        if !self.set_aside.is_empty() {
            let _ = std::fs::remove_dir_all(self.shelf());
        }
    }

    /// The new run's files go (once every old entry is aside, so they are the new run's),
    /// the replaced run's come back, and a folder this run made goes when empty.
    fn undo_plan(&self) -> UndoPlan {
        let shelf = self.shelf();
        let files = [self.run.settings(), self.run.log()];
        UndoPlan {
            remove_files: if self.files_are_new { files.to_vec() } else { Vec::new() },
            move_back: self.set_aside.iter().map(|n| (shelf.join(n), self.run.root.join(n))).collect(),
            remove_folders: [(!self.set_aside.is_empty()).then_some(shelf)]
                .into_iter()
                .flatten()
                .chain(self.made_folders.iter().cloned())
                .collect(),
        }
    }
}

/// `root` and each folder above it that does not exist yet, innermost first.
fn missing_folders(root: &Path) -> Vec<PathBuf> {
    root.ancestors()
        .take_while(|folder| !folder.as_os_str().is_empty() && !folder.exists())
        .map(Path::to_path_buf)
        .collect()
}

impl Drop for NewRun {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let _undoing = Undoing::start();
        interrupt::set_replaced_run_waiting(false);
        if !start_up_signals::disarm() && self.armed {
            return; // A signal's handler is undoing the run, and then ends the process.
        }
        // A failure between its first saves (best/ written, last/ not) leaves new checkpoints
        // where the replaced run's go back; a signal's plan cannot remove them (rmdir only).
        if self.files_are_new {
            let _ = std::fs::remove_dir_all(self.run.best());
            let _ = std::fs::remove_dir_all(self.run.last());
        }
        self.undo_plan().carry_out();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's settings.json, as `RunDir::write_settings` shapes it.
    fn settings(marker: &str) -> String {
        format!(r#"{{"settings": {{"marker": "{marker}"}}, "version": "0.1.0"}}"#)
    }

    fn write_run(root: &Path, marker: &str) {
        std::fs::create_dir_all(root.join("best")).unwrap();
        std::fs::create_dir_all(root.join("last")).unwrap();
        std::fs::write(root.join("best/model.safetensors"), marker).unwrap();
        std::fs::write(root.join("settings.json"), settings(marker)).unwrap();
        std::fs::write(root.join("train_log.jsonl"), marker).unwrap();
    }

    fn names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn a_run_that_saved_nothing_brings_back_the_run_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let (run, new) = NewRun::create(&root, true, None).unwrap();
        assert!(!run.best().exists() && !run.settings().exists(), "the old run is out of the way");
        std::fs::write(run.settings(), "new").unwrap();
        drop(new);
        assert_eq!(std::fs::read_to_string(root.join("best/model.safetensors")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(root.join("settings.json")).unwrap(), settings("old"));
        assert_eq!(std::fs::read_to_string(root.join("notes.txt")).unwrap(), "mine");
        assert_eq!(names(&root), ["best", "last", "notes.txt", "settings.json", "train_log.jsonl"]);
    }

    /// A run that fails after saving best/ but before last/ (which made it keep the run)
    /// leaves the replaced run whole, not mixed with its own best/.
    #[test]
    fn a_run_that_failed_between_its_first_saves_brings_back_the_run_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        let (run, new) = NewRun::create(&root, true, None).unwrap();
        std::fs::create_dir(run.best()).unwrap();
        std::fs::write(run.best().join("model.safetensors"), "new").unwrap();
        drop(new);
        assert_eq!(std::fs::read_to_string(root.join("best/model.safetensors")).unwrap(), "old");
        assert_eq!(names(&root), ["best", "last", "settings.json", "train_log.jsonl"]);
    }

    #[test]
    fn a_run_that_saved_drops_the_replaced_run_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let (run, new) = NewRun::create(&root, true, None).unwrap();
        std::fs::write(run.settings(), "new").unwrap();
        new.keep();
        assert_eq!(names(&root), ["notes.txt", "settings.json"]);
    }

    #[test]
    fn undoing_removes_the_folder_only_when_the_run_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        let (_, new) = NewRun::create(&made, false, None).unwrap();
        drop(new);
        assert!(!made.exists());
        let given = dir.path().join("given");
        std::fs::create_dir(&given).unwrap();
        let (_, new) = NewRun::create(&given, false, None).unwrap();
        drop(new);
        assert!(given.is_dir(), "an empty folder the user made stays");
        // `--out given/a/b/c`: the three folders the run made go, innermost first.
        let (_, new) = NewRun::create(&given.join("a/b/c"), false, None).unwrap();
        drop(new);
        assert!(given.is_dir() && !given.join("a").exists());
    }

    /// A move aside cut halfway (its next rename failed) puts back what moved and removes
    /// nothing: the settings and log in the folder are still the old run's.
    #[test]
    fn a_move_aside_cut_halfway_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        let halfway = NewRun {
            run: RunDir { root: root.clone() },
            made_folders: Vec::new(),
            set_aside: vec!["settings.json".into(), "train_log.jsonl".into()],
            files_are_new: false,
            armed: false,
            kept: false,
        };
        std::fs::create_dir(halfway.shelf()).unwrap();
        std::fs::rename(root.join("settings.json"), halfway.shelf().join("settings.json")).unwrap();
        drop(halfway);
        assert_eq!(std::fs::read_to_string(root.join("settings.json")).unwrap(), settings("old"));
        for file in ["train_log.jsonl", "best/model.safetensors"] {
            assert_eq!(std::fs::read_to_string(root.join(file)).unwrap(), "old", "{file}");
        }
        assert_eq!(names(&root), ["best", "last", "settings.json", "train_log.jsonl"]);
    }
}
