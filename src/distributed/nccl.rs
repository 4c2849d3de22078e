//! NCCL for the CUDA tensors of a data-parallel run: `csrc/nccl_shim.cpp`, built by build.rs
//! into a shared object of its own (it needs `libtorch_cuda.so`, which the binary loads only
//! when a CUDA device is asked for) and embedded in the binary. It is loaded from memory on
//! the first CUDA collective, after the CUDA backend. A build that found no CUDA headers has no
//! NCCL, and its CUDA tensors go through Gloo (`--version` says which).

use std::ffi::c_void;

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

/// Writes the embedded shim to an anonymous in-memory file and loads it from there, so the
/// binary stays one file and nothing is left on disk.
#[cfg(nccl_shim)]
fn load() -> Result<NcclEntryPoints, String> {
    use std::io::Write;
    use std::os::fd::FromRawFd;

    static SHIM: &[u8] = include_bytes!(env!("SENTENCE_MTL_NCCL_SHIM"));
    let name = c"libsmtl_nccl.so";
    // SAFETY: a NUL-terminated name; the descriptor is owned by the File below.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(SHIM).map_err(|e| format!("writing the NCCL shim to memory: {e}"))?;
    // The library stays loaded for the process, so the addresses taken from it stay valid.
    let library = crate::device::dlopen(&format!("/proc/self/fd/{fd}"), libc::RTLD_NOW | libc::RTLD_LOCAL)?;
    Ok(NcclEntryPoints {
        make_backend: library.symbol(c"smtl_nccl_backend")?,
        shutdown: library.symbol(c"smtl_nccl_shutdown")?,
    })
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
    }
}
