//! `sentence-mtl predict`: label sentences with one task's head.

use std::time::Instant;

use anyhow::Result;
use tch::Kind;

use super::runtime::{encoder, join_launch, open_model, output_setting, read_input};
use crate::cli::PredictArgs;
use crate::distributed::is_main;
use crate::model::spec::SpecOverrides;
use crate::output::predictions::{write_predictions, Prediction, PredictionFormat};
use crate::output::{check_output_path, write_output};
use crate::precision::Precision;
use crate::report::table::count;

pub fn run(args: &PredictArgs) -> Result<()> {
    let started = Instant::now();
    check_output_path(args.io.output(), args.io.input(), args.io.reads_stdin(), &args.model.model)?;
    let format = PredictionFormat::choose(args.format, args.io.output())?;
    let group = join_launch(&args.model.device)?;
    let quiet = args.model.quiet || !is_main(group.as_ref());
    let overrides = SpecOverrides { max_length: args.model.max_length, ..Default::default() };
    let (loaded, progress) = open_model(&args.model, &overrides, group.as_ref())?;
    let task = loaded.spec.chosen_head_task(args.task.as_deref())?.clone();
    // A CSV's sentences are where the task's training file had them, else in `text`.
    let mut columns: Vec<&str> = task.text_column.as_deref().into_iter().chain(["text"]).collect();
    columns.dedup();
    let sentences = read_input(&args.io, &columns, quiet, group.as_ref())?;
    let job = [output_setting("--output", args.io.output()), ("--task", task.name.clone())];
    let encoder = encoder(&args.model, &loaded, group.as_ref(), &job)?;
    let logits = encoder.class_logits(&task.name, &sentences, &progress)?;
    if !is_main(group.as_ref()) {
        return Ok(());
    }
    let probabilities = logits.softmax(-1, Kind::Float);
    let (best_probability, best_class) = probabilities.max_dim(-1, false);
    let best_probability = Vec::<f32>::try_from(best_probability)?;
    let best_class = Vec::<i64>::try_from(best_class)?;
    // `--all-scores`: every class's probability and logit, per row.
    let all = if args.all_scores {
        Some((Vec::<Vec<f32>>::try_from(&probabilities)?, Vec::<Vec<f32>>::try_from(&logits)?))
    } else {
        None
    };
    let rows: Vec<Prediction> = sentences
        .iter()
        .enumerate()
        .map(|(i, text)| Prediction {
            text,
            label: &task.labels[best_class[i] as usize],
            probability: best_probability[i],
            scores: all.as_ref().map(|(p, z)| p[i].iter().copied().zip(z[i].iter().copied()).collect()),
        })
        .collect();
    write_output(args.io.output(), false, |out| write_predictions(out, format, &task.labels, &rows))?;
    if !quiet {
        crate::stderrln!(
            "labelled {} with task '{}' ({}{}) in {:.2}s",
            count(rows.len(), "sentence"),
            task.name,
            count(task.labels.len(), "label"),
            if encoder.precision == Precision::Bf16 { ", bf16 forward" } else { "" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
