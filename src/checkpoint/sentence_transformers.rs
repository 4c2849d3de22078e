//! A plain sentence-transformers folder's pipeline, read from `modules.json`: Pooling,
//! Normalize, the maximum length, and a linear Dense module (read as the projection).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::model::names;
use crate::model::pooling::Pooling;
use crate::model::source::ListedModule;
use crate::model::weights::{find_weight_file, read_weight_file};

/// What a sentence-transformers folder says about its pipeline.
#[derive(Debug, Default)]
pub(super) struct SentenceTransformersConfig {
    pub pooling: Option<Pooling>,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
    /// A linear Dense module after the pooling: it becomes the projection.
    pub dense: Option<DenseModule>,
    /// Whether the folder is a sentence-transformers model (has `modules.json`): its pooled
    /// states are already trained sentence embeddings.
    pub is_sentence_encoder: bool,
    /// The base model a sentence-mtl export of this folder records: its max length is then
    /// the one its model was trained with, not a base model's.
    pub exported_from: Option<String>,
}

/// A sentence-transformers `Dense` module with identity activation: the folder holding its
/// `config.json` and `model.safetensors` (`linear.weight [out, in]`, `linear.bias [out]`).
#[derive(Debug)]
pub(super) struct DenseModule {
    dir: PathBuf,
    pub out_features: i64,
    bias: bool,
}

/// sentence-transformers' own settings file; sentence-transformers keeps keys it does not
/// know when it saves the model again.
pub const MODEL_SETTINGS_FILE: &str = "config_sentence_transformers.json";
/// The key under which a sentence-mtl export records where its backbone came from.
pub const EXPORT_KEY: &str = "sentence_mtl";

/// The modules sentence-mtl runs, in the order it runs them (`model::fused_forward`).
const PIPELINE: [&str; 4] = ["Transformer", "Pooling", "Dense", "Normalize"];

impl SentenceTransformersConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let mut out = Self::default();
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(out);
        }
        out.is_sentence_encoder = true;
        let modules: Vec<ListedModule> = read_json(&modules_path)?;
        if let Some(outside) = modules.iter().find(|m| !m.is_inside()) {
            bail!(
                "{}: the {} module's path \"{}\" leaves the model folder; a model's modules are inside it",
                modules_path.display(),
                outside.kind(),
                outside.path
            );
        }
        // Older sentence-transformers saved the backbone as a module of its architecture.
        let kinds: Vec<&str> =
            modules.iter().map(|m| if m.is_transformer() { "Transformer" } else { m.kind() }).collect();
        refuse_another_order(&kinds, &modules_path)?;
        for (module, kind) in modules.iter().zip(&kinds) {
            match *kind {
                "Transformer" => {}
                "Pooling" => out.pooling = Some(read_pooling(&dir.join(&module.path).join("config.json"))?),
                "Normalize" => out.normalize = true,
                "Dense" => out.dense = Some(DenseModule::read(&dir.join(&module.path))?),
                other => crate::stderrln!(
                    "warning: {} lists a {other} module, which sentence-mtl does not apply",
                    modules_path.display()
                ),
            }
        }
        out.max_seq_length = read_transformer_settings(dir)?;
        out.exported_from = read_model_settings(dir)?;
        Ok(out)
    }
}

/// Refuses a pipeline whose known modules come in another order than sentence-mtl runs them
/// (a Normalize before a Dense), or twice: its embeddings would be other ones.
fn refuse_another_order(kinds: &[&str], modules_path: &Path) -> Result<()> {
    let places: Vec<usize> = kinds.iter().filter_map(|k| PIPELINE.iter().position(|p| p == k)).collect();
    if places.windows(2).any(|w| w[0] >= w[1]) {
        bail!(
            "{} runs {}; sentence-mtl runs {} in that order, each at most once, so it would compute other embeddings",
            modules_path.display(),
            kinds.join(", "),
            PIPELINE.join(", ")
        );
    }
    Ok(())
}

/// A Pooling module's mode: one of cls, mean and max (sentence-transformers concatenates
/// several, and has others).
fn read_pooling(path: &Path) -> Result<Pooling> {
    let config: serde_json::Map<String, serde_json::Value> = read_json(path)?;
    let modes: Vec<&str> = config
        .iter()
        .filter(|(key, on)| key.starts_with("pooling_mode_") && on.as_bool() == Some(true))
        .map(|(key, _)| key.as_str())
        .collect();
    Ok(match modes.as_slice() {
        ["pooling_mode_cls_token"] => Pooling::Cls,
        ["pooling_mode_mean_tokens"] => Pooling::Mean,
        ["pooling_mode_max_tokens"] => Pooling::Max,
        [] => bail!("{}: no pooling_mode_* is true", path.display()),
        modes => bail!(
            "{}: pooling by {} is not supported (sentence-mtl pools by one of cls_token, mean_tokens and max_tokens)",
            path.display(),
            modes.iter().map(|m| m.trim_start_matches("pooling_mode_")).collect::<Vec<_>>().join(" and ")
        ),
    })
}

/// The Transformer module's settings files sentence-transformers reads, the first found
/// (older versions saved a DistilBERT's as `sentence_distilbert_config.json`).
const TRANSFORMER_SETTINGS_FILES: [&str; 7] = [
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
];

/// The Transformer module's `max_seq_length`; its `do_lower_case` (the Transformer module
/// lower-cases the text itself) is refused when the tokenizer does not lower-case, and so are
/// `config_args` and `tokenizer_args`, which change the model or its tokens from what the
/// folder's own files say.
fn read_transformer_settings(dir: &Path) -> Result<Option<usize>> {
    let Some(path) = TRANSFORMER_SETTINGS_FILES.iter().map(|name| dir.join(name)).find(|path| path.is_file()) else {
        return Ok(None);
    };
    let value: serde_json::Value = read_json(&path)?;
    for field in ["config_args", "tokenizer_args"] {
        let set = value.get(field).and_then(|v| v.as_object()).filter(|args| !args.is_empty());
        if let Some(args) = set {
            bail!(
                "{}: {field} ({}) is not supported: sentence-transformers applies it over config.json and the tokenizer files, which are what sentence-mtl reads; write those settings into them",
                path.display(),
                args.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let lower_cases_text = value.get("do_lower_case").and_then(|v| v.as_bool()) == Some(true);
    if lower_cases_text && !crate::model::tokenizer::lower_cases(dir)? {
        bail!(
            "{}: do_lower_case true (the text lower-cased before a tokenizer that keeps case) is not supported; sentence-mtl tokenizes as tokenizer_config.json says",
            path.display()
        );
    }
    Ok(value.get("max_seq_length").and_then(|v| v.as_u64()).map(|v| v as usize))
}

/// `config_sentence_transformers.json`: refused when it sets `default_prompt_name`
/// (sentence-transformers puts that prompt before every text, which sentence-mtl does not);
/// else the base model a sentence-mtl export records under `sentence_mtl`.
fn read_model_settings(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(MODEL_SETTINGS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let value: serde_json::Value = read_json(&path)?;
    let name = value.get("default_prompt_name").and_then(|v| v.as_str());
    let prompt = name.and_then(|name| value["prompts"][name].as_str()).unwrap_or_default();
    if let (Some(name), false) = (name, prompt.is_empty()) {
        bail!(
            "{}: default_prompt_name '{name}' puts '{prompt}' before every text, which sentence-mtl does not do; remove default_prompt_name and write the prompt into your texts",
            path.display()
        );
    }
    Ok(value[EXPORT_KEY]["base_model"].as_str().map(str::to_string))
}

impl DenseModule {
    fn read(dir: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Config {
            out_features: i64,
            #[serde(default = "yes")]
            bias: bool,
            // sentence-transformers' default activation is Tanh.
            #[serde(default = "tanh")]
            activation_function: String,
        }
        fn yes() -> bool {
            true
        }
        fn tanh() -> String {
            "torch.nn.modules.activation.Tanh".into()
        }
        let path = dir.join("config.json");
        let config: Config = read_json(&path)?;
        if !config.activation_function.ends_with(".Identity") {
            bail!(
                "{}: a Dense module with activation {} is not supported (sentence-mtl's projection is linear)",
                path.display(),
                config.activation_function
            );
        }
        Ok(Self { dir: dir.to_path_buf(), out_features: config.out_features, bias: config.bias })
    }

    /// The module's weights under the projection's names.
    /// The module's folder, for messages about the projection it holds.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn projection_tensors(&self) -> Result<BTreeMap<String, tch::Tensor>> {
        let mut tensors = read_weight_file(&find_weight_file(&self.dir)?)?;
        let weight = tensors.remove("linear.weight");
        let Some(weight) = weight.filter(|w| w.dim() == 2 && w.size()[0] == self.out_features) else {
            bail!("{} has no linear.weight of {} rows", self.dir.display(), self.out_features);
        };
        let bias = match tensors.remove("linear.bias") {
            Some(b) if self.bias => b,
            _ if self.bias => bail!("{} has no linear.bias", self.dir.display()),
            _ => weight.zeros_like().select(1, 0),
        };
        Ok(BTreeMap::from([(names::weight(names::PROJECTION), weight), (names::bias(names::PROJECTION), bias)]))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON for this field", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with_settings(settings: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]"#;
        std::fs::write(dir.path().join("modules.json"), modules).unwrap();
        std::fs::write(dir.path().join(MODEL_SETTINGS_FILE), settings).unwrap();
        dir
    }

    /// sentence-transformers' older settings file names are read too, and the arguments it
    /// would apply over the folder's own files are refused.
    #[test]
    fn the_transformer_settings_are_read_as_sentence_transformers_reads_them() {
        let dir = folder_with_settings("{}");
        std::fs::write(dir.path().join("sentence_distilbert_config.json"), r#"{"max_seq_length": 8}"#).unwrap();
        assert_eq!(SentenceTransformersConfig::read(dir.path()).unwrap().max_seq_length, Some(8));
        let args = r#"{"max_seq_length": 8, "tokenizer_args": {"truncation_side": "left"}}"#;
        std::fs::write(dir.path().join("sentence_bert_config.json"), args).unwrap();
        let err = SentenceTransformersConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("sentence_bert_config.json: tokenizer_args (truncation_side) is not supported"), "{err}");
    }

    #[test]
    fn a_sentence_mtl_export_names_where_its_backbone_came_from() {
        let ours = folder_with_settings(r#"{"prompts": {}, "sentence_mtl": {"base_model": "/models/base"}}"#);
        let read = SentenceTransformersConfig::read(ours.path()).unwrap();
        assert_eq!(read.exported_from.as_deref(), Some("/models/base"));
        let theirs = folder_with_settings(r#"{"prompts": {}, "similarity_fn_name": "cosine"}"#);
        assert_eq!(SentenceTransformersConfig::read(theirs.path()).unwrap().exported_from, None);
    }
}
