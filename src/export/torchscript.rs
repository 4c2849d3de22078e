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
    // In memory: libtorch's writer aborts the process when a disk fills (see the shim).
    let traced_file = InMemoryFile::new()?;
    let traced_path = traced_file.path();
    module.save(&traced_path).map_err(|e| anyhow!("cannot save the traced module: {e}"))?;
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
    let saved = crate::torch_shim::wrap_traced_module(&traced_path, &source)?;
    drop(traced_file);
    let model_path = folder.join("model.pt");
    std::fs::write(&model_path, saved).with_context(|| format!("cannot write {}", model_path.display()))?;
    copy_model_files(loaded, folder)?;
    let mut outputs = vec!["embedding".to_string()];
    outputs.extend(loaded.spec.head_tasks().map(|t| format!("logits:{}", t.name)));
    std::fs::write(
        folder.join("tasks.json"),
        serde_json::to_string_pretty(&tasks_json(loaded, Some(outputs)))? + "\n",
    )?;
    Ok(())
}

/// A file in memory (`memfd_create`) that libtorch can write and read by path
/// (`/proc/self/fd/N`); closed when dropped.
struct InMemoryFile(std::os::fd::OwnedFd);

impl InMemoryFile {
    fn new() -> Result<Self> {
        // SAFETY: a NUL-terminated name; the returned descriptor is checked before use.
        let fd = unsafe { libc::memfd_create(c"sentence-mtl-traced".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot make an in-memory file for the traced module");
        }
        // SAFETY: `fd` is a new descriptor this process owns alone.
        Ok(Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn path(&self) -> std::path::PathBuf {
        format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.0)).into()
    }
}
