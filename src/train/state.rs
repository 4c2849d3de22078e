//! What a resumable checkpoint (`last/`) holds besides the model: the loop's position
//! (`trainer_state.json`) and the optimizer's moments (`optimizer.safetensors`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::data::sampler::TaskSampler;
use crate::model::safetensors_io::write_safetensors;

use super::evaluate::Evaluation;
use super::optimizer::AdamW;
use super::window::WindowTotals;

pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Identifies a data file's content (FNV-1a over the bytes), so a resumed run can refuse
/// data that changed under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub path: String,
    pub bytes: u64,
    pub fnv1a: String,
}

impl FileFingerprint {
    pub fn of(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let hash = crate::hash::fnv1a(&data);
        Ok(Self { path: path.display().to_string(), bytes: data.len() as u64, fnv1a: format!("{hash:016x}") })
    }
}

/// The training loop's position; with the weights and optimizer state it determines the
/// rest of the run exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: usize,
    /// Batches drawn (dropout is seeded per batch from this count).
    pub micro_batches: u64,
    pub examples: usize,
    pub sampler: TaskSampler,
    pub best: Option<Evaluation>,
    pub evals_without_improvement: usize,
    pub data: Vec<FileFingerprint>,
    /// Processes of the data-parallel launch that trained it (1 for older runs).
    #[serde(default = "one")]
    pub world_size: usize,
    /// The logging window the save fell in, so far (none in older runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowTotals>,
}

fn one() -> usize {
    1
}

impl TrainerState {
    /// Writes the state files into a checkpoint folder being built.
    pub fn write(&self, folder: &Path, optimizer: &AdamW) -> Result<()> {
        std::fs::write(folder.join(STATE_FILE), serde_json::to_string(self)? + "\n")?;
        let tensors = optimizer.state_tensors();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_safetensors(&folder.join(OPTIMIZER_FILE), &refs).context("cannot write optimizer state")
    }

    /// Reads the state of a resumable checkpoint and restores the optimizer from it.
    pub fn read(folder: &Path, optimizer: &mut AdamW) -> Result<Self> {
        let path = folder.join(STATE_FILE);
        if !path.is_file() {
            bail!("{} has no {STATE_FILE}: it is not a resumable checkpoint", folder.display());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let state: Self = serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
        let optimizer_path = folder.join(OPTIMIZER_FILE);
        let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(&optimizer_path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read optimizer state {}", optimizer_path.display()))?
            .into_iter()
            .collect();
        optimizer
            .load_state(tensors)
            .with_context(|| format!("optimizer state {} does not fit the model", optimizer_path.display()))?;
        Ok(state)
    }
}
