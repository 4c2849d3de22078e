//! What every command does before its own work: libtorch's thread count, the device, and
//! (for `encode`, `predict`, `eval`) the model with the progress display.

use std::time::Duration;

use anyhow::{bail, Result};
use tch::Device;

use crate::checkpoint;
use crate::cli::{DeviceArgs, ModelArgs, SentenceIoArgs};
use crate::data::batching::BatchLimit;
use crate::data::sentences::read_sentences;
use crate::device::{self, DeviceChoice};
use crate::distributed::{data_parallel, device_for, is_main, Launch, ProcessGroup};
use crate::inference::Encoder;
use crate::model::loaded::LoadedModel;
use crate::model::spec::SpecOverrides;
use crate::precision;
use crate::progress::Progress;

/// The longest `--dist-timeout`: a week is longer than any wait worth having, and the
/// waits built from it stay far from overflowing.
const MAX_DIST_TIMEOUT: u64 = 7 * 24 * 3600;

/// The process group of a data-parallel launch (`WORLD_SIZE` > 1), joined before anything
/// else, so a rank that cannot reach `MASTER_ADDR` fails before reading any data.
pub fn join_launch(args: &DeviceArgs) -> Result<Option<ProcessGroup>> {
    if !(1..=MAX_DIST_TIMEOUT).contains(&args.dist_timeout) {
        bail!("--dist-timeout must be 1 to {MAX_DIST_TIMEOUT} seconds (a week), got {}", args.dist_timeout);
    }
    let Some(launch) = Launch::from_env()? else { return Ok(None) };
    // `cuda:0` reads as `cuda`; another GPU would be replaced by the rank's without a word.
    if let DeviceChoice::Cuda(index @ 1..) = args.device {
        bail!(
            "--device cuda:{index} names one GPU, but in a data-parallel launch each rank runs on its own, cuda:LOCAL_RANK; give --device cuda (CUDA_VISIBLE_DEVICES chooses which GPUs the launch sees)"
        );
    }
    Ok(Some(ProcessGroup::join(&launch, Duration::from_secs(args.dist_timeout))?))
}

/// The sentences of `encode` and `predict`, a CSV's from `--text-column` or else the first
/// of `default_columns` it has. In a launch, stdin is read by rank 0 alone and sent to the
/// others: the ranks share one stdin, and each would read a different part of it.
pub fn read_input(
    io: &SentenceIoArgs,
    default_columns: &[&str],
    quiet: bool,
    group: Option<&ProcessGroup>,
) -> Result<Vec<String>> {
    // `--input -` reads stdin, which read_sentences takes from having no --input.
    if io.input.is_some() && !io.sentences.is_empty() {
        bail!("give sentences either as arguments or with --input, not both");
    }
    let read = || read_sentences(&io.sentences, io.input(), io.text_column.as_deref(), default_columns, quiet);
    let Some(group) = group.filter(|_| io.reads_stdin()) else { return read() };
    let what = "sending stdin's sentences to every rank";
    if group.rank() == 0 {
        let sentences = read();
        let bytes = sentences.as_ref().ok().map(serde_json::to_vec).transpose()?;
        data_parallel::broadcast_from_rank0(group, bytes, what)?;
        return sentences;
    }
    match data_parallel::broadcast_from_rank0(group, None, what)? {
        Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
        None => bail!("rank {}: rank 0 could not read the sentences on stdin", group.rank()),
    }
}

/// Sets the thread count and resolves `--device` against this machine (in a launch, CUDA
/// means this rank's `cuda:LOCAL_RANK`).
pub fn prepare_device(args: &DeviceArgs, group: Option<&ProcessGroup>, quiet: bool) -> Result<Device> {
    device::set_threads(args.threads, quiet || !is_main(group))?;
    device_for(args.device.resolve(quiet || !is_main(group))?, group)
}

/// The encoder `encode`, `predict` and `eval` run: the model at `--precision`, its batches
/// shared by the launch's ranks when there is one. The ranks' models must be the same, by
/// content: each rank loads its own (its path may differ, on a node-local disk), and rows
/// from different models would be mixed in one output. So must the `job`'s settings (flag,
/// value): the output, which rank 0 writes for all, and the heads that turn rows into labels.
pub fn encoder<'a>(
    args: &ModelArgs,
    loaded: &'a LoadedModel,
    group: Option<&'a ProcessGroup>,
    job: &[(&str, String)],
) -> Result<Encoder<'a>> {
    let batch = match args.batch_tokens {
        Some(n) => BatchLimit::Tokens(n),
        None => BatchLimit::Rows(args.batch_size),
    };
    if let Some(group) = group {
        agree_on_model(group, loaded, job)?;
    }
    let precision = args.precision.resolve(loaded.device)?;
    precision::choose_cpu_kernels(precision);
    Ok(Encoder { model: loaded, cache: None, precision, batch, group, truncated: None })
}

/// An output flag's setting for [`encoder`]'s `job`: the path, or that it was not given.
pub fn output_setting<'a>(flag: &'a str, path: Option<&std::path::Path>) -> (&'a str, String) {
    (flag, path.map_or("not given".to_string(), |p| p.display().to_string()))
}

/// Refuses ranks whose models differ by content (their paths may differ), whose pooling or
/// normalisation do (from a flag or from the model folder), or whose job settings do.
fn agree_on_model(group: &ProcessGroup, loaded: &LoadedModel, job: &[(&str, String)]) -> Result<()> {
    let model = std::iter::once(("--model", format!("content fnv1a {}", loaded.fingerprint(true))));
    let pipeline = loaded.spec.pipeline_settings();
    let fields: Vec<(String, String)> =
        job.iter().cloned().chain(model).chain(pipeline).map(|(name, value)| (name.to_string(), value)).collect();
    data_parallel::agree_on_settings(group, &fields)
}

/// Validates the shared model flags, then loads the model onto the chosen device. Ranks
/// other than 0 show no progress.
pub fn open_model(
    args: &ModelArgs,
    overrides: &SpecOverrides,
    group: Option<&ProcessGroup>,
) -> Result<(LoadedModel, Progress)> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if args.batch_tokens == Some(0) {
        bail!("--batch-tokens must be at least 1");
    }
    let device = prepare_device(&args.device, group, args.quiet)?;
    let loaded = checkpoint::load(&args.model, device, overrides)?;
    Ok((loaded, Progress::new(args.quiet || !is_main(group))))
}
