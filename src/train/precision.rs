//! Mixed precision for the forward pass: bf16 autocast on CUDA with fp32 master weights.

use anyhow::{bail, Result};
use tch::Device;

use super::settings::Precision;

/// Checks the precision can run on the device.
pub fn check(precision: Precision, device: Device) -> Result<()> {
    if precision == Precision::Bf16 && !device.is_cuda() {
        bail!("--precision bf16 needs a CUDA device (this run is on the CPU); use --precision fp32");
    }
    Ok(())
}

/// Runs `forward` with CUDA autocast in bf16 when asked: matmuls and most ops run in bf16,
/// weights and their gradients stay fp32. Backward runs outside, as with torch.autocast.
pub fn autocast<T>(precision: Precision, forward: impl FnOnce() -> T) -> T {
    match precision {
        Precision::Fp32 => forward(),
        Precision::Bf16 => crate::torch_shim::with_bf16_autocast(forward),
    }
}
