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

    /// The weights for bf16 inference ([`blocks_in_bf16`]).
    pub fn weights_for_bf16_inference(&self) -> HashMap<String, Tensor> {
        blocks_in_bf16(&self.weights)
    }
}

/// `weights` with every transformer block's tensors in bf16, so that the blocks run in bf16
/// end to end, their residual stream included, as sentence-transformers' `model.bfloat16()`
/// runs: no autocast casting to and from fp32 around every LayerNorm and add (5-9% faster
/// `encode` on a CPU with AMX, docs/benchmarks.md). The embedding layer, pooling, projection
/// and heads stay fp32: they cost little and keep the result closer to fp32. For inference:
/// training's weights change every step, and it runs under autocast.
pub fn blocks_in_bf16(weights: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    weights
        .iter()
        .map(|(name, tensor)| {
            let in_block = matches!(names::layer_of(name), Some(names::BackboneLayer::Block(_)));
            let kept = if in_block { tensor.to_kind(Kind::BFloat16) } else { tensor.shallow_clone() };
            (name.clone(), kept)
        })
        .collect()
}
