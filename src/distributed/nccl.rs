//! NCCL for the CUDA tensors of a data-parallel run: `csrc/nccl_shim.cpp`, built by build.rs
//! into a shared object of its own (it needs `libtorch_cuda.so`, which the binary loads only
//! when a CUDA device is asked for) and embedded in the binary. It is loaded from memory on
//! the first CUDA collective, after the CUDA backend. A build that found no CUDA headers has no
//! NCCL, and its CUDA tensors go through Gloo (`--version` says which).

use std::ffi::c_void;

#[cfg(nccl_shim)]
use crate::scratch_file::ScratchFile;

/// The shim's two entry points: make a NCCL backend, and shut one down.
#[derive(Clone, Copy)]
pub struct NcclEntryPoints {
    pub make_backend: *mut c_void,
    pub shutdown: *mut c_void,
}

// SAFETY: two function addresses in a library that stays loaded for the process.
unsafe impl Send for NcclEntryPoints {}
// SAFETY: as above; they are only read.
unsafe impl Sync for NcclEntryPoints {}

/// The NCCL shim's entry points, loaded once per process: `Ok(None)` in a build without
/// NCCL, an error (dlerror's text) when the shim would not load.
#[cfg(nccl_shim)]
pub fn entry_points() -> Result<Option<NcclEntryPoints>, String> {
    use std::sync::OnceLock;
    static LOADED: OnceLock<Result<NcclEntryPoints, String>> = OnceLock::new();
    LOADED.get_or_init(load).clone().map(Some)
}

#[cfg(not(nccl_shim))]
pub fn entry_points() -> Result<Option<NcclEntryPoints>, String> {
    Ok(None)
}

#[cfg(nccl_shim)]
static SHIM: &[u8] = include_bytes!(env!("SENTENCE_MTL_NCCL_SHIM"));

/// Loads the embedded shim from an anonymous in-memory file, so the binary stays one file and
/// nothing is left on disk; where that fails (no memfd, no /proc, or a sandbox that will not
/// map such a file), from a temporary file removed once loaded.
#[cfg(nccl_shim)]
fn load() -> Result<NcclEntryPoints, String> {
    let library = match load_from_memory() {
        Ok(library) => library,
        Err(in_memory) => load_from_temporary_file()
            .map_err(|on_disk| format!("from memory: {in_memory}; from a temporary file: {on_disk}"))?,
    };
    // The library stays loaded for the process, so the addresses taken from it stay valid.
    Ok(NcclEntryPoints {
        make_backend: library.symbol(c"smtl_nccl_backend")?,
        shutdown: library.symbol(c"smtl_nccl_shutdown")?,
    })
}

#[cfg(nccl_shim)]
fn load_from_memory() -> Result<crate::device::Library, String> {
    let file = ScratchFile::in_memory(c"libsmtl_nccl.so").ok_or("no memfd_create or no /proc")?;
    load_from(&file)
}

/// A mapped library outlives its file, so the file goes as soon as it is loaded (or not).
#[cfg(nccl_shim)]
fn load_from_temporary_file() -> Result<crate::device::Library, String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!("libsmtl_nccl-{}-{nanos}.so", std::process::id()));
    // Created here, so that only a file this call created is removed.
    (std::fs::OpenOptions::new().write(true).create_new(true).open(&path))
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    load_from(&ScratchFile::OnDisk(path))
}

/// Writes the embedded shim to `file` and loads it from there.
#[cfg(nccl_shim)]
fn load_from(file: &ScratchFile) -> Result<crate::device::Library, String> {
    let path = file.path();
    std::fs::write(&path, SHIM).map_err(|e| format!("writing the NCCL shim to {}: {e}", path.display()))?;
    crate::device::dlopen(&path.to_string_lossy(), libc::RTLD_NOW | libc::RTLD_LOCAL)
}

#[cfg(all(test, nccl_shim))]
mod tests {
    use super::*;

    /// The embedded shim resolves every symbol it needs from this build's libtorch (loaded
    /// with RTLD_NOW): what would break first if it were built against other headers. No GPU
    /// is needed to load the libraries.
    #[test]
    fn the_embedded_nccl_shim_loads_beside_libtorch_cuda() {
        let cuda = format!("{}/libtorch_cuda.so", env!("SENTENCE_MTL_TORCH_LIB_DIR"));
        crate::device::dlopen(&cuda, libc::RTLD_NOW | libc::RTLD_GLOBAL).expect("libtorch_cuda.so loads");
        let entry = entry_points().expect("the NCCL shim loads").expect("this build has NCCL");
        assert!(!entry.make_backend.is_null() && !entry.shutdown.is_null());
        // The way taken where a file in memory cannot be mapped.
        let library = load_from_temporary_file().expect("the NCCL shim loads from a temporary file");
        assert!(!library.symbol(c"smtl_nccl_backend").unwrap().is_null());
    }
}
