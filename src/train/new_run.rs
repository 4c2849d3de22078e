//! Starting a new run in its `--out` folder so that a start that fails undoes itself: nothing
//! trained yet, so nothing of the new run stays, and a run that `--overwrite` replaces comes
//! back as it was. A start can fail long after the folder was taken (a flag the model
//! refuses, the feature cache budget, Ctrl-C while loading), and the replaced run must not be
//! lost to it; so it is set aside, not removed, until training starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::interrupt::UndoOnSignal;
use super::run_dir::RunDir;

/// A new run until its first step: what it made, and what it set aside.
pub struct NewRun {
    run: RunDir,
    /// `--out` did not exist: undoing removes it (when empty).
    made_folder: bool,
    /// The replaced run's entries moved into `.replaced-<pid>/` (name in the run folder).
    set_aside: Vec<String>,
}

impl NewRun {
    /// Takes `--out` for a new run (`RunDir::refuse_taken` decides whether it may), setting an
    /// earlier run's files aside when `overwrite`.
    pub fn create(root: &Path, overwrite: bool) -> Result<(RunDir, Self)> {
        let run = RunDir { root: root.to_path_buf() };
        run.refuse_taken(overwrite)?;
        let made_folder = !root.exists();
        std::fs::create_dir_all(root).with_context(|| format!("cannot create run directory {}", root.display()))?;
        let mut new = Self { run: RunDir { root: root.to_path_buf() }, made_folder, set_aside: Vec::new() };
        let entries = [run.best(), run.last(), run.log(), run.settings()];
        let present: Vec<&PathBuf> = entries.iter().filter(|p| p.exists()).collect();
        if !present.is_empty() {
            let shelf = new.shelf();
            std::fs::create_dir(&shelf).with_context(|| format!("cannot create {}", shelf.display()))?;
            for path in present {
                let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                if let Err(e) = std::fs::rename(path, shelf.join(&name)) {
                    new.undo();
                    return Err(e).with_context(|| format!("cannot move {} aside", path.display()));
                }
                new.set_aside.push(name);
            }
        }
        run.remove_stale_staging();
        Ok((run, new))
    }

    /// Where the replaced run waits for the new one's first step.
    fn shelf(&self) -> PathBuf {
        self.run.root.join(format!(".replaced-{}", std::process::id()))
    }

    /// The start went through: the replaced run goes for good.
    pub fn keep(self) {
        if !self.set_aside.is_empty() {
            let _ = std::fs::remove_dir_all(self.shelf());
        }
    }

    /// The start failed: the new run's files go, the replaced run's come back, and a folder
    /// this run made goes when empty.
    pub fn undo(self) {
        let _ = std::fs::remove_file(self.run.settings());
        let _ = std::fs::remove_file(self.run.log());
        for name in &self.set_aside {
            let _ = std::fs::rename(self.shelf().join(name), self.run.root.join(name));
        }
        if !self.set_aside.is_empty() {
            let _ = std::fs::remove_dir(self.shelf());
        }
        if self.made_folder {
            let _ = std::fs::remove_dir(&self.run.root);
        }
    }

    /// The same undoing, for a signal handler to run with async-signal-safe calls.
    pub fn undo_on_signal(&self) -> UndoOnSignal {
        let shelf = self.shelf();
        UndoOnSignal {
            remove_files: vec![self.run.settings(), self.run.log()],
            move_back: self.set_aside.iter().map(|n| (shelf.join(n), self.run.root.join(n))).collect(),
            remove_folders: [
                (!self.set_aside.is_empty()).then_some(shelf),
                self.made_folder.then(|| self.run.root.clone()),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(root: &Path, marker: &str) {
        std::fs::create_dir_all(root.join("best")).unwrap();
        std::fs::create_dir_all(root.join("last")).unwrap();
        std::fs::write(root.join("best/model.safetensors"), marker).unwrap();
        std::fs::write(root.join("settings.json"), marker).unwrap();
        std::fs::write(root.join("train_log.jsonl"), marker).unwrap();
    }

    #[test]
    fn a_failed_start_brings_back_the_run_it_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let (run, new) = NewRun::create(&root, true).unwrap();
        assert!(!run.best().exists() && !run.settings().exists(), "the old run is out of the way");
        std::fs::write(run.settings(), "new").unwrap();
        new.undo();
        assert_eq!(std::fs::read_to_string(root.join("best/model.safetensors")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(root.join("settings.json")).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(root.join("notes.txt")).unwrap(), "mine");
        let mut names: Vec<String> =
            std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["best", "last", "notes.txt", "settings.json", "train_log.jsonl"]);
    }

    #[test]
    fn a_start_that_goes_through_drops_the_replaced_run_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        write_run(&root, "old");
        std::fs::write(root.join("notes.txt"), "mine").unwrap();
        let (run, new) = NewRun::create(&root, true).unwrap();
        std::fs::write(run.settings(), "new").unwrap();
        new.keep();
        let mut names: Vec<String> =
            std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["notes.txt", "settings.json"]);
    }

    #[test]
    fn undoing_removes_the_folder_only_when_the_run_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("made");
        let (_, new) = NewRun::create(&made, false).unwrap();
        new.undo();
        assert!(!made.exists());
        let given = dir.path().join("given");
        std::fs::create_dir(&given).unwrap();
        let (_, new) = NewRun::create(&given, false).unwrap();
        new.undo();
        assert!(given.is_dir(), "an empty folder the user made stays");
    }
}
