//! What every command does before its own work: libtorch's thread count, the device, and
//! (for `encode`, `predict`, `eval`) the model with the progress display.

use anyhow::{bail, Result};
use tch::Device;

use crate::checkpoint;
use crate::cli::{DeviceArgs, ModelArgs};
use crate::data::batching::BatchLimit;
use crate::device;
use crate::inference::Encoder;
use crate::model::loaded::LoadedModel;
use crate::model::spec::SpecOverrides;
use crate::progress::Progress;

/// Sets the thread count and resolves `--device` against this machine.
pub fn prepare_device(args: &DeviceArgs) -> Result<Device> {
    device::set_threads(args.threads)?;
    args.device.resolve()
}

/// The encoder `encode`, `predict` and `eval` run: the model at `--precision`.
pub fn encoder<'a>(args: &ModelArgs, loaded: &'a LoadedModel) -> Result<Encoder<'a>> {
    let batch = match args.batch_tokens {
        Some(n) => BatchLimit::Tokens(n),
        None => BatchLimit::Rows(args.batch_size),
    };
    Ok(Encoder { model: loaded, cache: None, precision: args.precision.resolve(loaded.device)?, batch })
}

/// Validates the shared model flags, then loads the model onto the chosen device.
pub fn open_model(args: &ModelArgs, overrides: &SpecOverrides) -> Result<(LoadedModel, Progress)> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.batch_tokens == Some(0) {
        bail!("--batch-tokens must be at least 1");
    }
    let device = prepare_device(&args.device)?;
    let loaded = checkpoint::load(&args.model, device, overrides)?;
    Ok((loaded, Progress::new(args.quiet)))
}
