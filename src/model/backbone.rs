//! The transformer backbone: rust-bert's DistilBERT or BERT encoder, under HF variable names.
//!
//! Variable names in the VarStore are those of HF's `*For*` model classes, so a checkpoint
//! reads like a transformers one: `distilbert.embeddings.word_embeddings.weight`,
//! `distilbert.transformer.layer.0.attention.q_lin.weight`, `bert.encoder.layer.3...`.

use anyhow::{anyhow, Result};
use rust_bert::bert::{BertEmbeddings, BertModel};
use rust_bert::distilbert::DistilBertModel;
use tch::{nn, Tensor};

use super::config::BackboneConfig;

pub enum Backbone {
    DistilBert(DistilBertModel),
    Bert(BertModel<BertEmbeddings>),
}

/// Where a backbone variable sits in the stack, for layer-wise learning rates and freezing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackboneLayer {
    Embeddings,
    /// Transformer block `i`, counted from 0 at the bottom.
    Block(usize),
}

impl Backbone {
    /// Builds the backbone under `root` (the VarStore root; the architecture adds its own
    /// `distilbert.` / `bert.` prefix).
    pub fn new(root: &nn::Path, config: &BackboneConfig) -> Self {
        match config {
            // rust-bert appends "distilbert" itself.
            BackboneConfig::DistilBert(c) => Self::DistilBert(DistilBertModel::new(root, c)),
            // No pooler: sentence embeddings pool the hidden states themselves.
            BackboneConfig::Bert(c) => Self::Bert(BertModel::new_with_optional_pooler(root / "bert", c, false)),
        }
    }

    /// The prefix every backbone variable name starts with (`distilbert` or `bert`).
    pub fn prefix(config: &BackboneConfig) -> &'static str {
        config.model_type()
    }

    /// Token ids and attention mask `[batch, seq]` (Int64, 1 = real token) to hidden states
    /// `[batch, seq, hidden]`. Dropout is active only when `train` is true.
    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::DistilBert(m) => m
                .forward_t(Some(input_ids), Some(attention_mask), None, train)
                .map(|out| out.hidden_state)
                .map_err(|e| anyhow!("DistilBERT forward failed: {e}")),
            Self::Bert(m) => m
                .forward_t(Some(input_ids), Some(attention_mask), None, None, None, None, None, train)
                .map(|out| out.hidden_state)
                .map_err(|e| anyhow!("BERT forward failed: {e}")),
        }
    }

    /// Classifies a backbone variable name by depth; `None` for names outside the backbone.
    pub fn layer_of(name: &str) -> Option<BackboneLayer> {
        let rest = name.strip_prefix("distilbert.").or_else(|| name.strip_prefix("bert."))?;
        if rest.starts_with("embeddings.") {
            return Some(BackboneLayer::Embeddings);
        }
        let blocks = rest.strip_prefix("transformer.layer.").or_else(|| rest.strip_prefix("encoder.layer."))?;
        let index = blocks.split('.').next()?.parse().ok()?;
        Some(BackboneLayer::Block(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_of_reads_hf_names() {
        use BackboneLayer::*;
        assert_eq!(Backbone::layer_of("distilbert.embeddings.word_embeddings.weight"), Some(Embeddings));
        assert_eq!(Backbone::layer_of("distilbert.transformer.layer.5.ffn.lin1.weight"), Some(Block(5)));
        assert_eq!(Backbone::layer_of("bert.encoder.layer.11.output.dense.bias"), Some(Block(11)));
        assert_eq!(Backbone::layer_of("bert.embeddings.LayerNorm.weight"), Some(Embeddings));
        assert_eq!(Backbone::layer_of("projection.weight"), None);
        assert_eq!(Backbone::layer_of("heads.trec.weight"), None);
    }
}
