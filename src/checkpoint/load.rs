//! Loading a model for inference (`encode`, `predict`, `eval`, `export`): the weight file's
//! tensors are checked against the model's layout and kept as they are, no modules built.

use anyhow::Result;
use tch::Device;

use super::folder::{check_max_length, CheckedWeights, ModelFolder};
use crate::model::loaded::LoadedModel;
use crate::model::spec::SpecOverrides;
use crate::model::tokenizer::SentenceTokenizer;

/// Loads a checkpoint folder, a HF model folder, or a hub id, onto `device` for inference.
pub fn load(model: &str, device: Device, overrides: &SpecOverrides) -> Result<LoadedModel> {
    let folder = ModelFolder::open(model)?;
    let mut spec = folder.spec.clone();
    overrides.apply(&mut spec);
    let source = match overrides.max_length {
        Some(_) => "--max-length".to_string(),
        None => folder.max_length_source(),
    };
    check_max_length(spec.max_length, &folder.config, &source)?;

    let tokenizer = SentenceTokenizer::from_dir(&folder.dir)?;
    tokenizer.check_fits(folder.config.vocab_size())?;
    let (path, tensors) = folder.read_tensors()?;
    let weights_file = folder.weights_label(&path);
    let CheckedWeights { found, passthrough } = folder.match_weights(&spec, &weights_file, tensors)?;
    // Training keeps fp32 weights; a half-precision file is widened as training would.
    let weights = found
        .into_iter()
        .map(|(name, t)| {
            let t = if t.is_floating_point() { t.to_kind(tch::Kind::Float) } else { t };
            (name, t.to_device(device))
        })
        .collect();
    Ok(LoadedModel { weights, config: folder.config, device, tokenizer, spec, dir: folder.dir, passthrough })
}
