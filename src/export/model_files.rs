//! What the export formats share: the backbone's tensors, its config and tokenizer files
//! under transformers' names, and `tasks.json`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use tch::{Device, Tensor};

use crate::model::loaded::LoadedModel;
use crate::model::safetensors_io::write_safetensors;
use crate::model::tokenizer::TOKENIZER_FILES;

/// All variables, on the CPU, by name.
pub(super) fn variables(loaded: &LoadedModel) -> HashMap<String, Tensor> {
    loaded.weights.iter().map(|(name, t)| (name.clone(), t.detach().to_device(Device::Cpu).contiguous())).collect()
}

/// The backbone's tensors under the names of a bare transformers model (no `bert.` or
/// `distilbert.` prefix), as `AutoModel.save_pretrained` writes them.
pub(super) fn write_backbone(loaded: &LoadedModel, folder: &Path) -> Result<()> {
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
pub(super) fn copy_model_files(loaded: &LoadedModel, folder: &Path) -> Result<()> {
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

/// A task of `tasks.json`: its head's labels and input, and the CSV columns it was trained
/// on, which `predict` and `eval` of the export read as they do from the checkpoint.
fn task_json(task: &crate::model::spec::TaskSpec) -> serde_json::Value {
    let mut value = json!({"name": task.name, "labels": task.labels, "head_input": task.head_input});
    for (key, column) in [("text_column", &task.text_column), ("label_column", &task.label_column)] {
        if let Some(column) = column {
            value[key] = json!(column);
        }
    }
    value
}

/// `tasks.json`: how to turn the backbone's hidden states into embeddings and task logits.
pub(super) fn tasks_json(loaded: &LoadedModel, outputs: Option<Vec<String>>) -> serde_json::Value {
    let spec = &loaded.spec;
    let mut value = json!({
        "format": crate::checkpoint::HF_EXPORT_FORMAT,
        "model_type": spec.model_type,
        "pooling": spec.pooling,
        "projection_dim": spec.projection_dim,
        "normalize": spec.normalize,
        "max_length": spec.max_length,
        "tasks": spec.head_tasks().map(task_json).collect::<Vec<_>>(),
        // Where the backbone came from, so that a model trained further from this folder
        // still names it.
        "base_model": spec.base_model,
    });
    if let Some(outputs) = outputs {
        value["outputs"] = json!(outputs);
    }
    value
}
