//! Training's forward + backward, rust-bert's modules against `fused_forward` (what `train`
//! runs), timed in interleaved pairs on the same batches in one process, so that a shared
//! machine's drift affects both alike. Prints median step times and the mean of per-pair
//! ratios. No optimizer step: only the part the two differ in.
//!
//!   cargo run --release --example training_forward_ab -- MODEL_DIR CSV [STEPS] [THREADS]
//!
//! CSV needs a `text` column; batches are its first STEPS x 32 rows, in file order.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use sentence_mtl::checkpoint::{load_for_training, TrainingSpec};
use sentence_mtl::data::batching::pad_batch;
use sentence_mtl::model::spec::TaskSpec;
use tch::{Device, Kind, Tensor};

const BATCH: usize = 32;
const WARMUP_STEPS: usize = 3;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, csv_path, rest @ ..] = args.as_slice() else {
        bail!("usage: training_forward_ab MODEL_DIR CSV [STEPS] [THREADS]");
    };
    let steps: usize = rest.first().map_or(Ok(40), |s| s.parse()).context("STEPS must be a number")?;
    let threads: i32 = rest.get(1).map_or(Ok(2), |s| s.parse()).context("THREADS must be a number")?;
    tch::set_num_threads(threads);

    let task = TaskSpec::classification("task", (0..6).map(|i| i.to_string()).collect(), "text", "label");
    let spec = TrainingSpec { pooling: None, projection_dim: None, max_length: 128, tasks: vec![task] };
    let trainable = load_for_training(model, Device::Cpu, spec)?;
    let mut reader = csv::Reader::from_path(csv_path).with_context(|| format!("cannot read {csv_path}"))?;
    let text_column = reader.headers()?.iter().position(|h| h == "text").context("CSV has no text column")?;
    let sentences: Vec<String> =
        reader.records().take(steps * BATCH).map(|r| Ok(r?[text_column].to_string())).collect::<Result<_>>()?;
    if sentences.len() < steps * BATCH {
        bail!("{csv_path} has {} rows, {steps} steps need {}", sentences.len(), steps * BATCH);
    }
    let tokens = trainable.loaded.tokenizer.encode_batch(&sentences, 128);
    let targets = Tensor::from_slice(&(0..BATCH as i64).map(|i| i % 6).collect::<Vec<_>>());

    let mut seconds = [Vec::new(), Vec::new()]; // [rust-bert, fused]
    for (step, rows) in tokens.chunks(BATCH).enumerate() {
        let rows: Vec<&[i64]> = rows.iter().map(Vec::as_slice).collect();
        let (ids, mask) = pad_batch(&rows, trainable.loaded.tokenizer.pad_id(), Device::Cpu);
        // Alternate which goes first, so neither always runs on a warm cache.
        let order = if step % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            tch::manual_seed(step as i64);
            let started = Instant::now();
            let logits = if which == 0 {
                let hidden = trainable.model.backbone.forward_t(&ids, &mask, true)?;
                let pooled = trainable.loaded.spec.pooling.forward(&hidden, &mask);
                let forward = trainable.loaded.forward();
                forward.logits(&forward.project(&pooled)?, "task")?
            } else {
                let forward = trainable.loaded.forward();
                forward.logits(&forward.features_t(&ids, &mask, true)?, "task")?
            };
            logits.to_kind(Kind::Float).cross_entropy_for_logits(&targets).backward();
            trainable.model.vs.trainable_variables().iter_mut().for_each(Tensor::zero_grad);
            if step >= WARMUP_STEPS {
                seconds[which].push(started.elapsed().as_secs_f64());
            }
        }
    }
    let pairs = seconds[0].iter().zip(&seconds[1]).map(|(a, b)| a / b).collect::<Vec<_>>();
    let mean_ratio = pairs.iter().sum::<f64>() / pairs.len() as f64;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [rust_bert, fused] = seconds.map(median);
    println!(
        "{} steps of {BATCH} ({threads} threads): median forward+backward rust-bert {:.1} ms, fused {:.1} ms \
         (ratio {:.3}); mean of per-step ratios {mean_ratio:.3}",
        pairs.len(),
        rust_bert * 1e3,
        fused * 1e3,
        rust_bert / fused
    );
    Ok(())
}
