//! A model in memory, ready to run: its tensors, backbone config, tokenizer and spec.
//! `checkpoint` loads and saves it; inference, evaluation, training and export use it.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::Device;

use crate::model::config::BackboneConfig;
use crate::model::fused_forward::FusedForward;
use crate::model::spec::ModelSpec;
use crate::model::tokenizer::SentenceTokenizer;

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
    /// The forward pass over the current weights.
    pub fn forward(&self) -> FusedForward<'_> {
        FusedForward { weights: &self.weights, config: &self.config, spec: &self.spec }
    }
}
