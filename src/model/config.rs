//! The backbone's Hugging Face `config.json`, read into rust-bert's config types.
//!
//! We deserialize into our own structs (HF field names, `#[serde(default)]` where HF has a
//! default) instead of rust-bert's `Config::from_file`, which panics on bad input and requires
//! fields that `transformers` no longer writes (`tie_weights_`, ...).

use std::path::Path;

use anyhow::{bail, Context, Result};
use rust_bert::bert::BertConfig;
use rust_bert::distilbert::DistilBertConfig;
use rust_bert::Activation;
use serde::Deserialize;

/// The architectures `sentence-mtl` can run, keyed by HF's `model_type`.
#[derive(Debug, Clone)]
pub enum BackboneConfig {
    DistilBert(DistilBertConfig),
    Bert(BertConfig),
}

impl BackboneConfig {
    /// Reads `config.json` and picks the architecture from its `model_type`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read model config {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("invalid model config {}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct ModelType {
            model_type: Option<String>,
            /// Heads transformers removes from each layer's attention at load.
            #[serde(default)]
            pruned_heads: serde_json::Value,
        }
        let kind: ModelType = parse(text)?;
        if kind.pruned_heads.as_object().is_some_and(|heads| !heads.is_empty()) {
            bail!("pruned_heads is not supported: sentence-mtl runs every attention head of every layer");
        }
        match kind.model_type.as_deref() {
            Some("distilbert") => {
                let raw: DistilBertJson = parse(text)?;
                Ok(Self::DistilBert(raw.into_rust_bert()?))
            }
            Some("bert") => {
                let raw: BertJson = parse(text)?;
                Ok(Self::Bert(raw.into_rust_bert()?))
            }
            Some(other) => {
                bail!("model_type '{other}' is not supported (supported: distilbert, bert)")
            }
            None => bail!("no model_type field (supported: distilbert, bert)"),
        }
    }

    /// `distilbert` or `bert`, as in HF's `model_type`.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::DistilBert(_) => "distilbert",
            Self::Bert(_) => "bert",
        }
    }

    pub fn hidden_size(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.dim,
            Self::Bert(c) => c.hidden_size,
        }
    }

    pub fn num_layers(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.n_layers,
            Self::Bert(c) => c.num_hidden_layers,
        }
    }

    /// Width of each block's feed-forward layer.
    pub fn intermediate_size(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.hidden_dim,
            Self::Bert(c) => c.intermediate_size,
        }
    }

    pub fn num_attention_heads(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.n_heads,
            Self::Bert(c) => c.num_attention_heads,
        }
    }

    /// The feed-forward activation.
    pub fn activation(&self) -> Activation {
        match self {
            Self::DistilBert(c) => c.activation,
            Self::Bert(c) => c.hidden_act,
        }
    }

    /// (hidden-state dropout, attention-probability dropout) of training.
    pub fn dropout(&self) -> (f64, f64) {
        match self {
            Self::DistilBert(c) => (c.dropout, c.attention_dropout),
            Self::Bert(c) => (c.hidden_dropout_prob, c.attention_probs_dropout_prob),
        }
    }

    /// Sets both dropout probabilities (`train --dropout`).
    pub fn set_dropout(&mut self, p: f64) {
        match self {
            Self::DistilBert(c) => (c.dropout, c.attention_dropout) = (p, p),
            Self::Bert(c) => (c.hidden_dropout_prob, c.attention_probs_dropout_prob) = (p, p),
        }
    }

    /// Whether the position embeddings are a fixed sinusoidal table (DistilBERT's
    /// `sinusoidal_pos_embds`), which transformers never trains.
    pub fn fixed_positions(&self) -> bool {
        matches!(self, Self::DistilBert(c) if c.sinusoidal_pos_embds)
    }

    pub fn vocab_size(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.vocab_size,
            Self::Bert(c) => c.vocab_size,
        }
    }

    pub fn max_position_embeddings(&self) -> i64 {
        match self {
            Self::DistilBert(c) => c.max_position_embeddings,
            Self::Bert(c) => c.max_position_embeddings,
        }
    }
}

/// Deserialises, naming the JSON field a type error is about (serde_json reports only a
/// line and column).
fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    // Editors on Windows may save one; it says nothing about the contents.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| {
        // serde finds a missing field at the object's end, after the last key, which is not it.
        let message = e.to_string();
        if let Some(missing) = message.strip_prefix("missing field ") {
            let field = missing.split(" at line ").next().unwrap_or(missing).trim_matches('`');
            return anyhow::anyhow!("missing field \"{field}\"");
        }
        match field_before(text, e.line(), e.column()) {
            Some(field) if e.is_data() => anyhow::anyhow!("field \"{field}\": {e}"),
            _ => anyhow::anyhow!("{e}"),
        }
    })
}

/// The last `"key":` before a 1-based line/column position (lines end at `\n`; a column
/// counts bytes, which may stop inside a character: the text is cut at the character's start).
fn field_before(text: &str, line: usize, column: usize) -> Option<String> {
    let line_start: usize = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let mut offset = (line_start + column).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let colon = before.rfind(':')?;
    let key_end = before[..colon].trim_end().strip_suffix('"')?;
    let key_start = key_end.rfind('"')?;
    Some(key_end[key_start + 1..].to_string())
}

/// The activation `field` names; transformers' `gelu_python` is its erf GELU under another name.
fn activation(field: &str, name: &str) -> Result<Activation> {
    Ok(match name {
        "gelu" | "gelu_python" => Activation::gelu,
        "gelu_new" | "gelu_pytorch_tanh" => Activation::gelu_new,
        "relu" => Activation::relu,
        "swish" | "silu" => Activation::swish,
        "mish" => Activation::mish,
        "tanh" => Activation::tanh,
        other => bail!(
            "{field} '{other}' is not supported (expected gelu, gelu_python, gelu_new, gelu_pytorch_tanh, relu, silu, swish, mish or tanh)"
        ),
    })
}

/// The most blocks a config may name: past any encoder's, and the names of their tensors,
/// listed before the weight file is compared, would fill memory first (10^9 blocks did).
const MAX_LAYERS: i64 = 1024;

fn check_layer_count(field: &str, value: i64) -> Result<()> {
    if value > MAX_LAYERS {
        bail!("{field} {value} is more blocks than sentence-mtl reads (at most {MAX_LAYERS}); is config.json damaged?");
    }
    Ok(())
}

fn check_positive(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        bail!("{field} must be positive, got {value}");
    }
    Ok(())
}

/// A dropout probability, in `--dropout`'s range: libtorch refuses one above 1 mid-training,
/// and 1 drops everything.
fn check_dropout(field: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && (0.0..1.0).contains(&value)) {
        bail!("{field} must be in [0, 1), got {value}");
    }
    Ok(())
}

#[derive(Deserialize)]
struct DistilBertJson {
    vocab_size: i64,
    // transformers' DistilBertConfig reads BERT's names for these too (its attribute_map),
    // and a file may hold both spellings.
    dim: Option<i64>,
    hidden_size: Option<i64>,
    n_layers: Option<i64>,
    num_hidden_layers: Option<i64>,
    n_heads: Option<i64>,
    num_attention_heads: Option<i64>,
    hidden_dim: i64,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: i64,
    #[serde(default)]
    sinusoidal_pos_embds: bool,
    #[serde(default = "default_dropout")]
    dropout: f64,
    #[serde(default = "default_dropout")]
    attention_dropout: f64,
    #[serde(default = "default_gelu")]
    activation: String,
    #[serde(default = "default_initializer_range")]
    initializer_range: f32,
}

/// A DistilBERT field given under its own name, BERT's (`alias`), or both alike.
fn either(field: &str, alias: &str, own: Option<i64>, aliased: Option<i64>) -> Result<i64> {
    match (own, aliased) {
        (Some(a), Some(b)) if a != b => bail!("{field} {a} and {alias} {b} disagree (they name one setting)"),
        (Some(value), _) | (None, Some(value)) => Ok(value),
        (None, None) => bail!("missing field \"{field}\""),
    }
}

impl DistilBertJson {
    fn into_rust_bert(self) -> Result<DistilBertConfig> {
        let dim = either("dim", "hidden_size", self.dim, self.hidden_size)?;
        let n_layers = either("n_layers", "num_hidden_layers", self.n_layers, self.num_hidden_layers)?;
        let n_heads = either("n_heads", "num_attention_heads", self.n_heads, self.num_attention_heads)?;
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("dim", dim),
            ("n_layers", n_layers),
            ("n_heads", n_heads),
            ("hidden_dim", self.hidden_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            check_positive(field, value)?;
        }
        check_layer_count("n_layers", n_layers)?;
        if dim % n_heads != 0 {
            bail!("dim {dim} is not a multiple of n_heads {n_heads}");
        }
        check_dropout("dropout", self.dropout)?;
        check_dropout("attention_dropout", self.attention_dropout)?;
        Ok(DistilBertConfig {
            activation: activation("activation", &self.activation)?,
            attention_dropout: self.attention_dropout,
            dim,
            dropout: self.dropout,
            hidden_dim: self.hidden_dim,
            id2label: None,
            initializer_range: self.initializer_range,
            is_decoder: None,
            label2id: None,
            max_position_embeddings: self.max_position_embeddings,
            n_heads,
            n_layers,
            output_attentions: None,
            output_hidden_states: None,
            output_past: None,
            qa_dropout: 0.0,
            seq_classif_dropout: 0.0,
            sinusoidal_pos_embds: self.sinusoidal_pos_embds,
            tie_weights_: false,
            vocab_size: self.vocab_size,
        })
    }
}

#[derive(Deserialize)]
struct BertJson {
    vocab_size: i64,
    hidden_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    intermediate_size: i64,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: i64,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: i64,
    #[serde(default = "default_gelu")]
    hidden_act: String,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default = "default_initializer_range")]
    initializer_range: f32,
    #[serde(default)]
    is_decoder: bool,
    /// Absent means absolute; transformers reads `null` as no position embeddings at all.
    #[serde(default = "default_position_embedding_type")]
    position_embedding_type: Option<String>,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
}

impl BertJson {
    fn into_rust_bert(self) -> Result<BertConfig> {
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            check_positive(field, value)?;
        }
        check_layer_count("num_hidden_layers", self.num_hidden_layers)?;
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.is_decoder {
            bail!("is_decoder is true: only encoder (bidirectional) BERT models are supported");
        }
        // The fused forward (`model::fused_forward`) uses BERT's default epsilon.
        if (self.layer_norm_eps - 1e-12).abs() > 1e-15 {
            bail!("layer_norm_eps {} is not supported (only BERT's 1e-12)", self.layer_norm_eps);
        }
        match self.position_embedding_type.as_deref() {
            Some("absolute") => {}
            Some(kind) => bail!("position_embedding_type '{kind}' is not supported (only 'absolute')"),
            None => bail!("position_embedding_type null (no position embeddings) is not supported (only 'absolute')"),
        }
        check_dropout("hidden_dropout_prob", self.hidden_dropout_prob)?;
        check_dropout("attention_probs_dropout_prob", self.attention_probs_dropout_prob)?;
        Ok(BertConfig {
            hidden_act: activation("hidden_act", &self.hidden_act)?,
            attention_probs_dropout_prob: self.attention_probs_dropout_prob,
            hidden_dropout_prob: self.hidden_dropout_prob,
            hidden_size: self.hidden_size,
            initializer_range: self.initializer_range,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            num_attention_heads: self.num_attention_heads,
            num_hidden_layers: self.num_hidden_layers,
            type_vocab_size: self.type_vocab_size,
            vocab_size: self.vocab_size,
            output_attentions: None,
            output_hidden_states: None,
            is_decoder: None,
            id2label: None,
            label2id: None,
        })
    }
}

fn default_max_positions() -> i64 {
    512
}
fn default_type_vocab_size() -> i64 {
    2
}
fn default_dropout() -> f64 {
    0.1
}
fn default_gelu() -> String {
    "gelu".into()
}
fn default_position_embedding_type() -> Option<String> {
    Some("absolute".into())
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_initializer_range() -> f32 {
    0.02
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_architecture_from_model_type() {
        let bert = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"intermediate_size":16}"#;
        assert_eq!(BackboneConfig::from_json(bert).unwrap().model_type(), "bert");
        let distil = r#"{"model_type":"distilbert","vocab_size":10,"dim":8,"n_layers":2,
            "n_heads":2,"hidden_dim":16}"#;
        let config = BackboneConfig::from_json(distil).unwrap();
        assert_eq!(config.model_type(), "distilbert");
        assert_eq!(config.num_layers(), 2);
    }

    #[test]
    fn pruned_heads_are_refused() {
        let bert = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"intermediate_size":16,"pruned_heads":{"0":[1]}}"#;
        let err = BackboneConfig::from_json(bert).unwrap_err().to_string();
        assert!(err.starts_with("pruned_heads is not supported"), "{err}");
        assert!(BackboneConfig::from_json(&bert.replace(r#"{"0":[1]}"#, "{}")).is_ok());
    }

    #[test]
    fn a_layer_count_past_any_encoder_is_refused() {
        let bert = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1000000000,
            "num_attention_heads":2,"intermediate_size":16}"#;
        let err = BackboneConfig::from_json(bert).unwrap_err().to_string();
        assert!(err.starts_with("num_hidden_layers 1000000000 is more blocks than sentence-mtl reads"), "{err}");
        let distil =
            r#"{"model_type":"distilbert","vocab_size":10,"dim":8,"n_layers":1025,"n_heads":2,"hidden_dim":16}"#;
        let err = BackboneConfig::from_json(distil).unwrap_err().to_string();
        assert!(err.starts_with("n_layers 1025 is more blocks"), "{err}");
        assert!(BackboneConfig::from_json(&distil.replace("1025", "1024")).is_ok());
    }

    #[test]
    fn names_unsupported_model_type() {
        let err = BackboneConfig::from_json(r#"{"model_type":"gpt2"}"#).unwrap_err();
        assert!(err.to_string().contains("model_type 'gpt2' is not supported"), "{err}");
    }

    #[test]
    fn wrong_types_are_errors_not_panics() {
        let bad = r#"{"model_type":"bert","vocab_size":"ten","hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"intermediate_size":16}"#;
        let err = BackboneConfig::from_json(bad).unwrap_err().to_string();
        assert!(err.starts_with("field \"vocab_size\": invalid type: string \"ten\""), "{err}");
        // CRLF line ends and non-ASCII text before the bad value, and a byte-order mark.
        let crlf = "{\r\n\"model_type\":\"bert\",\r\n\"name\":\"ééé\",\r\n\"vocab_size\":\"éééééééé\"}";
        let err = BackboneConfig::from_json(crlf).unwrap_err().to_string();
        assert!(err.contains("invalid type: string"), "{err}");
        let good = r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
            "num_attention_heads":2,"intermediate_size":16}"#;
        assert!(BackboneConfig::from_json(&format!("\u{feff}{good}")).is_ok());
    }

    #[test]
    fn a_missing_field_is_named_as_missing() {
        let no_dim = r#"{"model_type":"distilbert","n_layers":2,"n_heads":2,"hidden_dim":16,"vocab_size":10}"#;
        let err = BackboneConfig::from_json(no_dim).unwrap_err().to_string();
        assert_eq!(err, "missing field \"dim\"");
    }

    #[test]
    fn distilbert_reads_bert_names_as_transformers_does() {
        let aliased = r#"{"model_type":"distilbert","vocab_size":10,"hidden_size":8,"num_hidden_layers":3,
            "num_attention_heads":2,"hidden_dim":16}"#;
        let config = BackboneConfig::from_json(aliased).unwrap();
        assert_eq!((config.hidden_size(), config.num_layers()), (8, 3));
        let both = aliased.replace(r#""hidden_size":8,"#, r#""hidden_size":8,"dim":8,"#);
        assert_eq!(BackboneConfig::from_json(&both).unwrap().hidden_size(), 8);
        let disagree = aliased.replace(r#""hidden_size":8,"#, r#""hidden_size":8,"dim":16,"#);
        let err = BackboneConfig::from_json(&disagree).unwrap_err().to_string();
        assert_eq!(err, "dim 16 and hidden_size 8 disagree (they name one setting)");
    }

    #[test]
    fn dropout_outside_its_range_is_named() {
        let bert = |extra: &str| {
            format!(
                r#"{{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":2,
                "num_attention_heads":2,"intermediate_size":16{extra}}}"#
            )
        };
        let err = BackboneConfig::from_json(&bert(r#","hidden_dropout_prob":1.5"#)).unwrap_err().to_string();
        assert_eq!(err, "hidden_dropout_prob must be in [0, 1), got 1.5");
        let err = BackboneConfig::from_json(&bert(r#","attention_probs_dropout_prob":-0.2"#)).unwrap_err();
        assert!(err.to_string().starts_with("attention_probs_dropout_prob must be in [0, 1)"), "{err}");
        let err = BackboneConfig::from_json(&bert(r#","position_embedding_type":null"#)).unwrap_err();
        assert!(err.to_string().starts_with("position_embedding_type null"), "{err}");
        let err = BackboneConfig::from_json(&bert(r#","hidden_act":"quick_gelu""#)).unwrap_err();
        assert!(err.to_string().starts_with("hidden_act 'quick_gelu' is not supported (expected gelu,"), "{err}");
        assert!(BackboneConfig::from_json(&bert(r#","hidden_act":"gelu_python""#)).is_ok());
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let bad = r#"{"model_type":"bert","vocab_size":10,"hidden_size":9,"num_hidden_layers":2,
            "num_attention_heads":2,"intermediate_size":16}"#;
        assert!(BackboneConfig::from_json(bad).is_err());
    }
}
