//! The forward pass of training and inference: the same function as rust-bert's modules
//! plus our pooling, projection and heads, computed directly from the weights with fused
//! libtorch ops. Training runs it over the VarStore's variables (autograd records it like any
//! other tensor code), inference over the tensors read from a checkpoint.
//!
//! Why not rust-bert's modules' own forward (they still create and name training's variables):
//! - speed: one `gelu` kernel where rust-bert chains five element-wise ops (and autograd saves
//!   each one's input), and no extra copies around attention (measured in docs/benchmarks.md).
//! - one function: what training optimises is exactly what `encode`, `predict` and the
//!   exports compute.
//! - tracing: tch's tracer records tensor ops but not Rust-side shape arithmetic, so a
//!   module traced through rust-bert bakes the example's batch size and length into the
//!   graph. Here every shape follows the inputs: position ids from a cumulative sum, heads
//!   split with `unflatten`, merged with `flatten`.
//! - start-up: it reads plain tensors, so loading for inference builds no modules.
//!
//! Dropout sits where HF and rust-bert put it and draws its masks in the same order, so under
//! one seed a training step here equals rust-bert's (`tests/seeded_dropout.rs`). Other tests
//! check the function against transformers (hidden states) and sentence-transformers
//! (embeddings).

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use rust_bert::Activation;
use tch::{Kind, Tensor};

use crate::model::cast;
use crate::model::config::BackboneConfig;
use crate::model::names;
use crate::model::pooling::l2_normalize;
use crate::model::spec::{HeadInput, ModelSpec};

/// The model's tensors by name, and what the forward needs to know about them.
pub struct FusedForward<'a> {
    pub weights: &'a HashMap<String, Tensor>,
    pub config: &'a BackboneConfig,
    pub spec: &'a ModelSpec,
}

impl FusedForward<'_> {
    fn w(&self, name: &str) -> Result<&Tensor> {
        self.weights.get(name).ok_or_else(|| anyhow!("checkpoint has no tensor {name}"))
    }

    fn linear(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        Ok(x.linear(self.w(&names::weight(prefix))?, Some(self.w(&names::bias(prefix))?)))
    }

    fn layer_norm(&self, x: &Tensor, prefix: &str) -> Result<Tensor> {
        let width = self.config.hidden_size();
        let (weight, bias) = (self.w(&names::weight(prefix))?, self.w(&names::bias(prefix))?);
        Ok(x.layer_norm([width], Some(weight), Some(bias), 1e-12, false))
    }

    fn lookup(&self, table: &str, ids: &Tensor) -> Result<Tensor> {
        Ok(Tensor::embedding(self.w(&names::weight(table))?, ids, -1, false, false))
    }

    /// Token states `[batch, seq, hidden]` for ids and mask `[batch, seq]` (Int64).
    pub fn hidden_states(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.hidden_states_t(input_ids, attention_mask, false)
    }

    /// As `hidden_states`, with the config's dropout applied where HF applies it when `train`.
    pub fn hidden_states_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.embeddings_t(ids, train)?;
        self.blocks_t(x, mask, 0..self.config.num_layers(), train)
    }

    fn dropout(&self, train: bool) -> Dropout {
        let (hidden, attention) = self.config.dropout();
        Dropout::new(train, hidden, attention)
    }

    /// The embedding layer's output `[batch, seq, hidden]` for ids `[batch, seq]`.
    pub fn embeddings_t(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        let e = names::embeddings(self.config);
        let positions = ids.ones_like().cumsum(1, Kind::Int64) - 1;
        let x = self.lookup(&e.word, ids)? + self.lookup(&e.position, &positions)?;
        let x = match &e.token_type {
            Some(token_type) => x + self.lookup(token_type, &ids.zeros_like())?,
            None => x,
        };
        Ok(self.dropout(train).hidden(&self.layer_norm(&x, &e.layer_norm)?))
    }

    /// Transformer `blocks` (a range of block indices) over states `x [batch, seq, hidden]`,
    /// the input of the range's first block, with the mask `[batch, seq]`. The blocks run in
    /// their weights' precision (bf16 for inference's `model::loaded::blocks_in_bf16`),
    /// so `x` is brought to it.
    pub fn blocks_t(&self, x: Tensor, mask: &Tensor, blocks: std::ops::Range<i64>, train: bool) -> Result<Tensor> {
        if blocks.is_empty() {
            return Ok(x);
        }
        let kind = self.w(&names::weight(&names::block(self.config, blocks.start).query))?.kind();
        let mut x = cast(&x, kind);
        let dropout = self.dropout(train);
        let additive = additive_mask(self.config, mask);
        // BERT's (HF's and rust-bert's) drops out the attention block's output; DistilBERT's does not.
        let attention_output_dropout = matches!(self.config, BackboneConfig::Bert(_));
        let act = self.config.activation();
        for i in blocks {
            let b = names::block(self.config, i);
            let q = self.linear(&x, &b.query)?;
            let k = self.linear(&x, &b.key)?;
            let v = self.linear(&x, &b.value)?;
            let context = self.attention(q, k, v, &additive, &dropout);
            let attended = self.linear(&context, &b.attention_output)?;
            let attended = (if attention_output_dropout { dropout.hidden(&attended) } else { attended }) + &x;
            let attended = self.layer_norm(&attended, &b.attention_norm)?;
            let inner = activate(&self.linear(&attended, &b.ffn_in)?, act);
            let out = dropout.hidden(&self.linear(&inner, &b.ffn_out)?) + &attended;
            x = self.layer_norm(&out, &b.output_norm)?;
        }
        Ok(x)
    }

    /// States after blocks `..to` (the embedding layer's when `to` is 0), without dropout: what
    /// a training run whose embeddings and bottom `to` blocks are frozen can compute once.
    pub fn states_below(&self, ids: &Tensor, mask: &Tensor, to: i64) -> Result<Tensor> {
        let x = self.embeddings_t(ids, false)?;
        self.blocks_t(x, mask, 0..to, false)
    }

    /// Sentence features `[batch, dim]` from the states after block `from` (`[batch, seq,
    /// hidden]`, as `states_below` gives them): the remaining blocks, pooling and projection.
    pub fn features_from_states(&self, states: Tensor, mask: &Tensor, from: i64, train: bool) -> Result<Tensor> {
        let hidden = self.blocks_t(states, mask, from..self.config.num_layers(), train)?;
        self.pool_and_project(&hidden, mask)
    }

    /// Sentence features `[batch, dim]`: pooled (and projected), before normalisation.
    pub fn features(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.features_t(input_ids, attention_mask, false)
    }

    /// As `features`, with dropout in the backbone when `train` (training's forward).
    pub fn features_t(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Result<Tensor> {
        let hidden = self.hidden_states_t(input_ids, attention_mask, train)?;
        self.pool_and_project(&hidden, attention_mask)
    }

    /// Token states `[batch, seq, hidden]` pooled in fp32 (whatever the blocks ran in) and
    /// projected: `[batch, dim]`.
    fn pool_and_project(&self, hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.project(&self.spec.pooling.forward(&cast(hidden, Kind::Float), mask))
    }

    /// Pooled states `[batch, hidden]` through the projection, if the model has one.
    pub fn project(&self, pooled: &Tensor) -> Result<Tensor> {
        match self.spec.projection_dim {
            Some(_) => self.linear(pooled, names::PROJECTION),
            None => Ok(pooled.shallow_clone()),
        }
    }

    /// Embeddings `[batch, dim]` as `encode` returns them (normalised if the model says so).
    pub fn embedding(&self, features: &Tensor) -> Tensor {
        if self.spec.normalize {
            l2_normalize(features)
        } else {
            features.shallow_clone()
        }
    }

    /// What one task's head reads, `[batch, dim]`: the features or the embeddings
    /// (`spec::HeadInput`).
    pub fn head_input(&self, features: &Tensor, task: &str) -> Result<Tensor> {
        Ok(match self.spec.head_task(task)?.head_input {
            HeadInput::Features => features.shallow_clone(),
            HeadInput::Embedding => self.embedding(features),
        })
    }

    /// Logits `[batch, n_classes]` of one task's head.
    pub fn logits(&self, features: &Tensor, task: &str) -> Result<Tensor> {
        self.linear(&self.head_input(features, task)?, &names::head(task))
    }

    /// `[embedding, logits of each task with a head...]`, the outputs of the TorchScript export.
    pub fn all_outputs(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Tensor>> {
        let features = self.features(input_ids, attention_mask)?;
        let mut outputs = vec![self.embedding(&features)];
        for task in self.spec.head_tasks() {
            outputs.push(self.logits(&features, &task.name)?);
        }
        Ok(outputs)
    }

    /// Multi-head attention over `[batch, seq, hidden]` with an additive `[batch, 1, 1, seq]` mask,
    /// through libtorch's fused `scaled_dot_product_attention` or op by op, as
    /// [`fused_attention_fits`] decides.
    fn attention(&self, q: Tensor, k: Tensor, v: Tensor, additive_mask: &Tensor, dropout: &Dropout) -> Tensor {
        let heads = self.config.num_attention_heads();
        let head_dim = self.config.hidden_size() / heads;
        let split = |x: Tensor| x.unflatten(-1, [heads, head_dim]).transpose(1, 2);
        let (q, k, v) = (split(q), split(k), split(v));
        let context = if fused_attention_fits(&q, dropout.attention) {
            fused_attention(&q, &k, &v, additive_mask, dropout.attention)
        } else {
            explicit_attention(&q, &k, &v, additive_mask, dropout)
        };
        context.transpose(1, 2).flatten(2, 3)
    }
}

/// Below this many tokens per sentence, bf16 attention on the CPU is faster op by op than
/// through the fused kernel (`encode --precision bf16`, Intel Xeon with AMX: 7% slower fused
/// at about 50 tokens, even at 75, 12% faster at 100 and 1.4x at 128; docs/benchmarks.md).
const FUSED_BF16_CPU_MIN_TOKENS: i64 = 64;

/// Whether attention over `q [batch, heads, seq, head_dim]` runs through the fused kernel:
/// - on CUDA, always: its flash / memory-efficient kernels are one launch instead of six, and
///   draw the attention dropout themselves (as HF's "sdpa" attention does in training);
/// - on the CPU, only without attention dropout (inference, evaluation, `--dropout 0`), whose
///   masks then match rust-bert's under one seed (`tests/seeded_dropout.rs`): in fp32 1.3x
///   (24 tokens) to 4x (128) faster than the explicit product, in bf16 from
///   [`FUSED_BF16_CPU_MIN_TOKENS`].
fn fused_attention_fits(q: &Tensor, attention_dropout: f64) -> bool {
    if q.device().is_cuda() {
        return true;
    }
    attention_dropout == 0.0 && (q.kind() == Kind::Float || q.size()[2] >= FUSED_BF16_CPU_MIN_TOKENS)
}

/// softmax(q kᵀ / √d + mask) v over `[batch, heads, seq, head_dim]`, op by op.
fn explicit_attention(q: &Tensor, k: &Tensor, v: &Tensor, additive_mask: &Tensor, dropout: &Dropout) -> Tensor {
    let head_dim = q.size()[3];
    let scores = q.matmul(&k.transpose(-1, -2)) / (head_dim as f64).sqrt() + additive_mask;
    cast(&dropout.attention(&scores.softmax(-1, Kind::Float)), v.kind()).matmul(v)
}

/// The same product through libtorch's fused kernel, which draws the dropout (`p`) itself. The
/// mask takes the product's precision, as the kernel requires.
fn fused_attention(q: &Tensor, k: &Tensor, v: &Tensor, additive_mask: &Tensor, p: f64) -> Tensor {
    Tensor::scaled_dot_product_attention(q, k, v, Some(cast(additive_mask, q.kind())), p, false, None)
}

/// The mask `[batch, seq]` (1 = real token) as an additive `[batch, 1, 1, seq]` attention bias,
/// as each architecture computes it.
fn additive_mask(config: &BackboneConfig, mask: &Tensor) -> Tensor {
    match config {
        // rust-bert's BERT (and HF's) add -10000 where the mask is 0.
        BackboneConfig::Bert(_) => cast(&(mask.ones_like() - mask), Kind::Float).unsqueeze(1).unsqueeze(1) * -10000.0,
        // DistilBERT masks with -inf (a sentence always has [CLS] and [SEP] unmasked); here
        // `nan_to_num` turns real tokens' 0 x -inf into 0 and the -inf into the lowest finite
        // float, which softmax weighs as 0 all the same.
        BackboneConfig::DistilBert(_) => {
            let additive = cast(&mask.eq(0), Kind::Float).unsqueeze(1).unsqueeze(1) * f64::NEG_INFINITY;
            additive.nan_to_num(0.0, None, None)
        }
    }
}

/// Dropout probabilities for one forward pass: the config's in training, none otherwise.
#[derive(Clone, Copy)]
struct Dropout {
    hidden: f64,
    attention: f64,
}

impl Dropout {
    fn new(train: bool, hidden: f64, attention: f64) -> Self {
        if train {
            Self { hidden, attention }
        } else {
            Self { hidden: 0.0, attention: 0.0 }
        }
    }

    /// On hidden states: after the embeddings' LayerNorm and on each sublayer's output before
    /// its residual add, as HF and rust-bert place it.
    fn hidden(&self, x: &Tensor) -> Tensor {
        if self.hidden > 0.0 {
            x.dropout(self.hidden, true)
        } else {
            x.shallow_clone()
        }
    }

    /// On attention probabilities.
    fn attention(&self, x: &Tensor) -> Tensor {
        if self.attention > 0.0 {
            x.dropout(self.attention, true)
        } else {
            x.shallow_clone()
        }
    }
}

/// The activations `config.json` can name, as single libtorch ops.
fn activate(x: &Tensor, act: Activation) -> Tensor {
    match act {
        Activation::gelu => x.gelu("none"),
        Activation::gelu_new => x.gelu("tanh"),
        Activation::relu => x.relu(),
        Activation::swish => x.silu(),
        Activation::mish => x.mish(),
        Activation::tanh => x.tanh(),
        Activation::identity => x.shallow_clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::spec;
    use crate::model::MultiTaskModel;

    const BERT: &str = r#"{"model_type": "bert", "vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 12, "max_position_embeddings": 16}"#;
    const DISTILBERT: &str = r#"{"model_type": "distilbert", "vocab_size": 30, "dim": 8, "n_layers": 2,
        "n_heads": 2, "hidden_dim": 12, "max_position_embeddings": 16}"#;

    /// Two sentences `[2, 5]`, the second padded.
    fn batch() -> (Tensor, Tensor) {
        let ids = Tensor::from_slice(&[1i64, 5, 7, 9, 2, 1, 11, 2, 0, 0]).view([2, 5]);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 1, 0, 0]).view([2, 5]);
        (ids, mask)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        f64::try_from((a - b).abs().max()).unwrap()
    }

    /// The fused kernel computes what the explicit product computes, forward and backward, for
    /// both masks (BERT's -10000, DistilBERT's most negative float) on a padded batch.
    #[test]
    fn fused_attention_equals_the_explicit_product() {
        tch::manual_seed(3);
        let none = Dropout::new(false, 0.0, 0.0);
        let lengths = Tensor::from_slice(&[7i64, 4, 1]).unsqueeze(1);
        let mask = Tensor::arange(7, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0).lt_tensor(&lengths);
        for config_json in [BERT, DISTILBERT] {
            let additive = additive_mask(&BackboneConfig::from_json(config_json).unwrap(), &mask.to_kind(Kind::Int64));
            let make = || Tensor::randn([3, 2, 7, 4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
            let (q, k, v) = (make(), make(), make());
            let fused = fused_attention(&q, &k, &v, &additive, 0.0);
            let explicit = explicit_attention(&q, &k, &v, &additive, &none);
            assert!(max_diff(&fused, &explicit) < 1e-6, "forward: {}", max_diff(&fused, &explicit));
            let upstream = Tensor::randn([3, 2, 7, 4], (Kind::Float, tch::Device::Cpu));
            let grads =
                |out: &Tensor| Tensor::run_backward(&[(out * &upstream).sum(Kind::Float)], &[&q, &k, &v], false, false);
            for (a, b) in grads(&fused).iter().zip(grads(&explicit).iter()) {
                assert!(max_diff(a, b) < 1e-5, "backward: {}", max_diff(a, b));
            }
        }
    }

    /// In bf16 the fused kernel agrees with the explicit product to bf16's precision, and the
    /// CPU takes it only without dropout and from `FUSED_BF16_CPU_MIN_TOKENS` tokens on.
    #[test]
    fn bf16_attention_takes_the_fused_kernel_for_long_inputs_only() {
        tch::manual_seed(5);
        let none = Dropout::new(false, 0.0, 0.0);
        let config = BackboneConfig::from_json(BERT).unwrap();
        for seq in [8, FUSED_BF16_CPU_MIN_TOKENS] {
            let mask = Tensor::ones([2, seq], (Kind::Int64, tch::Device::Cpu));
            let _ = mask.get(1).narrow(0, seq / 2, seq / 2).fill_(0);
            let additive = additive_mask(&config, &mask);
            let make = || Tensor::randn([2, 2, seq, 4], (Kind::Float, tch::Device::Cpu)).to_kind(Kind::BFloat16);
            let (q, k, v) = (make(), make(), make());
            let both =
                || (fused_attention(&q, &k, &v, &additive, 0.0), explicit_attention(&q, &k, &v, &additive, &none));
            // As inference runs it, in bf16 without autocast (the explicit product brings its
            // fp32 probabilities to bf16 itself), and as bf16 training runs it, under autocast.
            let plain = both();
            let autocast = crate::torch_shim::with_bf16_autocast(tch::Device::Cpu, both);
            for (fused, explicit) in [plain, autocast] {
                assert_eq!(explicit.kind(), Kind::BFloat16);
                assert!(max_diff(&fused.to_kind(Kind::Float), &explicit.to_kind(Kind::Float)) < 2e-2);
            }
            assert_eq!(fused_attention_fits(&q, 0.0), seq >= FUSED_BF16_CPU_MIN_TOKENS, "{seq} tokens");
            assert!(!fused_attention_fits(&q, 0.1), "the CPU took the fused kernel with dropout");
            assert!(fused_attention_fits(&q.to_kind(Kind::Float), 0.0));
        }
    }

    /// The fused kernel's own dropout (CUDA training takes it): with uniform attention over
    /// values of one, the output keeps its mean of one and varies as dropout makes it.
    #[test]
    fn fused_attention_draws_its_own_dropout() {
        tch::manual_seed(6);
        let (q, k) = (
            Tensor::zeros([4, 2, 16, 8], (Kind::Float, tch::Device::Cpu)),
            Tensor::zeros([4, 2, 16, 8], (Kind::Float, tch::Device::Cpu)),
        );
        let v = Tensor::ones([4, 2, 16, 8], (Kind::Float, tch::Device::Cpu));
        let mask = Tensor::zeros([4, 1, 1, 16], (Kind::Float, tch::Device::Cpu));
        let plain = fused_attention(&q, &k, &v, &mask, 0.0);
        assert!(max_diff(&plain, &v) < 1e-6);
        let dropped = fused_attention(&q, &k, &v, &mask, 0.5);
        let mean = f64::try_from(dropped.mean(Kind::Float)).unwrap();
        assert!((mean - 1.0).abs() < 0.1, "mean {mean}");
        assert!(max_diff(&dropped, &v) > 0.2, "no dropout drawn");
    }

    /// Dropout is on in training and off at inference. (That training draws the same masks
    /// as rust-bert under one seed is tested in `tests/seeded_dropout.rs`, alone in its
    /// process: libtorch's generator is global and unit tests run in parallel.)
    #[test]
    fn dropout_only_in_training() {
        for config_json in [BERT, DISTILBERT] {
            let config = BackboneConfig::from_json(config_json).unwrap();
            let spec = spec(config.model_type(), None, &[]);
            let model = MultiTaskModel::build(&config, &spec, tch::Device::Cpu);
            let weights = model.vs.variables();
            let forward = FusedForward { weights: &weights, config: &config, spec: &spec };
            let (ids, mask) = batch();
            let eval = forward.hidden_states(&ids, &mask).unwrap();
            let name = config.model_type();
            assert_eq!(
                max_diff(&eval, &forward.hidden_states(&ids, &mask).unwrap()),
                0.0,
                "{name}: random at inference"
            );
            let trained = forward.hidden_states_t(&ids, &mask, true).unwrap();
            assert!(max_diff(&trained, &eval) > 1e-2, "{name}: dropout had no effect in training");
        }
    }

    /// With its blocks in bf16 (`encode --precision bf16`) the model runs them in bf16 from
    /// the fp32 embedding layer, pools in fp32, and stays close to its fp32 function.
    #[test]
    fn bf16_blocks_run_between_an_fp32_embedding_layer_and_fp32_pooling() {
        for config_json in [BERT, DISTILBERT] {
            let config = BackboneConfig::from_json(config_json).unwrap();
            let spec = spec(config.model_type(), Some(4), &[("trec", 6)]);
            let model = MultiTaskModel::build(&config, &spec, tch::Device::Cpu);
            let weights = model.vs.variables();
            let bf16 = crate::model::loaded::blocks_in_bf16(&weights);
            for (name, tensor) in &bf16 {
                let in_block = matches!(names::layer_of(name), Some(names::BackboneLayer::Block(_)));
                let expected = if in_block { Kind::BFloat16 } else { Kind::Float };
                assert_eq!(tensor.kind(), expected, "{name}");
            }
            let (ids, mask) = batch();
            let fp32 = FusedForward { weights: &weights, config: &config, spec: &spec };
            let fp32_logits = fp32.logits(&fp32.features(&ids, &mask).unwrap(), "trec").unwrap();
            let forward = FusedForward { weights: &bf16, config: &config, spec: &spec };
            let features = tch::no_grad(|| forward.features(&ids, &mask).unwrap());
            assert_eq!(features.kind(), Kind::Float, "{}", config.model_type());
            let logits = forward.logits(&features, "trec").unwrap();
            let scale = f64::try_from(fp32_logits.abs().max()).unwrap();
            assert!(max_diff(&logits, &fp32_logits) < 0.05 * scale, "{}", max_diff(&logits, &fp32_logits));
        }
    }

    /// Backpropagating both tasks' logits reaches every variable training built: none of them
    /// is left out of the forward pass (it would silently never train).
    #[test]
    fn every_variable_gets_a_gradient() {
        for config_json in [BERT, DISTILBERT] {
            let config = BackboneConfig::from_json(config_json).unwrap();
            let spec = spec(config.model_type(), Some(4), &[("trec", 6), ("sst2", 2)]);
            let model = MultiTaskModel::build(&config, &spec, tch::Device::Cpu);
            let weights = model.vs.variables();
            let forward = FusedForward { weights: &weights, config: &config, spec: &spec };
            let (ids, mask) = batch();
            let features = forward.features_t(&ids, &mask, true).unwrap();
            let loss = forward.logits(&features, "trec").unwrap().square().sum(Kind::Float)
                + forward.logits(&features, "sst2").unwrap().square().sum(Kind::Float);
            loss.backward();
            for (name, variable) in &weights {
                let grad = variable.grad();
                assert!(grad.defined(), "{}: {name} got no gradient", config.model_type());
                assert!(f64::try_from(grad.abs().sum(Kind::Double)).unwrap() > 0.0, "{name}: zero gradient");
            }
        }
    }
}
