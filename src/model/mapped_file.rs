//! A file mapped into memory, and CPU tensors that are views of its bytes.
//!
//! Why map instead of read: a command that encodes a few sentences touches a few rows of the
//! word-embedding table, and a mapped tensor costs nothing until its pages are touched, which
//! then come straight from the page cache (measured in docs/benchmarks.md).
//!
//! The mapping is private and writable: a tensor changed in place changes memory, never the
//! file. Every tensor's storage holds a reference to the mapping, which is unmapped when the
//! last of them is freed. As with every mmap reader (safetensors, candle), a file that
//! another program truncates in place while it is mapped makes the next access to the lost
//! pages fail with SIGBUS; sentence-mtl itself replaces files only by renaming new ones in.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::torch_shim;

pub struct MappedFile {
    address: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; it is only unmapped on drop.
unsafe impl Send for MappedFile {}
// SAFETY: as for Send; shared access only reads the address and length.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps all of `file`; where the file system cannot map files, reads it into anonymous
    /// memory instead, which behaves the same from here on.
    pub fn open(file: &File) -> Result<Arc<Self>> {
        let len = usize::try_from(file.metadata()?.len()).context("file too large to map")?;
        if len == 0 {
            bail!("the file is empty");
        }
        let flags = libc::MAP_PRIVATE;
        let protection = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new private mapping of an open file; nothing else refers to the range.
        let address = unsafe { libc::mmap(std::ptr::null_mut(), len, protection, flags, file.as_raw_fd(), 0) };
        if address != libc::MAP_FAILED {
            return Ok(Arc::new(Self { address: NonNull::new(address as *mut u8).expect("mmap"), len }));
        }
        Self::read(file, len)
    }

    fn read(file: &File, len: usize) -> Result<Arc<Self>> {
        use std::os::unix::fs::FileExt;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let protection = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a new anonymous mapping; nothing else refers to the range.
        let address = unsafe { libc::mmap(std::ptr::null_mut(), len, protection, flags, -1, 0) };
        if address == libc::MAP_FAILED {
            bail!("cannot map or allocate {len} bytes: {}", std::io::Error::last_os_error());
        }
        let mapped = Arc::new(Self { address: NonNull::new(address as *mut u8).expect("mmap"), len });
        // SAFETY: the whole fresh mapping, written only here (nothing else holds it yet).
        let bytes = unsafe { std::slice::from_raw_parts_mut(mapped.address.as_ptr(), len) };
        file.read_exact_at(bytes, 0)?;
        Ok(mapped)
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes long and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.address.as_ptr(), self.len) }
    }

    /// A contiguous CPU tensor of `shape` and `kind` over bytes `offset..` of the file. It is a
    /// view when the bytes sit at an address aligned for `kind` (every tensor of files that
    /// transformers writes), otherwise a copy.
    pub fn tensor(self: &Arc<Self>, offset: usize, shape: &[i64], kind: Kind) -> Result<Tensor> {
        let bytes = shape
            .iter()
            .try_fold(kind.elt_size_in_bytes(), |size, &d| usize::try_from(d).ok().and_then(|d| size.checked_mul(d)))
            .with_context(|| format!("shape {shape:?} is negative or too large"))?;
        let end = offset.checked_add(bytes).filter(|&end| end <= self.len);
        if end.is_none() {
            bail!("bytes {offset}..{offset}+{bytes} lie outside the file ({} bytes)", self.len);
        }
        if bytes == 0 {
            return Ok(Tensor::empty(shape, (kind, Device::Cpu)));
        }
        // SAFETY: in bounds, checked above.
        let data = unsafe { self.address.as_ptr().add(offset) };
        if !(data as usize).is_multiple_of(kind.elt_size_in_bytes()) {
            let tensor = Tensor::empty(shape, (kind, Device::Cpu));
            // SAFETY: a new contiguous tensor owns exactly `bytes` bytes at `data_ptr`; the
            // source range is in bounds and cannot overlap fresh memory.
            unsafe { std::ptr::copy_nonoverlapping(data, tensor.data_ptr() as *mut u8, bytes) };
            return Ok(tensor);
        }
        // SAFETY: `data..data + bytes` lies in the mapping, aligned for `kind`. The view does
        // not own it; the tensor made from it below holds a reference to the mapping, passed
        // to it with `context`, that keeps the memory mapped until libtorch frees its storage.
        unsafe {
            let view = Tensor::f_from_blob(data, shape, &[], kind, Device::Cpu)?;
            let context = Arc::into_raw(Arc::clone(self)) as *mut libc::c_void;
            torch_shim::tensor_with_release(&view, release_reference, context)
        }
    }
}

/// Storage destructor of mapped tensors: drops the reference given to that tensor.
extern "C" fn release_reference(context: *mut libc::c_void) {
    // SAFETY: `context` came from `Arc::into_raw` in `MappedFile::tensor`, and libtorch calls
    // this once per tensor storage.
    drop(unsafe { Arc::from_raw(context as *const MappedFile) });
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `open`/`read` and no tensor refers to it any more.
        unsafe { libc::munmap(self.address.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(bytes: &[u8]) -> (tempfile::TempDir, Arc<MappedFile>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mapped = MappedFile::open(&file).unwrap();
        (dir, mapped)
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn tensors_keep_the_mapping_alive_and_release_it() {
        let (_dir, mapped) = mapped(&f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let a = mapped.tensor(0, &[2, 2], Kind::Float).unwrap();
        let b = mapped.tensor(16, &[2], Kind::Float).unwrap();
        assert_eq!(Arc::strong_count(&mapped), 3);
        assert_eq!(Vec::<f32>::try_from(a.flatten(0, -1)).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let weak = Arc::downgrade(&mapped);
        drop(mapped);
        // The tensors still read the mapped bytes after the last Rust reference is gone.
        assert_eq!(Vec::<f32>::try_from(&b).unwrap(), vec![5.0, 6.0]);
        let shared = a.shallow_clone();
        drop(a);
        assert!(weak.upgrade().is_some(), "a tensor sharing the storage still needs the mapping");
        drop((b, shared));
        assert!(weak.upgrade().is_none(), "the mapping outlived its last tensor");
    }

    #[test]
    fn writes_change_memory_not_the_file() {
        let (dir, mapped) = mapped(&f32_bytes(&[1.0, 2.0]));
        let mut t = mapped.tensor(0, &[2], Kind::Float).unwrap();
        let _ = t.fill_(9.0);
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![9.0, 9.0]);
        assert_eq!(std::fs::read(dir.path().join("data")).unwrap(), f32_bytes(&[1.0, 2.0]));
    }

    #[test]
    fn reading_instead_of_mapping_gives_the_same_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, f32_bytes(&[3.0, 4.0])).unwrap();
        let read = MappedFile::read(&File::open(&path).unwrap(), 8).unwrap();
        assert_eq!(Vec::<f32>::try_from(read.tensor(0, &[2], Kind::Float).unwrap()).unwrap(), vec![3.0, 4.0]);
    }

    #[test]
    fn misaligned_bytes_are_copied_and_bounds_checked() {
        let mut bytes = vec![7u8];
        bytes.extend(f32_bytes(&[1.5, -2.5]));
        let (_dir, mapped) = mapped(&bytes);
        let t = mapped.tensor(1, &[2], Kind::Float).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, -2.5]);
        assert_eq!(Arc::strong_count(&mapped), 1, "a copy holds no reference");
        let err = mapped.tensor(1, &[3], Kind::Float).unwrap_err().to_string();
        assert!(err.contains("outside the file"), "{err}");
        assert_eq!(mapped.tensor(9, &[0, 4], Kind::Float).unwrap().size(), vec![0, 4]);
        let err = mapped.tensor(0, &[1 << 62, 8], Kind::Float).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
    }
}
