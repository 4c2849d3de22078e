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
}
