//! A file for this process's own use, gone once dropped: in memory (`memfd_create`, reached
//! by path as `/proc/self/fd/N`) where the system allows, else on disk.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

pub enum ScratchFile {
    InMemory(OwnedFd),
    /// Removed when dropped: a path the caller created, or that its first writer creates.
    OnDisk(PathBuf),
}

impl ScratchFile {
    /// A file in memory named `name` (as `/proc/self/fd` lists it); `None` without memfd or /proc.
    pub fn in_memory(name: &CStr) -> Option<Self> {
        // SAFETY: a NUL-terminated name; the returned descriptor is checked before use.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a new descriptor this process owns alone.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Path::new("/proc/self/fd").is_dir().then_some(Self::InMemory(owned))
    }

    /// In memory, else on disk at `fallback`.
    pub fn in_memory_or(name: &CStr, fallback: PathBuf) -> Self {
        Self::in_memory(name).unwrap_or(Self::OnDisk(fallback))
    }

    pub fn path(&self) -> PathBuf {
        match self {
            Self::InMemory(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()).into(),
            Self::OnDisk(path) => path.clone(),
        }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        if let Self::OnDisk(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
