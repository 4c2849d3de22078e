//! Loading a model for inference (`encode`, `predict`, `eval`, `export`): the weight file's
//! tensors are checked against the model's layout and kept as they are, no modules built.

use anyhow::{bail, Result};
use tch::Device;

use super::folder::{check_max_length, refuse_uncounted_blocks, split_passthrough, ModelFolder};
use crate::model::layout::tensor_shapes;
use crate::model::loaded::LoadedModel;
use crate::model::names;
use crate::model::spec::SpecOverrides;
use crate::model::tensor_matching::match_tensors;
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
    let expected = tensor_shapes(&folder.config, &spec);
    let weights_file = folder.weights_label(&path);
    let matched = match_tensors(&weights_file, tensors, &expected, folder.config.model_type())?;
    if !matched.missing.is_empty() {
        // A plain Hugging Face folder has no spec file of its own to blame.
        let described_by = match folder.has_own_spec {
            true => format!("config.json / {}", folder.spec_file()),
            false => "config.json".to_string(),
        };
        bail!(
            "{} lacks {} tensor(s) this model needs, e.g. {} (wrong file for this {described_by}?)",
            weights_file,
            matched.missing.len(),
            matched.missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
        );
    }
    let (passthrough, unused) = split_passthrough(matched.unused);
    refuse_uncounted_blocks(&unused, &folder.config, &weights_file)?;
    let stray: Vec<&str> = unused.iter().filter(|n| names::is_added_layer(n)).map(String::as_str).collect();
    if !stray.is_empty() {
        bail!(
            "{} has tensors {} that {} does not describe (checkpoint heads do not match its tasks)",
            weights_file,
            stray.join(", "),
            folder.spec_file(),
        );
    }
    // Training keeps fp32 weights; a half-precision file is widened as training would.
    let weights = matched
        .found
        .into_iter()
        .map(|(name, t)| {
            let t = if t.is_floating_point() { t.to_kind(tch::Kind::Float) } else { t };
            (name, t.to_device(device))
        })
        .collect();
    Ok(LoadedModel { weights, config: folder.config, device, tokenizer, spec, dir: folder.dir, passthrough })
}
