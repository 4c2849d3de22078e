//! A model in memory, ready to run: its tensors, backbone config, tokenizer and spec.
//! `checkpoint` loads and saves it; inference, evaluation, training and export use it.

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use crate::model::config::BackboneConfig;
use crate::model::fused_forward::FusedForward;
use crate::model::names;
use crate::model::spec::ModelSpec;
use crate::model::tokenizer::SentenceTokenizer;

pub struct LoadedModel {
    /// Every tensor of the model ([`crate::model::layout`]) by name, on the model's device.
    /// For a model `train` builds, these share storage with its trainable variables, so
    /// they always hold the current weights.
    pub weights: HashMap<String, Tensor>,
    pub config: BackboneConfig,
    pub device: Device,
    pub tokenizer: SentenceTokenizer,
    pub spec: ModelSpec,
    /// The folder the files came from (for copying tokenizer files into new checkpoints).
    pub dir: PathBuf,
    /// Backbone tensors sentence embeddings do not use but the HF format has (BERT's
    /// pooler): carried unchanged into checkpoints and exports, so transformers loads an
    /// export without reporting newly initialised weights.
    pub passthrough: Vec<(String, Tensor)>,
}

impl LoadedModel {
    /// The forward pass over the current weights.
    pub fn forward(&self) -> FusedForward<'_> {
        FusedForward { weights: &self.weights, config: &self.config, spec: &self.spec }
    }

    /// The weights with every linear layer's weight and bias in bf16: the values bf16
    /// autocast casts them to at each forward pass (it leaves bf16 tensors as they are), so a
    /// forward over these under autocast computes the same, without casting 10M parameters
    /// again for every batch. Embedding tables and LayerNorms stay fp32, as autocast keeps
    /// them. For inference: training's weights change every step.
    pub fn weights_with_bf16_linear_layers(&self) -> HashMap<String, Tensor> {
        let e = names::embeddings(&self.config);
        let tables: Vec<String> = [Some(e.word), Some(e.position), e.token_type]
            .into_iter()
            .flatten()
            .map(|table| names::weight(&table))
            .collect();
        let linear = |name: &str| -> bool {
            let weight = name.strip_suffix(".bias").map_or(name.to_string(), names::weight);
            !tables.contains(&weight) && self.weights.get(&weight).is_some_and(|w| w.dim() == 2)
        };
        self.weights
            .iter()
            .map(|(name, tensor)| {
                let kept = if linear(name) { tensor.to_kind(Kind::BFloat16) } else { tensor.shallow_clone() };
                (name.clone(), kept)
            })
            .collect()
    }
}
