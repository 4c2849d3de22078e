//! Model code: tensors in, tensors out. Tokenising, batching and files live elsewhere.

pub mod backbone;
pub mod config;
pub mod encoder;
pub mod fused_forward;
pub mod heads;
pub mod layout;
pub mod pooling;
pub mod source;
pub mod tokenizer;
pub mod weights;

use anyhow::Result;
use tch::{nn::VarStore, Device, Tensor};

use crate::checkpoint::ModelSpec;
use config::BackboneConfig;
use encoder::SentenceEncoder;
use heads::TaskHeads;

/// The shared encoder and the task heads, all variables in one VarStore:
/// `<distilbert|bert>.*` (HF names), `projection.*`, `heads.<task>.*`.
pub struct MultiTaskModel {
    pub vs: VarStore,
    pub config: BackboneConfig,
    pub encoder: SentenceEncoder,
    pub heads: TaskHeads,
}

impl MultiTaskModel {
    /// Creates freshly initialised variables for the architecture and the spec's pooling,
    /// projection and tasks. Weights are loaded separately (see `checkpoint`).
    pub fn build(config: BackboneConfig, spec: &ModelSpec, device: Device) -> Self {
        let vs = VarStore::new(device);
        let root = vs.root();
        let encoder = SentenceEncoder::new(&root, &config, spec.pooling, spec.projection_dim);
        let tasks: Vec<(String, i64)> = spec.tasks.iter().map(|t| (t.name.clone(), t.labels.len() as i64)).collect();
        let heads = TaskHeads::new(&root, encoder.output_dim(), &tasks);
        Self { vs, config, encoder, heads }
    }

    /// Logits `[batch, n_classes]` of one task for a batch of token ids and mask `[batch, seq]`.
    pub fn logits_t(&self, task: &str, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        let features = self.encoder.features_t(input_ids, attention_mask, train)?;
        self.heads.forward(task, &features)
    }
}
