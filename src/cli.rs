//! The command line: clap types only. Commands turn these into validated settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sentence-mtl",
    version,
    about = "Sentence embeddings and multi-task fine-tuning of transformer encoders (DistilBERT, BERT) on libtorch",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn sentences into fixed-length embeddings (and show their cosine similarities)
    Encode(EncodeArgs),
}

/// Where the model comes from and where it runs; shared by every command.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: a sentence-mtl checkpoint folder (RUN/best), a Hugging Face model folder
    /// (config.json, vocab.txt, model.safetensors), or a hub id fetched into the HF cache
    #[arg(short, long, value_name = "DIR|HUB_ID")]
    pub model: String,

    /// Where to run: auto (CUDA when present), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,

    /// CPU threads for libtorch [default: one per core]
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Sentences per forward pass
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_size: usize,

    /// Token limit per sentence, [CLS] and [SEP] included; longer ones are truncated
    /// [default: the model's (sentence-transformers config or checkpoint), else 128]
    #[arg(long, value_name = "TOKENS")]
    pub max_length: Option<usize>,

    /// No progress bar or informational messages on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Sentences to encode; without them, read --input or stdin (one per line)
    #[arg(value_name = "SENTENCE")]
    pub sentences: Vec<String>,

    /// Read sentences from a file: .csv (column --text-column) or text, one per line
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// CSV column holding the sentences
    #[arg(long, default_value = "text", value_name = "NAME")]
    pub text_column: String,

    /// Write embeddings to FILE (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Output format: jsonl (one {"text", "embedding"} per line), csv or npy
    /// [default: from --output's extension, else jsonl]
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Pooling of token states: mean, cls or max [default: the model's, else mean]
    #[arg(long, value_name = "MODE")]
    pub pooling: Option<String>,

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
