//! The names and shapes of a model's tensors, as checkpoints store them (names from
//! `model::names`). Inference checks a weight file against this list and keeps the tensors as
//! they are, without building rust-bert's modules; training builds the modules, and a test
//! checks that they hold exactly these tensors.

use std::collections::BTreeMap;

use crate::model::config::BackboneConfig;
use crate::model::names;
use crate::model::spec::ModelSpec;

/// Every tensor of the model described by `config` and `spec`, name → shape.
pub fn tensor_shapes(config: &BackboneConfig, spec: &ModelSpec) -> BTreeMap<String, Vec<i64>> {
    let hidden = config.hidden_size();
    let mut shapes = Shapes::default();
    let e = names::embeddings(config);
    shapes.add(names::weight(&e.word), [config.vocab_size(), hidden]);
    shapes.add(names::weight(&e.position), [config.max_position_embeddings(), hidden]);
    if let (Some(token_type), BackboneConfig::Bert(c)) = (&e.token_type, config) {
        shapes.add(names::weight(token_type), [c.type_vocab_size, hidden]);
    }
    shapes.layer_norm(&e.layer_norm, hidden);
    let intermediate = config.intermediate_size();
    for i in 0..config.num_layers() {
        let b = names::block(config, i);
        for part in [&b.query, &b.key, &b.value, &b.attention_output] {
            shapes.linear(part, hidden, hidden);
        }
        shapes.layer_norm(&b.attention_norm, hidden);
        shapes.linear(&b.ffn_in, hidden, intermediate);
        shapes.linear(&b.ffn_out, intermediate, hidden);
        shapes.layer_norm(&b.output_norm, hidden);
    }
    if let Some(dim) = spec.projection_dim {
        shapes.linear(names::PROJECTION, hidden, dim);
    }
    for task in spec.head_tasks() {
        shapes.linear(&names::head(&task.name), spec.feature_width(hidden), task.labels.len() as i64);
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
    fn linear(&mut self, prefix: &str, inputs: i64, outputs: i64) {
        self.add(names::weight(prefix), [outputs, inputs]);
        self.add(names::bias(prefix), [outputs]);
    }

    fn layer_norm(&mut self, prefix: &str, width: i64) {
        self.add(names::weight(prefix), [width]);
        self.add(names::bias(prefix), [width]);
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
