//! A plain sentence-transformers folder's pipeline, read from `modules.json`: Pooling,
//! Normalize, the maximum length, and a linear Dense module (read as the projection).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::model::names;
use crate::model::pooling::Pooling;
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
}

/// A sentence-transformers `Dense` module with identity activation: the folder holding its
/// `config.json` and `model.safetensors` (`linear.weight [out, in]`, `linear.bias [out]`).
#[derive(Debug)]
pub(super) struct DenseModule {
    dir: PathBuf,
    pub out_features: i64,
    bias: bool,
}

impl SentenceTransformersConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let mut out = Self::default();
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(out);
        }
        out.is_sentence_encoder = true;
        #[derive(Deserialize)]
        struct Module {
            path: String,
            #[serde(rename = "type")]
            kind: String,
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        for module in modules {
            match module.kind.rsplit('.').next().unwrap_or("") {
                "Transformer" => {}
                "Pooling" => {
                    let pooling: serde_json::Value = read_json(&dir.join(&module.path).join("config.json"))?;
                    let on = |key: &str| pooling.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
                    out.pooling = Some(if on("pooling_mode_cls_token") {
                        Pooling::Cls
                    } else if on("pooling_mode_max_tokens") {
                        Pooling::Max
                    } else {
                        Pooling::Mean
                    });
                }
                "Normalize" => out.normalize = true,
                "Dense" => {
                    if out.dense.is_some() {
                        bail!(
                            "{} lists more than one Dense module; sentence-mtl reads one, as its projection",
                            modules_path.display()
                        );
                    }
                    out.dense = Some(DenseModule::read(&dir.join(&module.path))?);
                }
                other => crate::stderrln!(
                    "warning: {} lists a {other} module, which sentence-mtl does not apply",
                    modules_path.display()
                ),
            }
        }
        let st_config = dir.join("sentence_bert_config.json");
        if st_config.is_file() {
            let value: serde_json::Value = read_json(&st_config)?;
            out.max_seq_length = value.get("max_seq_length").and_then(|v| v.as_u64()).map(|v| v as usize);
        }
        Ok(out)
    }
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
