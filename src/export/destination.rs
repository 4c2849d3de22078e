//! Where an export may be written: a new or empty folder, or with `--force` an earlier export
//! holding nothing else; never the checkpoint being exported, nor the folder the user works in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::model_card::{self, is_export};
use crate::model::loaded::LoadedModel;

/// The folder to write for `--out`, canonical where it exists so that replacing it swaps that
/// folder. A non-empty `out` is refused unless `force`, and even then unless it is an earlier
/// export (not a run or the user's files).
pub(super) fn checked(out: &Path, loaded: &LoadedModel, force: bool) -> Result<PathBuf> {
    crate::checkpoint::refuse_output_inside(out, "--out")?;
    crate::output::refuse_dangling_link(out, "--out")?;
    if !out.exists() {
        return Ok(out.to_path_buf());
    }
    if !out.is_dir() {
        bail!("--out {} exists and is not a folder", out.display());
    }
    let target = out.canonicalize().with_context(|| format!("cannot read --out {}", out.display()))?;
    refuse_replacing_what_is_in_use(out, &target, loaded)?;
    let non_empty = std::fs::read_dir(out)?.next().is_some();
    if !non_empty {
        return Ok(target);
    }
    if !force {
        bail!("--out {} exists and is not empty; pass --force to replace it", out.display());
    }
    if !is_export(out) {
        bail!(
            "--out {} holds files that are not a sentence-mtl export; --force replaces only an earlier export, so choose an empty or new folder",
            out.display()
        );
    }
    let foreign = foreign_entries(out);
    if !foreign.is_empty() {
        bail!(
            "--out {} is an earlier export with files added or changed ({}), which replacing it would lose; export into another folder, or delete this one once they are safe",
            out.display(),
            foreign.join(", ")
        );
    }
    Ok(target)
}

/// Replacing `out` (canonical: `target`) must not delete the checkpoint being exported, nor
/// the folder the user works in.
fn refuse_replacing_what_is_in_use(out: &Path, target: &Path, loaded: &LoadedModel) -> Result<()> {
    if loaded.dir.canonicalize().is_ok_and(|model| model.starts_with(target)) {
        bail!(
            "--out {} holds the model being exported ({}); export into another folder",
            out.display(),
            loaded.dir.display()
        );
    }
    if std::env::current_dir().is_ok_and(|cwd| cwd.starts_with(target)) {
        bail!("--out {} is the current folder or holds it; export into a folder of its own", out.display());
    }
    Ok(())
}

/// What an export writes besides its card: the model, tokenizer and module files of the
/// three formats.
const EXPORTED_NAMES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "heads.safetensors",
    "tasks.json",
    "model.pt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// What a sentence-transformers module folder (`1_Pooling`, `2_Dense`, `3_Normalize`) holds.
const MODULE_FILES: &[&str] = &["config.json", "model.safetensors"];

/// What of `folder` no export writes (a `.git`, the user's own files, also inside module
/// folders) or the user changed (the card), which replacing the folder would lose.
fn foreign_entries(folder: &Path) -> Vec<String> {
    let module = |name: &str| {
        name.split_once('_').is_some_and(|(index, kind)| {
            index.parse::<usize>().is_ok() && ["Pooling", "Dense", "Normalize"].contains(&kind)
        })
    };
    let mut foreign = Vec::new();
    for name in entry_names(folder) {
        let path = folder.join(&name);
        if name == "README.md" {
            if !std::fs::read_to_string(&path).is_ok_and(|card| model_card::is_unedited(&card)) {
                foreign.push("README.md, edited since it was exported".to_string());
            }
        } else if module(&name) && path.is_dir() {
            let extra = entry_names(&path).into_iter().filter(|inner| !MODULE_FILES.contains(&inner.as_str()));
            foreign.extend(extra.map(|inner| format!("{name}/{inner}")));
        } else if !EXPORTED_NAMES.contains(&name.as_str()) {
            foreign.push(name);
        }
    }
    foreign
}

/// The names in `folder`, sorted.
fn entry_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}
