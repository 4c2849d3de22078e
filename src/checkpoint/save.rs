//! Writing a checkpoint folder: built aside and swapped in atomically (`atomic_write`), so an
//! interruption at any moment leaves the previous complete checkpoint in place.

use std::path::Path;

use anyhow::{Context, Result};

use super::{SPEC_FILE, WEIGHTS_FILE};
use crate::atomic_write;
use crate::model::loaded::LoadedModel;
use crate::model::safetensors_io::write_safetensors;
use crate::model::spec::ModelSpec;
use crate::model::tokenizer::TOKENIZER_FILES;

/// Writes a complete checkpoint of `loaded` (with `spec`) into `target`, replacing any
/// previous one atomically. `source_dir` is where `config.json` and the tokenizer files are
/// copied from.
pub fn save(target: &Path, loaded: &LoadedModel, spec: &ModelSpec, source_dir: &Path) -> Result<()> {
    save_with(target, loaded, spec, source_dir, |_| Ok(()))
}

/// [`save`], with `extra` writing more files (e.g. training state) into the same folder
/// before it is switched in.
pub fn save_with(
    target: &Path,
    loaded: &LoadedModel,
    spec: &ModelSpec,
    source_dir: &Path,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    atomic_write::replace_dir(target, |staging| {
        let tensors: Vec<(&str, &tch::Tensor)> = loaded
            .weights
            .iter()
            .chain(loaded.passthrough.iter().map(|(n, t)| (n, t)))
            .map(|(n, t)| (n.as_str(), t))
            .collect();
        write_safetensors(&staging.join(WEIGHTS_FILE), &tensors)?;
        std::fs::copy(source_dir.join("config.json"), staging.join("config.json"))
            .with_context(|| format!("cannot copy config.json from {}", source_dir.display()))?;
        for file in TOKENIZER_FILES {
            let from = source_dir.join(file);
            if from.is_file() {
                std::fs::copy(&from, staging.join(file)).with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        let json = serde_json::to_string_pretty(spec)?;
        std::fs::write(staging.join(SPEC_FILE), json + "\n")?;
        extra(staging)
    })
    .with_context(|| format!("cannot save checkpoint {}", target.display()))
}
