//! Running a loaded model over many sentences: tokenise once, batch by length, forward
//! under `no_grad`, and return results in input order.

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::data::batching::{length_sorted_batches, pad_batch};
use crate::model::fused_forward::FusedForward;
use crate::model::loaded::LoadedModel;
use crate::progress::Progress;

/// Runs `head(model, features) -> [batch, width]` over all `texts` and returns
/// `[n_texts, width]` (f32, CPU) in input order. The forward pass is the fused one
/// (`model::fused_forward`) over the model's current weights.
fn run_batches(
    loaded: &LoadedModel,
    texts: &[String],
    batch_size: usize,
    progress: &Progress,
    head: impl Fn(&FusedForward, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let device = loaded.device;
    let model = loaded.forward();
    let token_ids = loaded.tokenizer.encode_batch(texts, loaded.spec.max_length);
    let lengths: Vec<usize> = token_ids.iter().map(Vec::len).collect();
    let bar = progress.bar(texts.len() as u64, "sentences");
    let mut output: Option<Tensor> = None;
    tch::no_grad(|| -> Result<()> {
        for batch in length_sorted_batches(&lengths, batch_size) {
            let sequences: Vec<&[i64]> = batch.iter().map(|&i| token_ids[i].as_slice()).collect();
            let (ids, mask) = pad_batch(&sequences, loaded.tokenizer.pad_id(), device);
            let features = model.features(&ids, &mask)?;
            let result = head(&model, &features)?.to_kind(Kind::Float).to_device(Device::Cpu);
            let out = output.get_or_insert_with(|| {
                Tensor::zeros([texts.len() as i64, result.size()[1]], (Kind::Float, Device::Cpu))
            });
            let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = out.index_copy_(0, &index, &result);
            bar.inc(batch.len() as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(output.unwrap_or_else(|| Tensor::zeros([0, 0], (Kind::Float, Device::Cpu))))
}

/// Sentence embeddings `[n, dim]` (normalised if the model says so).
pub fn embed(loaded: &LoadedModel, texts: &[String], batch_size: usize, progress: &Progress) -> Result<Tensor> {
    run_batches(loaded, texts, batch_size, progress, |model, features| Ok(model.embedding(features)))
}

/// Logits `[n, n_classes]` of one task's head.
pub fn class_logits(
    loaded: &LoadedModel,
    task: &str,
    texts: &[String],
    batch_size: usize,
    progress: &Progress,
) -> Result<Tensor> {
    loaded.spec.head_task(task)?;
    run_batches(loaded, texts, batch_size, progress, |model, features| model.logits(features, task))
}

/// Class probabilities `[n, n_classes]` of one task.
pub fn class_probabilities(
    loaded: &LoadedModel,
    task: &str,
    texts: &[String],
    batch_size: usize,
    progress: &Progress,
) -> Result<Tensor> {
    Ok(class_logits(loaded, task, texts, batch_size, progress)?.softmax(-1, Kind::Float))
}
