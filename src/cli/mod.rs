//! The command line: clap types only. Flag values arrive typed (each type's `FromStr` gives
//! the one-line message for a bad value); commands turn them into validated settings.

pub mod task_values;
pub mod usage_error;
pub mod value_names;

/// `train --feature-cache-budget`'s default, in MB.
pub const DEFAULT_FEATURE_CACHE_BUDGET_MB: u64 = 4096;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::data::labelled::UnknownLabelPolicy;
use crate::data::sampler::SamplingStrategy;
use crate::device::DeviceChoice;
use crate::export::ExportFormat;
use crate::model::pooling::Pooling;
use crate::output::embeddings::EmbeddingFormat;
use crate::output::predictions::PredictionFormat;
use crate::precision::Precision;
use crate::tasks::classification::ClassWeights;
use crate::train::freeze::FreezeRule;
use crate::train::recipe::Recipe;
use crate::train::schedule::LrSchedule;
use crate::train::small_data::SmallData;
use task_values::{PerTaskValue, TaskArg};

#[derive(Debug, Parser)]
#[command(
    name = "sentence-mtl",
    version = crate::VERSION,
    about = "Sentence embeddings and multi-task fine-tuning of transformer encoders (DistilBERT, BERT) on libtorch",
    propagate_version = true,
    // A flag given twice takes its last value, so scripts can append overrides.
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command-line definition, with the help of flags that `encode` and `predict` share
    /// (`SentenceIoArgs`) told apart where their defaults differ.
    pub fn definition() -> clap::Command {
        use clap::CommandFactory;
        let text_column = |default: &'static str| {
            move |arg: clap::Arg| {
                arg.help(format!("Column holding the sentences, for a `.csv` --input [default: {default}]"))
            }
        };
        Self::command()
            .mut_subcommand("encode", |c| c.mut_arg("text_column", text_column("text")))
            .mut_subcommand("predict", |c| {
                c.mut_arg("text_column", text_column("the task's training column if the file has it, else text"))
            })
    }
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
// allow_negative_numbers: `--lr-heads -1` is a refused value, not an unknown flag `-1`.
pub enum Command {
    /// Turn sentences into fixed-length embeddings (and show their cosine similarities)
    #[command(allow_negative_numbers = true)]
    Encode(EncodeArgs),
    /// Fine-tune a shared encoder on several tasks at once (classification, similarity, pairs)
    #[command(
        allow_negative_numbers = true,
        override_usage = "sentence-mtl train --model <DIR|HUB_ID> --task <NAME=TRAIN.csv[,DEV.csv]>... --out <RUN_DIR> [OPTIONS]\n       sentence-mtl train --resume <RUN_DIR> [--device <DEVICE>] [--threads <N>] [--dist-timeout <SECONDS>] [--quiet]"
    )]
    Train(TrainArgs),
    /// Label sentences with a trained task head
    #[command(
        allow_negative_numbers = true,
        mut_arg("model", |a| a.help("Model: a sentence-mtl checkpoint with task heads (RUN/best), or its hf export").value_name("DIR"))
    )]
    Predict(PredictArgs),
    /// Score a model per task: classification reports, similarity correlations, retrieval
    #[command(
        allow_negative_numbers = true,
        override_usage = "sentence-mtl eval --model <DIR|HUB_ID> --task <NAME=FILE.csv>... [OPTIONS]"
    )]
    Eval(EvalArgs),
    /// Write a checkpoint for sentence-transformers, transformers or TorchScript
    #[command(allow_negative_numbers = true)]
    Export(ExportArgs),
}

/// Where a command runs; shared by every command that computes.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Where to run: auto (CUDA when present), cpu, cuda or cuda:N (in a data-parallel
    /// launch, CUDA is each rank's cuda:LOCAL_RANK, and cuda:N for N > 0 is refused)
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,

    /// CPU threads for libtorch [default: one per core]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// In a data-parallel launch (WORLD_SIZE > 1, as torchrun sets it): seconds a rank waits
    /// for the others, to join or in a collective, before it stops with an error naming the
    /// rank that did not answer
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub dist_timeout: u64,
}

/// Where the model comes from and how it runs; shared by `encode`, `predict` and `eval`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: a sentence-mtl checkpoint folder (RUN/best), a Hugging Face model folder
    /// (config.json, vocab.txt, model.safetensors), or a hub id fetched into the HF cache
    #[arg(short, long, value_name = "DIR|HUB_ID")]
    pub model: String,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Sentences per forward pass (in a data-parallel launch, each rank runs whole batches
    /// in turn)
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,

    /// Batches by padded tokens instead: sentences x the longest one's tokens stays within N
    #[arg(long, value_name = "N", conflicts_with = "batch_size")]
    pub batch_tokens: Option<usize>,

    /// Token limit per sentence, [CLS] and [SEP] included; longer ones are truncated
    /// [default: the checkpoint's or sentence-transformers config's, else the tokenizer's
    /// model_max_length or the position embeddings, whichever is lower, as sentence-transformers]
    #[arg(long, value_name = "TOKENS")]
    pub max_length: Option<usize>,

    /// Forward-pass precision: fp32; bf16 (the transformer blocks in bf16, on CUDA or on a CPU
    /// with AVX-512 BF16 or AMX); or auto (bf16 on such a CPU, fp32 elsewhere). Pooling and
    /// outputs are fp32 either way
    #[arg(long, default_value = "fp32", value_name = "PRECISION")]
    pub precision: Precision,

    /// No progress bar or informational messages on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

/// Where sentences come from and where results go; shared by `encode` and `predict`.
#[derive(Debug, Args)]
pub struct SentenceIoArgs {
    /// Sentences; without them, read --input or stdin (one per line). Sentences that start
    /// with '-' go after `--`
    #[arg(value_name = "SENTENCE")]
    pub sentences: Vec<String>,

    /// Read sentences from a file: .csv (column --text-column) or text, one per line (`-`:
    /// stdin)
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// Column holding the sentences, for a `.csv` --input (help and default per command:
    /// `Cli::definition`)
    #[arg(long, value_name = "NAME")]
    pub text_column: Option<String>,

    /// Write the results to FILE (atomically) instead of stdout (`-`: stdout)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

impl SentenceIoArgs {
    /// `--input`, where `-` means stdin as it does for most tools.
    pub fn input(&self) -> Option<&std::path::Path> {
        self.input.as_deref().filter(|p| p.as_os_str() != "-")
    }

    /// Whether the sentences come from stdin: no arguments, and no `--input` (or `--input -`).
    pub fn reads_stdin(&self) -> bool {
        self.sentences.is_empty() && self.input().is_none()
    }

    /// `--output`, where `-` means stdout.
    pub fn output(&self) -> Option<&std::path::Path> {
        self.output.as_deref().filter(|p| p.as_os_str() != "-")
    }
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub io: SentenceIoArgs,

    /// Output format: jsonl (one {"text", "embedding"} per line), csv or npy; it must agree
    /// with a .jsonl, .json, .csv or .npy --output [default: from --output's extension, else
    /// jsonl]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<EmbeddingFormat>,

    /// Pooling of token states: mean, cls or max [default: the model's, else mean]
    #[arg(long, value_name = "MODE")]
    pub pooling: Option<Pooling>,

    /// L2-normalise embeddings [default: the model's setting]
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,

    /// Do not L2-normalise embeddings
    #[arg(long)]
    pub no_normalize: bool,

    /// Print the cosine-similarity matrix of the sentences as a table (embeddings are
    /// then only written with --output)
    #[arg(long)]
    pub similarity: bool,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Required (unless --resume). Starting point: a Hugging Face model folder or hub id
    /// (DistilBERT or BERT), or a sentence-mtl checkpoint to fine-tune further
    #[arg(short, long, value_name = "DIR|HUB_ID", required_unless_present = "resume")]
    pub model: Option<String>,

    /// Required (unless --resume). A task: its name (ASCII letters, digits, '_' or '-'),
    /// training CSV and optional dev CSV. Repeat for each task. The kind
    /// comes from the header: text,label (classification), sentence1,sentence2,score
    /// (similarity) or anchor,positive[,negative] (pairs)
    #[arg(long = "task", value_name = "NAME=TRAIN.csv[,DEV.csv]", required_unless_present = "resume")]
    pub tasks: Vec<TaskArg>,

    /// A task's kind when its header does not say: classification, similarity or pairs;
    /// repeatable
    #[arg(long = "task-kind", value_name = "NAME=KIND")]
    pub task_kinds: Vec<PerTaskValue>,

    /// Loss of similarity tasks: cosent (CoSENT) or cosine-mse (the score mapped onto [0, 1]
    /// by the training range), for all (LOSS) or one (NAME=LOSS) [default: cosent]
    #[arg(long = "similarity-loss", value_name = "[NAME=]LOSS")]
    pub similarity_losses: Vec<PerTaskValue>,

    /// Scale of the cosine similarities in pairs tasks' in-batch-negatives loss (1 / the
    /// softmax temperature; at most 10000)
    #[arg(long, default_value_t = 20.0, value_name = "S")]
    pub pairs_scale: f64,

    /// In a data-parallel launch, give pairs tasks' in-batch-negatives loss every rank's
    /// positives and negatives, with gradients back to the rank that computed each (as
    /// sentence-transformers' gather_across_devices): the one-process loss of the global batch.
    /// Off by default, as there: each rank then contrasts its own share only, as PyTorch DDP does.
    #[arg(long)]
    pub gather_across_ranks: bool,

    /// Required (unless --resume). Run directory: best/ and last/ checkpoints,
    /// train_log.jsonl, settings.json
    #[arg(short, long, value_name = "RUN_DIR", required_unless_present = "resume")]
    pub out: Option<PathBuf>,

    /// Continue an interrupted run from RUN_DIR/last with the run's own settings (only
    /// --device, --threads, --dist-timeout and --quiet may be given with it)
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["model", "tasks", "out"])]
    pub resume: Option<PathBuf>,

    /// Also save a resumable last/ checkpoint every N optimizer steps (it is always saved
    /// at each evaluation)
    #[arg(long, value_name = "N")]
    pub save_every: Option<usize>,

    /// Replace an existing run directory instead of refusing to touch it (its run is set aside until the new one first saves, and comes back if it fails before; other files stay)
    #[arg(long)]
    pub overwrite: bool,

    /// CSV column with the text, for all tasks (COL) or one (NAME=COL); repeatable
    #[arg(long = "text-column", value_name = "[NAME=]COL")]
    pub text_columns: Vec<PerTaskValue>,

    /// CSV column with the label, for all tasks (COL) or one (NAME=COL); repeatable
    #[arg(long = "label-column", value_name = "[NAME=]COL")]
    pub label_columns: Vec<PerTaskValue>,

    /// Loss weight of a task (default 1); repeatable
    #[arg(long = "task-weight", value_name = "NAME=W")]
    pub task_weights: Vec<PerTaskValue>,

    /// Share of the batches a task gets, relative to the others (default 1); repeatable. Under
    /// round-robin, tasks take turns in proportion (a task at 2 gets two batches for each of a
    /// task at 1); under proportional and temperature sampling it multiplies the task's part
    /// of an epoch, whose length stays the same (the other tasks get fewer batches). Unlike --task-weight it changes how often a task trains, which gradient
    /// clipping cannot even out
    #[arg(long = "task-share", value_name = "NAME=S")]
    pub task_shares: Vec<PerTaskValue>,

    /// Pooling of token states: mean, cls or max [default: the model's, else mean]
    #[arg(long, value_name = "MODE")]
    pub pooling: Option<Pooling>,

    /// Width of the projection between pooling and the task heads; 0 for none [default: the
    /// model's: a checkpoint's or a sentence-transformers Dense module's, none for another
    /// sentence-transformers model (its embeddings are kept as they are), else 256]
    #[arg(long, value_name = "DIM")]
    pub projection_dim: Option<i64>,

    /// Token limit per sentence, [CLS] and [SEP] included; the checkpoint keeps it, so
    /// `encode` cuts there too [default: a checkpoint's (or its export's) own, else 128,
    /// or the base model's own limit where that is lower]
    #[arg(long, value_name = "TOKENS")]
    pub max_length: Option<usize>,

    /// Order of task batches: round-robin (A, B, A, B, ...), proportional (each task's
    /// batches once an epoch, in shuffled order) or temperature (an epoch's batches shared
    /// by size^(1/T), shuffled)
    #[arg(long, default_value = "round-robin", value_name = "STRATEGY")]
    pub sampling: SamplingStrategy,

    /// T for --sampling temperature (at least 0.001; 1 is proportional, larger flattens)
    #[arg(long, default_value_t = 2.0, value_name = "T")]
    pub temperature: f64,

    /// Passes over the data (an epoch is defined by the sampling strategy)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub epochs: usize,

    /// Stop after N optimizer steps instead, wherever that is in an epoch
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,

    /// Rows per batch (one task per batch): sentences, or pairs for similarity and pairs
    /// tasks. In a data-parallel launch (WORLD_SIZE > 1) this is the global batch, split
    /// across the ranks
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,

    /// Batches by padded tokens instead of rows: rows x texts per row x the longest text's
    /// tokens stays within N (length-grouped as with --batch-size; an epoch is the batches of
    /// one pass cut that way; global in a data-parallel launch). Raising the learning rates
    /// with it measured worse here: keep them for a moderately larger batch (docs/usage.md)
    #[arg(long, value_name = "N", conflicts_with = "batch_size")]
    pub batch_tokens: Option<usize>,

    /// Batches whose gradients are averaged before each optimizer step (an epoch's last step
    /// takes the batches left in the epoch, so an epoch stays one pass). Under round-robin with
    /// equal --task-share, the number of tasks gives every step one batch of each (how a
    /// similarity or pairs task keeps the embeddings without taking steps from classification
    /// tasks)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub grad_accum: usize,

    /// The optimisation defaults: default (chosen from the recipe study, docs/recipes.md) or
    /// seed (the original example recipe's rates: backbone 1e-5, projection 1e-4, heads
    /// 1e-3, layer decay 0.9, 10% warm-up, linear decay). Each flag below overrides its part
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub recipe: Recipe,

    /// Learning rate of the backbone's top layer [default: from --recipe; the default recipe's
    /// is 8e-5, or 4e-5 for runs of fewer than 3000 training rows, all tasks together]
    #[arg(long, value_name = "LR")]
    pub lr_backbone: Option<f64>,

    /// Learning rate of the projection [default: from --recipe]
    #[arg(long, value_name = "LR")]
    pub lr_projection: Option<f64>,

    /// Learning rate of the task heads [default: from --recipe]
    #[arg(long, value_name = "LR")]
    pub lr_heads: Option<f64>,

    /// Layer-wise decay D: block i of L (counted from 1 at the bottom) gets
    /// lr_backbone * D^(L-i); the embeddings get lr_backbone * D^L [default: from --recipe]
    #[arg(long, value_name = "D")]
    pub layer_decay: Option<f64>,

    /// Learning-rate schedule after the warm-up: linear (decay to 0), cosine (half a cosine
    /// to 0) or constant [default: from --recipe]
    #[arg(long, value_name = "SCHEDULE")]
    pub lr_schedule: Option<LrSchedule>,

    /// Label smoothing of classification tasks' cross-entropy, in [0, 1) [default: from
    /// --recipe]
    #[arg(long, value_name = "E")]
    pub label_smoothing: Option<f64>,

    /// Class weights of classification tasks' cross-entropy: none, or balanced (each class
    /// weighted by rows / (classes x its rows), as scikit-learn's class_weight="balanced")
    #[arg(long, default_value = "none", value_name = "none|balanced")]
    pub class_weights: ClassWeights,

    /// Small-data mode for classification tasks with few labelled rows: SetFit's label-pair
    /// cosine loss on the embeddings beside cross-entropy, and at least 200 optimizer steps
    /// (unless --max-steps sets fewer).
    /// auto turns it on for a task with at most 128 training rows per class on average and
    /// 2000 in all (and says so), on for every classification task, off never
    #[arg(long, default_value = "auto", value_name = "auto|on|off")]
    pub small_data: SmallData,

    /// AdamW's decoupled weight decay (never on biases and LayerNorm)
    #[arg(long, default_value_t = 0.01, value_name = "W")]
    pub weight_decay: f64,

    /// Fraction of the steps spent warming the learning rate up from 0 [default: from
    /// --recipe]
    #[arg(long, value_name = "R")]
    pub warmup_ratio: Option<f64>,

    /// Warm-up steps (overrides --warmup-ratio)
    #[arg(long, value_name = "N")]
    pub warmup_steps: Option<usize>,

    /// Clip the gradients' global L2 norm to this; 0 turns clipping off
    #[arg(long, default_value_t = 1.0, value_name = "NORM")]
    pub max_grad_norm: f64,

    /// What to freeze: none, all, backbone, embeddings, layers:K (bottom K blocks; the
    /// embeddings still train unless also frozen) or head:NAME; repeatable
    #[arg(long = "freeze", value_name = "WHAT")]
    pub freeze: Vec<FreezeRule>,

    /// Seed for initialisation, data order, task sampling and dropout
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Dropout probability of the backbone in training (hidden states and attention), instead
    /// of its config.json's; 0 turns dropout off
    #[arg(long, value_name = "P")]
    pub dropout: Option<f64>,

    /// Run a frozen backbone every step instead of once: by default, when the backbone (or the
    /// embeddings and the bottom K blocks) is frozen, its output is computed once per sentence,
    /// without dropout, and every step trains only the rest from it
    #[arg(long)]
    pub no_feature_cache: bool,

    /// Largest feature cache, in MB, before the run refuses to start (pooled states take
    /// hidden x 4 bytes per sentence; states after block K that per token)
    #[arg(long, default_value_t = DEFAULT_FEATURE_CACHE_BUDGET_MB, value_name = "MB")]
    pub feature_cache_budget: u64,

    /// Evaluate the dev sets every N optimizer steps [default: at the end of each epoch; in
    /// small-data mode, which lengthens the run, the larger of an epoch and the run's steps /
    /// --epochs]
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,

    /// Stop after N evaluations without a better mean of the tasks' main dev metrics
    /// (macro-F1, Spearman, MRR@10)
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,

    /// Log losses every N optimizer steps
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub log_every: usize,

    /// Sentences per batch when evaluating
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub eval_batch_size: usize,

    #[command(flatten)]
    pub device: DeviceArgs,

    /// Forward-pass precision: fp32; bf16 (autocast with fp32 master weights, on CUDA or on a
    /// CPU with AVX-512 BF16 or AMX); or auto (bf16 on such a CPU, fp32 elsewhere). Dev sets
    /// are scored in fp32
    #[arg(long, default_value = "fp32", value_name = "PRECISION")]
    pub precision: Precision,

    /// Write the batch order (task and row numbers of every batch) as JSONL, for
    /// reproducing a run elsewhere (e.g. the PyTorch reference benchmark)
    #[arg(long, value_name = "FILE")]
    pub save_batch_plan: Option<PathBuf>,

    /// No progress bars or tables; errors and the final summary only
    #[arg(short, long)]
    pub quiet: bool,

    /// Ids of the flags given on the command line (filled in by `main`, not a flag).
    #[arg(skip)]
    pub explicit: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Task whose head labels the sentences [default: the model's only one]
    #[arg(short, long, value_name = "NAME")]
    pub task: Option<String>,

    #[command(flatten)]
    pub io: SentenceIoArgs,

    /// Output format: jsonl or csv (text, label, probability); it must agree with a .jsonl,
    /// .json or .csv --output [default: from --output's extension, else jsonl]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<PredictionFormat>,

    /// Also give every class's probability and logit (JSONL fields `probabilities` and
    /// `logits`; CSV columns `probability:<label>` and `logit:<label>`)
    #[arg(long)]
    pub all_scores: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// A task and its CSV; repeat for each task. A task the model was trained on is scored as
    /// its kind; a similarity (sentence1,sentence2,score) or pairs (anchor,positive) file also
    /// works for a name the model does not have, scoring the embeddings themselves
    #[arg(long = "task", value_name = "NAME=FILE.csv", required = true)]
    pub tasks: Vec<TaskArg>,

    /// CSV column with the text, for all tasks (COL) or one (NAME=COL) [default: as trained]
    #[arg(long = "text-column", value_name = "[NAME=]COL")]
    pub text_columns: Vec<PerTaskValue>,

    /// CSV column with the label, for all tasks (COL) or one (NAME=COL) [default: as trained]
    #[arg(long = "label-column", value_name = "[NAME=]COL")]
    pub label_columns: Vec<PerTaskValue>,

    /// A task's kind when its file's header does not say (it fits several): similarity or
    /// pairs for a name the model does not have; repeatable
    #[arg(long = "task-kind", value_name = "NAME=KIND")]
    pub task_kinds: Vec<PerTaskValue>,

    /// Write metrics.json, predictions_<task>.csv, confusion_<task>.csv/.png
    /// (classification), similarity_<task>.png (similarity) and, for a run's checkpoint,
    /// curves.png into DIR: a new or empty folder, or an earlier report's (replaced)
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Print metrics.json to stdout instead of the tables
    #[arg(long)]
    pub json: bool,

    /// Labels the model was not trained on: error (list them and stop) or skip (leave the
    /// rows out, counted in the report)
    #[arg(long, default_value = "error", value_name = "error|skip")]
    pub unknown_labels: UnknownLabelPolicy,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The checkpoint to export (a run's best/ or last/)
    #[arg(short, long, value_name = "DIR")]
    pub model: String,

    /// sentence-transformers (a folder SentenceTransformer loads), hf (transformers backbone
    /// + heads.safetensors + tasks.json) or torchscript (model.pt for torch.jit.load and tch)
    #[arg(short, long, value_name = "FORMAT")]
    pub format: ExportFormat,

    /// Folder to write; must not exist or be empty, unless --force
    #[arg(short, long, value_name = "DIR")]
    pub out: PathBuf,

    /// CPU threads for libtorch, which loads the model and (torchscript) traces it [default:
    /// one per core]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Replace an earlier export in --out (a folder of other files is never replaced)
    #[arg(long)]
    pub force: bool,

    /// No informational messages on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn help(command: &str) -> String {
        let mut definition = Cli::definition();
        let sub = definition.find_subcommand_mut(command).unwrap();
        sub.render_long_help().to_string().split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// `encode` and `predict` share `--text-column`, whose default differs between them.
    #[test]
    fn each_command_says_its_own_text_column_default() {
        assert!(help("encode").contains("Column holding the sentences, for a `.csv` --input [default: text]"));
        assert!(help("predict").contains("[default: the task's training column if the file has it, else text]"));
        assert!(!help("encode").contains("training column"));
    }
}
