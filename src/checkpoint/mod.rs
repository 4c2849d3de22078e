//! The checkpoint folder: the one contract between `train`, `encode`, `eval`, `predict` and
//! `export`. A checkpoint holds
//!
//! - `model.safetensors`: every tensor (backbone under HF names, `projection.*`, `heads.<task>.*`;
//!   see `model::names`)
//! - `config.json` and the tokenizer files of the backbone, copied from where it came from
//! - `sentence_mtl.json`: a [`ModelSpec`](crate::model::spec::ModelSpec) (pooling, projection,
//!   tasks and their labels, settings, dev metrics)
//!
//! A resumable `last/` also holds the trainer's state (`train::state`). Loading also accepts a
//! plain Hugging Face model folder or hub id: then the spec comes from defaults and, for
//! sentence-transformers folders, from `modules.json`; for an `export --format hf` folder,
//! from its `tasks.json` (with its `heads.safetensors`).
//!
//! One job per module: [`folder`] reads what a folder says about itself, [`load`] makes a model
//! for inference, [`training`] the model `train` starts from, [`save`] writes a checkpoint.

mod folder;
mod hf_export;
pub mod load;
pub mod save;
mod sentence_transformers;
pub mod training;

pub use hf_export::FORMAT as HF_EXPORT_FORMAT;
pub use load::load;
pub use save::{save, save_with};
pub use sentence_transformers::{EXPORT_KEY as ST_EXPORT_KEY, MODEL_SETTINGS_FILE as ST_MODEL_SETTINGS_FILE};
pub use training::{load_for_training, TrainableModel, TrainingSpec, TrainingStart};

pub const SPEC_FILE: &str = "sentence_mtl.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Checks that `model` (a folder or hub id) opens as a model, without reading its weights:
/// what `train` does before `--overwrite` empties a run directory.
pub fn check_opens(model: &str) -> anyhow::Result<()> {
    folder::ModelFolder::open(model).map(|_| ())
}

/// Whether `dir` is a sentence-mtl checkpoint (has a `sentence_mtl.json`).
pub fn is_checkpoint(dir: &std::path::Path) -> bool {
    dir.join(SPEC_FILE).is_file()
}

/// Refuses an output folder `out` (given with `flag`) that is a checkpoint or lies inside
/// one: training replaces a checkpoint folder whole when it saves, which would delete what
/// was written there.
pub fn refuse_output_inside(out: &std::path::Path, flag: &str) -> anyhow::Result<()> {
    let resolved = resolved(out);
    match resolved.ancestors().find(|dir| is_checkpoint(dir)) {
        Some(checkpoint) if checkpoint == resolved => anyhow::bail!(
            "{flag} {} is a checkpoint, which this would replace; write to a folder of its own",
            out.display()
        ),
        Some(checkpoint) => anyhow::bail!(
            "{flag} {} is inside the checkpoint {}, which training replaces whole when it saves; write to a folder outside it",
            out.display(),
            checkpoint.display()
        ),
        None => Ok(()),
    }
}

/// The pooling a local model folder was trained with, when it records one (a checkpoint, an
/// hf export, or a sentence-transformers folder's Pooling module); `None` for a plain Hugging
/// Face folder, and where [`local_folder`] gives none.
pub fn trained_pooling(model: &str) -> Option<crate::model::pooling::Pooling> {
    local_folder(model)?.trained_pooling()
}

/// The token limit a local model folder reads with, and whether it is a checkpoint's (or an
/// export's) own, which a run that starts from it keeps unless `--max-length` says otherwise,
/// rather than a base model's (its sentence-transformers `max_seq_length`, else its
/// tokenizer's or positions' limit); `None` where [`local_folder`] gives none.
pub fn folder_max_length(model: &str) -> Option<(usize, bool)> {
    let folder = local_folder(model)?;
    Some((folder.spec.max_length, folder.max_length_is_trained()))
}

/// `model` opened as a local folder; `None` for a hub id (which would be fetched before the
/// checks that come first) and a folder that does not open (loading it reports why).
fn local_folder(model: &str) -> Option<folder::ModelFolder> {
    if !std::path::Path::new(model).is_dir() {
        return None;
    }
    folder::ModelFolder::open(model).ok()
}

/// Whether two names (hub ids or paths) are of one thing: equal, or paths to one file or
/// folder, including one that is gone (a run's base model moved away before its resume).
pub fn same_place(a: &str, b: &str) -> bool {
    use std::path::Path;
    a == b || resolved(Path::new(a)) == resolved(Path::new(b))
}

/// `path` made absolute with symbolic links resolved as far as it exists; the rest (folders
/// an output creates) is appended with its `..` applied, so that `RUN/best/../eval` is
/// `RUN/eval` and `new/../RUN/best` is `RUN/best`.
pub fn resolved(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => {
                out.push(other);
                // Links are resolved where the path exists, before a later `..` applies.
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `..` applies to what it follows, in folders that exist or not, and a folder beside a
    /// checkpoint is not inside it.
    #[test]
    fn outputs_beside_a_checkpoint_are_not_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("run/best")).unwrap();
        std::fs::write(root.join("run/best").join(SPEC_FILE), "{}").unwrap();
        assert_eq!(resolved(&root.join("run/best/../eval")), root.join("run/eval"));
        assert_eq!(resolved(&root.join("new/../run/best/x")), root.join("run/best/x"));
        assert!(refuse_output_inside(&root.join("run/best/../eval"), "--out").is_ok());
        let inside = refuse_output_inside(&root.join("new/../run/best/eval"), "--out").unwrap_err().to_string();
        assert!(inside.contains("is inside the checkpoint"), "{inside}");
        // A folder that is gone is still the same place as itself named another way.
        let gone = root.join("gone").to_string_lossy().into_owned();
        assert!(same_place(&gone, &root.join("run/../gone").to_string_lossy()));
        assert!(!same_place(&gone, &root.join("run/gone").to_string_lossy()));
    }
}
