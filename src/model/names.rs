//! How a checkpoint names its tensors, in one place: the backbone under Hugging Face's names
//! (`bert.encoder.layer.0.attention.self.query.weight`, `distilbert.transformer.layer.0...`),
//! then `projection.*` and `heads.<task>.*`. The forward pass, the tensor layout, freezing,
//! optimizer groups and exports all ask this module rather than spelling names themselves.
//! (rust-bert's modules, which create training's variables, name them alike; a test in
//! `model::layout` checks that.)

use crate::model::config::BackboneConfig;

/// The projection between pooling and the heads: `projection.weight [dim, hidden]`, `.bias`.
pub const PROJECTION: &str = "projection";
/// The folder of the task heads: `heads.<task>.weight`, `heads.<task>.bias`.
pub const HEADS: &str = "heads";

/// `heads.<task>`: the prefix of a task head's `weight [classes, features]` and `bias`.
pub fn head(task: &str) -> String {
    format!("{HEADS}.{task}")
}

/// `<prefix>.weight`.
pub fn weight(prefix: &str) -> String {
    format!("{prefix}.weight")
}

/// `<prefix>.bias`.
pub fn bias(prefix: &str) -> String {
    format!("{prefix}.bias")
}

/// The layers (`heads.topic`, `projection`) that tensors (`heads.topic.weight`, `.bias`) belong
/// to, each once, in the order they first appear.
pub fn layers_of<'a>(tensors: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut layers: Vec<&str> = Vec::new();
    for layer in tensors.into_iter().filter_map(|n| n.rsplit_once('.').map(|(layer, _)| layer)) {
        if !layers.contains(&layer) {
            layers.push(layer);
        }
    }
    layers
}

/// Where a backbone tensor sits in the stack, for layer-wise learning rates and freezing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackboneLayer {
    Embeddings,
    /// Transformer block `i`, counted from 0 at the bottom.
    Block(usize),
}

/// The part of the model a tensor name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorPart<'a> {
    Backbone(BackboneLayer),
    /// BERT's pooler: part of the HF format, unused by sentence features.
    Pooler,
    Projection,
    /// A task's head, with the task's name.
    Head(&'a str),
    Other,
}

/// Classifies a tensor name.
pub fn part_of(name: &str) -> TensorPart<'_> {
    if let Some(rest) = name.strip_prefix("distilbert.").or_else(|| name.strip_prefix("bert.")) {
        if rest.starts_with("embeddings.") {
            return TensorPart::Backbone(BackboneLayer::Embeddings);
        }
        if rest.starts_with("pooler.") {
            return TensorPart::Pooler;
        }
        let block = rest.strip_prefix("transformer.layer.").or_else(|| rest.strip_prefix("encoder.layer."));
        return match block.and_then(|b| b.split('.').next()).and_then(|i| i.parse().ok()) {
            Some(i) => TensorPart::Backbone(BackboneLayer::Block(i)),
            None => TensorPart::Other,
        };
    }
    if name.strip_prefix(PROJECTION).is_some_and(|r| r.starts_with('.')) {
        return TensorPart::Projection;
    }
    match name.strip_prefix(HEADS).and_then(|r| r.strip_prefix('.')).and_then(|r| r.split_once('.')) {
        Some((task, _)) => TensorPart::Head(task),
        None => TensorPart::Other,
    }
}

/// The backbone layer of a tensor name; `None` outside the backbone (or for BERT's pooler).
pub fn layer_of(name: &str) -> Option<BackboneLayer> {
    match part_of(name) {
        TensorPart::Backbone(layer) => Some(layer),
        _ => None,
    }
}

/// Whether `name` is one of the layers `train` adds on top of a backbone (projection, heads).
pub fn is_added_layer(name: &str) -> bool {
    matches!(part_of(name), TensorPart::Projection | TensorPart::Head(_))
}

/// The embedding layer's tensor prefixes.
pub struct EmbeddingNames {
    pub word: String,
    pub position: String,
    /// BERT's token type (segment) embeddings; DistilBERT has none.
    pub token_type: Option<String>,
    pub layer_norm: String,
}

/// One transformer block's linear and LayerNorm prefixes, in the order the block runs them.
pub struct BlockNames {
    pub query: String,
    pub key: String,
    pub value: String,
    pub attention_output: String,
    pub attention_norm: String,
    pub ffn_in: String,
    pub ffn_out: String,
    pub output_norm: String,
}

/// `distilbert` or `bert`: the prefix of every backbone tensor.
pub fn backbone_prefix(config: &BackboneConfig) -> &'static str {
    config.model_type()
}

pub fn embeddings(config: &BackboneConfig) -> EmbeddingNames {
    let e = format!("{}.embeddings", backbone_prefix(config));
    EmbeddingNames {
        word: format!("{e}.word_embeddings"),
        position: format!("{e}.position_embeddings"),
        token_type: matches!(config, BackboneConfig::Bert(_)).then(|| format!("{e}.token_type_embeddings")),
        layer_norm: format!("{e}.LayerNorm"),
    }
}

pub fn block(config: &BackboneConfig, i: i64) -> BlockNames {
    match config {
        BackboneConfig::Bert(_) => {
            let l = format!("bert.encoder.layer.{i}");
            BlockNames {
                query: format!("{l}.attention.self.query"),
                key: format!("{l}.attention.self.key"),
                value: format!("{l}.attention.self.value"),
                attention_output: format!("{l}.attention.output.dense"),
                attention_norm: format!("{l}.attention.output.LayerNorm"),
                ffn_in: format!("{l}.intermediate.dense"),
                ffn_out: format!("{l}.output.dense"),
                output_norm: format!("{l}.output.LayerNorm"),
            }
        }
        BackboneConfig::DistilBert(_) => {
            let l = format!("distilbert.transformer.layer.{i}");
            BlockNames {
                query: format!("{l}.attention.q_lin"),
                key: format!("{l}.attention.k_lin"),
                value: format!("{l}.attention.v_lin"),
                attention_output: format!("{l}.attention.out_lin"),
                attention_norm: format!("{l}.sa_layer_norm"),
                ffn_in: format!("{l}.ffn.lin1"),
                ffn_out: format!("{l}.ffn.lin2"),
                output_norm: format!("{l}.output_layer_norm"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_hf_and_added_names() {
        use BackboneLayer::*;
        assert_eq!(layer_of("distilbert.embeddings.word_embeddings.weight"), Some(Embeddings));
        assert_eq!(layer_of("distilbert.transformer.layer.5.ffn.lin1.weight"), Some(Block(5)));
        assert_eq!(layer_of("bert.encoder.layer.11.output.dense.bias"), Some(Block(11)));
        assert_eq!(layer_of("bert.embeddings.LayerNorm.weight"), Some(Embeddings));
        assert_eq!(part_of("bert.pooler.dense.weight"), TensorPart::Pooler);
        assert_eq!(part_of("projection.weight"), TensorPart::Projection);
        assert_eq!(part_of("projectionist.weight"), TensorPart::Other);
        assert_eq!(part_of("heads.trec.weight"), TensorPart::Head("trec"));
        assert_eq!(part_of("heads.weight"), TensorPart::Other);
        assert_eq!(layer_of("heads.trec.weight"), None);
        assert!(is_added_layer(&weight(&head("sst2"))) && is_added_layer(&bias(PROJECTION)));
        assert!(!is_added_layer("bert.pooler.dense.bias"));
    }

    #[test]
    fn layers_of_tensors_once_each_in_first_order() {
        let tensors = ["heads.b.weight", "projection.weight", "heads.b.bias", "projection.bias", "loose"];
        assert_eq!(layers_of(tensors), ["heads.b", "projection"]);
    }
}
