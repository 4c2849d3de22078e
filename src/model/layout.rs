//! The names and shapes of a model's tensors, as checkpoints store them: the backbone under
//! HF names, `projection.*`, `heads.<task>.*`.
//!
//! Inference (`encode`, `predict`, `eval`, `export`) checks a weight file against this list
//! and keeps the tensors as they are, without building rust-bert's modules: those initialise
//! every variable randomly first, 0.2 s of a 1.1 s `encode` start with all-MiniLM-L6-v2.
//! Training builds the modules; a test checks that they hold exactly these tensors.

use std::collections::BTreeMap;

use crate::checkpoint::ModelSpec;
use crate::model::config::BackboneConfig;

/// Every tensor of the model described by `config` and `spec`, name → shape.
pub fn tensor_shapes(config: &BackboneConfig, spec: &ModelSpec) -> BTreeMap<String, Vec<i64>> {
    let mut shapes = BTreeMap::new();
    let mut linear = |prefix: String, inputs: i64, outputs: i64| {
        shapes.insert(format!("{prefix}.weight"), vec![outputs, inputs]);
        shapes.insert(format!("{prefix}.bias"), vec![outputs]);
    };
    let hidden = config.hidden_size();
    match config {
        BackboneConfig::Bert(c) => {
            for i in 0..c.num_hidden_layers {
                let l = format!("bert.encoder.layer.{i}");
                for part in ["query", "key", "value"] {
                    linear(format!("{l}.attention.self.{part}"), hidden, hidden);
                }
                linear(format!("{l}.attention.output.dense"), hidden, hidden);
                linear(format!("{l}.intermediate.dense"), hidden, c.intermediate_size);
                linear(format!("{l}.output.dense"), c.intermediate_size, hidden);
            }
        }
        BackboneConfig::DistilBert(c) => {
            for i in 0..c.n_layers {
                let l = format!("distilbert.transformer.layer.{i}");
                for part in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                    linear(format!("{l}.attention.{part}"), hidden, hidden);
                }
                linear(format!("{l}.ffn.lin1"), hidden, c.hidden_dim);
                linear(format!("{l}.ffn.lin2"), c.hidden_dim, hidden);
            }
        }
    }
    let pooled_width = match spec.projection_dim {
        Some(dim) => {
            linear("projection".into(), hidden, dim);
            dim
        }
        None => hidden,
    };
    for task in &spec.tasks {
        linear(format!("heads.{}", task.name), pooled_width, task.labels.len() as i64);
    }

    let prefix = config.model_type();
    let mut embedding = |name: &str, rows: i64| {
        shapes.insert(format!("{prefix}.embeddings.{name}.weight"), vec![rows, hidden]);
    };
    embedding("word_embeddings", config.vocab_size());
    embedding("position_embeddings", config.max_position_embeddings());
    if let BackboneConfig::Bert(c) = config {
        embedding("token_type_embeddings", c.type_vocab_size);
    }
    let mut layer_norm = |name: String| {
        shapes.insert(format!("{name}.weight"), vec![hidden]);
        shapes.insert(format!("{name}.bias"), vec![hidden]);
    };
    layer_norm(format!("{prefix}.embeddings.LayerNorm"));
    for i in 0..config.num_layers() {
        let norms: [String; 2] = match config {
            BackboneConfig::Bert(_) => [
                format!("bert.encoder.layer.{i}.attention.output.LayerNorm"),
                format!("bert.encoder.layer.{i}.output.LayerNorm"),
            ],
            BackboneConfig::DistilBert(_) => [
                format!("distilbert.transformer.layer.{i}.sa_layer_norm"),
                format!("distilbert.transformer.layer.{i}.output_layer_norm"),
            ],
        };
        norms.into_iter().for_each(&mut layer_norm);
    }
    shapes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{TaskSpec, FORMAT_VERSION};
    use crate::model::pooling::Pooling;
    use crate::model::MultiTaskModel;

    fn spec(model_type: &str, projection_dim: Option<i64>) -> ModelSpec {
        let task = |name: &str, n: usize| TaskSpec {
            name: name.into(),
            labels: (0..n).map(|i| i.to_string()).collect(),
            text_column: "text".into(),
            label_column: "label".into(),
        };
        ModelSpec {
            format_version: FORMAT_VERSION,
            model_type: model_type.into(),
            pooling: Pooling::Mean,
            projection_dim,
            normalize: false,
            max_length: 16,
            tasks: vec![task("trec", 6), task("sst2", 2)],
            base_model: "test".into(),
            training: None,
            metrics: None,
        }
    }

    /// The list must name exactly the variables of the modules training builds, with their shapes.
    fn assert_matches_training_modules(config_json: &str) {
        let config = BackboneConfig::from_json(config_json).unwrap();
        for projection in [None, Some(5)] {
            let spec = spec(config.model_type(), projection);
            let built = MultiTaskModel::build(config.clone(), &spec, tch::Device::Cpu);
            let from_modules: BTreeMap<String, Vec<i64>> =
                built.vs.variables().into_iter().map(|(name, t)| (name, t.size())).collect();
            assert_eq!(
                tensor_shapes(&config, &spec),
                from_modules,
                "{} projection {projection:?}",
                config.model_type()
            );
        }
    }

    #[test]
    fn bert_layout_matches_the_training_modules() {
        assert_matches_training_modules(
            r#"{"model_type": "bert", "vocab_size": 50, "hidden_size": 8, "num_hidden_layers": 2,
                "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 20,
                "type_vocab_size": 3}"#,
        );
    }

    #[test]
    fn distilbert_layout_matches_the_training_modules() {
        assert_matches_training_modules(
            r#"{"model_type": "distilbert", "vocab_size": 50, "dim": 8, "n_layers": 3, "n_heads": 2,
                "hidden_dim": 12, "max_position_embeddings": 20}"#,
        );
    }
}
