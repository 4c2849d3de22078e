//! The sentence encoder for training: backbone (rust-bert) → pooling → optional projection.
//! Task heads read these features; inference runs the same function through
//! `fused_forward`, which also applies the optional L2 normalisation of embeddings.

use anyhow::Result;
use tch::{nn, nn::Module, Tensor};

use super::backbone::Backbone;
use super::config::BackboneConfig;
use super::pooling::Pooling;

pub struct SentenceEncoder {
    backbone: Backbone,
    pooling: Pooling,
    /// `projection.weight [dim, hidden]`, `projection.bias [dim]`.
    projection: Option<nn::Linear>,
    output_dim: i64,
}

impl SentenceEncoder {
    /// Builds the encoder's variables under `root`: the backbone under its HF prefix and the
    /// projection (if `projection_dim` is set) under `projection`.
    pub fn new(root: &nn::Path, config: &BackboneConfig, pooling: Pooling, projection_dim: Option<i64>) -> Self {
        let backbone = Backbone::new(root, config);
        let hidden = config.hidden_size();
        let projection = projection_dim.map(|dim| nn::linear(root / "projection", hidden, dim, Default::default()));
        Self { backbone, pooling, projection, output_dim: projection_dim.unwrap_or(hidden) }
    }

    /// Sentence features `[batch, output_dim]` before normalisation: what task heads read.
    /// `input_ids`, `attention_mask`: `[batch, seq]` Int64.
    pub fn features_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        let hidden = self.backbone.forward_t(input_ids, attention_mask, train)?;
        let pooled = self.pooling.forward(&hidden, attention_mask);
        Ok(match &self.projection {
            Some(linear) => linear.forward(&pooled),
            None => pooled,
        })
    }

    /// The transformer under the pooling (for parity checks against HF's hidden states).
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    pub fn output_dim(&self) -> i64 {
        self.output_dim
    }
}
