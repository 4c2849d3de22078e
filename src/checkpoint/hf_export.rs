//! An `export --format hf` folder read back as a model: its `tasks.json` says the pooling,
//! projection, normalisation and classification heads (`heads.safetensors`) that the
//! transformers folder alone does not carry, so `encode` and `predict` of the export give
//! what the checkpoint gives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::model::config::BackboneConfig;
use crate::model::pooling::Pooling;
use crate::model::spec::{HeadInput, ModelSpec, TaskKind, TaskSpec, FORMAT_VERSION};
use crate::model::weights::read_weight_file;

/// The `format` that `export` writes in `tasks.json`.
pub const FORMAT: &str = "sentence-mtl export 1";
pub(super) const TASKS_FILE: &str = "tasks.json";
pub(super) const HEADS_FILE: &str = "heads.safetensors";
/// What `export --format torchscript` writes beside its `tasks.json`.
const TORCHSCRIPT_FILE: &str = "model.pt";

#[derive(Deserialize)]
struct TasksJson {
    pooling: Pooling,
    projection_dim: Option<i64>,
    normalize: bool,
    max_length: usize,
    tasks: Vec<ExportedTask>,
    /// Exports before it was kept lack it: the export folder is then the origin.
    #[serde(default)]
    base_model: Option<String>,
}

#[derive(Deserialize)]
struct ExportedTask {
    name: String,
    labels: Vec<String>,
    #[serde(default)]
    head_input: HeadInput,
    /// Exports before these were kept lack them: `text` and `label` then, as for `predict`.
    #[serde(default)]
    text_column: Option<String>,
    #[serde(default)]
    label_column: Option<String>,
}

/// The pipeline of an hf export in `dir`: its spec, and the file of its projection and heads.
pub(super) struct HfExport {
    pub spec: ModelSpec,
    heads: PathBuf,
}

impl HfExport {
    /// `None` when `dir` is not an hf export: it has no `tasks.json` of this format (another
    /// tool's file of that name, unless `heads.safetensors` is beside it, is not ours).
    pub fn read(dir: &Path, model: &str, config: &BackboneConfig) -> Result<Option<Self>> {
        let (path, heads) = (dir.join(TASKS_FILE), dir.join(HEADS_FILE));
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(_) if !heads.is_file() => return Ok(None),
            Err(e) => bail!("{} is not valid JSON: {e}", path.display()),
        };
        let format = value.get("format");
        if format.and_then(|f| f.as_str()) != Some(FORMAT) {
            if !heads.is_file() {
                return Ok(None);
            }
            // Beside its heads, a tasks.json is an export's: read as a plain model, the folder
            // would lose its projection and heads without a word.
            bail!(
                "{} beside {HEADS_FILE} is an hf export's, but its \"format\" is {}, not \"{FORMAT}\" (the format this build reads); export the checkpoint again with this build",
                path.display(),
                format.map_or("missing".to_string(), |f| f.to_string())
            );
        }
        if !heads.is_file() {
            if dir.join(TORCHSCRIPT_FILE).is_file() {
                bail!(
                    "{} is a TorchScript export ({TORCHSCRIPT_FILE}), which sentence-mtl does not read back; use the checkpoint it was exported from, or an hf or sentence-transformers export",
                    dir.display()
                );
            }
            bail!(
                "{} describes an export whose projection and heads are in {HEADS_FILE}, which is missing",
                path.display()
            );
        }
        let exported: TasksJson = serde_json::from_value(value)
            .with_context(|| format!("{} is not a valid sentence-mtl export description", path.display()))?;
        let tasks = exported.tasks.into_iter().map(ExportedTask::into_spec).collect();
        let spec = ModelSpec {
            format_version: FORMAT_VERSION,
            model_type: config.model_type().to_string(),
            pooling: exported.pooling,
            projection_dim: exported.projection_dim,
            normalize: exported.normalize,
            max_length: exported.max_length,
            tasks,
            base_model: exported.base_model.unwrap_or_else(|| model.to_string()),
            training: None,
            metrics: None,
        };
        spec.check_recorded(&path)?;
        Ok(Some(Self { spec, heads }))
    }

    /// The projection's and heads' tensors, under the checkpoint's names.
    pub fn tensors(&self) -> Result<BTreeMap<String, tch::Tensor>> {
        read_weight_file(&self.heads)
    }
}

impl ExportedTask {
    fn into_spec(self) -> TaskSpec {
        TaskSpec {
            name: self.name,
            kind: TaskKind::Classification,
            labels: self.labels,
            text_column: self.text_column,
            label_column: self.label_column,
            score_range: None,
            loss: None,
            head_input: self.head_input,
        }
    }
}
