//! `--freeze`: which variables get no gradient (requires_grad = false), hence no optimizer
//! update and no weight decay.

use std::fmt;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::model::names::{self, BackboneLayer, TensorPart};
use crate::model::spec::ModelSpec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum FreezeRule {
    /// Train everything (the default).
    None,
    /// Train nothing: the run only evaluates.
    All,
    /// The whole transformer (embeddings and blocks): train projection and heads only.
    Backbone,
    /// Token, position and type embeddings.
    Embeddings,
    /// The bottom K transformer blocks (not the embeddings; add `embeddings` for those).
    Layers(usize),
    /// One task's head.
    Head(String),
}

impl FreezeRule {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Self::None,
            "all" => Self::All,
            "backbone" => Self::Backbone,
            "embeddings" => Self::Embeddings,
            other => match other.split_once(':') {
                Some(("layers", k)) => match k.parse::<usize>() {
                    Ok(k) if k > 0 => Self::Layers(k),
                    _ => bail!("--freeze {other}: K must be a whole number >= 1"),
                },
                Some(("head", name)) if !name.is_empty() => Self::Head(name.to_string()),
                _ => bail!(
                    "unknown --freeze '{other}' (expected none, all, backbone, embeddings, layers:K or head:NAME)"
                ),
            },
        })
    }

    /// Checks every `--freeze` together (`none` cannot be combined with other rules) and
    /// drops `none`.
    pub fn combine(rules: &[Self]) -> Result<Vec<Self>> {
        if rules.contains(&Self::None) && rules.iter().any(|r| *r != Self::None) {
            bail!("--freeze none cannot be combined with other --freeze rules");
        }
        Ok(rules.iter().filter(|r| **r != Self::None).cloned().collect())
    }

    /// Checks the rules against the model: layer counts must exist, and `head:NAME` must name
    /// a task with a head.
    pub fn validate(rules: &[Self], num_layers: usize, task_names: &[&str], spec: &ModelSpec) -> Result<()> {
        for rule in rules {
            match rule {
                Self::Layers(k) if *k > num_layers => {
                    bail!("--freeze layers:{k}: the backbone has only {num_layers} layers")
                }
                Self::Head(name) if !task_names.contains(&name.as_str()) => {
                    bail!("--freeze head:{name}: no task named '{name}' (tasks: {})", task_names.join(", "))
                }
                Self::Head(name) => {
                    spec.head_task(name).with_context(|| format!("--freeze head:{name}"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Refuses rules that freeze the whole encoder (backbone and projection) while a task
    /// learns through the encoder alone: similarity and pairs tasks (no head), and
    /// classification tasks whose head `head:NAME` freezes. Their loss would have no gradient
    /// (libtorch fails at the first backward pass). `--freeze all` is exempt: it asks for an
    /// evaluation-only run. `tasks` are (name, has a head).
    pub fn check_encoder_only_tasks(rules: &[Self], variables: &[String], tasks: &[(&str, bool)]) -> Result<()> {
        let encoder_only =
            |(name, has_head): &&(&str, bool)| !has_head || rules.contains(&Self::Head(name.to_string()));
        let Some(&(task, has_head)) = tasks.iter().find(encoder_only) else { return Ok(()) };
        if rules.contains(&Self::All) {
            return Ok(());
        }
        let mut encoder = variables
            .iter()
            .filter(|name| matches!(names::part_of(name), TensorPart::Backbone(_) | TensorPart::Projection));
        if encoder.any(|name| !rules.iter().any(|r| r.matches(name))) {
            return Ok(());
        }
        let has_projection = variables.iter().any(|name| names::part_of(name) == TensorPart::Projection);
        let fix = match (has_head, has_projection) {
            (true, _) => format!("let its head train (drop --freeze head:{task}) or freeze less of the encoder"),
            (false, true) => "freeze less of the encoder (for example --freeze layers:K)".to_string(),
            (false, false) => "add --projection-dim N to train a projection on the frozen backbone, or freeze less (for example --freeze layers:K)".to_string(),
        };
        let why = match has_head {
            true => "its head is frozen, so it learns through the encoder alone",
            false => "it has no head and learns through the encoder alone",
        };
        let rules: Vec<String> = rules.iter().map(Self::to_string).collect();
        bail!("--freeze {} leaves task '{task}' nothing to train: {why}; {fix}", rules.join(" --freeze "))
    }

    fn matches(&self, variable: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Backbone => names::layer_of(variable).is_some(),
            Self::Embeddings => names::layer_of(variable) == Some(BackboneLayer::Embeddings),
            Self::Layers(k) => matches!(names::layer_of(variable), Some(BackboneLayer::Block(i)) if i < *k),
            Self::Head(name) => names::part_of(variable) == TensorPart::Head(name),
        }
    }

    /// Whether nothing that feeds the embeddings trains: every backbone and projection
    /// variable is frozen.
    pub fn encoder_frozen(vs: &VarStore) -> bool {
        vs.variables().iter().all(|(name, tensor)| {
            !tensor.requires_grad() || !matches!(names::part_of(name), TensorPart::Backbone(_) | TensorPart::Projection)
        })
    }

    /// Whether `task`'s head is frozen (`--freeze head:NAME`, or `all`); false without a head.
    pub fn head_frozen(vs: &VarStore, task: &str) -> bool {
        let weight = names::weight(&names::head(task));
        vs.variables().get(&weight).is_some_and(|t| !t.requires_grad())
    }

    /// Sets requires_grad on every variable: false where a rule matches, true elsewhere.
    /// Returns the names of the frozen variables.
    pub fn apply(rules: &[Self], vs: &VarStore) -> Vec<String> {
        let mut frozen = Vec::new();
        for (name, tensor) in vs.variables() {
            let freeze = rules.iter().any(|r| r.matches(&name));
            let _ = tensor.set_requires_grad(!freeze);
            if freeze {
                frozen.push(name);
            }
        }
        frozen.sort();
        frozen
    }
}

impl fmt::Display for FreezeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::All => f.write_str("all"),
            Self::Backbone => f.write_str("backbone"),
            Self::Embeddings => f.write_str("embeddings"),
            Self::Layers(k) => write!(f, "layers:{k}"),
            Self::Head(name) => write!(f, "head:{name}"),
        }
    }
}

impl std::str::FromStr for FreezeRule {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<FreezeRule> for String {
    fn from(rule: FreezeRule) -> String {
        rule.to_string()
    }
}

impl TryFrom<String> for FreezeRule {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(FreezeRule::parse("layers:3").unwrap(), FreezeRule::Layers(3));
        assert_eq!(FreezeRule::parse("head:trec").unwrap(), FreezeRule::Head("trec".into()));
        assert!(FreezeRule::parse("layers:x").is_err());
        assert!(FreezeRule::parse("layers:0").is_err());
        assert!(FreezeRule::parse("heads").unwrap_err().to_string().contains("unknown --freeze 'heads'"));
        assert!(FreezeRule::combine(&[FreezeRule::None, FreezeRule::All]).is_err());
        assert!(FreezeRule::combine(&[FreezeRule::None]).unwrap().is_empty());
        assert!(FreezeRule::combine(&[FreezeRule::None, FreezeRule::None]).unwrap().is_empty(), "none twice is none");
    }

    #[test]
    fn validation_names_the_problem() {
        let spec = crate::model::test_support::spec("bert", None, &[("a", 2)]);
        let err = FreezeRule::validate(&[FreezeRule::Layers(7)], 6, &["a"], &spec).unwrap_err().to_string();
        assert!(err.contains("only 6 layers"), "{err}");
        let err = FreezeRule::validate(&[FreezeRule::Head("b".into())], 6, &["a"], &spec).unwrap_err().to_string();
        assert!(err.contains("no task named 'b'"), "{err}");
    }

    #[test]
    fn a_frozen_encoder_is_refused_only_when_a_task_learns_through_it_alone() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let no_projection = names(&["bert.encoder.layer.0.output.dense.weight", "heads.trec.weight"]);
        let backbone = [FreezeRule::Backbone];
        let sts = [("trec", true), ("sts", false)];
        let err = FreezeRule::check_encoder_only_tasks(&backbone, &no_projection, &sts).unwrap_err().to_string();
        assert!(err.contains("task 'sts' nothing to train") && err.contains("--projection-dim"), "{err}");
        assert!(FreezeRule::check_encoder_only_tasks(&backbone, &no_projection, &[("trec", true)]).is_ok());
        assert!(FreezeRule::check_encoder_only_tasks(&[FreezeRule::All], &no_projection, &sts).is_ok());
        assert!(FreezeRule::check_encoder_only_tasks(&[FreezeRule::Layers(1)], &no_projection, &sts).is_err());
        let with_projection = names(&["bert.encoder.layer.0.output.dense.weight", "projection.weight"]);
        assert!(FreezeRule::check_encoder_only_tasks(&backbone, &with_projection, &sts).is_ok());
        // A frozen head is no head: with the encoder frozen too, the task has nothing to train.
        let frozen_head = [FreezeRule::Backbone, FreezeRule::Head("trec".into())];
        let tasks = [("trec", true), ("sst", true)];
        let err = FreezeRule::check_encoder_only_tasks(&frozen_head, &no_projection, &tasks).unwrap_err().to_string();
        assert!(err.contains("task 'trec' nothing to train: its head is frozen"), "{err}");
        assert!(FreezeRule::check_encoder_only_tasks(&frozen_head, &with_projection, &tasks).is_ok());
        assert!(
            FreezeRule::check_encoder_only_tasks(&[FreezeRule::Head("trec".into())], &no_projection, &tasks).is_ok()
        );
    }

    #[test]
    fn rules_match_the_right_variables() {
        let emb = "bert.embeddings.word_embeddings.weight";
        let block0 = "distilbert.transformer.layer.0.ffn.lin1.weight";
        let block2 = "bert.encoder.layer.2.output.dense.bias";
        let head = "heads.trec.weight";
        let head2 = "heads.trec2.weight";
        assert!(FreezeRule::Backbone.matches(emb) && FreezeRule::Backbone.matches(block2));
        assert!(!FreezeRule::Backbone.matches("projection.weight") && !FreezeRule::Backbone.matches(head));
        assert!(FreezeRule::Embeddings.matches(emb) && !FreezeRule::Embeddings.matches(block0));
        assert!(FreezeRule::Layers(1).matches(block0) && !FreezeRule::Layers(2).matches(block2));
        assert!(!FreezeRule::Layers(2).matches(emb));
        assert!(FreezeRule::Head("trec".into()).matches(head) && !FreezeRule::Head("trec".into()).matches(head2));
    }

    #[test]
    fn serialises_as_the_flag_text() {
        let json = serde_json::to_string(&vec![FreezeRule::Layers(2), FreezeRule::Head("x".into())]).unwrap();
        assert_eq!(json, r#"["layers:2","head:x"]"#);
        let back: Vec<FreezeRule> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![FreezeRule::Layers(2), FreezeRule::Head("x".into())]);
    }
}
