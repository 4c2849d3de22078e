//! The sentence encoder: backbone → pooling → optional projection (→ optional L2 norm,
//! applied by callers that want embeddings; task heads read the un-normalised features).

use anyhow::Result;
use tch::{nn, nn::Module, Tensor};

use super::backbone::Backbone;
use super::config::BackboneConfig;
use super::pooling::{l2_normalize, Pooling};

pub struct SentenceEncoder {
    backbone: Backbone,
    pooling: Pooling,
    /// `projection.weight [dim, hidden]`, `projection.bias [dim]`.
    projection: Option<nn::Linear>,
    normalize: bool,
    output_dim: i64,
}

impl SentenceEncoder {
    /// Builds the encoder's variables under `root`: the backbone under its HF prefix and the
    /// projection (if `projection_dim` is set) under `projection`.
    pub fn new(
        root: &nn::Path,
        config: &BackboneConfig,
        pooling: Pooling,
        projection_dim: Option<i64>,
        normalize: bool,
    ) -> Self {
        let backbone = Backbone::new(root, config);
        let hidden = config.hidden_size();
        let projection = projection_dim.map(|dim| nn::linear(root / "projection", hidden, dim, Default::default()));
        Self { backbone, pooling, projection, normalize, output_dim: projection_dim.unwrap_or(hidden) }
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

    /// Embeddings `[batch, output_dim]` as `encode` returns them (normalised if configured).
    pub fn embed(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let features = self.features_t(input_ids, attention_mask, false)?;
        Ok(if self.normalize { l2_normalize(&features) } else { features })
    }

    /// The transformer under the pooling (for parity checks against HF's hidden states).
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    pub fn output_dim(&self) -> i64 {
        self.output_dim
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    pub fn normalize(&self) -> bool {
        self.normalize
    }
}
