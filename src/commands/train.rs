//! `sentence-mtl train`: fine-tune a shared encoder with one head per task, or continue an
//! interrupted run with `--resume`.

use anyhow::{bail, Result};

use super::runtime::join_launch;
use crate::cli::TrainArgs;
use crate::distributed::is_main;
use crate::train::overview::score_table;
use crate::train::settings::TrainSettings;
use crate::train::trainer::{resume, train, RunOptions};

/// Flags that may accompany `--resume` (they do not change what is computed).
const ALLOWED_WITH_RESUME: &[&str] = &["resume", "device", "threads", "quiet", "dist_timeout"];

pub fn run(args: &TrainArgs) -> Result<()> {
    let group = join_launch(&args.device)?;
    let main = is_main(group.as_ref());
    let options = RunOptions {
        // Only rank 0 of a data-parallel launch shows progress and tables.
        quiet: args.quiet || !main,
        overwrite: args.overwrite,
        batch_plan: args.save_batch_plan.clone(),
        command_line: std::env::args().collect(),
    };
    let outcome = match &args.resume {
        Some(run) => {
            if let Some(flag) = args.explicit.iter().find(|f| !ALLOWED_WITH_RESUME.contains(&f.as_str())) {
                bail!(
                    "--resume continues a run with its own settings; --{} cannot be given with it (start a new run to change settings)",
                    flag.replace('_', "-")
                );
            }
            resume(
                run,
                &options,
                args.explicit.iter().any(|f| f == "device").then_some(args.device.device),
                args.device.threads,
                group.as_ref(),
            )?
        }
        None => train(&TrainSettings::from_args(args)?, &options, group.as_ref())?,
    };
    if !main {
        return Ok(());
    }
    let rate = outcome.examples as f64 / outcome.seconds.max(1e-9);
    println!(
        "trained to step {} in {:.1}s ({:.1} examples/s, evaluation and saving included); run directory {}",
        outcome.steps,
        outcome.seconds,
        rate,
        outcome.run.root.display()
    );
    if let Some(best) = &outcome.best {
        println!(
            "best checkpoint {} (step {}, mean of the main dev metrics {:.4}):",
            outcome.run.best().display(),
            best.step,
            best.mean_main_metric
        );
        print!("{}", score_table(&best.tasks));
    }
    Ok(())
}
