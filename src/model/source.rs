//! `--model` to a local folder: an existing path, or a Hugging Face hub id fetched into the
//! usual HF cache (`model::hub`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Resolves `--model`: a path that exists is used as it is; otherwise a value that looks
/// like a hub id (`name` or `org/name`) is fetched from the hub (or the cache).
pub fn resolve_model_dir(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if let Some(target) = dangling_link(path) {
        bail!("--model {model} is a symbolic link to {}, which does not exist", target.display());
    }
    if path.exists() {
        if !path.is_dir() {
            bail!("--model {model} is a file; pass the model folder (with config.json) instead");
        }
        if !path.join("config.json").exists() && path.join("settings.json").exists() {
            let saved = ["best", "last"].map(|c| path.join(c)).into_iter().find(|c| c.join("config.json").exists());
            match saved {
                Some(checkpoint) => bail!(
                    "--model {model} is a run directory; pass one of its checkpoints, e.g. --model {}",
                    checkpoint.display()
                ),
                None => {
                    bail!("--model {model} is a run directory that has saved no checkpoint yet (no best/ or last/)")
                }
            }
        }
        refuse_transformer_in_subfolder(model, path)?;
        let config = path.join("config.json");
        if let Some(target) = dangling_link(&config) {
            bail!("{}", dangling_file_message(&config, &target));
        }
        if !config.exists() {
            bail!("--model {model} is not a model folder: no config.json (it holds: {})", listing(path));
        }
        return Ok(path.to_path_buf());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && p.is_dir()) {
        // `run/bset`: a local folder's missing child, not a hub id. Its folders are what
        // `--model` may have meant.
        let folders = match folders_in(parent) {
            none if none == "nothing" => "no folders".to_string(),
            some => format!("the folders: {some}"),
        };
        // A run directory's missing child is a typo (`runs/bset`), not a hub id.
        let hub_id = match looks_like_hub_id(model) && !parent.join("settings.json").is_file() {
            true => format!("; as the hub id '{model}' it is not looked up, since the folder {} exists here: run from another folder, or pass the model's folder", parent.display()),
            false => String::new(),
        };
        bail!("model folder {model} does not exist ({} holds {folders}){hub_id}", parent.display());
    }
    if !looks_like_hub_id(model) {
        bail!("model folder {model} does not exist");
    }
    super::hub::fetch(model)
}

/// Refuses a sentence-transformers folder whose `modules.json` puts the Transformer module
/// (or an older one: BERT, DistilBERT) in a subfolder: the older layout, which sentence-mtl
/// does not read, or a listing that names a folder the model is not in.
fn refuse_transformer_in_subfolder(model: &str, dir: &Path) -> Result<()> {
    let listed = listed_modules(dir);
    let Some(module) = listed.iter().find(|m| m.is_transformer() && !m.is_root()) else { return Ok(()) };
    let sub = &module.path;
    if dir.join(sub).join("config.json").is_file() {
        bail!(
            "--model {model} is a sentence-transformers folder of the older layout, its {} module in {sub}/, which sentence-mtl does not read: move the files of {sub}/ into {model} itself and set that module's \"path\" in modules.json to \"\" (sentence-transformers reads that layout too)",
            module.kind()
        );
    }
    bail!(
        "{}: the {} module's path is \"{sub}\", which holds no config.json; set it to \"\" where the model's files are in {} itself",
        dir.join("modules.json").display(),
        module.kind(),
        dir.display()
    );
}

/// Where `path` points when it is a symbolic link to nothing (a Hugging Face cache snapshot
/// copied without the blobs its links point to).
pub fn dangling_link(path: &Path) -> Option<PathBuf> {
    let is_link = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
    (is_link && !path.exists()).then(|| std::fs::read_link(path).unwrap_or_default())
}

/// What to say of a model file that is a link to nothing.
pub fn dangling_file_message(file: &Path, target: &Path) -> String {
    format!(
        "{} is a symbolic link to {}, which does not exist (a Hugging Face cache snapshot copied without its blobs? `cp -rL` copies the files the links point to)",
        file.display(),
        target.display()
    )
}

/// The names in `dir`, sorted, the first few of them.
pub fn listing(dir: &Path) -> String {
    names_in(dir, |_| true)
}

/// The folders in `dir` (hidden ones left out), sorted, the first few of them.
fn folders_in(dir: &Path) -> String {
    names_in(dir, |entry| entry.path().is_dir() && !entry.file_name().to_string_lossy().starts_with('.'))
}

fn names_in(dir: &Path, keep: impl Fn(&std::fs::DirEntry) -> bool) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().filter(|e| keep(e)).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    match names.len() {
        0 => "nothing".to_string(),
        n if n > 8 => format!("{}, and {} more", names[..8].join(", "), n - 8),
        _ => names.join(", "),
    }
}

fn looks_like_hub_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    !s.starts_with('.')
        && !s.starts_with('~')
        && (1..=2).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// A module `modules.json` lists: its folder and its class.
#[derive(serde::Deserialize)]
pub struct ListedModule {
    pub path: String,
    #[serde(rename = "type")]
    class: String,
}

impl ListedModule {
    /// The class's own name (`Pooling` of `sentence_transformers.models.Pooling`).
    pub fn kind(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or_default()
    }

    /// Whether the module is the backbone: `Transformer`, or the per-architecture module
    /// older sentence-transformers versions saved.
    pub fn is_transformer(&self) -> bool {
        is_transformer_kind(self.kind())
    }

    /// Whether the module's files are the folder's own (path `""`, or `.`).
    pub fn is_root(&self) -> bool {
        matches!(self.path.trim_end_matches('/'), "" | ".")
    }

    /// Whether the module's path stays inside the folder (no `..`, not absolute).
    pub fn is_inside(&self) -> bool {
        !self.path.starts_with('/') && !self.path.split(['/', '\\']).any(|part| part == "..")
    }
}

/// Whether a module class (its own name) is the backbone, as [`ListedModule::is_transformer`].
pub fn is_transformer_kind(kind: &str) -> bool {
    matches!(kind, "Transformer" | "BERT" | "DistilBERT" | "RoBERTa" | "XLMRoBERTa" | "ALBERT" | "CamemBERT")
}

/// The modules `folder`'s `modules.json` lists; none where it is missing or unreadable (the
/// checks that need it report that themselves).
pub(super) fn listed_modules(folder: &Path) -> Vec<ListedModule> {
    let Ok(text) = std::fs::read_to_string(folder.join("modules.json")) else { return Vec::new() };
    serde_json::from_str(&text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_versus_paths() {
        assert!(looks_like_hub_id("distilbert-base-uncased"));
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }

    #[test]
    fn missing_local_path_is_named() {
        let err = resolve_model_dir("./no/such/folder").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
