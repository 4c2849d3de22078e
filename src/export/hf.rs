//! A transformers folder (`AutoModel` loads the backbone) plus `heads.safetensors` (projection
//! and task heads) and `tasks.json`; the model card shows the Python that rebuilds the
//! classifier from them.

use std::path::Path;

use anyhow::Result;
use tch::Tensor;

use super::model_files::{tasks_json, variables, write_backbone};
use crate::model::loaded::LoadedModel;
use crate::model::safetensors_io::write_safetensors;

pub fn write(loaded: &LoadedModel, folder: &Path) -> Result<()> {
    write_backbone(loaded, folder)?;
    let mut heads: Vec<(String, Tensor)> = variables(loaded)
        .into_iter()
        .filter(|(name, _)| name.starts_with("projection.") || name.starts_with("heads."))
        .collect();
    heads.sort_by(|a, b| a.0.cmp(&b.0));
    let refs: Vec<(&str, &Tensor)> = heads.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&folder.join("heads.safetensors"), &refs)?;
    std::fs::write(folder.join("tasks.json"), serde_json::to_string_pretty(&tasks_json(loaded, None))? + "\n")?;
    Ok(())
}
