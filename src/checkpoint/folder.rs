//! What a model folder says about itself: a checkpoint's `sentence_mtl.json`, or for a plain
//! Hugging Face folder a spec made from defaults and its sentence-transformers configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::hf_export::HfExport;
use super::sentence_transformers::SentenceTransformersConfig;
use super::SPEC_FILE;
use crate::model::config::BackboneConfig;
use crate::model::layout::tensor_shapes;
use crate::model::names::{self, TensorPart};
use crate::model::source::resolve_model_dir;
use crate::model::spec::{ModelSpec, TaskKind, FORMAT_VERSION};
use crate::model::tensor_matching::match_tensors;
use crate::model::weights::{find_weight_file, read_weight_file};
use crate::report::table::first_and_more;

/// The description and files of a model folder (checkpoint, HF folder or hub id).
pub(super) struct ModelFolder {
    pub dir: PathBuf,
    pub config: BackboneConfig,
    /// From `sentence_mtl.json`, an hf export's `tasks.json`, or defaults and `modules.json`
    /// for a plain HF folder.
    pub spec: ModelSpec,
    /// A checkpoint, or an hf export of one: the spec (projection included) is the model's own.
    pub has_own_spec: bool,
    /// A plain sentence-transformers folder's pipeline (default otherwise).
    pub sentence_transformers: SentenceTransformersConfig,
    hf_export: Option<HfExport>,
}

/// A weight file's tensors as [`ModelFolder::match_weights`] found them.
pub(super) struct CheckedWeights {
    /// The model's tensors, under its names.
    pub found: BTreeMap<String, tch::Tensor>,
    /// Tensors the backbone carries along unused (BERT's pooler), kept in checkpoints.
    pub passthrough: Vec<(String, tch::Tensor)>,
}

impl ModelFolder {
    pub fn open(model: &str) -> Result<Self> {
        let dir = resolve_model_dir(model)?;
        let config = BackboneConfig::from_file(&dir.join("config.json"))?;
        let is_checkpoint = super::is_checkpoint(&dir);
        let hf_export = if is_checkpoint { None } else { HfExport::read(&dir, model, &config)? };
        let has_own_spec = is_checkpoint || hf_export.is_some();
        let (spec, sentence_transformers) = if is_checkpoint {
            (read_spec(&dir)?, SentenceTransformersConfig::default())
        } else if let Some(export) = &hf_export {
            (export.spec.clone(), SentenceTransformersConfig::default())
        } else {
            let st = SentenceTransformersConfig::read(&dir)?;
            let tokenizer_limit = crate::model::tokenizer::model_max_length(&dir)?;
            (spec_for_plain_model(&st, tokenizer_limit, model, &config), st)
        };
        if spec.model_type != config.model_type() {
            bail!(
                "{} says model_type '{}' but config.json says '{}'",
                dir.join(SPEC_FILE).display(),
                spec.model_type,
                config.model_type()
            );
        }
        let folder = Self { dir, config, spec, has_own_spec, sentence_transformers, hf_export };
        folder.check_tasks()?;
        Ok(folder)
    }

    /// Refuses a description (edited by hand, or damaged) whose tasks cannot be served: two
    /// of one name, each with a head of its own, or a classification task whose labels are
    /// missing or repeated, so that a class id would name no label or two.
    fn check_tasks(&self) -> Result<()> {
        let file = self.dir.join(self.spec_file());
        let mut names = std::collections::HashSet::new();
        for task in &self.spec.tasks {
            if !names.insert(task.name.as_str()) {
                bail!("{}: task '{}' is described twice", file.display(), task.name);
            }
            if task.kind != TaskKind::Classification {
                continue;
            }
            let labels: std::collections::HashSet<&String> = task.labels.iter().collect();
            if task.labels.is_empty() || labels.len() != task.labels.len() {
                bail!(
                    "{}: classification task '{}' has {} labels; it needs distinct labels, one per class of its head",
                    file.display(),
                    task.name,
                    if task.labels.is_empty() { "no" } else { "repeated" }
                );
            }
        }
        Ok(())
    }

    /// The weight file's tensors, with a sentence-transformers Dense module's weights under
    /// the projection's names when the folder has one, and an hf export's projection and heads.
    pub fn read_tensors(&self) -> Result<(PathBuf, BTreeMap<String, tch::Tensor>)> {
        let path = find_weight_file(&self.dir)?;
        let mut tensors = read_weight_file(&path)?;
        if let Some(dense) = &self.sentence_transformers.dense {
            tensors.extend(dense.projection_tensors()?);
        }
        if let Some(export) = &self.hf_export {
            tensors.extend(export.tensors()?);
        }
        Ok((path, tensors))
    }

    /// Matches the weight file's `tensors` (named `weights_file` in messages) against the
    /// model `spec` describes on this folder's config, refusing what would run as another
    /// model without a word: a tensor it needs that the file lacks, transformer blocks past
    /// config.json's count, a projection or head the description does not list. Returns the
    /// tensors the model uses and the backbone's pass-through ones.
    pub fn match_weights(
        &self,
        spec: &ModelSpec,
        weights_file: &str,
        tensors: BTreeMap<String, tch::Tensor>,
    ) -> Result<CheckedWeights> {
        let expected = tensor_shapes(&self.config, spec);
        let matched = match_tensors(weights_file, tensors, &expected, self.config.model_type())?;
        if !matched.missing.is_empty() {
            // A plain Hugging Face folder has no spec file of its own to blame.
            let described_by = match self.has_own_spec {
                true => format!("config.json / {}", self.spec_file()),
                false => "config.json".to_string(),
            };
            bail!(
                "{weights_file} lacks {} tensor(s) this model needs, e.g. {} (wrong file for this {described_by}?)",
                matched.missing.len(),
                matched.missing.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            );
        }
        let (passthrough, unused) = split_passthrough(matched.unused);
        refuse_uncounted_blocks(&unused, &self.config, weights_file)?;
        let stray: Vec<&str> = unused.iter().filter(|n| names::is_added_layer(n)).map(String::as_str).collect();
        if !stray.is_empty() {
            let why = match self.has_own_spec {
                true => format!("that {} does not describe (checkpoint heads do not match its tasks)", self.spec_file()),
                false => format!("of a checkpoint's projection or heads, but no {SPEC_FILE} to describe them (a checkpoint that lost it?)"),
            };
            bail!("{weights_file} has tensors {} {why}", first_and_more(&stray, 5));
        }
        refuse_non_finite(weights_file, &matched.found)?;
        Ok(CheckedWeights { found: matched.found, passthrough })
    }

    /// Whether the folder's maximum length is the one its model was trained with: a
    /// checkpoint's, or an export's (sentence-transformers exports included), rather than a
    /// base model's.
    pub fn max_length_is_trained(&self) -> bool {
        self.has_own_spec || self.sentence_transformers.exported_from.is_some()
    }

    /// Where the folder's maximum length comes from, for messages.
    pub fn max_length_source(&self) -> String {
        match (self.has_own_spec, self.sentence_transformers.max_seq_length) {
            (true, _) => format!("{}'s max_length", self.spec_file()),
            (false, Some(_)) => "sentence_bert_config.json's max_seq_length".into(),
            (false, None) => "tokenizer_config.json's model_max_length".into(),
        }
    }

    /// The pooling the folder's model was trained with: a checkpoint's or export's, or a
    /// sentence-transformers Pooling module's; `None` for a plain base model.
    pub fn trained_pooling(&self) -> Option<crate::model::pooling::Pooling> {
        (self.has_own_spec || self.sentence_transformers.pooling.is_some()).then_some(self.spec.pooling)
    }

    /// For messages: the file the spec comes from (none for a plain folder, whose spec is
    /// made from defaults; `sentence_mtl.json` is what it would need).
    pub fn spec_file(&self) -> &'static str {
        if self.hf_export.is_some() {
            super::hf_export::TASKS_FILE
        } else {
            SPEC_FILE
        }
    }

    /// For messages: the weight file `path`, with an hf export's heads file or a
    /// sentence-transformers Dense module beside it.
    pub fn weights_label(&self, path: &Path) -> String {
        match (&self.hf_export, &self.sentence_transformers.dense) {
            (Some(_), _) => format!("{} (with {})", path.display(), super::hf_export::HEADS_FILE),
            (None, Some(dense)) => {
                format!("{} (with the Dense module in {} as the projection)", path.display(), dense.dir().display())
            }
            (None, None) => path.display().to_string(),
        }
    }
}

/// Refuses weights that hold NaN or infinite values: every output computed from them would
/// be too (`null` in a JSON file), and training would stop at its first step.
fn refuse_non_finite(weights_file: &str, tensors: &BTreeMap<String, tch::Tensor>) -> Result<()> {
    for (name, tensor) in tensors {
        if tensor.isfinite().all().int64_value(&[]) == 0 {
            let bad = tensor.isfinite().logical_not().sum(tch::Kind::Int64).int64_value(&[]);
            bail!(
                "{weights_file}: {name} holds {bad} NaN or infinite value(s) of {}; the weights are damaged",
                tensor.numel()
            );
        }
    }
    Ok(())
}

/// Refuses a maximum length the model cannot take; `source` says where it came from (the
/// flag, or the file that set it).
pub fn check_max_length(max_length: usize, config: &BackboneConfig, source: &str) -> Result<()> {
    let limit = config.max_position_embeddings() as usize;
    if max_length < 2 || max_length > limit {
        bail!("{source} {max_length} is out of range: this model takes 2 to {limit} tokens");
    }
    Ok(())
}

/// Splits a load's unused tensors into the backbone's pass-through ones (BERT's pooler) and
/// the names of the rest.
fn split_passthrough(unused: Vec<(String, tch::Tensor)>) -> (Vec<(String, tch::Tensor)>, Vec<String>) {
    let (keep, other): (Vec<_>, Vec<_>) =
        unused.into_iter().partition(|(name, _)| names::part_of(name) == TensorPart::Pooler);
    (keep, other.into_iter().map(|(name, _)| name).collect())
}

/// Refuses a weight file with more transformer blocks than config.json counts: run short,
/// the model would give other outputs without a word (transformers warns of unused weights).
fn refuse_uncounted_blocks(unused: &[String], config: &BackboneConfig, weights_file: &str) -> Result<()> {
    // Only blocks past the count: a block's other tensors (an adapter's, say) are not this.
    let counted = config.num_layers().max(0) as usize;
    let blocks = unused.iter().filter_map(|name| match names::part_of(name) {
        TensorPart::Backbone(names::BackboneLayer::Block(i)) if i >= counted => Some(i + 1),
        _ => None,
    });
    if let Some(in_file) = blocks.max() {
        let field = match config {
            BackboneConfig::DistilBert(_) => "n_layers",
            BackboneConfig::Bert(_) => "num_hidden_layers",
        };
        bail!(
            "{weights_file} has {in_file} transformer blocks, but config.json's {field} is {}; make them agree (a model cut short gives other outputs)",
            config.num_layers()
        );
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
    spec.check_recorded(&path)?;
    Ok(spec)
}

/// A spec for a folder without `sentence_mtl.json`: no heads; pooling, normalisation, max
/// length and a projection (a linear Dense module) from a sentence-transformers config when
/// present. The max length is sentence-transformers': its config's `max_seq_length`, else the
/// smaller of the position embeddings and the tokenizer's `model_max_length`.
fn spec_for_plain_model(
    st: &SentenceTransformersConfig,
    tokenizer_limit: Option<usize>,
    model: &str,
    config: &BackboneConfig,
) -> ModelSpec {
    let positions = config.max_position_embeddings() as usize;
    ModelSpec {
        format_version: FORMAT_VERSION,
        model_type: config.model_type().to_string(),
        pooling: st.pooling.unwrap_or_default(),
        projection_dim: st.dense.as_ref().map(|d| d.out_features),
        normalize: st.normalize,
        max_length: st.max_seq_length.or(tokenizer_limit).unwrap_or(positions).min(positions),
        tasks: Vec::new(),
        // A sentence-mtl export names the model its backbone came from; any other folder
        // is its own origin.
        base_model: st.exported_from.clone().unwrap_or_else(|| model.to_string()),
        training: None,
        metrics: None,
    }
}
