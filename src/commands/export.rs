//! `sentence-mtl export`: a checkpoint for sentence-transformers, transformers or TorchScript.

use std::path::Path;

use anyhow::{bail, Result};
use tch::Device;

use crate::checkpoint::{self, SPEC_FILE};
use crate::cli::ExportArgs;
use crate::export::{export, ExportFormat};
use crate::model::spec::SpecOverrides;

pub fn run(args: &ExportArgs) -> Result<()> {
    let format = args.format;
    let dir = Path::new(&args.model);
    if !dir.exists() {
        match dir.parent().filter(|p| !p.as_os_str().is_empty() && p.is_dir()) {
            Some(parent) => bail!(
                "--model {}: no such checkpoint folder ({} holds: {})",
                dir.display(),
                parent.display(),
                crate::model::source::listing(parent)
            ),
            None => bail!("--model {}: no such checkpoint folder", dir.display()),
        }
    }
    if !checkpoint::is_checkpoint(dir) {
        if checkpoint::is_checkpoint(&dir.join("best")) {
            bail!(
                "{} is a run directory; export one of its checkpoints, e.g. --model {}",
                dir.display(),
                dir.join("best").display()
            );
        }
        if crate::export::is_export(dir) {
            bail!(
                "{} is an export, not a checkpoint; export from the checkpoint it came from (its README.md names it)",
                dir.display()
            );
        }
        bail!("{} is not a sentence-mtl checkpoint (no {SPEC_FILE}); export reads the best/ or last/ folder that `sentence-mtl train` writes", dir.display());
    }
    crate::device::set_threads(args.threads, args.quiet)?;
    let loaded = checkpoint::load(&args.model, Device::Cpu, &SpecOverrides::default())?;
    // `NEW/.` is NEW: the folder is written beside its name and swapped in.
    let out: std::path::PathBuf = args.out.components().collect();
    export(&loaded, format, &out, args.force)?;
    if !args.quiet {
        crate::stderrln!(
            "exported {} as {} into {} (see its README.md)",
            args.model,
            format.name(),
            args.out.display()
        );
        let heads: Vec<&str> = loaded.spec.head_tasks().map(|t| t.name.as_str()).collect();
        if format == ExportFormat::SentenceTransformers && !heads.is_empty() {
            let noun = if heads.len() == 1 { "head" } else { "heads" };
            crate::stderrln!(
                "note: sentence-transformers models have no task heads, so this export leaves out {noun} {}; the hf and torchscript exports keep them",
                heads.join(", ")
            );
        }
    }
    Ok(())
}
