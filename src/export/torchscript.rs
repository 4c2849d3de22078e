//! A TorchScript module (`model.pt`) traced with tch's `CModule::create_by_tracing` over a
//! shape-agnostic forward: `forward(input_ids, attention_mask)` returns
//! `(embedding, logits of task 1, logits of task 2, ...)` for any batch size and length.
//!
//! tch's tracer saves only single-output methods, so the trace returns all outputs side by
//! side in one `[batch, dim + classes...]` tensor, and a small compiled TorchScript forward
//! around it splits that into the tuple.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tch::{CModule, Device, Kind, Tensor};

use super::model_files::{copy_model_files, tasks_json, variables};
use crate::model::fused_forward::FusedForward;
use crate::model::loaded::LoadedModel;
use crate::scratch_file::ScratchFile;

pub fn write(loaded: &LoadedModel, folder: &Path) -> Result<()> {
    let weights = variables(loaded);
    for t in weights.values() {
        // Constants in the traced graph must not require gradients.
        let _ = t.set_requires_grad(false);
    }
    let model = FusedForward { weights: &weights, config: &loaded.config, spec: &loaded.spec };
    // An example batch; the trace generalises to other shapes (see model/fused_forward.rs).
    let ids = Tensor::from_slice(&[101i64, 2023, 2003, 102, 0, 101, 7592, 2088, 2003, 102]).view([2, 5]);
    let ids = ids.clamp_max(loaded.config.vocab_size() - 1);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 0, 1, 1, 1, 1, 1]).view([2, 5]);
    let mut failure = None;
    let mut widths = Vec::new();
    let mut forward = |inputs: &[Tensor]| match model.all_outputs(&inputs[0], &inputs[1]) {
        Ok(outputs) => {
            widths = outputs.iter().map(|o| o.size()[1]).collect();
            vec![Tensor::cat(&outputs, 1)]
        }
        Err(e) => {
            failure = Some(e);
            vec![Tensor::zeros([1], (Kind::Float, Device::Cpu))]
        }
    };
    let module = tch::no_grad(|| CModule::create_by_tracing("TracedForward", "forward", &[ids, mask], &mut forward))
        .map_err(|e| anyhow!("tracing failed: {e}"))?;
    if let Some(e) = failure {
        return Err(e);
    }
    // In memory where the system allows: libtorch's file writer aborts the process when a
    // disk fills (see the shim).
    let traced_file = ScratchFile::in_memory_or(c"sentence-mtl-traced", folder.join("traced.pt.tmp"));
    let traced_path = traced_file.path();
    module.save(&traced_path).map_err(|e| anyhow!("cannot save the traced module: {}", first_line(&e.to_string())))?;
    let mut start = 0;
    let mut slices = Vec::new();
    for width in &widths {
        slices.push(format!("out[:, {start}:{}]", start + width));
        start += width;
    }
    let source = format!(
        "def forward(self, input_ids, attention_mask):\n    out = self.traced.forward(input_ids, attention_mask)\n    return ({},)\n",
        slices.join(", ")
    );
    let model_path = folder.join("model.pt");
    let written = std::fs::File::create(&model_path).map_err(anyhow::Error::from).and_then(|file| {
        let mut out = std::io::BufWriter::new(file);
        crate::torch_shim::wrap_traced_module(&traced_path, &source, &mut out)?;
        Ok(out.into_inner().map_err(|e| e.into_error())?.sync_all()?)
    });
    written.with_context(|| format!("cannot write {}", model_path.display()))?;
    drop(traced_file);
    copy_model_files(loaded, folder)?;
    let mut outputs = vec!["embedding".to_string()];
    outputs.extend(loaded.spec.head_tasks().map(|t| format!("logits:{}", t.name)));
    std::fs::write(
        folder.join("tasks.json"),
        serde_json::to_string_pretty(&tasks_json(loaded, Some(outputs)))? + "\n",
    )?;
    Ok(())
}

/// The first line of a libtorch error (the rest is its C++ stack).
fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}
