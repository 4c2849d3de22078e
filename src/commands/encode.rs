//! `sentence-mtl encode`: sentences to embeddings, or to their similarity matrix.

use std::time::Instant;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use super::runtime::{encoder, join_launch, open_model, output_setting, read_input};
use crate::cli::EncodeArgs;
use crate::distributed::is_main;
use crate::model::pooling::{l2_normalize, Pooling};
use crate::model::spec::SpecOverrides;
use crate::output::embeddings::{write_embeddings, EmbeddingFormat};
use crate::output::{check_output_path, print_stdout, refuse_binary_on_terminal, write_output};
use crate::precision::Precision;
use crate::report::table::{count, ellipsize, Table};

/// The most sentences `--similarity` tabulates: a row and a column each.
const SIMILARITY_TABLE_MAX: usize = 1000;

pub fn run(args: &EncodeArgs) -> Result<()> {
    let started = Instant::now();
    check_output_path(args.io.output(), args.io.input(), args.io.reads_stdin(), &args.model.model)?;
    let format = EmbeddingFormat::choose(args.format, args.io.output())?;
    if args.similarity && args.io.output.as_deref().is_some_and(|o| o.as_os_str() == "-") {
        bail!("--output - (stdout) with --similarity: the similarity table goes to stdout; give --output a file for the embeddings");
    }
    if args.similarity && args.format.is_some() && args.io.output().is_none() {
        bail!("--format sets how embeddings are written, and with --similarity they are written only to --output FILE");
    }
    let overrides = SpecOverrides {
        pooling: args.pooling,
        normalize: match (args.normalize, args.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        max_length: args.model.max_length,
    };
    let group = join_launch(&args.model.device)?;
    // Rank 0 alone writes stdout; the others' terminals do not matter.
    if is_main(group.as_ref()) {
        refuse_binary_on_terminal(args.io.output(), format.is_binary())?;
    }
    let quiet = args.model.quiet || !is_main(group.as_ref());
    // The model's flags are checked, and the model found, before a long stdin is read.
    let (loaded, progress) = open_model(&args.model, &overrides, group.as_ref())?;
    // From the folder loaded, which a hub id names only once fetched.
    let model_dir = loaded.dir.to_string_lossy();
    if let Some(note) = args.pooling.and_then(|asked| pooling_note(&model_dir, asked)).filter(|_| !quiet) {
        crate::stderrln!("{note}");
    }
    let sentences = read_input(&args.io, &["text"], quiet, group.as_ref())?;
    if args.similarity && sentences.len() > SIMILARITY_TABLE_MAX {
        bail!(
            "--similarity prints a table of every pair, and {} make {} cells; give at most {SIMILARITY_TABLE_MAX} sentences, or write the embeddings with --output and compare them there",
            count(sentences.len(), "sentence"),
            sentences.len() * sentences.len()
        );
    }
    let encoder = encoder(&args.model, &loaded, group.as_ref(), &[output_setting("--output", args.io.output())])?;
    let embeddings = encoder.embed(&sentences, &progress)?;
    if !is_main(group.as_ref()) {
        return Ok(());
    }
    let dim = embeddings.size()[1] as usize;
    // Said once the output is written, so that it never announces what a failed write lost.
    let summary = format!(
        "encoded {} into {dim}-dim embeddings ({} pooling{}{}) in {:.2}s",
        count(sentences.len(), "sentence"),
        loaded.spec.pooling,
        if loaded.spec.normalize { ", normalised" } else { "" },
        if encoder.precision == Precision::Bf16 { ", bf16 forward" } else { "" },
        started.elapsed().as_secs_f64()
    );
    if args.similarity {
        print_stdout(&similarity_table(&sentences, &embeddings)?)?;
    }
    if !args.similarity || args.io.output().is_some() {
        let values = Vec::<f32>::try_from(embeddings.flatten(0, -1))?;
        write_output(args.io.output(), format.is_binary(), |out| {
            write_embeddings(out, format, &sentences, &values, dim)
        })?;
    }
    if !args.model.quiet {
        crate::stderrln!("{summary}");
    }
    Ok(())
}

/// A note when `--pooling` differs from the pooling the model was trained with: what follows
/// it (a projection, heads, or the embedding space itself) learned the other one.
fn pooling_note(model: &str, asked: Pooling) -> Option<String> {
    let trained = crate::checkpoint::trained_pooling(model)?;
    (trained != asked).then(|| {
        format!("note: --pooling {asked}: this model was trained with {trained} pooling, so these are not the embeddings it was trained to give")
    })
}

/// Cosine similarities `[n, n]` rendered with sentence numbers and shortened texts.
fn similarity_table(sentences: &[String], embeddings: &Tensor) -> Result<String> {
    let unit = l2_normalize(&embeddings.to_kind(Kind::Float));
    let sims = Vec::<Vec<f32>>::try_from(unit.matmul(&unit.tr()))?;
    let mut header = vec!["sentence".to_string()];
    header.extend((1..=sentences.len()).map(|i| format!("[{i}]")));
    let mut table = Table::new(header);
    for (i, (text, row)) in sentences.iter().zip(&sims).enumerate() {
        let mut cells = vec![format!("[{}] {}", i + 1, ellipsize(text, 48))];
        cells.extend(row.iter().map(|s| format!("{s:.3}")));
        table.row(cells);
    }
    Ok(table.render())
}
