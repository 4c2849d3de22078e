//! A model in memory, ready to run: its tensors, backbone config, tokenizer and spec.
//! `checkpoint` loads and saves it; inference, evaluation, training and export use it.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use crate::hash::{fnv1a_continue, FNV1A_START};

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

    /// FNV-1a over what makes two copies of this model the same function, wherever each copy
    /// lives: `config.json`, the vocabulary and its normalisation, the projection and heads,
    /// and every tensor's name and shape, with `values` their bytes too. Pooling,
    /// normalisation and the token limit are left out: flags can set them, and the ranks
    /// compare their resolved values beside it. The ranks of a data-parallel launch compare it
    /// (training gives every rank rank 0's values anyway); a copy whose files cannot be read
    /// again gives `unreadable: ` and the reason, which differs from a readable copy's.
    pub fn fingerprint(&self, values: bool) -> String {
        self.try_fingerprint(values).unwrap_or_else(|e| format!("unreadable: {e:#}"))
    }

    fn try_fingerprint(&self, values: bool) -> Result<String> {
        let mut hash = FNV1A_START;
        for file in ["config.json", "vocab.txt"] {
            let path = self.dir.join(file);
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            hash = fnv1a_continue(hash, &bytes);
        }
        let tokenizer =
            format!("lower case {}, strip accents {}", self.tokenizer.lower_case, self.tokenizer.strip_accents);
        hash = fnv1a_continue(hash, tokenizer.as_bytes());
        let layers = (&self.spec.model_type, self.spec.projection_dim, &self.spec.tasks);
        hash = fnv1a_continue(hash, serde_json::to_string(&layers)?.as_bytes());
        let mut names: Vec<&String> = self.weights.keys().collect();
        names.sort();
        for name in names {
            let tensor = &self.weights[name];
            hash = fnv1a_continue(hash, format!("{name} {:?} {:?}", tensor.size(), tensor.kind()).as_bytes());
            if values {
                let tensor = tensor.to_device(Device::Cpu).contiguous();
                let mut bytes = vec![0u8; tensor.numel() * tensor.kind().elt_size_in_bytes()];
                tensor.f_copy_data_u8(&mut bytes, tensor.numel())?;
                hash = fnv1a_continue(hash, &bytes);
            }
        }
        Ok(format!("{hash:016x}"))
    }
}

/// `weights` with every transformer block's tensors in bf16, so that the blocks run in bf16
/// end to end, their residual stream included, as sentence-transformers' `model.bfloat16()`
/// runs: no autocast casting to and from fp32 around every LayerNorm and add (2.5-8% faster
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
