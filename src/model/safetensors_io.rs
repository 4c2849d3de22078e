//! Safetensors files read as views of the mapped file and written with the header
//! transformers and sentence-transformers require.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::model::mapped_file::MappedFile;

/// Reads a safetensors file as tensors that are views of the mapped file
/// ([`MappedFile`]): nothing is copied or made resident until it is used. tch's reader reads
/// the whole file into a buffer and copies every tensor out of it: for all-MiniLM-L6-v2
/// (91 MB) that was 0.25 s of a 1.1 s `encode` start, and reading each tensor into its own
/// storage, which replaced it, still 60 ms.
pub(crate) fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::model::weights::read_weight_file;

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
}
