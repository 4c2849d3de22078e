//! Training's forward pass (`fused_forward`) against rust-bert's modules with dropout on: under
//! one seed both must draw the same masks at the same places, so a training step here is the
//! step rust-bert's (and HF's) layer order would take. This file is its own test binary, with
//! one test, because libtorch's random generator is global: any test drawing random numbers
//! in parallel (weight initialisation, dropout) would shift the masks.

use sentence_mtl::model::config::BackboneConfig;
use sentence_mtl::model::fused_forward::FusedForward;
use sentence_mtl::model::pooling::Pooling;
use sentence_mtl::model::spec::{ModelSpec, FORMAT_VERSION};
use sentence_mtl::model::MultiTaskModel;
use tch::Tensor;

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

#[test]
fn training_forward_draws_rust_berts_dropout_masks_under_one_seed() {
    let configs = [
        r#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16}"#,
        r#"{"model_type": "distilbert", "vocab_size": 30, "dim": 8, "n_layers": 2, "n_heads": 2,
            "hidden_dim": 12, "max_position_embeddings": 16}"#,
    ];
    // Two sentences `[2, 5]`, the second padded.
    let ids = Tensor::from_slice(&[1i64, 5, 7, 9, 2, 1, 11, 2, 0, 0]).view([2, 5]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0]).view([2, 5]);
    for config_json in configs {
        let config = BackboneConfig::from_json(config_json).unwrap();
        let name = config.model_type();
        let spec = ModelSpec {
            format_version: FORMAT_VERSION,
            model_type: name.into(),
            pooling: Pooling::Mean,
            projection_dim: None,
            normalize: false,
            max_length: 16,
            tasks: Vec::new(),
            base_model: "test".into(),
            training: None,
            metrics: None,
        };
        let model = MultiTaskModel::build(&config, &spec, tch::Device::Cpu);
        let weights = model.vs.variables();
        let ours = FusedForward { weights: &weights, config: &config, spec: &spec };
        tch::manual_seed(7);
        let trained = ours.hidden_states_t(&ids, &mask, true).unwrap();
        tch::manual_seed(7);
        let rust_bert = model.backbone.forward_t(&ids, &mask, true).unwrap();
        tch::manual_seed(7);
        let again = ours.hidden_states_t(&ids, &mask, true).unwrap();
        let eval = ours.hidden_states(&ids, &mask).unwrap();
        let diff = max_diff(&trained, &rust_bert);
        eprintln!("{name}: max |ours - rust-bert| with dropout, same seed = {diff:.2e}");
        assert!(diff < 1e-5, "{name}: training forward differs from rust-bert's by {diff}");
        assert_eq!(max_diff(&trained, &again), 0.0, "{name}: not repeatable under one seed");
        assert!(max_diff(&trained, &eval) > 1e-2, "{name}: dropout had no effect");
    }
}
