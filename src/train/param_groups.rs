//! Variables sorted into optimizer groups, each with its own learning rate and weight decay.
//!
//! Groups follow the model's depth: `embeddings`, `layer.0` .. `layer.{L-1}` (bottom to top),
//! `projection`, `heads`. With layer-wise decay D, block i (0-based) of L gets
//! `lr_backbone * D^(L-1-i)` (the top block gets `lr_backbone`) and the embeddings
//! `lr_backbone * D^L`. Biases and LayerNorm parameters form a `/no-decay` twin of each group.

use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::Tensor;

use crate::model::names::{self, BackboneLayer, TensorPart};
use crate::report::table::Table;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningRates {
    pub backbone: f64,
    pub projection: f64,
    pub heads: f64,
    pub layer_decay: f64,
}

/// One optimizer group: trainable variables sharing a base learning rate and weight decay.
pub struct ParamGroup {
    pub name: String,
    pub base_lr: f64,
    pub weight_decay: f64,
    pub params: Vec<(String, Tensor)>,
}

/// Where a variable belongs, in depth order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Embeddings,
    Block(usize),
    Projection,
    Heads,
}

impl Section {
    fn of(name: &str) -> Result<Self> {
        Ok(match names::part_of(name) {
            TensorPart::Backbone(BackboneLayer::Embeddings) => Self::Embeddings,
            TensorPart::Backbone(BackboneLayer::Block(i)) => Self::Block(i),
            TensorPart::Projection => Self::Projection,
            TensorPart::Head(_) => Self::Heads,
            TensorPart::Pooler | TensorPart::Other => bail!("variable {name} belongs to no optimizer group"),
        })
    }

    fn name(self) -> String {
        match self {
            Self::Embeddings => "embeddings".into(),
            Self::Block(i) => format!("layer.{i}"),
            Self::Projection => "projection".into(),
            Self::Heads => "heads".into(),
        }
    }

    fn learning_rate(self, lrs: &LearningRates, num_layers: usize) -> f64 {
        match self {
            Self::Embeddings => lrs.backbone * lrs.layer_decay.powi(num_layers as i32),
            Self::Block(i) => lrs.backbone * lrs.layer_decay.powi((num_layers - 1 - i) as i32),
            Self::Projection => lrs.projection,
            Self::Heads => lrs.heads,
        }
    }
}

/// No weight decay on biases and LayerNorm parameters (BERT's recipe, HF Trainer's default).
/// HF tells LayerNorms by module type; here the backbone's names tell them, and the
/// projection's and heads' weights decay whatever a task is named (`layer_norm` too).
pub fn decays(name: &str) -> bool {
    if name.ends_with(".bias") {
        return false;
    }
    match names::part_of(name) {
        TensorPart::Projection | TensorPart::Head(_) => true,
        _ => !(name.contains("LayerNorm") || name.contains("layer_norm")),
    }
}

/// Groups the store's trainable variables (frozen ones are left out: they get no update
/// and no decay). Groups come out in depth order, decayed twin first.
pub fn build_groups(
    vs: &VarStore,
    num_layers: usize,
    lrs: &LearningRates,
    weight_decay: f64,
) -> Result<Vec<ParamGroup>> {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let mut keyed = Vec::new();
    for (name, tensor) in variables {
        if !tensor.requires_grad() {
            continue;
        }
        keyed.push(((Section::of(&name)?, !decays(&name)), name, tensor));
    }
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut groups: Vec<ParamGroup> = Vec::new();
    let mut last_key = None;
    for (key, name, tensor) in keyed {
        if last_key != Some(key) {
            let (section, no_decay) = key;
            groups.push(ParamGroup {
                name: if no_decay { format!("{}/no-decay", section.name()) } else { section.name() },
                base_lr: section.learning_rate(lrs, num_layers),
                weight_decay: if no_decay { 0.0 } else { weight_decay },
                params: Vec::new(),
            });
            last_key = Some(key);
        }
        groups.last_mut().expect("pushed above").params.push((name, tensor));
    }
    Ok(groups)
}

/// The table printed at the start of training: every section, trainable or frozen.
pub fn group_table(vs: &VarStore, num_layers: usize, lrs: &LearningRates, weight_decay: f64) -> Result<String> {
    let mut sections: Vec<(Section, usize, i64, i64)> = Vec::new(); // tensors, params, trainable params
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, tensor) in &variables {
        let section = Section::of(name)?;
        let numel = tensor.numel() as i64;
        let trainable = if tensor.requires_grad() { numel } else { 0 };
        match sections.iter_mut().find(|s| s.0 == section) {
            Some(s) => {
                s.1 += 1;
                s.2 += numel;
                s.3 += trainable;
            }
            None => sections.push((section, 1, numel, trainable)),
        }
    }
    sections.sort_by_key(|s| s.0);
    let mut table = Table::new(["group", "tensors", "params", "trainable", "lr", "weight decay"]);
    for (section, tensors, params, trainable) in sections {
        let frozen = trainable == 0;
        table.row([
            section.name(),
            tensors.to_string(),
            human_count(params),
            if frozen { "frozen".into() } else { human_count(trainable) },
            if frozen { "-".into() } else { format!("{:.2e}", section.learning_rate(lrs, num_layers)) },
            if frozen { "-".into() } else { weight_decay.to_string() },
        ]);
    }
    Ok(table.render() + "(weight decay never applies to biases and LayerNorm parameters)\n")
}

/// (trainable, total) parameter counts.
pub fn parameter_counts(vs: &VarStore) -> (i64, i64) {
    vs.variables().values().fold((0, 0), |(trainable, total), t| {
        let n = t.numel() as i64;
        (trainable + if t.requires_grad() { n } else { 0 }, total + n)
    })
}

/// `22.7M`, `147.5K`, `512`.
pub fn human_count(n: i64) -> String {
    match n {
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn store() -> VarStore {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = root.sub("bert").sub("embeddings").sub("word_embeddings").zeros("weight", &[10, 4]);
        let _ = root.sub("bert").sub("embeddings").sub("LayerNorm").zeros("weight", &[4]);
        for i in 0..3 {
            let layer = root.sub("bert").sub("encoder").sub("layer").sub(i.to_string());
            let _ = layer.sub("output").sub("dense").zeros("weight", &[4, 4]);
            let _ = layer.sub("output").sub("dense").zeros("bias", &[4]);
        }
        let _ = root.sub("projection").zeros("weight", &[2, 4]);
        let _ = root.sub("heads").sub("a").zeros("weight", &[3, 2]);
        vs
    }

    #[test]
    fn layer_wise_rates_follow_depth() {
        let vs = store();
        let lrs = LearningRates { backbone: 1e-5, projection: 1e-4, heads: 1e-3, layer_decay: 0.5 };
        let groups = build_groups(&vs, 3, &lrs, 0.01).unwrap();
        let rate = |name: &str| groups.iter().find(|g| g.name == name).unwrap().base_lr;
        assert_eq!(rate("layer.2"), 1e-5);
        assert_eq!(rate("layer.1"), 1e-5 * 0.5);
        assert_eq!(rate("layer.0"), 1e-5 * 0.25);
        assert_eq!(rate("embeddings"), 1e-5 * 0.125);
        assert_eq!(rate("embeddings/no-decay"), 1e-5 * 0.125);
        assert_eq!(rate("projection"), 1e-4);
        assert_eq!(rate("heads"), 1e-3);
    }

    #[test]
    fn no_decay_on_bias_and_layer_norm() {
        let vs = store();
        let lrs = LearningRates { backbone: 1e-5, projection: 1e-4, heads: 1e-3, layer_decay: 1.0 };
        let groups = build_groups(&vs, 3, &lrs, 0.01).unwrap();
        for g in &groups {
            for (name, _) in &g.params {
                let expected = if decays(name) { 0.01 } else { 0.0 };
                assert_eq!(g.weight_decay, expected, "{name} in {}", g.name);
            }
        }
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        assert!(!decays("distilbert.transformer.layer.0.sa_layer_norm.weight"));
        assert!(decays("heads.a.weight"));
        assert!(decays("heads.my_layer_norm_task.weight"), "a task's name is no module type");
        assert!(!decays("heads.my_layer_norm_task.bias"));
    }

    #[test]
    fn frozen_variables_are_left_out() {
        let vs = store();
        for (name, t) in vs.variables() {
            if name.starts_with("bert.") {
                let _ = t.set_requires_grad(false);
            }
        }
        let lrs = LearningRates { backbone: 1e-5, projection: 1e-4, heads: 1e-3, layer_decay: 1.0 };
        let groups = build_groups(&vs, 3, &lrs, 0.0).unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec!["projection", "heads"]);
        assert_eq!(parameter_counts(&vs), (8 + 6, 40 + 4 + 3 * 20 + 8 + 6));
    }
}
