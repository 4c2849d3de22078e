//! `--device auto|cpu|cuda[:N]` and `--threads`, resolved against what this machine has.
//!
//! The binary is linked against libtorch's CPU library only; libtorch's CUDA backend
//! (`libtorch_cuda.so`, most of the wheel) is loaded from the torch wheel when a CUDA device is
//! asked for and the machine has an NVIDIA driver, so CPU runs start faster and use less
//! memory (docs/building.md).

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

/// Where build.rs found the wheel's libtorch libraries (the binary's rpath).
const TORCH_LIB_DIR: &str = env!("SENTENCE_MTL_TORCH_LIB_DIR");

/// The folder of the `libtorch_cpu.so` this process runs on, where the CUDA backend that
/// matches it lives: `LD_LIBRARY_PATH` comes before the rpath, so a binary copied to a machine
/// whose torch wheel is elsewhere runs on that wheel, and must load that wheel's CUDA backend.
/// The build's folder when `/proc/self/maps` does not say.
fn torch_lib_dir() -> PathBuf {
    std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| folder_of_mapped(&maps, "libtorch_cpu.so"))
        .unwrap_or_else(|| PathBuf::from(TORCH_LIB_DIR))
}

/// The folder of the first file named `library` in a `/proc/PID/maps` listing (the path is
/// its sixth field, and may hold spaces).
fn folder_of_mapped(maps: &str, library: &str) -> Option<PathBuf> {
    maps.lines()
        .filter_map(|line| line.splitn(6, ' ').nth(5).map(str::trim_start))
        .map(Path::new)
        .find(|path| path.file_name().is_some_and(|name| name == library))
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

/// Whether libtorch can use a CUDA device, loading its CUDA backend on first call.
pub fn cuda_is_usable() -> bool {
    // After a failed load, still ask libtorch: a build linked against CUDA has it already.
    !matches!(cuda_backend(), Backend::NoDriver) && tch::Cuda::is_available()
}

/// What loading libtorch's CUDA backend gave, found once per process.
enum Backend {
    /// No NVIDIA driver (`libcuda.so.1`): no GPU to use.
    NoDriver,
    /// A driver, but `libtorch_cuda.so` or one of its libraries would not load: why, from dlerror.
    Failed(String),
    Loaded,
}

fn cuda_backend() -> &'static Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        // Without the driver library there is no GPU to use: skip loading the CUDA backend.
        if dlopen("libcuda.so.1", libc::RTLD_LAZY).is_err() {
            return Backend::NoDriver;
        }
        let backend = torch_lib_dir().join("libtorch_cuda.so");
        // Already linked (LIBTORCH_USE_PYTORCH builds) or loadable now: either way its
        // static initialisers register the CUDA kernels with libtorch's dispatcher.
        match dlopen(&backend.to_string_lossy(), libc::RTLD_NOW | libc::RTLD_GLOBAL) {
            Ok(_) => Backend::Loaded,
            Err(why) => Backend::Failed(why),
        }
    })
}

/// A shared library loaded for the rest of the process (its handle is never closed).
pub struct Library(*mut libc::c_void);

/// Loads a shared library for the rest of the process; the error is dlerror's text.
pub fn dlopen(library: &str, flags: libc::c_int) -> Result<Library, String> {
    let name = CString::new(library).map_err(|_| format!("{library}: NUL in the path"))?;
    // SAFETY: `name` is a valid NUL-terminated string; the handle is kept for the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), flags) };
    if handle.is_null() {
        return Err(dlerror().unwrap_or_else(|| format!("{library}: could not be loaded")));
    }
    Ok(Library(handle))
}

impl Library {
    /// The address of `symbol`, valid for the process; the error is dlerror's text.
    pub fn symbol(&self, symbol: &std::ffi::CStr) -> Result<*mut libc::c_void, String> {
        // SAFETY: a handle from dlopen, never closed, and a NUL-terminated name.
        let address = unsafe { libc::dlsym(self.0, symbol.as_ptr()) };
        if address.is_null() {
            return Err(dlerror().unwrap_or_else(|| format!("no symbol {}", symbol.to_string_lossy())));
        }
        Ok(address)
    }
}

/// The last dl* error on this thread, copied (its string is valid only until the next dl* call).
fn dlerror() -> Option<String> {
    // SAFETY: dlerror returns null or a NUL-terminated string, copied at once.
    unsafe {
        let why = libc::dlerror();
        (!why.is_null()).then(|| std::ffi::CStr::from_ptr(why).to_string_lossy().into_owned())
    }
}

/// `--device`: what the user asked for, before checking what the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum DeviceChoice {
    /// The first CUDA device when one is usable, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "cpu" => Self::Cpu,
            "cuda" => Self::Cuda(0),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => Self::Cuda(index),
                _ => bail!("unknown --device '{other}' (expected auto, cpu, cuda or cuda:N)"),
            },
        })
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl From<DeviceChoice> for String {
    fn from(choice: DeviceChoice) -> String {
        choice.to_string()
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl DeviceChoice {
    /// The device this choice means on this machine; an error if it does not exist. `auto`
    /// on a machine whose NVIDIA driver libtorch cannot use says why it runs on the CPU,
    /// unless `quiet`: a GPU user would otherwise train for hours on the CPU unaware.
    pub fn resolve(self, quiet: bool) -> Result<Device> {
        let cuda_count = || if cuda_is_usable() { tch::Cuda::device_count() } else { 0 };
        match self {
            Self::Auto if cuda_is_usable() => Ok(Device::Cuda(0)),
            Self::Auto => {
                match unusable_driver() {
                    Some(why) if !quiet && !gpus_hidden() => {
                        crate::stderrln!("note: --device auto runs on the CPU: {why}")
                    }
                    _ => {}
                }
                Ok(Device::Cpu)
            }
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(index) => cuda_device(index, cuda_count()),
        }
    }
}

/// Whether the user hid every GPU on purpose (`CUDA_VISIBLE_DEVICES` empty or -1), which
/// needs no note that `auto` runs on the CPU.
fn gpus_hidden() -> bool {
    std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| v.trim().is_empty() || v.trim().starts_with("-1"))
}

/// `, CUDA_VISIBLE_DEVICES="..."` when it is set (quoted: an empty one hides every GPU), for
/// messages about the devices a process sees; empty when it is not set.
pub fn visible_devices_shown() -> String {
    std::env::var("CUDA_VISIBLE_DEVICES").map_or(String::new(), |v| format!(", CUDA_VISIBLE_DEVICES={v:?}"))
}

/// Why CUDA is unusable on a machine with an NVIDIA driver; `None` without a driver (or
/// where CUDA is usable).
fn unusable_driver() -> Option<String> {
    match cuda_backend() {
        Backend::NoDriver => None,
        Backend::Failed(why) => {
            Some(format!("this machine has an NVIDIA driver, but libtorch's CUDA backend did not load: {why}"))
        }
        Backend::Loaded if tch::Cuda::is_available() => None,
        Backend::Loaded => {
            Some(format!(
                "this machine has an NVIDIA driver, but libtorch sees no CUDA device (a driver older than this build's CUDA needs, or no device visible{})",
                visible_devices_shown()
            ))
        }
    }
}

fn cuda_device(index: usize, available: i64) -> Result<Device> {
    if available == 0 {
        let asked = if index == 0 { "cuda".to_string() } else { format!("cuda:{index}") };
        match unusable_driver() {
            Some(why) => bail!("--device {asked}: {why}"),
            None => bail!("--device {asked}: no CUDA device is available on this machine (use --device cpu or auto)"),
        }
    }
    if index >= available as usize {
        bail!("--device cuda:{index}: this machine has {available} CUDA device(s), numbered from 0");
    }
    Ok(Device::Cuda(index))
}

/// The most `--threads` accepted.
const MAX_THREADS: usize = 1024;

/// Sets libtorch's intra-op thread count when asked; libtorch's default is one per core.
/// More threads than cores is allowed, with a note unless `quiet`.
pub fn set_threads(threads: Option<usize>, quiet: bool) -> Result<()> {
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        // libtorch starts every thread it is given, each with its own stack.
        Some(n) if n > MAX_THREADS => {
            bail!("--threads {n} is more threads than any machine runs usefully; give at most {MAX_THREADS}")
        }
        Some(n) => {
            tch::set_num_threads(n as i32);
            let cores = std::thread::available_parallelism().map_or(n, |c| c.get());
            match oversubscription_note(n, cores) {
                Some(note) if !quiet => crate::stderrln!("{note}"),
                _ => {}
            }
        }
        None => {}
    }
    Ok(())
}

/// Threads beyond the cores take turns on them, and libtorch's matmuls wait for the slowest.
fn oversubscription_note(threads: usize, cores: usize) -> Option<String> {
    (threads > cores).then(|| {
        format!(
            "note: --threads {threads} is more than the {} this process may use; the extra threads slow libtorch down rather than speed it up",
            crate::report::table::count(cores, "core")
        )
    })
}

/// A short human description, e.g. `cpu (2 threads)` or `cuda:0`.
pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({})", crate::report::table::count(tch::get_num_threads() as usize, "thread")),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// A host tensor made for `device`: on a GPU copied from pinned memory without waiting, as
/// PyTorch's `pin_memory=True` loaders with `non_blocking=True` copies do (a plain copy from
/// pageable memory makes the host wait for the GPU's queue to drain, every batch); elsewhere
/// the tensor itself.
pub fn upload(host: Tensor, device: Device) -> Tensor {
    match device {
        // `_pin_memory`: tch's `pin_memory` always names the device, which torch 2.5 and
        // later deprecate with two warnings on stderr per call (`host` is never pinned yet,
        // so `pin_memory`'s own check would add nothing).
        Device::Cuda(_) => host.internal_pin_memory(device).to_device_(device, host.kind(), true, false),
        _ => host.to_device(device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path is the sixth field, after padding, and may hold spaces; lines without a path
    /// and files of a similar name are passed over.
    #[test]
    fn finds_the_folder_of_a_mapped_library() {
        let maps = "\
7f00-7f01 r--p 00000000 00:00 0                          [heap]
7f01-7f02 r--p 00000000 00:00 0
7f02-7f03 r-xp 00000000 08:01 42                         /opt/old torch/lib/libtorch_cpu.so.bak
7f03-7f04 r-xp 00000000 08:01 43                         /opt/my torch/lib/libtorch_cpu.so
";
        assert_eq!(folder_of_mapped(maps, "libtorch_cpu.so"), Some(PathBuf::from("/opt/my torch/lib")));
        assert_eq!(folder_of_mapped(maps, "libtorch_cuda.so"), None);
    }

    /// This test binary links libtorch_cpu.so, so the folder is found where it was loaded.
    #[test]
    fn the_torch_folder_is_the_loaded_one() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let found = folder_of_mapped(&maps, "libtorch_cpu.so").expect("libtorch_cpu.so is mapped");
        assert!(found.join("libtorch_cpu.so").is_file(), "{}", found.display());
        assert_eq!(torch_lib_dir(), found);
    }

    #[test]
    fn notes_more_threads_than_cores() {
        assert_eq!(oversubscription_note(2, 2), None);
        let note = oversubscription_note(8, 2).unwrap();
        assert!(note.contains("--threads 8 is more than the 2 cores"), "{note}");
    }

    #[test]
    fn parses_known_devices() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap().resolve(true).unwrap(), Device::Cpu);
        assert!("auto".parse::<DeviceChoice>().unwrap().resolve(true).is_ok());
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap().to_string(), "cuda:0");
    }

    #[test]
    fn rejects_unknown_device_by_name() {
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert_eq!(err, "unknown --device 'tpu' (expected auto, cpu, cuda or cuda:N)");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[test]
    fn cuda_without_gpu_is_an_error() {
        if cuda_is_usable() {
            crate::test_skipped("cuda_without_gpu_is_an_error", "this machine has a GPU");
            return;
        }
        let err = DeviceChoice::Cuda(0).resolve(true).unwrap_err().to_string();
        assert!(err.contains("no CUDA device"), "{err}");
    }
}
