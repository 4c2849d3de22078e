//! The checkpoint folder: the one contract between `train`, `encode`, `eval`, `predict` and
//! `export`. A checkpoint holds
//!
//! - `model.safetensors`: every variable (backbone under HF names, `projection.*`, `heads.<task>.*`)
//! - `config.json` and the tokenizer files of the backbone, copied from where it came from
//! - `sentence_mtl.json`: a [`ModelSpec`] (pooling, projection, tasks and their labels, settings)
//!
//! [`load`] also accepts a plain Hugging Face model folder (or hub id): then the spec comes
//! from defaults and, for sentence-transformers folders, from `modules.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::atomic_write;
use crate::model::config::BackboneConfig;
use crate::model::fused_forward::FusedForward;
use crate::model::layout::tensor_shapes;
use crate::model::pooling::Pooling;
use crate::model::source::resolve_model_dir;
use crate::model::tokenizer::{SentenceTokenizer, TOKENIZER_FILES};
use crate::model::weights::{find_weight_file, load_into, match_tensors, read_weight_file, write_safetensors};
use crate::model::MultiTaskModel;

pub const SPEC_FILE: &str = "sentence_mtl.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const FORMAT_VERSION: u32 = 1;
/// Used when neither the flags nor the model folder say otherwise.
pub const DEFAULT_MAX_LENGTH: usize = 128;

/// Everything besides the tensors that is needed to rebuild a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelSpec {
    pub format_version: u32,
    /// `distilbert` or `bert`; must agree with `config.json`.
    pub model_type: String,
    pub pooling: Pooling,
    /// Width of the `projection` layer, `None` when sentence features are the pooled states.
    pub projection_dim: Option<i64>,
    /// Whether `encode` L2-normalises embeddings (heads always read un-normalised features).
    pub normalize: bool,
    /// Token limit per sentence, `[CLS]` and `[SEP]` included.
    pub max_length: usize,
    pub tasks: Vec<TaskSpec>,
    /// Where the backbone weights originally came from (a folder or hub id).
    pub base_model: String,
    /// The resolved training settings of the run that wrote this checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Dev metrics at the time of saving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    /// Class names; a class's index in this list is its id and its row in the head.
    pub labels: Vec<String>,
    pub text_column: String,
    pub label_column: String,
}

impl ModelSpec {
    pub fn task(&self, name: &str) -> Result<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
            if known.is_empty() {
                anyhow::anyhow!(
                    "unknown task '{name}': this model has no task heads (train one with `sentence-mtl train`)"
                )
            } else {
                anyhow::anyhow!("unknown task '{name}' (this model has: {})", known.join(", "))
            }
        })
    }
}

/// Flags that override what the model folder says.
#[derive(Debug, Clone, Default)]
pub struct SpecOverrides {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub max_length: Option<usize>,
}

/// A model ready for inference, with its tokenizer and description.
pub struct LoadedModel {
    /// Every tensor of the model ([`crate::model::layout`]) by name, on the model's device.
    /// For a model `train` builds, these share storage with its trainable variables, so
    /// they always hold the current weights.
    pub weights: HashMap<String, tch::Tensor>,
    pub config: BackboneConfig,
    pub device: Device,
    pub tokenizer: SentenceTokenizer,
    pub spec: ModelSpec,
    /// The folder the files came from (for copying tokenizer files into new checkpoints).
    pub dir: PathBuf,
    /// Backbone tensors sentence embeddings do not use but the HF format has (BERT's
    /// pooler): carried unchanged into checkpoints and exports, so transformers loads an
    /// export without reporting newly initialised weights.
    pub passthrough: Vec<(String, tch::Tensor)>,
}

impl LoadedModel {
    /// The inference forward pass over the current weights.
    pub fn forward(&self) -> FusedForward<'_> {
        FusedForward { weights: &self.weights, config: &self.config, spec: &self.spec }
    }
}

/// Splits a load's unused tensors into the backbone's pass-through ones and the rest.
fn passthrough(
    unused: Vec<(String, tch::Tensor)>,
    config: &BackboneConfig,
) -> (Vec<(String, tch::Tensor)>, Vec<String>) {
    let pooler = format!("{}.pooler.", config.model_type());
    let (keep, other): (Vec<_>, Vec<_>) = unused.into_iter().partition(|(name, _)| name.starts_with(&pooler));
    (keep, other.into_iter().map(|(name, _)| name).collect())
}

/// The description and files of a model folder (checkpoint, HF folder or hub id).
struct ModelFolder {
    dir: PathBuf,
    config: BackboneConfig,
    /// From `sentence_mtl.json`, or defaults and `modules.json` for a plain HF folder.
    spec: ModelSpec,
    is_checkpoint: bool,
    /// A plain sentence-transformers folder's pipeline (default for a checkpoint).
    sentence_transformers: SentenceTransformersConfig,
}

impl ModelFolder {
    fn open(model: &str) -> Result<Self> {
        let dir = resolve_model_dir(model)?;
        let config = BackboneConfig::from_file(&dir.join("config.json"))?;
        let is_checkpoint = dir.join(SPEC_FILE).is_file();
        let (spec, sentence_transformers) = if is_checkpoint {
            (read_spec(&dir)?, SentenceTransformersConfig::default())
        } else {
            let st = SentenceTransformersConfig::read(&dir)?;
            (spec_for_plain_model(&st, model, &config), st)
        };
        if spec.model_type != config.model_type() {
            bail!(
                "{} says model_type '{}' but config.json says '{}'",
                dir.join(SPEC_FILE).display(),
                spec.model_type,
                config.model_type()
            );
        }
        Ok(Self { dir, config, spec, is_checkpoint, sentence_transformers })
    }

    /// The weight file's tensors, with a sentence-transformers Dense module's weights under
    /// the projection's names when the folder has one.
    fn read_tensors(&self) -> Result<(PathBuf, BTreeMap<String, tch::Tensor>)> {
        let path = find_weight_file(&self.dir)?;
        let mut tensors = read_weight_file(&path)?;
        if let Some(dense) = &self.sentence_transformers.dense {
            tensors.extend(dense.projection_tensors()?);
        }
        Ok((path, tensors))
    }
}

/// Loads a checkpoint folder, a HF model folder, or a hub id, onto `device` for inference.
pub fn load(model: &str, device: Device, overrides: &SpecOverrides) -> Result<LoadedModel> {
    let folder = ModelFolder::open(model)?;
    let mut spec = folder.spec.clone();
    if let Some(p) = overrides.pooling {
        spec.pooling = p;
    }
    if let Some(n) = overrides.normalize {
        spec.normalize = n;
    }
    if let Some(m) = overrides.max_length {
        spec.max_length = m;
    }
    check_max_length(spec.max_length, &folder.config)?;

    let tokenizer = SentenceTokenizer::from_dir(&folder.dir)?;
    let (path, tensors) = folder.read_tensors()?;
    let expected = tensor_shapes(&folder.config, &spec);
    let matched = match_tensors(&path, tensors, &expected, folder.config.model_type())?;
    if !matched.missing.is_empty() {
        bail!(
            "{} lacks {} tensor(s) this model needs, e.g. {} (wrong file for this config.json / {}?)",
            path.display(),
            matched.missing.len(),
            matched.missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            SPEC_FILE
        );
    }
    let (passthrough, unused) = passthrough(matched.unused, &folder.config);
    let stray_heads: Vec<&String> =
        unused.iter().filter(|n| n.starts_with("heads.") || n.starts_with("projection.")).collect();
    if !stray_heads.is_empty() {
        bail!(
            "{} has tensors {} that {} does not describe (checkpoint heads do not match its tasks)",
            path.display(),
            stray_heads.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            SPEC_FILE
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

/// How `train` wants the model built: the run's tasks and encoder settings.
pub struct TrainingSpec {
    pub pooling: Option<Pooling>,
    /// `Some(0)`: no projection; `None`: the checkpoint's, or [`DEFAULT_PROJECTION_DIM`].
    pub projection_dim: Option<i64>,
    pub max_length: usize,
    pub tasks: Vec<TaskSpec>,
}

pub const DEFAULT_PROJECTION_DIM: i64 = 256;

/// The model `train` starts from.
pub struct TrainableModel {
    /// The trainable modules; `loaded.weights` are their variables.
    pub model: MultiTaskModel,
    pub loaded: LoadedModel,
    /// The freshly initialised tensors (new heads, a new projection).
    pub new_tensors: Vec<String>,
}

/// The model `train` starts from: backbone (and projection, and heads of tasks with the same
/// name and labels) from a HF folder, hub id or checkpoint; every other layer is new.
pub fn load_for_training(model: &str, device: Device, wanted: TrainingSpec) -> Result<TrainableModel> {
    let folder = ModelFolder::open(model)?;
    let base = &folder.spec;
    check_max_length(wanted.max_length, &folder.config)?;
    let projection_dim = match wanted.projection_dim {
        Some(0) => None,
        Some(d) => Some(d),
        // A checkpoint's projection, or a sentence-transformers Dense module, is kept.
        None if folder.is_checkpoint => base.projection_dim,
        None => base.projection_dim.or(Some(DEFAULT_PROJECTION_DIM)),
    };
    let spec = ModelSpec {
        format_version: FORMAT_VERSION,
        model_type: folder.config.model_type().to_string(),
        pooling: wanted.pooling.unwrap_or(base.pooling),
        projection_dim,
        normalize: base.normalize,
        max_length: wanted.max_length,
        tasks: wanted.tasks,
        base_model: base.base_model.clone(),
        training: None,
        metrics: None,
    };
    let tokenizer = SentenceTokenizer::from_dir(&folder.dir)?;
    let model = MultiTaskModel::build(&folder.config, &spec, device);
    let (path, mut tensors) = folder.read_tensors()?;
    // Keep only what fits the new model: a different projection width or label set means
    // that layer starts afresh.
    tensors.retain(|name, tensor| {
        if name.starts_with("projection.") {
            return base.projection_dim.is_some() && base.projection_dim == spec.projection_dim;
        }
        if let Some(rest) = name.strip_prefix("heads.") {
            let task = rest.split('.').next().unwrap_or("");
            let old = base.tasks.iter().find(|t| t.name == task);
            let new = spec.tasks.iter().find(|t| t.name == task);
            return matches!((old, new), (Some(o), Some(n)) if o.labels == n.labels) && tensor.dim() > 0;
        }
        true
    });
    let matched = load_into(&model.vs, &path, tensors, folder.config.model_type())?;
    let not_new: Vec<&String> =
        matched.missing.iter().filter(|n| !n.starts_with("projection.") && !n.starts_with("heads.")).collect();
    if !not_new.is_empty() {
        bail!(
            "{} lacks {} backbone tensor(s), e.g. {} (wrong weights for this config.json?)",
            path.display(),
            not_new.len(),
            not_new.iter().take(5).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let (passthrough, _) = passthrough(matched.unused, &folder.config);
    // Copies: the file's tensors are views of the mapped file (`model::mapped_file`), and one
    // kept for the whole run would keep all of the file mapped and resident.
    let passthrough = passthrough.into_iter().map(|(name, t)| (name, t.copy())).collect();
    let loaded = LoadedModel {
        weights: model.vs.variables(),
        config: folder.config,
        device,
        tokenizer,
        spec,
        dir: folder.dir,
        passthrough,
    };
    Ok(TrainableModel { model, loaded, new_tensors: matched.missing })
}

pub fn check_max_length(max_length: usize, config: &BackboneConfig) -> Result<()> {
    let limit = config.max_position_embeddings() as usize;
    if max_length < 2 || max_length > limit {
        bail!("--max-length {max_length} is out of range: this model takes 2 to {limit} tokens");
    }
    Ok(())
}

fn read_spec(dir: &Path) -> Result<ModelSpec> {
    let path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let spec: ModelSpec = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid checkpoint description", path.display()))?;
    if spec.format_version != FORMAT_VERSION {
        bail!(
            "{} has format_version {}, this sentence-mtl reads version {FORMAT_VERSION}",
            path.display(),
            spec.format_version
        );
    }
    Ok(spec)
}

/// A spec for a folder without `sentence_mtl.json`: no heads; pooling, normalisation, max
/// length and a projection (a linear Dense module) from a sentence-transformers config when present.
fn spec_for_plain_model(st: &SentenceTransformersConfig, model: &str, config: &BackboneConfig) -> ModelSpec {
    ModelSpec {
        format_version: FORMAT_VERSION,
        model_type: config.model_type().to_string(),
        pooling: st.pooling.unwrap_or_default(),
        projection_dim: st.dense.as_ref().map(|d| d.out_features),
        normalize: st.normalize,
        max_length: st.max_seq_length.unwrap_or(DEFAULT_MAX_LENGTH).min(config.max_position_embeddings() as usize),
        tasks: Vec::new(),
        base_model: model.to_string(),
        training: None,
        metrics: None,
    }
}

/// What a sentence-transformers folder says about its pipeline.
#[derive(Debug, Default)]
struct SentenceTransformersConfig {
    pooling: Option<Pooling>,
    normalize: bool,
    max_seq_length: Option<usize>,
    /// A linear Dense module after the pooling: it becomes the projection.
    dense: Option<DenseModule>,
}

/// A sentence-transformers `Dense` module with identity activation: the folder holding its
/// `config.json` and `model.safetensors` (`linear.weight [out, in]`, `linear.bias [out]`).
#[derive(Debug)]
struct DenseModule {
    dir: PathBuf,
    out_features: i64,
    bias: bool,
}

impl SentenceTransformersConfig {
    fn read(dir: &Path) -> Result<Self> {
        let mut out = Self::default();
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(out);
        }
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
                other => eprintln!(
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
    fn projection_tensors(&self) -> Result<BTreeMap<String, tch::Tensor>> {
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
        Ok(BTreeMap::from([("projection.weight".to_string(), weight), ("projection.bias".to_string(), bias)]))
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON for this field", path.display()))
}

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
