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
    let hidden = config.hidden_size();
    let prefix = config.model_type();
    let mut shapes = Shapes::default();
    shapes.add(format!("{prefix}.embeddings.word_embeddings.weight"), [config.vocab_size(), hidden]);
    shapes.add(format!("{prefix}.embeddings.position_embeddings.weight"), [config.max_position_embeddings(), hidden]);
    shapes.layer_norm(format!("{prefix}.embeddings.LayerNorm"), hidden);
    match config {
        BackboneConfig::Bert(c) => {
            shapes.add("bert.embeddings.token_type_embeddings.weight".into(), [c.type_vocab_size, hidden]);
            for i in 0..c.num_hidden_layers {
                let l = format!("bert.encoder.layer.{i}");
                for part in ["query", "key", "value"] {
                    shapes.linear(format!("{l}.attention.self.{part}"), hidden, hidden);
                }
                shapes.linear(format!("{l}.attention.output.dense"), hidden, hidden);
                shapes.layer_norm(format!("{l}.attention.output.LayerNorm"), hidden);
                shapes.linear(format!("{l}.intermediate.dense"), hidden, c.intermediate_size);
                shapes.linear(format!("{l}.output.dense"), c.intermediate_size, hidden);
                shapes.layer_norm(format!("{l}.output.LayerNorm"), hidden);
            }
        }
        BackboneConfig::DistilBert(c) => {
            for i in 0..c.n_layers {
                let l = format!("distilbert.transformer.layer.{i}");
                for part in ["q_lin", "k_lin", "v_lin", "out_lin"] {
                    shapes.linear(format!("{l}.attention.{part}"), hidden, hidden);
                }
                shapes.layer_norm(format!("{l}.sa_layer_norm"), hidden);
                shapes.linear(format!("{l}.ffn.lin1"), hidden, c.hidden_dim);
                shapes.linear(format!("{l}.ffn.lin2"), c.hidden_dim, hidden);
                shapes.layer_norm(format!("{l}.output_layer_norm"), hidden);
            }
        }
    }
    let pooled_width = match spec.projection_dim {
        Some(dim) => {
            shapes.linear("projection".into(), hidden, dim);
            dim
        }
        None => hidden,
    };
    for task in &spec.tasks {
        shapes.linear(format!("heads.{}", task.name), pooled_width, task.labels.len() as i64);
    }
    shapes.0
}

#[derive(Default)]
struct Shapes(BTreeMap<String, Vec<i64>>);

impl Shapes {
    fn add<const N: usize>(&mut self, name: String, shape: [i64; N]) {
        self.0.insert(name, shape.to_vec());
    }

    /// `nn::Linear`: `weight [outputs, inputs]`, `bias [outputs]`.
    fn linear(&mut self, prefix: String, inputs: i64, outputs: i64) {
        self.add(format!("{prefix}.weight"), [outputs, inputs]);
        self.add(format!("{prefix}.bias"), [outputs]);
    }

    fn layer_norm(&mut self, prefix: String, width: i64) {
        self.add(format!("{prefix}.weight"), [width]);
        self.add(format!("{prefix}.bias"), [width]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::spec;
    use crate::model::MultiTaskModel;

    /// The list must name exactly the variables of the modules training builds, with their shapes.
    fn assert_matches_training_modules(config_json: &str) {
        let config = BackboneConfig::from_json(config_json).unwrap();
        for projection in [None, Some(5)] {
            let spec = spec(config.model_type(), projection, &[("trec", 6), ("sst2", 2)]);
            let built = MultiTaskModel::build(&config, &spec, tch::Device::Cpu);
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
