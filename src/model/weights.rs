//! A model folder's weight file, found and read: safetensors (HF tensor names) or rust-bert's
//! `.ot`. Pickled PyTorch files (`pytorch_model.bin`, `.pt`) are refused: unpickling can run
//! code, and libtorch cannot read them anyway. Matching the tensors against a model is
//! `tensor_matching`'s; the safetensors format itself, `safetensors_io`'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::model::safetensors_io::read_safetensors;

/// Picks the weight file of a HF model folder: `model.safetensors`, else `rust_model.ot`.
pub fn find_weight_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "rust_model.ot"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
        if let Some(target) = crate::model::source::dangling_link(&path) {
            bail!("{}", crate::model::source::dangling_file_message(&path, &target));
        }
    }
    if dir.join("pytorch_model.bin").is_file() {
        // transformers cannot load a sentence-transformers module (a Dense layer's folder):
        // sentence-transformers converts those.
        let transformers_folder =
            std::fs::read_to_string(dir.join("config.json")).is_ok_and(|c| c.contains("\"model_type\""));
        let convert = match transformers_folder {
            true => "with transformers: AutoModel.from_pretrained(DIR).save_pretrained(DIR) (transformers >= 4.35 writes safetensors)",
            false => "with sentence-transformers: SentenceTransformer(MODEL).save(MODEL), MODEL being the folder this module belongs to (it writes model.safetensors in every module)",
        };
        bail!(
            "{} holds only pytorch_model.bin, a pickle file, which sentence-mtl does not load; convert it once {convert}",
            dir.display()
        );
    }
    bail!("no model.safetensors or rust_model.ot in {}", dir.display());
}

/// Reads all tensors of a weight file, keyed by the names stored in it.
pub fn read_weight_file(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensors = match extension {
        "safetensors" => read_safetensors(path),
        "ot" => Tensor::load_multi(path).map_err(|e| anyhow::anyhow!("{e}")),
        "bin" | "pt" | "pth" | "pkl" => {
            bail!("{} is a pickle file, which sentence-mtl does not load (use safetensors)", path.display())
        }
        _ => bail!("{}: unknown weight format (expected .safetensors or .ot)", path.display()),
    }
    .with_context(|| format!("cannot read weights {} (missing, truncated or corrupt?)", path.display()))?;
    Ok(tensors.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_pickle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
        let err = find_weight_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pickle"), "{err}");
        let err = read_weight_file(&dir.path().join("pytorch_model.bin")).unwrap_err().to_string();
        assert!(err.contains("pickle"), "{err}");
    }
}
