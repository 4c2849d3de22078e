//! `--precision`: the forward pass in fp32, or in bf16 on CUDA and on CPUs with bf16
//! instructions (AVX-512 BF16 or AMX), where oneDNN runs bf16 matmuls: training under
//! autocast with fp32 master weights, as `torch.autocast` does; inference with the
//! transformer blocks' weights in bf16 (`model::loaded::blocks_in_bf16`). `auto` picks per
//! device.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
    /// The faster of the two that the device runs well: see [`Precision::resolve`].
    Auto,
}

crate::value_names!(Precision, "--precision", [Fp32 => "fp32", Bf16 => "bf16", Auto => "auto"]);

impl Precision {
    /// The precision to run on `device`: `bf16` needs CUDA or a CPU with bf16 instructions
    /// (an error names what is missing); `auto` is bf16 on such a CPU, fp32 elsewhere (on the
    /// GPU, bf16 was slower than fp32 at the default batch: docs/gpu.md).
    pub fn resolve(self, device: Device) -> Result<Precision> {
        match (self, device) {
            (Self::Fp32, _) => Ok(Self::Fp32),
            (Self::Bf16, Device::Cuda(_)) => Ok(Self::Bf16),
            (Self::Bf16, _) => match cpu_bf16_support() {
                Ok(()) => Ok(Self::Bf16),
                Err(missing) => bail!("--precision bf16 on the CPU needs {missing}; use --precision fp32 (or auto)"),
            },
            (Self::Auto, Device::Cpu) if cpu_bf16_support().is_ok() => Ok(Self::Bf16),
            (Self::Auto, _) => Ok(Self::Fp32),
        }
    }
}

/// Chooses libtorch's CPU kernels for a command whose work is in `precision` (a resolved
/// one): `main` sets fp32's before any command, and a command that resolves bf16 sets its own
/// before its first op. In fp32 the only oneDNN kernel our ops reach is GELU (forward and
/// backward), and oneDNN compiles and caches one kernel per input shape: with batches of
/// every length, that cache grew a training run by 300-450 MB over its first 400 steps
/// (docs/benchmarks.md, "Memory"), while libtorch's own GELU kernel was as fast. So fp32 runs
/// without oneDNN. bf16 keeps it for the whole command (its fp32 dev evaluation too): its
/// matmuls run there on CPUs with bf16 instructions.
pub fn choose_cpu_kernels(precision: Precision) {
    crate::torch_shim::set_onednn_enabled(precision == Precision::Bf16);
}

/// Whether this CPU has bf16 instructions: `/proc/cpuinfo` lists `avx512_bf16` or `amx_bf16`.
/// The error says what is missing.
pub fn cpu_bf16_support() -> std::result::Result<(), String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    if flags.iter().any(|f| *f == "avx512_bf16" || *f == "amx_bf16") {
        Ok(())
    } else {
        Err("AVX-512 BF16 or AMX (this CPU's flags in /proc/cpuinfo have neither avx512_bf16 nor amx_bf16)".into())
    }
}

/// Runs `forward` under bf16 autocast on `device` when `precision` is bf16: matmuls and most
/// ops run in bf16, weights and their gradients stay fp32. Backward runs outside, as with
/// torch.autocast. `precision` is a resolved one (not `auto`).
pub fn autocast<T>(precision: Precision, device: Device, forward: impl FnOnce() -> T) -> T {
    match precision {
        Precision::Bf16 => crate::torch_shim::with_bf16_autocast(device, forward),
        Precision::Fp32 | Precision::Auto => forward(),
    }
}
