//! A sentence-transformers folder: Transformer (the backbone), Pooling, Dense (the
//! projection, identity activation) and Normalize modules, listed in `modules.json`.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::model_files::{variables, write_backbone};
use crate::model::loaded::LoadedModel;
use crate::model::pooling::Pooling;
use crate::model::safetensors_io::write_safetensors;

pub fn write(loaded: &LoadedModel, folder: &Path) -> Result<()> {
    let spec = &loaded.spec;
    let hidden = loaded.config.hidden_size();
    write_backbone(loaded, folder)?;
    std::fs::write(
        folder.join("sentence_bert_config.json"),
        serde_json::to_string_pretty(&json!({"max_seq_length": spec.max_length, "do_lower_case": false}))?,
    )?;
    let mut modules =
        vec![json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"})];

    std::fs::create_dir_all(folder.join("1_Pooling"))?;
    std::fs::write(
        folder.join("1_Pooling/config.json"),
        serde_json::to_string_pretty(&json!({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": spec.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": spec.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": spec.pooling == Pooling::Max,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }))?,
    )?;
    modules.push(json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}));

    if let Some(dim) = spec.projection_dim {
        std::fs::create_dir_all(folder.join("2_Dense"))?;
        std::fs::write(
            folder.join("2_Dense/config.json"),
            serde_json::to_string_pretty(&json!({
                "in_features": hidden,
                "out_features": dim,
                "bias": true,
                "activation_function": "torch.nn.modules.linear.Identity",
            }))?,
        )?;
        let vars = variables(loaded);
        write_safetensors(
            &folder.join("2_Dense/model.safetensors"),
            &[("linear.weight", &vars["projection.weight"]), ("linear.bias", &vars["projection.bias"])],
        )?;
        modules.push(json!({"idx": modules.len(), "name": modules.len().to_string(), "path": "2_Dense", "type": "sentence_transformers.models.Dense"}));
    }
    if spec.normalize {
        let name = format!("{}_Normalize", modules.len());
        std::fs::create_dir_all(folder.join(&name))?;
        modules.push(json!({"idx": modules.len(), "name": modules.len().to_string(), "path": name, "type": "sentence_transformers.models.Normalize"}));
    }
    std::fs::write(folder.join("modules.json"), serde_json::to_string_pretty(&modules)?)?;
    // Without this file sentence-transformers 3 asks the hub for it when the folder is named
    // without `./` (retrying for about 20 s offline); an old version, so that no installed
    // version warns that the model is newer than it. Where the backbone came from rides along
    // (sentence-transformers keeps the key when it saves the model again), so that a model
    // trained further from this folder still names it.
    std::fs::write(
        folder.join(crate::checkpoint::ST_MODEL_SETTINGS_FILE),
        serde_json::to_string_pretty(&json!({
            "__version__": {"sentence_transformers": "2.2.0"},
            "prompts": {},
            "default_prompt_name": null,
            "similarity_fn_name": "cosine",
            crate::checkpoint::ST_EXPORT_KEY: {"base_model": spec.base_model},
        }))?,
    )?;
    Ok(())
}
