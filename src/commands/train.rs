//! `sentence-mtl train`: fine-tune a shared encoder with one head per task.

use anyhow::Result;

use crate::cli::TrainArgs;
use crate::report::table::Table;
use crate::train::settings::TrainSettings;
use crate::train::trainer::{train, RunOptions};

pub fn run(args: &TrainArgs) -> Result<()> {
    let settings = TrainSettings::from_args(args)?;
    let options = RunOptions {
        quiet: args.quiet,
        overwrite: args.overwrite,
        batch_plan: args.save_batch_plan.clone(),
        command_line: std::env::args().collect(),
    };
    let outcome = train(&settings, &options)?;
    let rate = outcome.examples as f64 / outcome.seconds.max(1e-9);
    println!(
        "trained {} steps in {:.1}s ({:.1} examples/s, evaluation and saving included); run directory {}",
        outcome.steps,
        outcome.seconds,
        rate,
        outcome.run.root.display()
    );
    if let Some(best) = &outcome.best {
        let mut table = Table::new(["task", "dev accuracy", "dev macro-F1"]);
        for (name, score) in &best.tasks {
            table.row([name.clone(), format!("{:.4}", score.accuracy), format!("{:.4}", score.macro_f1)]);
        }
        println!(
            "best checkpoint {} (step {}, mean macro-F1 {:.4}):",
            outcome.run.best().display(),
            best.step,
            best.mean_macro_f1
        );
        print!("{}", table.render());
    }
    Ok(())
}
