//! The model `train` starts from: rust-bert's modules build the variables (the backbone under
//! HF names, a projection, one head per task), and the folder's weights are copied in where
//! they fit; every other layer starts freshly initialised.

use anyhow::Result;
use tch::Device;

use super::folder::{check_max_length, CheckedWeights, ModelFolder};
use crate::model::loaded::LoadedModel;
use crate::model::names::{self, TensorPart};
use crate::model::pooling::Pooling;
use crate::model::spec::{HeadInput, ModelSpec, TaskSpec, DEFAULT_PROJECTION_DIM, FORMAT_VERSION};
use crate::model::tensor_matching::load_into;
use crate::model::tokenizer::SentenceTokenizer;
use crate::model::MultiTaskModel;

/// How `train` wants the model built: the run's tasks and encoder settings.
pub struct TrainingSpec {
    pub pooling: Option<Pooling>,
    /// `Some(0)`: no projection; `None`: the checkpoint's, or [`DEFAULT_PROJECTION_DIM`].
    pub projection_dim: Option<i64>,
    pub max_length: usize,
    pub tasks: Vec<TaskSpec>,
}

/// The model `train` starts from.
pub struct TrainableModel {
    /// The trainable modules; `loaded.weights` are their variables.
    pub model: MultiTaskModel,
    pub loaded: LoadedModel,
    /// The freshly initialised tensors (new heads, a new projection).
    pub new_tensors: Vec<String>,
    /// Notes on layers the starting model had that start afresh here, and why.
    pub replaced: Vec<String>,
}

/// The model `train` starts from: backbone (and projection, and heads of tasks with the same
/// name and labels) from a HF folder, hub id or checkpoint; every other layer is new.
pub fn load_for_training(model: &str, device: Device, wanted: TrainingSpec) -> Result<TrainableModel> {
    TrainingStart::open(model)?.load(device, wanted)
}

/// The folder `train` starts from, opened once: its saved tasks can settle the run's
/// tasks (their label order) before [`TrainingStart::load`] builds the model for them.
pub struct TrainingStart {
    /// `--model` as given (a path or hub id), for messages.
    model: String,
    folder: ModelFolder,
}

impl TrainingStart {
    pub fn open(model: &str) -> Result<Self> {
        Ok(Self { model: model.to_string(), folder: ModelFolder::open(model)? })
    }

    /// The tasks the folder has heads or settings for (none for a model that is no checkpoint).
    pub fn saved_tasks(&self) -> &[TaskSpec] {
        &self.folder.spec.tasks
    }

    /// Builds the model `wanted` describes, with the folder's weights where they fit.
    pub fn load(self, device: Device, wanted: TrainingSpec) -> Result<TrainableModel> {
        build_from(self.folder, &self.model, device, wanted)
    }
}

fn build_from(folder: ModelFolder, model: &str, device: Device, wanted: TrainingSpec) -> Result<TrainableModel> {
    // A limit the folder set (not --max-length) is the folder's file to fix.
    let source = match wanted.max_length == folder.spec.max_length {
        true => folder.max_length_source(),
        false => "--max-length".to_string(),
    };
    check_max_length(wanted.max_length, &folder.config, &source)?;
    let spec = training_spec(&folder, wanted);
    let hidden = folder.config.hidden_size();
    let mut replaced = replaced_layers(&folder.spec, &spec, hidden, model);
    if let Some(trained) = folder.trained_pooling().filter(|&trained| trained != spec.pooling) {
        replaced.push(format!(
            "note: --pooling {}: {model} was trained with {trained} pooling, so training starts from embeddings it was not trained to give",
            spec.pooling
        ));
    }
    let from = model;
    let tokenizer = SentenceTokenizer::from_dir(&folder.dir)?;
    tokenizer.check_fits(folder.config.vocab_size())?;
    let (path, mut tensors) = folder.read_tensors()?;
    // Checked before the model is built, so that a mistyped size (say a `vocab_size` of 10^9)
    // is named as a mismatch rather than ending in an allocation of the size it asks for; and
    // against the folder's own description, so that a damaged checkpoint is refused here as
    // `encode` refuses it, rather than trained on with its lost layers started afresh.
    let shallow = tensors.iter().map(|(name, t)| (name.clone(), t.shallow_clone())).collect();
    let CheckedWeights { passthrough, .. } =
        folder.match_weights(&folder.spec, &folder.weights_label(&path), shallow)?;
    let model = MultiTaskModel::build(&folder.config, &spec, device);
    // Keep only what fits the new model: a different projection width or label set means
    // that layer starts afresh.
    let base = &folder.spec;
    tensors.retain(|name, tensor| match names::part_of(name) {
        TensorPart::Projection => base.projection_dim.is_some() && base.projection_dim == spec.projection_dim,
        TensorPart::Head(task) => {
            let old = base.tasks.iter().find(|t| t.name == task);
            let new = spec.tasks.iter().find(|t| t.name == task);
            matches!((old, new), (Some(o), Some(n)) if head_change(base, o, &spec, n, hidden, from).is_none())
                && tensor.dim() > 0
        }
        _ => true,
    });
    // The backbone's tensors were all found by the check above, so only new layers are missing.
    let matched = load_into(&model.vs, &folder.weights_label(&path), tensors, folder.config.model_type())?;
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
    Ok(TrainableModel { model, loaded, new_tensors: matched.missing, replaced })
}

/// Notes on the layers of `base` that `spec` replaces with new ones or leaves out: a
/// projection of another width, the head of a task of the same name that cannot go on (see
/// [`head_change`]), and the heads of tasks this run does not have.
fn replaced_layers(base: &ModelSpec, spec: &ModelSpec, hidden: i64, model: &str) -> Vec<String> {
    let mut notes = Vec::new();
    match (base.projection_dim, spec.projection_dim) {
        (Some(old), Some(new)) if old != new => {
            notes.push(format!("note: the projection starts new: {model}'s is {old} wide, this run's {new}"))
        }
        (Some(old), None) => notes.push(format!(
            "note: {model}'s projection ({old} wide) is not kept (--projection-dim 0): the embeddings are the {hidden}-wide pooled states"
        )),
        _ => {}
    }
    for new in &spec.tasks {
        let Some(old) = base.tasks.iter().find(|t| t.name == new.name) else { continue };
        if let Some(why) = head_change(base, old, spec, new, hidden, model) {
            notes.push(format!("note: heads.{} starts new: {why}; the old head is not kept", new.name));
        }
    }
    // A task of the same name of another kind (similarity, pairs) has no head to keep it in.
    let left_out: Vec<String> = base
        .head_tasks()
        .filter(|old| !spec.tasks.iter().any(|t| t.name == old.name && t.kind.has_head()))
        .map(|old| format!("'{}'", old.name))
        .collect();
    if !left_out.is_empty() {
        notes.push(format!(
            "note: {model}'s head(s) of {} are not kept: this run has no classification task of that name (give it a --task of that name to train it on)",
            left_out.join(", ")
        ));
    }
    notes
}

/// Why the head of task `old` (in `base`) cannot go on as the head of task `new` (in `spec`)
/// of the same name: other labels, another input width, or another input (a small-data head
/// reads the embeddings, others the features; the two differ only where the model normalises).
/// `None` when it can.
fn head_change(
    base: &ModelSpec,
    old: &TaskSpec,
    spec: &ModelSpec,
    new: &TaskSpec,
    hidden: i64,
    model: &str,
) -> Option<String> {
    let name = &new.name;
    if old.labels != new.labels && !new.labels.is_empty() && !old.labels.is_empty() {
        return Some(format!(
            "task '{name}' of {model} has {} label(s) ({}), this data {} ({})",
            old.labels.len(),
            preview(&old.labels),
            new.labels.len(),
            preview(&new.labels)
        ));
    }
    let (was, is) = (base.feature_width(hidden), spec.feature_width(hidden));
    if was != is {
        return Some(format!("in {model} it reads {was}-wide features, in this run {is}-wide ones (--projection-dim)"));
    }
    if base.projection_dim != spec.projection_dim {
        let (was, is) = match spec.projection_dim {
            Some(_) => ("the pooled states", "a projection that starts new"),
            None => ("its projection", "the pooled states"),
        };
        return Some(format!("in {model} it reads {was}, in this run {is} (--projection-dim)"));
    }
    // A run normalises as the model it starts from does (`training_spec`), so only the head's
    // input kind can differ.
    let reads_normalised =
        |spec: &ModelSpec, task: &TaskSpec| spec.normalize && task.head_input == HeadInput::Embedding;
    match (reads_normalised(base, old), reads_normalised(spec, new)) {
        (true, false) => Some(
            format!("in {model} it reads the normalised embeddings (small-data mode), in this run the features (small-data mode is off for it)"),
        ),
        (false, true) => Some(
            format!("in {model} it reads the features, in this run the normalised embeddings (small-data mode)"),
        ),
        _ => None,
    }
}

/// The first few labels, for a message.
fn preview(labels: &[String]) -> String {
    let shown: Vec<String> = labels.iter().take(4).map(|l| crate::data::labelled::quoted(l)).collect();
    match labels.len() {
        n if n > 4 => format!("{}, ...", shown.join(", ")),
        _ => shown.join(", "),
    }
}

/// The spec of the model to train: the run's tasks and settings over what the folder has.
fn training_spec(folder: &ModelFolder, wanted: TrainingSpec) -> ModelSpec {
    let base = &folder.spec;
    let projection_dim = match wanted.projection_dim {
        Some(0) => None,
        Some(d) => Some(d),
        // A checkpoint's (or its export's) projection, or a sentence-transformers Dense module, is kept. A
        // sentence-transformers model's pooled states are trained embeddings already, which a
        // new random projection would blur (docs/design.md), so none is added to one.
        None if folder.has_own_spec || folder.sentence_transformers.is_sentence_encoder => base.projection_dim,
        None => base.projection_dim.or(Some(DEFAULT_PROJECTION_DIM)),
    };
    ModelSpec {
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
    }
}
