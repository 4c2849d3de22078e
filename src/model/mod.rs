//! Model code: tensors in, tensors out. Tokenising, batching and files live elsewhere.

pub mod backbone;
pub mod config;
pub mod fused_forward;
pub mod hub;
pub mod layout;
pub mod loaded;
pub mod mapped_file;
pub mod names;
pub mod pooling;
pub mod safetensors_io;
pub mod source;
pub mod spec;
pub mod tensor_matching;
pub mod tokenizer;
pub mod weights;

use tch::{nn, nn::VarStore, Device};

use backbone::Backbone;
use config::BackboneConfig;
use spec::ModelSpec;

/// `t` in `kind`, cast so that a traced graph records the dtype alone: `to_kind` is traced with
/// the tracing device as well, and a TorchScript export loaded on a GPU would then move its
/// activations back to the CPU at each cast.
pub fn cast(t: &tch::Tensor, kind: tch::Kind) -> tch::Tensor {
    t.to_dtype(kind, false, false)
}

/// Training's variables, all in one VarStore, named and shaped as HF names them:
/// `<distilbert|bert>.*` (created by rust-bert's modules), `projection.*` (if the spec has a
/// projection) and `heads.<task>.*` (tasks with a head). The forward pass over them is `fused_forward`'s, the
/// one inference runs; `backbone` keeps rust-bert's own forward for parity checks.
pub struct MultiTaskModel {
    pub vs: VarStore,
    pub backbone: Backbone,
}

impl MultiTaskModel {
    /// Creates freshly initialised variables for the architecture and the spec's projection
    /// and tasks. Weights are loaded separately (see `checkpoint`).
    pub fn build(config: &BackboneConfig, spec: &ModelSpec, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let backbone = Backbone::new(&root, config);
        let hidden = config.hidden_size();
        // `projection.weight [dim, hidden]`, `projection.bias [dim]`.
        if let Some(dim) = spec.projection_dim {
            nn::linear(&root / names::PROJECTION, hidden, dim, Default::default());
        }
        // `heads.<task>.weight [n_classes, features]`, `heads.<task>.bias [n_classes]`.
        for task in spec.head_tasks() {
            let head = &root / names::HEADS / task.name.as_str();
            nn::linear(head, spec.feature_width(hidden), task.labels.len() as i64, Default::default());
        }
        Self { vs, backbone }
    }
}

/// Small specs for the model's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use crate::model::pooling::Pooling;
    use crate::model::spec::{ModelSpec, TaskSpec, FORMAT_VERSION};

    /// Mean pooling, max length 16, one head per `(name, classes)` with labels "0", "1", ...
    pub fn spec(model_type: &str, projection_dim: Option<i64>, tasks: &[(&str, usize)]) -> ModelSpec {
        ModelSpec {
            format_version: FORMAT_VERSION,
            model_type: model_type.into(),
            pooling: Pooling::Mean,
            projection_dim,
            normalize: false,
            max_length: 16,
            tasks: tasks
                .iter()
                .map(|(name, n)| {
                    TaskSpec::classification(name, (0..*n).map(|i| i.to_string()).collect(), "text", "label")
                })
                .collect(),
            base_model: "test".into(),
            training: None,
            metrics: None,
        }
    }
}
