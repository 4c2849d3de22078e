//! Weight files into a VarStore: safetensors (HF tensor names) or rust-bert's `.ot`.
//!
//! Pickled PyTorch files (`pytorch_model.bin`, `.pt`) are refused: unpickling can run code,
//! and libtorch cannot read them anyway. Every load reports which store variables the file
//! did not provide, so callers can check that exactly the new layers are missing: a file
//! with the wrong prefix would otherwise "load" nothing and still succeed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::Tensor;

use crate::model::mapped_file::MappedFile;

/// Picks the weight file of a HF model folder: `model.safetensors`, else `rust_model.ot`.
pub fn find_weight_file(dir: &Path) -> Result<PathBuf> {
    for name in ["model.safetensors", "rust_model.ot"] {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    if dir.join("pytorch_model.bin").is_file() {
        bail!(
            "{} holds only pytorch_model.bin, a pickle file, which sentence-mtl does not load; \
             convert it once with transformers: AutoModel.from_pretrained(DIR).save_pretrained(DIR) (transformers >= 4.35 writes safetensors)",
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

/// Reads a safetensors file as tensors that are views of the mapped file
/// ([`MappedFile`]): nothing is copied or made resident until it is used. tch's reader reads
/// the whole file into a buffer and copies every tensor out of it: for all-MiniLM-L6-v2
/// (91 MB) that was 0.25 s of a 1.1 s `encode` start, and reading each tensor into its own
/// storage, which replaced it, still 60 ms.
fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let file = std::fs::File::open(path)?;
    let file_len = file.metadata()?.len();
    if file_len < 8 {
        bail!("shorter than a safetensors header");
    }
    let mapped = MappedFile::open(&file)?;
    let bytes = mapped.bytes();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    // safetensors' own limit on header size.
    if header_len > 100_000_000 || 8 + header_len > file_len {
        bail!("header length {header_len} does not fit a file of {file_len} bytes");
    }
    let data_start = 8 + header_len as usize;
    let metadata: safetensors::tensor::Metadata = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| anyhow::anyhow!("invalid safetensors header: {e}"))?;
    let mut tensors = Vec::new();
    // In file order, so that a truncated file names the tensor it ends inside.
    let mut infos: Vec<_> = metadata.tensors().into_iter().collect();
    infos.sort_by_key(|(_, info)| info.data_offsets.0);
    for (name, info) in infos {
        let kind = match info.dtype {
            safetensors::Dtype::F32 => tch::Kind::Float,
            safetensors::Dtype::F16 => tch::Kind::Half,
            safetensors::Dtype::BF16 => tch::Kind::BFloat16,
            safetensors::Dtype::F64 => tch::Kind::Double,
            safetensors::Dtype::I64 => tch::Kind::Int64,
            safetensors::Dtype::I32 => tch::Kind::Int,
            safetensors::Dtype::I16 => tch::Kind::Int16,
            safetensors::Dtype::I8 => tch::Kind::Int8,
            safetensors::Dtype::U8 => tch::Kind::Uint8,
            safetensors::Dtype::BOOL => tch::Kind::Bool,
            other => bail!("tensor {name} has dtype {other:?}, which sentence-mtl does not read"),
        };
        let (start, end) = info.data_offsets;
        let bytes = info.shape.iter().try_fold(kind.elt_size_in_bytes(), |size, &d| size.checked_mul(d));
        if end < start || Some(end - start) != bytes {
            bail!("tensor {name}: data offsets {start}..{end} do not match its shape {:?}", info.shape);
        }
        if data_start.checked_add(end).is_none_or(|end| end as u64 > file_len) {
            bail!("the file ends at byte {file_len}, inside tensor {name}");
        }
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let tensor = mapped.tensor(data_start + start, &shape, kind).with_context(|| format!("tensor {name}"))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

/// Writes tensors as safetensors with the `{"format": "pt"}` header that transformers and
/// sentence-transformers require (tch's own writer leaves the header out). Tensors may be
/// on any device; names are written in sorted order.
pub fn write_safetensors<S: AsRef<str>>(path: &Path, tensors: &[(S, &Tensor)]) -> Result<()> {
    struct Bytes {
        dtype: safetensors::Dtype,
        shape: Vec<usize>,
        data: Vec<u8>,
    }
    impl safetensors::View for Bytes {
        fn dtype(&self) -> safetensors::Dtype {
            self.dtype
        }
        fn shape(&self) -> &[usize] {
            &self.shape
        }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(&self.data)
        }
        fn data_len(&self) -> usize {
            self.data.len()
        }
    }
    let mut views = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let tensor = tensor.detach().to_device(tch::Device::Cpu).contiguous();
        let dtype = match tensor.kind() {
            tch::Kind::Float => safetensors::Dtype::F32,
            tch::Kind::Double => safetensors::Dtype::F64,
            tch::Kind::Half => safetensors::Dtype::F16,
            tch::Kind::BFloat16 => safetensors::Dtype::BF16,
            tch::Kind::Int64 => safetensors::Dtype::I64,
            tch::Kind::Int => safetensors::Dtype::I32,
            other => bail!("tensor {} has kind {other:?}, which is not saved", name.as_ref()),
        };
        let numel = tensor.numel();
        let mut data = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
        tensor
            .f_copy_data_u8(&mut data, numel)
            .map_err(|e| anyhow::anyhow!("cannot read tensor {}: {e}", name.as_ref()))?;
        let shape = tensor.size().iter().map(|&d| d as usize).collect();
        views.push((name.as_ref().to_string(), Bytes { dtype, shape, data }));
    }
    if views.is_empty() {
        // safetensors 0.3's writer makes an unreadable header without tensors.
        return write_empty_safetensors(path);
    }
    let metadata = Some(std::collections::HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::tensor::serialize_to_file(views, &metadata, path).map_err(|e| match e {
        // The crate's Display is its Debug: say the I/O error (a full disk) as the OS does.
        safetensors::SafeTensorError::IoError(io) => anyhow::anyhow!("cannot write {}: {io}", path.display()),
        other => anyhow::anyhow!("cannot write {}: {other:?}", path.display()),
    })
}

/// A safetensors file of no tensors: its 8-byte header length, then the header, padded with
/// spaces to a multiple of 8 bytes as the format's own writers pad it.
fn write_empty_safetensors(path: &Path) -> Result<()> {
    let mut header = br#"{"__metadata__":{"format":"pt"}}"#.to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Maps a HF tensor name onto the store's naming for a backbone whose prefix is `prefix`
/// (`distilbert` or `bert`): bare `AutoModel` saves lack the prefix, and old BERT files
/// name LayerNorm parameters `gamma`/`beta`.
pub fn canonical_name(name: &str, prefix: &str) -> String {
    let name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias");
    const BACKBONE_TOP_LEVEL: &[&str] = &["embeddings.", "encoder.", "transformer.", "pooler."];
    if BACKBONE_TOP_LEVEL.iter().any(|top| name.starts_with(top)) {
        format!("{prefix}.{name}")
    } else {
        name
    }
}

/// How a weight file's tensors fit a model's list of tensors.
#[derive(Debug, Default)]
pub struct MatchedTensors {
    /// File tensors under the model's names, with the model's shapes.
    pub found: BTreeMap<String, Tensor>,
    /// Model tensors the file lacks.
    pub missing: Vec<String>,
    /// File tensors the model has no use for, e.g. BERT's pooler.
    pub unused: Vec<(String, Tensor)>,
}

/// Matches a file's tensors against the model's `name → shape` list under their canonical
/// names. Shapes must agree exactly; all mismatches are reported together, naming `file`
/// (the weight file, as messages show it).
pub fn match_tensors(
    file: &str,
    tensors: BTreeMap<String, Tensor>,
    expected: &BTreeMap<String, Vec<i64>>,
    prefix: &str,
) -> Result<MatchedTensors> {
    let mut matched = MatchedTensors::default();
    let mut mismatches = Vec::new();
    for (name, tensor) in tensors {
        let canonical = canonical_name(&name, prefix);
        match expected.get(&canonical) {
            None => matched.unused.push((canonical, tensor)),
            Some(shape) if *shape != tensor.size() => {
                mismatches.push(format!("{canonical}: file {:?}, model {shape:?}", tensor.size()))
            }
            // Every weight the model computes with is floating point.
            Some(_) if !tensor.is_floating_point() => {
                mismatches.push(format!("{canonical}: file {:?} numbers, model floating point", tensor.kind()))
            }
            Some(_) => {
                matched.found.insert(canonical, tensor);
            }
        }
    }
    if !mismatches.is_empty() {
        bail!("{file} does not fit the model's configuration; mismatches: {}", mismatches.join("; "));
    }
    matched.missing = expected.keys().filter(|name| !matched.found.contains_key(*name)).cloned().collect();
    Ok(matched)
}

/// Copies the file's tensors into the store's variables of the same (canonical) name
/// (see [`match_tensors`]); dtypes are converted to the store's (an fp16 file loads into fp32
/// variables). Returns the store variables the file lacked and the file tensors left over.
pub fn load_into(
    vs: &VarStore,
    file: &Path,
    tensors: BTreeMap<String, Tensor>,
    prefix: &str,
) -> Result<MatchedTensors> {
    let variables = vs.variables();
    let expected = variables.iter().map(|(name, t)| (name.clone(), t.size())).collect();
    let matched = match_tensors(&file.display().to_string(), tensors, &expected, prefix)?;
    for (name, source) in &matched.found {
        let mut target = variables[name].shallow_clone();
        tch::no_grad(|| target.f_copy_(source))
            .with_context(|| format!("cannot copy tensor {name} from {}", file.display()))?;
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of no tensors (an hf export without heads or projection) reads back empty.
    #[test]
    fn a_file_of_no_tensors_is_valid_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heads.safetensors");
        write_safetensors::<&str>(&path, &[]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() % 8, 0);
        let parsed = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(parsed.tensors().is_empty());
        assert!(read_safetensors(&path).unwrap().is_empty());
    }

    #[test]
    fn canonical_names_add_prefix_and_fix_layer_norm() {
        assert_eq!(
            canonical_name("embeddings.word_embeddings.weight", "bert"),
            "bert.embeddings.word_embeddings.weight"
        );
        assert_eq!(
            canonical_name("bert.encoder.layer.0.output.LayerNorm.gamma", "bert"),
            "bert.encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(
            canonical_name("transformer.layer.1.ffn.lin1.bias", "distilbert"),
            "distilbert.transformer.layer.1.ffn.lin1.bias"
        );
        assert_eq!(
            canonical_name("distilbert.embeddings.LayerNorm.weight", "distilbert"),
            "distilbert.embeddings.LayerNorm.weight"
        );
        assert_eq!(canonical_name("heads.trec.weight", "bert"), "heads.trec.weight");
    }

    #[test]
    fn written_files_carry_the_pt_format_header_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0]).view([2, 2]);
        let b = Tensor::from_slice(&[7i64]);
        write_safetensors(&path, &[("a", &a), ("b", &b)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
        assert!(header.contains(r#""__metadata__":{"format":"pt"}"#), "{header}");
        let back = read_weight_file(&path).unwrap();
        assert!(back["a"].equal(&a) && back["b"].equal(&b));
    }

    #[test]
    fn reads_what_tchs_own_reader_reads_in_every_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let base = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.0, 7.0, -0.5]).view([2, 3]);
        let tensors = [
            ("f32", base.shallow_clone()),
            ("f16", base.to_kind(tch::Kind::Half)),
            ("bf16", base.to_kind(tch::Kind::BFloat16)),
            ("i64", Tensor::from_slice(&[7i64, -1])),
            ("empty", Tensor::zeros([0, 4], (tch::Kind::Float, tch::Device::Cpu))),
        ];
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
        write_safetensors(&path, &refs).unwrap();
        let ours = read_weight_file(&path).unwrap();
        let theirs: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
        assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());
        for (name, t) in &ours {
            assert_eq!(t.kind(), theirs[name].kind(), "{name}");
            assert!(t.equal(&theirs[name]), "{name}: {t} vs {}", theirs[name]);
        }
    }

    #[test]
    fn offsets_beyond_the_file_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let header = br#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]); // half of the tensor's 16 bytes
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", read_weight_file(&path).unwrap_err());
        assert!(err.contains("cannot read weights") && err.contains("tensor a"), "{err}");
    }

    #[test]
    fn a_shape_too_large_for_memory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let write = |header: &[u8]| {
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header);
            bytes.extend_from_slice(&[0u8; 16]);
            std::fs::write(&path, bytes).unwrap();
            format!("{:#}", read_weight_file(&path).unwrap_err())
        };
        let err = write(br#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#);
        assert!(err.contains("tensor a: data offsets 0..16 do not match its shape"), "{err}");
        let far = br#"{"a":{"dtype":"U8","shape":[16],"data_offsets":[18446744073709551599,18446744073709551615]}}"#;
        let err = write(far);
        assert!(err.contains("the file ends at byte") && err.contains("inside tensor a"), "{err}");
    }

    #[test]
    fn refuses_pickle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"not loaded").unwrap();
        let err = find_weight_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pickle"), "{err}");
        let err = read_weight_file(&dir.path().join("pytorch_model.bin")).unwrap_err().to_string();
        assert!(err.contains("pickle"), "{err}");
    }

    #[test]
    fn truncated_safetensors_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        // Names out of file order, so that hash-map order would pick another tensor.
        let tensors: Vec<(String, &Tensor)> = (0..8).map(|i| (format!("t{}", (i * 5) % 8), &t)).collect();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), *t)).collect();
        write_safetensors(&path, &refs).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // Cut inside the third tensor's data: 2 whole tensors of 12 bytes, then 4 bytes of it.
        let data_start = bytes.len() - 8 * 12;
        std::fs::write(&path, &bytes[..data_start + 2 * 12 + 4]).unwrap();
        let third = {
            let header: serde_json::Value = serde_json::from_slice(&bytes[8..data_start]).unwrap();
            let object = header.as_object().unwrap();
            object.iter().find(|(_, v)| v["data_offsets"][0] == 24).map(|(k, _)| k.clone()).unwrap()
        };
        for _ in 0..3 {
            let err = format!("{:#}", read_weight_file(&path).unwrap_err());
            assert!(err.contains("cannot read weights") && err.contains(&format!("inside tensor {third}")), "{err}");
        }
    }

    #[test]
    fn load_reports_missing_unused_and_shape_errors() {
        let vs = VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let _w = root.sub("bert").sub("embeddings").zeros("w", &[2]);
        let _h = root.sub("heads").zeros("b", &[3]);
        let file = Path::new("x.safetensors");
        let tensors = BTreeMap::from([
            ("embeddings.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0])),
            ("pooler.dense.weight".to_string(), Tensor::from_slice(&[0.0f32])),
        ]);
        let report = load_into(&vs, file, tensors, "bert").unwrap();
        assert_eq!(report.found.len(), 1);
        assert_eq!(report.missing, vec!["heads.b".to_string()]);
        let unused: Vec<&str> = report.unused.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(unused, vec!["bert.pooler.dense.weight"]);
        assert_eq!(Vec::<f32>::try_from(&vs.variables()["bert.embeddings.w"]).unwrap(), vec![1.0, 2.0]);

        let wrong = BTreeMap::from([("embeddings.w".to_string(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))]);
        let err = load_into(&vs, file, wrong, "bert").unwrap_err().to_string();
        assert!(err.contains("mismatches: ") && err.contains("bert.embeddings.w"), "{err}");
        let integers = BTreeMap::from([("embeddings.w".to_string(), Tensor::from_slice(&[1i64, 2]))]);
        let err = load_into(&vs, file, integers, "bert").unwrap_err().to_string();
        assert!(err.contains("bert.embeddings.w: file Int64 numbers, model floating point"), "{err}");
    }
}
