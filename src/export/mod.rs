//! `sentence-mtl export`: checkpoints in formats the Python ecosystem loads.
//!
//! - `sentence-transformers`: a folder `SentenceTransformer(DIR)` loads
//! - `hf`: the backbone as a transformers model folder, plus heads and tasks.json
//! - `torchscript`: a traced module for `torch.jit.load` and `tch::CModule`
//!
//! Every export gets a README.md model card; folders are written aside and swapped in.

mod hf;
mod model_card;
mod sentence_transformers;
mod torchscript;

pub use model_card::is_export;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::{Device, Tensor};

use crate::atomic_write;
use crate::model::loaded::LoadedModel;
use crate::model::safetensors_io::write_safetensors;
use crate::model::tokenizer::TOKENIZER_FILES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    SentenceTransformers,
    Hf,
    TorchScript,
}

impl FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "sentence-transformers" | "st" => Self::SentenceTransformers,
            "hf" | "transformers" => Self::Hf,
            "torchscript" => Self::TorchScript,
            other => bail!("unknown --format '{other}' (expected sentence-transformers, hf or torchscript)"),
        })
    }
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::SentenceTransformers => "sentence-transformers",
            Self::Hf => "hf",
            Self::TorchScript => "torchscript",
        }
    }
}

/// Writes `loaded` in `format` into `out`. A non-empty `out` is refused unless `force`, and
/// even then unless it is an earlier export (not a run or the user's files); the new folder
/// replaces the old one in one step.
pub fn export(loaded: &LoadedModel, format: ExportFormat, out: &Path, force: bool) -> Result<()> {
    crate::checkpoint::refuse_output_inside(out, "--out")?;
    let mut target = out.to_path_buf();
    if out.exists() {
        if !out.is_dir() {
            bail!("--out {} exists and is not a folder", out.display());
        }
        target = out.canonicalize().with_context(|| format!("cannot read --out {}", out.display()))?;
        refuse_replacing_what_is_in_use(out, &target, loaded)?;
        let non_empty = std::fs::read_dir(out)?.next().is_some();
        if non_empty && !force {
            bail!("--out {} exists and is not empty; pass --force to replace it", out.display());
        }
        if non_empty && !is_export(out) {
            bail!(
                "--out {} holds files that are not a sentence-mtl export; --force replaces only an earlier export, so choose an empty or new folder",
                out.display()
            );
        }
        let foreign = model_card::foreign_entries(out);
        if non_empty && !foreign.is_empty() {
            bail!(
                "--out {} is an earlier export with other files added ({}), which replacing it would delete; move them, or choose another folder",
                out.display(),
                foreign.join(", ")
            );
        }
    }
    atomic_write::replace_dir(&target, |folder| {
        match format {
            ExportFormat::SentenceTransformers => sentence_transformers::write(loaded, folder)?,
            ExportFormat::Hf => hf::write(loaded, folder)?,
            ExportFormat::TorchScript => torchscript::write(loaded, folder)?,
        }
        let card = model_card::render(loaded, format);
        std::fs::write(folder.join("README.md"), card)?;
        Ok(())
    })
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

/// All variables, on the CPU, by name.
fn variables(loaded: &LoadedModel) -> HashMap<String, Tensor> {
    loaded.weights.iter().map(|(name, t)| (name.clone(), t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// The backbone's tensors under the names of a bare transformers model (no `bert.` or
/// `distilbert.` prefix), as `AutoModel.save_pretrained` writes them.
fn write_backbone(loaded: &LoadedModel, folder: &Path) -> Result<()> {
    let prefix = format!("{}.", loaded.config.model_type());
    let mut tensors: Vec<(String, Tensor)> = variables(loaded)
        .into_iter()
        .chain(loaded.passthrough.iter().map(|(n, t)| (n.clone(), t.shallow_clone())))
        .filter_map(|(name, t)| name.strip_prefix(&prefix).map(|bare| (bare.to_string(), t)))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&folder.join("model.safetensors"), &refs)?;
    copy_model_files(loaded, folder)
}

/// `config.json` and the tokenizer files of the checkpoint, with a `tokenizer_config.json`
/// whose limit is the checkpoint's (transformers cuts at `model_max_length` where
/// `truncation=True` names no length; the base model's is often 512, where `encode` cuts at 128).
fn copy_model_files(loaded: &LoadedModel, folder: &Path) -> Result<()> {
    for file in std::iter::once(&"config.json").chain(TOKENIZER_FILES) {
        let from = loaded.dir.join(file);
        if from.is_file() && *file != "tokenizer_config.json" {
            std::fs::copy(&from, folder.join(file)).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    let to = folder.join("tokenizer_config.json");
    std::fs::write(&to, serde_json::to_string_pretty(&tokenizer_config(loaded)?)? + "\n")
        .with_context(|| format!("cannot write {}", to.display()))
}

/// The checkpoint's `tokenizer_config.json` with its limit set; for a model folder without
/// one, the settings its tokenizer was read with, so that transformers reads the same.
fn tokenizer_config(loaded: &LoadedModel) -> Result<serde_json::Value> {
    let from = loaded.dir.join("tokenizer_config.json");
    let mut config = if from.is_file() {
        let text = std::fs::read_to_string(&from).with_context(|| format!("cannot read {}", from.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", from.display()))?
    } else {
        let tokenizer = &loaded.tokenizer;
        json!({"do_lower_case": tokenizer.lower_case, "strip_accents": tokenizer.strip_accents})
    };
    if let Some(fields) = config.as_object_mut() {
        fields.insert("model_max_length".into(), loaded.spec.max_length.into());
        // Decoding only; set as transformers' current default, which it warns will change.
        fields.entry("clean_up_tokenization_spaces").or_insert(true.into());
        // DistilBERT takes no token types; a config naming BertTokenizer would have the
        // tokenizer make them, and sentence-transformers pass them to DistilBertModel.
        if loaded.spec.model_type == "distilbert" {
            fields.insert("model_input_names".into(), json!(["input_ids", "attention_mask"]));
        }
    }
    Ok(config)
}

/// `tasks.json`: how to turn the backbone's hidden states into embeddings and task logits.
fn tasks_json(loaded: &LoadedModel, outputs: Option<Vec<String>>) -> serde_json::Value {
    let spec = &loaded.spec;
    let mut value = json!({
        "format": crate::checkpoint::HF_EXPORT_FORMAT,
        "model_type": spec.model_type,
        "pooling": spec.pooling,
        "projection_dim": spec.projection_dim,
        "normalize": spec.normalize,
        "max_length": spec.max_length,
        "tasks": spec.head_tasks().map(|t| json!({"name": t.name, "labels": t.labels, "head_input": t.head_input})).collect::<Vec<_>>(),
    });
    if let Some(outputs) = outputs {
        value["outputs"] = json!(outputs);
    }
    value
}
