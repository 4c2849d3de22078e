//! `sentence-mtl export`: checkpoints in formats the Python ecosystem loads.
//!
//! - `sentence-transformers`: a folder `SentenceTransformer(DIR)` loads
//! - `hf`: the backbone as a transformers model folder, plus heads and tasks.json
//! - `torchscript`: a traced module for `torch.jit.load` and `tch::CModule`
//!
//! Every export gets a README.md model card; folders are written aside and swapped in.

mod destination;
mod hf;
mod model_card;
mod model_files;
mod seal;
mod sentence_transformers;
mod torchscript;

pub use model_card::is_export;

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};

use crate::atomic_write;
use crate::model::loaded::LoadedModel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    SentenceTransformers,
    Hf,
    TorchScript,
}

impl FromStr for ExportFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "sentence-transformers" | "st" => Self::SentenceTransformers,
            "hf" | "transformers" => Self::Hf,
            "torchscript" => Self::TorchScript,
            other => bail!("unknown --format '{other}' (expected sentence-transformers, hf or torchscript)"),
        })
    }
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::SentenceTransformers => "sentence-transformers",
            Self::Hf => "hf",
            Self::TorchScript => "torchscript",
        }
    }
}

/// Writes `loaded` in `format` into `out`, replacing an earlier export there in one step
/// (what `out` may hold: [`destination::checked`]).
pub fn export(loaded: &LoadedModel, format: ExportFormat, out: &Path, force: bool) -> Result<()> {
    let target = destination::checked(out, loaded, force)?;
    atomic_write::replace_dir(&target, |folder| {
        match format {
            ExportFormat::SentenceTransformers => sentence_transformers::write(loaded, folder)?,
            ExportFormat::Hf => hf::write(loaded, folder)?,
            ExportFormat::TorchScript => torchscript::write(loaded, folder)?,
        }
        let card = seal::sealed(model_card::render(loaded, format), folder)?;
        std::fs::write(folder.join("README.md"), card)?;
        Ok(())
    })
}
