//! `--precision`: the forward pass in fp32, or in bf16 under autocast with fp32 master
//! weights (CUDA only), as `torch.autocast` does.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "fp32" => Self::Fp32,
            "bf16" => Self::Bf16,
            other => bail!("unknown --precision '{other}' (expected fp32 or bf16)"),
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        })
    }
}

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
