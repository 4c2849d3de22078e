//! `sentence-mtl train` and `predict` on a tiny random BERT and a toy two-task dataset:
//! freezing, learning rates, sampling, learning itself, determinism, and bad settings.

use std::collections::BTreeMap;
use std::path::Path;

use clap::Parser;
use sentence_mtl::checkpoint;
use sentence_mtl::cli::{Cli, Command};
use sentence_mtl::inference::class_probabilities;
use sentence_mtl::model::spec::SpecOverrides;
use sentence_mtl::progress::Progress;
use sentence_mtl::train::settings::TrainSettings;
use sentence_mtl::train::trainer::{train, RunOptions};
use tch::{Device, Tensor};

use crate::common::*;
use crate::toy_data::{write_passages, write_toy_data, ToyData};

/// Settings that make the tiny random model learn the toy tasks in a few seconds. The toy tasks
/// have 48 rows per class, which `--small-data auto` would train in small-data mode; these
/// tests pin the plain path, and small-data mode has its own test.
const FAST: &[&str] = &[
    "--small-data",
    "off",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--batch-size",
    "8",
    "--lr-backbone",
    "3e-3",
    "--lr-projection",
    "3e-3",
    "--lr-heads",
    "3e-3",
];

struct Setup {
    model: String,
    data: ToyData,
    dir: tempfile::TempDir,
}

fn setup(test: &str) -> Option<Setup> {
    let model = tiny_models(test)?.join("tiny-bert").to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap();
    let data = write_toy_data(dir.path());
    Some(Setup { model, data, dir })
}

impl Setup {
    fn args(&self, out: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["train".to_string(), "-m".into(), self.model.clone()];
        args.extend(self.data.task_args());
        args.extend(["--out".to_string(), self.out(out)]);
        args.extend(FAST.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn out(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// `predict` of the mood task's dev sentences with a checkpoint, as JSON lines.
    fn predict_mood_dev(&self, checkpoint: &Path, device: &str) -> std::process::Output {
        let (checkpoint, input) = (checkpoint.to_str().unwrap(), self.data.mood_dev.to_str().unwrap());
        run(&["predict", "-m", checkpoint, "--task", "mood", "--device", device, "-q", "-i", input])
    }

    fn train(&self, out: &str, extra: &[&str]) -> std::process::Output {
        let args = self.args(out, extra);
        let output = bin().args(&args).output().unwrap();
        assert_ok(&output);
        output
    }
}

fn weights(checkpoint: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(checkpoint.join("model.safetensors")).unwrap().into_iter().collect()
}

fn log_records(run: &str, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(Path::new(run).join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == kind)
        .collect()
}

/// fp32 work (training, encode, a TorchScript export's tracing) reaches no oneDNN kernel:
/// oneDNN compiled and cached one GELU kernel per input shape, which grew a run by hundreds of
/// MB (docs/benchmarks.md, "Memory"). oneDNN's verbose mode prints a line to stdout for every
/// kernel it runs.
#[test]
fn fp32_training_encode_and_export_run_no_onednn_kernel() {
    let test = "fp32_training_encode_and_export_run_no_onednn_kernel";
    let Some(s) = setup(test) else { return };
    let train = s.args("run", &["--max-steps", "4", "--precision", "fp32", "-q"]);
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let encode =
        owned(&["encode", "-m", &s.model, "--device", "cpu", "--precision", "fp32", "-q", "a sentence", "another one"]);
    // Tracing runs the forward once, with no --precision of its own.
    let (last, exported) = (format!("{}/last", s.out("run")), s.out("exported"));
    let export = owned(&["export", "-m", &last, "--format", "torchscript", "--out", &exported, "-q"]);
    for args in [train, encode, export] {
        let out = bin().args(&args).env("ONEDNN_VERBOSE", "1").output().unwrap();
        assert_ok(&out);
        let printed = stdout(&out);
        let kernels: Vec<&str> = printed.lines().filter(|l| l.contains("primitive,exec")).take(3).collect();
        assert!(kernels.is_empty(), "{} ran oneDNN kernels, e.g. {kernels:?}", args[0]);
    }
}

/// `best/` holds the evaluation with the highest mean of the main dev metrics (the first of
/// equal ones), the log marks each evaluation that beat those before it, and `eval` of `best/`
/// scores what the run recorded for it.
#[test]
fn best_holds_the_evaluation_with_the_highest_mean_metric() {
    let test = "best_holds_the_evaluation_with_the_highest_mean_metric";
    let Some(s) = setup(test) else { return };
    s.train("run", &["--max-steps", "16", "--eval-every", "2"]);
    let run_dir = s.out("run");
    let evals = log_records(&run_dir, "eval");
    assert_eq!(evals.len(), 8);
    let means: Vec<f64> = evals.iter().map(|e| e["mean_main_metric"].as_f64().unwrap()).collect();
    let best = (0..means.len()).fold(0, |b, i| if means[i] > means[b] { i } else { b });
    let mut top = f64::NEG_INFINITY;
    for (record, &mean) in evals.iter().zip(&means) {
        assert_eq!(record["best"].as_bool(), Some(mean > top), "{record}");
        top = top.max(mean);
    }
    let best_dir = Path::new(&run_dir).join("best");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best_dir.join("sentence_mtl.json")).unwrap()).unwrap();
    assert_eq!(spec["metrics"]["step"], evals[best]["step"], "{means:?}");
    assert_eq!(spec["metrics"]["mean_main_metric"].as_f64(), Some(means[best]));
    let (topic, mood) = (s.data.topic_dev.display(), s.data.mood_dev.display());
    let (topic, mood) = (format!("topic={topic}"), format!("mood={mood}"));
    let best_dir = best_dir.to_str().unwrap();
    // In the batches and threads of training's dev evaluation (--eval-batch-size 64).
    let mut args = vec!["eval", "-m", best_dir, "--task", &topic, "--task", &mood, "--json", "-q", "--device", "cpu"];
    args.extend(["--batch-size", "64", "--threads", "1"]);
    let scored = run(&args);
    assert_ok(&scored);
    let scored: serde_json::Value = serde_json::from_str(&stdout(&scored)).unwrap();
    for task in ["topic", "mood"] {
        let (now, then) = (&scored["tasks"][task], &evals[best]["tasks"][task]);
        assert_eq!(now["macro_f1"].as_f64(), then["macro_f1"].as_f64(), "{task}");
        assert_eq!(now["accuracy"].as_f64(), then["accuracy"].as_f64(), "{task}");
    }
}

#[test]
fn small_data_mode_turns_itself_on_says_so_learns_and_can_be_turned_off() {
    let test = "small_data_mode_turns_itself_on_says_so_learns_and_can_be_turned_off";
    let Some(s) = setup(test) else { return };
    let topic = format!("topic={},{}", s.data.topic_train.display(), s.data.topic_dev.display());
    let train_with = |out: &str, small_data: &str, extra: &[&str]| {
        let mut args = vec!["train", "-m", &s.model, "--task", &topic, "--device", "cpu", "--threads", "1"];
        let out = s.out(out);
        args.extend(["--batch-size", "8", "--epochs", "1", "--small-data", small_data, "--out", &out]);
        args.extend(["--lr-backbone", "3e-3", "--lr-projection", "3e-3", "--lr-heads", "3e-3"]);
        args.extend(extra);
        let output = run(&args);
        assert_ok(&output);
        // All the run said: its notes on stderr, its closing lines on stdout.
        (stderr(&output) + &stdout(&output), out)
    };
    let train = |out: &str, small_data: &str| train_with(out, small_data, &[]);
    // 144 rows in 3 classes: 18 steps an epoch, raised to 200.
    let (said, out) = train("auto", "auto");
    assert!(said.contains("small-data mode for 'topic' (144 rows): label-pair cosine loss"), "{said}");
    assert!(said.contains("200 optimizer steps instead of 18; --small-data off turns it off"), "{said}");
    // Said at the end too, where `--quiet` keeps it: the run is longer than the one asked for.
    assert!(said.contains("small-data mode lengthened the run to 200 optimizer steps from the 18 planned"), "{said}");
    let refit = "small-data mode: the head of 'topic' fitted anew on the final embeddings of its 144 training rows";
    assert!(said.contains(refit), "{said}");
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("last/sentence_mtl.json")).unwrap())
            .unwrap();
    assert_eq!(spec["tasks"][0]["head_input"], "embedding");
    assert_head_is_the_refit(&Path::new(&out).join("last"), "topic", &s.data.topic_train);
    assert_eq!(log_records(&out, "step").last().unwrap()["step"], 200);
    // --epochs 1: one evaluation (and save), not one per 18-row epoch.
    assert_eq!(log_records(&out, "eval").len(), 1);
    let accuracy = log_records(&out, "eval").last().unwrap()["tasks"]["topic"]["accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.9, "small-data mode reached only {accuracy} dev accuracy");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["settings"]["small_data"], "auto");
    let (said, out) = train("off", "off");
    assert!(!said.contains("small-data mode"), "{said}");
    let spec = std::fs::read_to_string(Path::new(&out).join("last/sentence_mtl.json")).unwrap();
    assert!(!spec.contains("head_input"), "{spec}");
    assert_eq!(log_records(&out, "step").last().unwrap()["step"], 18);
    // A frozen backbone without a projection: nothing feeds the embeddings, so no label-pair
    // loss (a constant) and no lengthening, but the head is still fitted anew on them.
    let (said, out) = train_with("frozen", "auto", &["--freeze", "backbone", "--projection-dim", "0"]);
    assert_eq!(log_records(&out, "step").last().unwrap()["step"], 18);
    assert!(said.contains("cross-entropy alone, over the planned steps (no label-pair loss and no lengthening: nothing that feeds the embeddings trains)"), "{said}");
    assert!(said.contains("small-data mode: no label-pair loss (the encoder is frozen), head refitted"), "{said}");
    assert!(said.contains(refit), "{said}");
    // A frozen head is kept as it is, and the run says so.
    let (said, _) = train_with("frozen_head", "auto", &["--freeze", "head:topic", "--max-steps", "4"]);
    assert!(
        said.contains("small-data mode: label-pair cosine loss on the embeddings, head frozen, not refitted"),
        "{said}"
    );
    assert!(said.contains("and the frozen head of 'topic' kept as it is, "), "{said}");
    assert!(!said.contains(refit), "{said}");
}

/// Dev evaluations in small-data mode score the head the run would end with, fitted on that
/// step's embeddings: `best/` from an earlier evaluation and an early stop's checkpoints hold
/// such heads, not the jointly trained one.
#[test]
fn small_data_checkpoints_hold_refitted_heads_at_every_evaluation() {
    let test = "small_data_checkpoints_hold_refitted_heads_at_every_evaluation";
    let Some(s) = setup(test) else { return };
    let topic = format!("topic={},{}", s.data.topic_train.display(), s.data.topic_dev.display());
    let out = s.out("run");
    let mut args = vec!["train", "-m", &s.model, "--task", &topic, "--device", "cpu", "--threads", "1"];
    args.extend(["--batch-size", "8", "--eval-every", "20", "--patience", "1", "--log-every", "30", "--out", &out]);
    // Rates too small to change the dev score, so the second evaluation stops the run.
    args.extend(["--lr-backbone", "1e-12", "--lr-projection", "1e-12", "--lr-heads", "1e-12"]);
    let output = run(&args);
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains("early stopping at step 40"), "{said}");
    // Stopped within the 54 planned steps (3 epochs of 18), the run was not made longer.
    assert!(!stdout(&output).contains("small-data mode lengthened the run"), "{}", stdout(&output));
    // The steps since the last window are logged, and shown, before the evaluation that
    // stops the run, as at every evaluation.
    assert!(said.contains("step 40/"), "{said}");
    let log = std::fs::read_to_string(Path::new(&out).join("train_log.jsonl")).unwrap();
    let records: Vec<(String, u64)> = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|r| (r["type"].as_str().unwrap().to_string(), r["step"].as_u64().unwrap()))
        .collect();
    let at_40: Vec<&str> = records.iter().filter(|(_, step)| *step == 40).map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(at_40, ["step", "eval", "summary"], "{log}");
    // Stopped right at a logging step, whose line waited on the one at step 20: shown too.
    let at_a_window = s.out("at_a_window");
    let out_at = args.iter().position(|a| *a == "--out").unwrap();
    let mut args_at = args.clone();
    args_at[out_at + 1] = &at_a_window;
    let log_every = args_at.iter().position(|a| *a == "--log-every").unwrap();
    args_at[log_every + 1] = "20";
    let output = run(&args_at);
    assert_ok(&output);
    assert!(stderr(&output).contains("step 40/"), "{}", stderr(&output));
    assert!(said.contains("small-data mode: the head of 'topic' fitted anew"), "{said}");
    for checkpoint in ["best", "last"] {
        assert_head_is_the_refit(&Path::new(&out).join(checkpoint), "topic", &s.data.topic_train);
    }
    // Killed after the early stop's save and before its summary: --resume ends the run
    // there, as the uninterrupted run ended, and trains nothing past it.
    let log_path = Path::new(&out).join("train_log.jsonl");
    let unfinished: Vec<&str> = log.lines().filter(|line| !line.contains(r#""type":"summary""#)).collect();
    std::fs::write(&log_path, unfinished.join("\n") + "\n").unwrap();
    let weights = |checkpoint: &str| std::fs::read(Path::new(&out).join(checkpoint).join("model.safetensors")).unwrap();
    let before = (weights("best"), weights("last"));
    let resumed = run(&["train", "--resume", &out, "--threads", "2"]);
    assert_ok(&resumed);
    let said = stderr(&resumed);
    assert!(said.contains("the run had stopped early at step 40 (--patience)"), "{said}");
    assert!(said.contains("note: the steps before this resume ran on 1 CPU threads and these run on 2;"), "{said}");
    assert!(!said.contains("step 41"), "{said}");
    assert!(before == (weights("best"), weights("last")), "the resumed run changed best/ or last/");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let end: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!((end["type"].as_str(), end["step"].as_u64()), (Some("summary"), Some(40)), "{log}");
    // Patience spent at the run's last step stops nothing: the run just ends.
    let out = s.out("ends");
    let last = args.iter().position(|a| *a == "--out").unwrap();
    args[last + 1] = &out;
    args.extend(["--max-steps", "40"]);
    let output = run(&args);
    assert_ok(&output);
    assert!(!stderr(&output).contains("early stopping"), "{}", stderr(&output));
}

/// A dev set without rows of some class caps its macro-F1 (the main metric) below 1, which
/// weighs the task less in choosing `best/`: the run says so before it starts.
#[test]
fn a_dev_set_missing_a_class_gets_a_note() {
    let test = "a_dev_set_missing_a_class_gets_a_note";
    let Some(s) = setup(test) else { return };
    let dev = s.dir.path().join("mood_dev_positive.csv");
    let rows = std::fs::read_to_string(&s.data.mood_dev).unwrap();
    let kept: Vec<&str> = rows.lines().filter(|line| !line.ends_with(",negative")).collect();
    std::fs::write(&dev, kept.join("\n") + "\n").unwrap();
    let mood = format!("mood={},{}", s.data.mood_train.display(), dev.display());
    let out = s.out("run");
    let output = run(&["train", "-m", &s.model, "--task", &mood, "--max-steps", "1", "--out", &out, "--threads", "1"]);
    assert_ok(&output);
    let said = stderr(&output);
    assert!(
        said.contains("note: task 'mood': its dev set has no rows of 1 of its 2 classes ('negative'); dev macro-F1 counts each as 0")
            && said.contains("so it is at most 0.500"),
        "{said}"
    );
}

/// A label column where every row has its own label (an id column named by mistake) trains
/// one class per row: a note says so, as one example per class can be a real few-shot set.
#[test]
fn a_label_per_row_gets_a_note() {
    let test = "a_label_per_row_gets_a_note";
    let Some(s) = setup(test) else { return };
    let with_ids = s.dir.path().join("mood_ids.csv");
    let rows = std::fs::read_to_string(&s.data.mood_train).unwrap();
    let lines: Vec<String> = rows
        .lines()
        .enumerate()
        .map(|(i, line)| match i {
            0 => format!("{line},id"),
            _ => format!("{line},row{i}"),
        })
        .collect();
    std::fs::write(&with_ids, lines.join("\n") + "\n").unwrap();
    let mood = format!("mood={}", with_ids.display());
    let out = s.out("run");
    let args = ["train", "-m", &s.model, "--task", &mood, "--label-column", "id", "--max-steps", "1", "--out", &out];
    let output = run(&[&args[..], &["--threads", "1", "--small-data", "off"]].concat());
    assert_ok(&output);
    let said = stderr(&output);
    let rows = lines.len() - 1;
    assert!(
        said.contains(&format!("note: task 'mood': each of its {rows} training rows has a label of its own in column 'id', so every class has one example; if that column is not the labels, --label-column names another")),
        "{said}"
    );
}

#[test]
fn the_default_backbone_rate_follows_the_run_size_and_says_so_unless_a_flag_sets_it() {
    let test = "the_default_backbone_rate_follows_the_run_size_and_says_so_unless_a_flag_sets_it";
    let Some(s) = setup(test) else { return };
    let topic = format!("topic={},{}", s.data.topic_train.display(), s.data.topic_dev.display());
    let train = |out: &str, extra: &[&str]| {
        let out = s.out(out);
        let mut args = vec!["train", "-m", &s.model, "--task", &topic, "--device", "cpu", "--threads", "1"];
        args.extend(["--max-steps", "1", "--small-data", "off", "--out", &out]);
        args.extend(extra);
        let output = run(&args);
        assert_ok(&output);
        let settings: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("settings.json")).unwrap()).unwrap();
        (stderr(&output), settings["settings"]["lr_backbone"].as_f64().unwrap())
    };
    let (said, rate) = train("default", &[]);
    assert!(
        said.contains("backbone learning rate 4e-5: the default recipe's rate for runs of fewer than 3000 training rows (this one has 144; 8e-5 from 3000)"),
        "{said}"
    );
    assert_eq!(rate, 4e-5);
    let (said, rate) = train("given", &["--lr-backbone", "1e-4"]);
    assert!(!said.contains("backbone learning rate"), "{said}");
    assert_eq!(rate, 1e-4);
    let (said, rate) = train("seed", &["--recipe", "seed"]);
    assert!(!said.contains("backbone learning rate"), "{said}");
    assert_eq!(rate, 1e-5);
    let (said, _) = train("frozen", &["--freeze", "backbone"]);
    assert!(!said.contains("backbone learning rate"), "a frozen backbone takes no rate: {said}");
}

/// The logged throughput covers the steps, not the evaluations and saves between them: the
/// windows' time, summed, is the summary's training time, though evaluation took longer.
#[test]
fn logged_throughput_leaves_evaluations_out() {
    let test = "logged_throughput_leaves_evaluations_out";
    let Some(s) = setup(test) else { return };
    let dev = s.dir.path().join("long_dev.csv");
    let rows: String = (0..3000).map(|i| format!("a sentence number {i} about sport,sport\n")).collect();
    std::fs::write(&dev, format!("text,label\n{rows}")).unwrap();
    let task = format!("topic={},{}", s.data.topic_train.display(), dev.display());
    let out = s.out("run");
    let mut args = vec!["train", "-m", &s.model, "--task", &task, "--out", &out];
    args.extend(FAST);
    args.extend(["--max-steps", "6", "--log-every", "2", "--eval-every", "2", "-q"]);
    assert_ok(&bin().args(&args).output().unwrap());
    let windows: f64 = log_records(&out, "step").iter().map(|r| 16.0 / r["examples_per_sec"].as_f64().unwrap()).sum();
    let summary = &log_records(&out, "summary")[0];
    let (train, eval) = (summary["train_seconds"].as_f64().unwrap(), summary["eval_seconds"].as_f64().unwrap());
    assert!(eval > 2.0 * train, "the test needs evaluations longer than the steps: {summary}");
    assert!(windows < train + 0.25 * eval, "windows took {windows:.3}s; steps {train:.3}s, evaluations {eval:.3}s");
}

#[test]
fn flags_this_run_ignores_get_a_note() {
    // Each run's notes, from a run that went on to succeed.
    let ok_stderr = |output: &std::process::Output| {
        assert_ok(output);
        stderr(output)
    };
    let test = "flags_this_run_ignores_get_a_note";
    let Some(s) = setup(test) else { return };
    let topic = format!("topic={}", s.data.topic_train.display());
    let out = s.out("run");
    let mut args = vec!["train", "-m", &s.model, "--task", &topic, "--device", "cpu", "--threads", "1"];
    args.extend(["--max-steps", "1", "--out", &out, "--patience", "2", "--temperature", "3"]);
    args.extend(["--epochs", "2", "--eval-every", "5", "--no-feature-cache", "--task-weight", "topic=0"]);
    args.extend(["--lr-projection", "1e-3", "--warmup-ratio", "0.2", "--warmup-steps", "2"]);
    let mut without_projection = args.clone();
    without_projection.extend(["--projection-dim", "0"]);
    let output = run(&without_projection);
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains("note: --lr-projection has no effect: the model has no projection"), "{said}");
    assert!(said.contains("note: --warmup-ratio has no effect: --warmup-steps sets the warm-up"), "{said}");
    assert!(said.contains("note: --patience has no effect: no task has a dev set"), "{said}");
    assert!(said.contains("note: --epochs has no effect: --max-steps sets the run's length"), "{said}");
    assert!(said.contains("note: --eval-every only sets how often last/ is saved: no task has a dev set"), "{said}");
    assert!(said.contains("note: --no-feature-cache has no effect: nothing is frozen"), "{said}");
    assert!(said.contains("note: task 'topic' has --task-weight 0: its loss adds no gradient"), "{said}");
    assert!(said.contains("note: --temperature has no effect: it applies to --sampling temperature"), "{said}");
    assert!(said.contains("note: --warmup-steps is longer than the run: the learning rates never reach"), "{said}");
    // Piped, stderr gets a line of progress where a terminal would show the bar.
    assert!(said.contains("step 1/1 (epoch 0.20): loss topic "), "{said}");
    assert!(!said.contains("truncated to that length"), "{said}");
    // Training texts longer than --max-length are counted in a note too.
    args.extend(["--sampling", "temperature", "--overwrite", "--max-length", "6", "--batch-tokens", "4"]);
    let said = ok_stderr(&run(&args));
    assert!(!said.contains("--temperature has no effect"), "{said}");
    assert!(!said.contains("--lr-projection has no effect"), "a new projection takes the rate: {said}");
    assert!(
        said.contains("training texts are longer than 6 tokens and truncated to that length (--max-length)")
            && said.contains("note: task 'topic': "),
        "{said}"
    );
    let mut blocks: Vec<&str> = args.iter().copied().filter(|a| *a != "--no-feature-cache").collect();
    blocks.extend(["--freeze", "layers:1"]);
    let said_blocks = ok_stderr(&run(&blocks));
    assert!(
        said_blocks.contains("note: no feature cache: --freeze layers:1 leaves the embeddings training"),
        "{said_blocks}"
    );
    // Rows the token budget cannot hold train alone, and a note says how many.
    assert!(said.contains("rows take more than --batch-tokens 4 (6 padded tokens at the most)"), "{said}");
    let mut inert = args.clone();
    inert.extend(["--freeze", "backbone", "--feature-cache-budget", "64"]);
    let said = ok_stderr(&run(&inert));
    assert!(said.contains("note: --feature-cache-budget has no effect: --no-feature-cache builds no cache"), "{said}");
    // Frozen embeddings alone leave no frozen output to compute once.
    let mut embeddings: Vec<&str> = args.iter().copied().filter(|a| *a != "--no-feature-cache").collect();
    embeddings.extend(["--freeze", "embeddings", "--feature-cache-budget", "64"]);
    let said = ok_stderr(&run(&embeddings));
    assert!(
        said.contains(
            "note: --feature-cache-budget has no effect: no feature cache is built without a frozen backbone"
        ),
        "{said}"
    );
    // A frozen backbone takes no backbone rate.
    let mut rates: Vec<&str> = args.iter().copied().filter(|a| *a != "--no-feature-cache").collect();
    rates.extend(["--freeze", "backbone", "--lr-backbone", "1e-5", "--layer-decay", "0.9", "--dropout", "0.2"]);
    let said = ok_stderr(&run(&rates));
    assert!(
        said.contains(
            "note: --lr-backbone and --layer-decay have no effect: --freeze backbone trains no backbone layer"
        ),
        "{said}"
    );
    // A cached frozen backbone runs without the dropout that lives only in it.
    assert!(
        said.contains("note: --dropout has no effect: the feature cache computes the frozen backbone once"),
        "{said}"
    );
}

/// Numeric labels sort as numbers (`2` before `10`), and labels that are scores with
/// fractions get a note pointing at similarity tasks.
#[test]
fn numeric_labels_sort_as_numbers_and_scores_get_a_note() {
    let test = "numeric_labels_sort_as_numbers_and_scores_get_a_note";
    let Some(s) = setup(test) else { return };
    let write = |name: &str, labels: &[&str]| {
        let rows: String = (0..12).map(|i| format!("sentence number {i},{}\n", labels[i % labels.len()])).collect();
        let path = Path::new(&s.out(name)).with_extension("csv");
        std::fs::write(&path, format!("text,label\n{rows}")).unwrap();
        format!("{name}={}", path.display())
    };
    let train = |task: &str, folder: &str| {
        let out = s.out(folder);
        let args = ["train", "-m", &s.model, "--task", task, "--device", "cpu", "--threads", "1", "--max-steps", "1"];
        let output = run(&[&args[..], &["--out", &out]].concat());
        assert_ok(&output);
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{out}/last/sentence_mtl.json")).unwrap()).unwrap();
        (stderr(&output), spec["tasks"][0]["labels"].clone())
    };
    let counts = write("counts", &["10", "2", "1"]);
    let (said, labels) = train(&counts, "counts-run");
    assert_eq!(labels, serde_json::json!(["1", "2", "10"]));
    assert!(!said.contains("labels are numbers"), "{said}");

    // A checkpoint from before numbers sorted as numbers has them as text; a run resumed from
    // it, or trained further from it, keeps that order and the head.
    let run_dir = std::path::PathBuf::from(s.out("counts-run"));
    let edit_json = |path: &Path, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        edit(&mut value);
        std::fs::write(path, serde_json::to_string(&value).unwrap()).unwrap();
    };
    let as_text = serde_json::json!(["1", "10", "2"]);
    edit_json(&run_dir.join("last/sentence_mtl.json"), &|spec| spec["tasks"][0]["labels"] = as_text.clone());
    // The run made unfinished: a longer run, and no summary yet.
    edit_json(&run_dir.join("settings.json"), &|settings| settings["settings"]["max_steps"] = 2.into());
    let log = std::fs::read_to_string(run_dir.join("train_log.jsonl")).unwrap();
    let unfinished: Vec<&str> = log.lines().filter(|l| !l.contains("\"type\":\"summary\"")).collect();
    std::fs::write(run_dir.join("train_log.jsonl"), unfinished.join("\n") + "\n").unwrap();
    let further = s.out("further");
    let args = ["train", "-m", &format!("{}/last", run_dir.display()), "--task", &counts, "--device", "cpu"];
    let output = run(&[&args[..], &["--threads", "1", "--max-steps", "1", "--out", &further]].concat());
    assert_ok(&output);
    assert!(!stderr(&output).contains("starts new"), "{}", stderr(&output));
    let resumed = run(&["train", "--resume", run_dir.to_str().unwrap(), "--threads", "1"]);
    assert_ok(&resumed);
    assert!(stdout(&resumed).contains("resumed at step 1 and trained to step 2"), "{}", stdout(&resumed));
    for checkpoint in [run_dir.join("last"), Path::new(&further).join("last")] {
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(checkpoint.join("sentence_mtl.json")).unwrap()).unwrap();
        assert_eq!(spec["tasks"][0]["labels"], as_text, "{}", checkpoint.display());
    }
    let (said, labels) = train(&write("scores", &["3.8", "0.5", "4"]), "scores-run");
    assert_eq!(labels, serde_json::json!(["0.5", "3.8", "4"]));
    let note = "note: task 'scores': its 3 labels are numbers such as 0.5, each trained as a class of its own; to learn scores of sentence pairs, give the columns sentence1,sentence2,score (a similarity task)";
    assert!(said.contains(note), "{said}");
}

#[test]
fn both_heads_learn_and_the_checkpoint_predicts_like_the_model_in_memory() {
    let test = "both_heads_learn_and_the_checkpoint_predicts_like_the_model_in_memory";
    let Some(s) = setup(test) else { return };
    let args = s.args("run", &["--epochs", "6", "--warmup-steps", "0", "--quiet"]);
    let cli = Cli::parse_from(std::iter::once("sentence-mtl".to_string()).chain(args));
    let Command::Train(train_args) = cli.command else { unreachable!() };
    let settings = TrainSettings::from_args(&train_args).unwrap();
    let options =
        RunOptions { quiet: true, overwrite: false, batch_plan: None, command_line: vec![], typed_flags: vec![] };
    let outcome = train(&settings, &options, None).unwrap();

    let best = outcome.best.as_ref().expect("dev sets were given");
    for task in ["topic", "mood"] {
        let (name, accuracy) = best.tasks[task].secondary();
        assert_eq!(name, "accuracy");
        eprintln!("{task}: best dev accuracy {accuracy:.3}");
        assert!(accuracy >= 0.9, "{task} reached only {accuracy} dev accuracy");
    }

    // The final weights in memory, the same weights reloaded from last/, and the
    // `predict` command on last/ must agree on every dev sentence.
    let dev_texts: Vec<String> =
        csv::Reader::from_path(&s.data.mood_dev).unwrap().records().map(|r| r.unwrap()[0].to_string()).collect();
    let in_memory = class_probabilities(&outcome.model, "mood", &dev_texts, 16, &Progress::hidden()).unwrap();
    let last = outcome.run.last();
    let reloaded = checkpoint::load(last.to_str().unwrap(), Device::Cpu, &SpecOverrides::default()).unwrap();
    let from_disk = class_probabilities(&reloaded, "mood", &dev_texts, 16, &Progress::hidden()).unwrap();
    assert_eq!(f64::try_from((&in_memory - &from_disk).abs().max()).unwrap(), 0.0);

    let predict = s.predict_mood_dev(&last, "cpu");
    assert_ok(&predict);
    let labels = reloaded.spec.task("mood").unwrap().labels.clone();
    let probs = Vec::<Vec<f32>>::try_from(&in_memory).unwrap();
    assert_eq!(stdout(&predict).lines().count(), dev_texts.len(), "one prediction per dev row");
    for (i, line) in stdout(&predict).lines().enumerate() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["text"], dev_texts[i].as_str(), "predict output is not in input order");
        let (best_class, best_p) =
            probs[i].iter().enumerate().fold((0, f32::MIN), |b, (c, &p)| if p > b.1 { (c, p) } else { b });
        assert_eq!(row["label"], labels[best_class].as_str());
        assert!((row["probability"].as_f64().unwrap() - best_p as f64).abs() < 1e-6);
    }
}

#[test]
fn same_seed_gives_identical_weights() {
    let test = "same_seed_gives_identical_weights";
    let Some(s) = setup(test) else { return };
    s.train("a", &["--max-steps", "12", "--seed", "7", "-q"]);
    s.train("b", &["--max-steps", "12", "--seed", "7", "-q"]);
    s.train("c", &["--max-steps", "12", "--seed", "8", "-q"]);
    let (a, b, c) = (
        weights(&Path::new(&s.out("a")).join("last")),
        weights(&Path::new(&s.out("b")).join("last")),
        weights(&Path::new(&s.out("c")).join("last")),
    );
    for (name, ta) in &a {
        assert!(ta.equal(&b[name]), "{name} differs between two runs with the same seed");
    }
    assert!(a.iter().any(|(name, ta)| !ta.equal(&c[name])), "a different seed gave identical weights");
}

/// Which variables each --freeze mode must leave untouched, written independently of the
/// implementation (tiny-bert has 3 blocks).
fn frozen_by(mode: &str, name: &str) -> bool {
    // BERT's pooler is carried through checkpoints unchanged; sentence features never use it.
    if name.starts_with("bert.pooler.") {
        return true;
    }
    let block = |i: usize| name.starts_with(&format!("bert.encoder.layer.{i}."));
    match mode {
        "none" => false,
        "all" => true,
        "backbone" => name.starts_with("bert."),
        "embeddings" => name.starts_with("bert.embeddings."),
        "layers:1" => block(0),
        "layers:2" => block(0) || block(1),
        "head:topic" => name.starts_with("heads.topic."),
        _ => unreachable!(),
    }
}

#[test]
fn frozen_tensors_stay_bit_identical_and_trainable_ones_move() {
    let test = "frozen_tensors_stay_bit_identical_and_trainable_ones_move";
    let Some(s) = setup(test) else { return };
    // --freeze all trains nothing, so its checkpoint holds the initial weights for this seed.
    let out = s.train("initial", &["--freeze", "all", "--seed", "3"]);
    assert!(stderr(&out).contains("no trainable parameter"), "{}", stderr(&out));
    assert!(stderr(&out).contains("are new (randomly initialised) and frozen, so it stays random"), "{}", stderr(&out));
    let initial = weights(&Path::new(&s.out("initial")).join("last"));
    assert!(initial.keys().any(|n| n.starts_with("bert.encoder.layer.2.")));
    // ... and its backbone is the base model's, as the model's own file holds it.
    let base = weights(Path::new(&s.model));
    for (name, tensor) in &initial {
        if let Some(base_name) = name.strip_prefix("bert.") {
            assert!(tensor.equal(&base[base_name]), "--freeze all changed {name}");
        }
    }
    for mode in ["none", "backbone", "embeddings", "layers:1", "layers:2", "head:topic"] {
        let run = format!("run-{}", mode.replace(':', "-"));
        s.train(&run, &["--freeze", mode, "--seed", "3", "--max-steps", "4", "--warmup-steps", "0", "-q"]);
        let after = weights(&Path::new(&s.out(&run)).join("last"));
        let (mut frozen, mut moved) = (0, 0);
        for (name, before) in &initial {
            let same = before.equal(&after[name]);
            if frozen_by(mode, name) {
                assert!(same, "--freeze {mode}: frozen tensor {name} changed");
                frozen += 1;
            } else {
                assert!(!same, "--freeze {mode}: trainable tensor {name} did not change");
                moved += 1;
            }
        }
        eprintln!("--freeze {mode}: {frozen} tensors unchanged, {moved} changed");
    }
}

/// DistilBERT's sinusoidal position table stays fixed, as transformers keeps it, while the
/// rest of the embeddings train.
#[test]
fn a_sinusoidal_position_table_is_not_trained() {
    let test = "a_sinusoidal_position_table_is_not_trained";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("sinusoidal");
    copy_dir(&models.join("tiny-distilbert"), &model);
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    let sinusoidal = config.replace("\"sinusoidal_pos_embds\": false", "\"sinusoidal_pos_embds\": true");
    assert_ne!(config, sinusoidal);
    std::fs::write(model.join("config.json"), sinusoidal).unwrap();
    let data = write_toy_data(dir.path());
    let (task, out) = (format!("topic={}", data.topic_train.display()), dir.path().join("run"));
    let mut args = vec!["train", "-m", model.to_str().unwrap(), "--task", &task, "--out", out.to_str().unwrap()];
    args.extend(FAST);
    args.extend(["--max-steps", "3", "--warmup-steps", "0", "-q"]);
    assert_ok(&run(&args));
    let (before, after) = (weights(&model), weights(&out.join("last")));
    let table = "distilbert.embeddings.position_embeddings.weight";
    assert!(before["embeddings.position_embeddings.weight"].equal(&after[table]), "the table trained");
    let words = "embeddings.word_embeddings.weight";
    assert!(!before[words].equal(&after[&format!("distilbert.{words}")]), "the embeddings did not train");
}

#[test]
fn logged_learning_rates_follow_groups_layer_decay_and_schedule() {
    let test = "logged_learning_rates_follow_groups_layer_decay_and_schedule";
    let Some(s) = setup(test) else { return };
    s.train(
        "lr",
        &[
            "--max-steps",
            "10",
            "--warmup-steps",
            "4",
            "--log-every",
            "1",
            "--layer-decay",
            "0.5",
            "--lr-backbone",
            "1e-3",
            "--lr-projection",
            "2e-3",
            "--lr-heads",
            "5e-3",
            "-q",
        ],
    );
    let steps = log_records(&s.out("lr"), "step");
    assert_eq!(steps.len(), 10);
    for record in steps {
        let step = record["step"].as_u64().unwrap() as f64; // 1-based: the rate used by this step
        let factor = if step - 1.0 < 4.0 { (step - 1.0) / 4.0 } else { (10.0 - (step - 1.0)) / 6.0 };
        let expected = [
            ("layer.2", 1e-3),
            ("layer.1", 5e-4),
            ("layer.0", 2.5e-4),
            ("embeddings", 1.25e-4),
            ("projection", 2e-3),
            ("heads", 5e-3),
        ];
        for (group, base) in expected {
            let got = record["lr"][group].as_f64().unwrap_or_else(|| panic!("no lr for {group}: {record}"));
            assert!(
                (got - base * factor).abs() <= 1e-12 * base,
                "step {step} {group}: lr {got}, expected {}",
                base * factor
            );
        }
    }
}

#[test]
fn batch_plan_alternates_tasks_and_covers_every_row() {
    let test = "batch_plan_alternates_tasks_and_covers_every_row";
    let Some(s) = setup(test) else { return };
    let plan = s.dir.path().join("plan.jsonl");
    s.train("plan", &["--epochs", "1", "--save-batch-plan", plan.to_str().unwrap(), "-q"]);
    let batches: Vec<serde_json::Value> =
        std::fs::read_to_string(&plan).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // topic has 144 rows (18 batches of 8), mood 96 (12): round-robin gives 2 x 18 batches.
    assert_eq!(batches.len(), 36);
    let mut topic_rows = Vec::new();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b["task"], if i % 2 == 0 { "topic" } else { "mood" }, "batch {i}");
        let rows: Vec<u64> = b["rows"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
        assert!(!rows.is_empty() && rows.len() <= 8);
        if i % 2 == 0 {
            topic_rows.extend(rows);
        }
    }
    topic_rows.sort();
    assert_eq!(topic_rows, (0..144).collect::<Vec<_>>(), "the largest task is seen exactly once per epoch");
}

/// With `--grad-accum` that does not divide an epoch's batches, the epoch's last step takes
/// what is left, so every epoch is one pass (they used to run into the next pass).
#[test]
fn an_epoch_is_one_pass_whatever_the_accumulation() {
    let test = "an_epoch_is_one_pass_whatever_the_accumulation";
    let Some(s) = setup(test) else { return };
    let plan = s.dir.path().join("plan.jsonl");
    s.train("accum", &["--epochs", "2", "--grad-accum", "5", "--save-batch-plan", plan.to_str().unwrap(), "-q"]);
    let batches: Vec<serde_json::Value> =
        std::fs::read_to_string(&plan).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // 36 batches an epoch (round-robin over 18 + 12): 7 steps of 5, then one of 1.
    assert_eq!(batches.len(), 72);
    let steps: Vec<u64> = batches.iter().map(|b| b["step"].as_u64().unwrap()).collect();
    assert_eq!((steps[34], steps[35], steps[36], steps[71]), (6, 7, 8, 15));
    assert_eq!(steps.iter().filter(|&&s| s == 7).count(), 1);
    let mut second_epoch_topic: Vec<u64> = batches[36..]
        .iter()
        .filter(|b| b["task"] == "topic")
        .flat_map(|b| b["rows"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect::<Vec<_>>())
        .collect();
    second_epoch_topic.sort();
    assert_eq!(second_epoch_topic, (0..144).collect::<Vec<_>>(), "the second epoch is not one pass of topic");
}

#[test]
fn task_shares_give_a_task_its_turns_and_are_saved_with_the_run() {
    let test = "task_shares_give_a_task_its_turns_and_are_saved_with_the_run";
    let Some(s) = setup(test) else { return };
    let plan = s.dir.path().join("plan.jsonl");
    s.train(
        "shares",
        &["--epochs", "1", "--task-share", "mood=0.5", "--save-batch-plan", plan.to_str().unwrap(), "-q"],
    );
    let tasks: Vec<String> = std::fs::read_to_string(&plan)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["task"].as_str().unwrap().to_string())
        .collect();
    // mood (12 batches a pass) gets one turn in three, so its pass ends the epoch at 36 batches.
    assert_eq!(tasks.len(), 36);
    for (i, task) in tasks.iter().enumerate() {
        assert_eq!(task, if i % 3 == 1 { "mood" } else { "topic" }, "batch {i}");
    }
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(Path::new(&s.out("shares")).join(file)).unwrap()).unwrap()
    };
    assert_eq!(read("settings.json")["settings"]["tasks"][1]["share"], 0.5);
    // The checkpoint carries it too, for the model card.
    assert_eq!(read("last/sentence_mtl.json")["training"]["tasks"][1]["share"], 0.5);
}

#[test]
fn checkpoint_folder_is_self_contained() {
    let test = "checkpoint_folder_is_self_contained";
    let Some(s) = setup(test) else { return };
    s.train("ck", &["--max-steps", "2", "--projection-dim", "24", "-q"]);
    let best = Path::new(&s.out("ck")).join("best");
    for file in ["model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json", "sentence_mtl.json"] {
        assert!(best.join(file).is_file(), "best/ lacks {file}");
    }
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best.join("sentence_mtl.json")).unwrap()).unwrap();
    assert_eq!(spec["tasks"][0]["name"], "topic");
    assert_eq!(spec["tasks"][0]["labels"], serde_json::json!(["food", "sport", "weather"]));
    assert_eq!(spec["projection_dim"], 24);
    assert!(spec["training"]["lr_heads"].is_number());
    assert_eq!(spec["training"]["precision_used"], "fp32");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&s.out("ck")).join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["settings"]["max_steps"], 2);
    // Every command reads the folder: encode gives the projection's width.
    let out = run(&["encode", "-m", best.to_str().unwrap(), "--device", "cpu", "-q", "football"]);
    assert_ok(&out);
    assert_eq!(parse_jsonl_embeddings(&stdout(&out))[0].1.len(), 24);
}

#[test]
fn an_existing_run_directory_is_never_overwritten_silently() {
    let test = "an_existing_run_directory_is_never_overwritten_silently";
    let Some(s) = setup(test) else { return };
    let out = s.out("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(Path::new(&out).join("notes.txt"), "my notes").unwrap();
    let args = s.args("mine", &["--max-steps", "1"]);
    assert_clean_error(&bin().args(&args).output().unwrap(), "already holds files and is not a run directory");
    // --overwrite replaces the run's own files and keeps anything else.
    s.train("mine", &["--max-steps", "1", "--overwrite", "-q"]);
    assert_eq!(std::fs::read_to_string(Path::new(&out).join("notes.txt")).unwrap(), "my notes");
    assert!(Path::new(&out).join("best/model.safetensors").is_file());
    // A folder with a settings.json and a best/ of its own is no run: --overwrite, which
    // would set them aside and delete them at the first save, is refused.
    let project = s.out("project");
    std::fs::create_dir_all(Path::new(&project).join("best")).unwrap();
    std::fs::write(Path::new(&project).join("settings.json"), "{\"editor.tabSize\": 4}").unwrap();
    let output = bin().args(s.args("project", &["--max-steps", "1", "--overwrite"])).output().unwrap();
    assert_clean_error(&output, "is not a run directory, and its settings.json, best would be replaced by the run's");
    assert_eq!(std::fs::read_to_string(Path::new(&project).join("settings.json")).unwrap(), "{\"editor.tabSize\": 4}");
    // Now a finished run: a new one there is refused, pointing at --overwrite (not at
    // --resume, which refuses a finished run).
    assert_clean_error(&bin().args(&args).output().unwrap(), "holds a run that finished at step 1 (best checkpoint");
    let replacing = bin().args(s.args("mine", &["--max-steps", "1", "--overwrite"])).output().unwrap();
    assert_ok(&replacing);
    assert!(
        stderr(&replacing).contains(&format!("replacing the run in {out} (--overwrite)")),
        "{}",
        stderr(&replacing)
    );
    // --overwrite deletes nothing when the new run cannot start from its --model: a typo, or
    // the run's own checkpoint, which it would delete.
    let before = std::fs::read(Path::new(&out).join("best/model.safetensors")).unwrap();
    let own_best = format!("{out}/best");
    for (model, expected) in [
        ("/no/such/model", "model folder /no/such/model does not exist"),
        (own_best.as_str(), "is a checkpoint of --out"),
    ] {
        let mut args = s.args("mine", &["--max-steps", "1", "--overwrite"]);
        args[2] = model.to_string();
        assert_clean_error(&bin().args(&args).output().unwrap(), expected);
        assert_eq!(std::fs::read(Path::new(&out).join("best/model.safetensors")).unwrap(), before);
    }
}

/// CUDA training in fp32 and bf16, then `predict` from the checkpoint on the GPU and on the
/// CPU. CI has no GPU, so there it skips, loudly; on a GPU machine
/// `cargo test --release --test e2e cuda_` runs it.
#[test]
fn cuda_training_learns_in_fp32_and_bf16_and_its_checkpoint_predicts_alike_on_the_cpu() {
    let test = "cuda_training_learns_in_fp32_and_bf16_and_its_checkpoint_predicts_alike_on_the_cpu";
    if !sentence_mtl::device::cuda_is_usable() {
        skipped(test, "no usable CUDA device on this machine");
        return;
    }
    let Some(s) = setup(test) else { return };
    for precision in ["fp32", "bf16"] {
        let run_dir = format!("cuda-{precision}");
        let mut args = s.args(&run_dir, &["--epochs", "6", "--warmup-steps", "0", "--quiet", "--precision", precision]);
        let device = args.iter().position(|a| a == "--device").unwrap();
        args[device + 1] = "cuda".into();
        assert_ok(&bin().args(&args).output().unwrap());

        let last_eval = log_records(&s.out(&run_dir), "eval").pop().expect("no evaluation logged");
        for task in ["topic", "mood"] {
            let accuracy = last_eval["tasks"][task]["accuracy"].as_f64().unwrap();
            eprintln!("{precision} {task}: dev accuracy {accuracy:.3}");
            assert!(accuracy >= 0.9, "{precision}: {task} reached only {accuracy} dev accuracy on CUDA");
        }

        let last = Path::new(&s.out(&run_dir)).join("last");
        let predict = |device: &str| {
            let out = s.predict_mood_dev(&last, device);
            assert_ok(&out);
            stdout(&out).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
        };
        let (on_gpu, on_cpu) = (predict("cuda"), predict("cpu"));
        assert_eq!(on_gpu.len(), on_cpu.len());
        for (g, c) in on_gpu.iter().zip(&on_cpu) {
            assert_eq!(g["label"], c["label"], "{precision}: GPU and CPU predict different labels for {}", g["text"]);
            let (pg, pc) = (g["probability"].as_f64().unwrap(), c["probability"].as_f64().unwrap());
            assert!((pg - pc).abs() < 1e-4, "{precision}: probability {pg} on the GPU, {pc} on the CPU");
        }
    }
}

/// Similarity and pairs tasks train the embeddings beside a classification head: their dev
/// metrics rise from the random model's, the pairs task never repeats a text within a batch,
/// only the classification task gets a head, and `eval` of the checkpoint reproduces the
/// training's last dev scores.
#[test]
fn similarity_and_pairs_tasks_train_the_embeddings_beside_a_head() {
    let test = "similarity_and_pairs_tasks_train_the_embeddings_beside_a_head";
    let Some(s) = setup(test) else { return };
    let plan = s.dir.path().join("plan.jsonl");
    let out = s.out("mixed");
    let mut args = vec!["train".to_string(), "-m".into(), s.model.clone(), "--out".into(), out.clone()];
    args.extend(["--task".into(), format!("topic={},{}", s.data.topic_train.display(), s.data.topic_dev.display())]);
    args.extend(s.data.embedding_task_args());
    args.extend(FAST.iter().map(|a| a.to_string()));
    let plan_arg = plan.to_string_lossy().into_owned();
    args.extend(["--epochs", "4", "--warmup-steps", "0", "--save-batch-plan", &plan_arg, "-q"].map(String::from));
    assert_ok(&bin().args(&args).output().unwrap());

    let (similar_dev, match_dev) = (s.data.similar_dev.to_str().unwrap(), s.data.match_dev.to_str().unwrap());
    let eval_of = |model: &str| {
        let similar = format!("similar={similar_dev}");
        let matched = format!("match={match_dev}");
        let eval = run(&["eval", "-m", model, "--device", "cpu", "--json", "--task", &similar, "--task", &matched]);
        assert_ok(&eval);
        serde_json::from_str::<serde_json::Value>(&stdout(&eval)).unwrap()["tasks"].clone()
    };
    let before = eval_of(&s.model);
    let evals = log_records(&out, "eval");
    let last = &evals[evals.len() - 1]["tasks"];
    eprintln!("the random model: {before}\nafter training: {last}");
    let metric = |scores: &serde_json::Value, task: &str, name: &str| scores[task][name].as_f64().unwrap();
    for (task, name, floor) in
        [("similar", "spearman", 0.7), ("match", "mrr_at_10", 0.9), ("match", "recall_at_10", 0.9)]
    {
        let (was, now) = (metric(&before, task, name), metric(last, task, name));
        assert!(now > floor && now > was + 0.1, "{task} {name}: {was} before, {now} after training");
    }
    assert!(metric(last, "topic", "accuracy") >= 0.9, "the head did not learn: {last}");

    // No batch of the pairs task holds a text twice (its positives are other rows' anchors).
    let pairs: Vec<Vec<String>> = csv::Reader::from_path(&s.data.match_train)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    let batches: Vec<serde_json::Value> =
        std::fs::read_to_string(&plan).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut checked = 0;
    for batch in batches.iter().filter(|b| b["task"] == "match") {
        let mut texts: Vec<&str> = batch["rows"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| pairs[r.as_u64().unwrap() as usize].iter().map(String::as_str))
            .collect();
        let before = texts.len();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), before, "a pairs batch repeats a text: {batch}");
        checked += 1;
    }
    assert!(checked > 10, "only {checked} pairs batches");

    let last_dir = Path::new(&out).join("last");
    let tensors = weights(&last_dir);
    assert!(tensors.contains_key("heads.topic.weight"));
    assert!(!tensors.keys().any(|n| n.starts_with("heads.similar") || n.starts_with("heads.match")));
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(last_dir.join("sentence_mtl.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = spec["tasks"].as_array().unwrap().iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["classification", "similarity", "pairs"]);
    assert_eq!(spec["tasks"][1]["score_range"], serde_json::json!([0.0, 5.0]));
    assert_eq!(spec["tasks"][1]["loss"], "cosent");

    // `eval` of last/ scores the dev sets as the final evaluation did.
    let evaluated = eval_of(last_dir.to_str().unwrap());
    for (task, name) in
        [("similar", "spearman"), ("similar", "pearson"), ("match", "mrr_at_10"), ("match", "recall_at_1")]
    {
        let (trained, scored) = (metric(last, task, name), metric(&evaluated, task, name));
        assert!((trained - scored).abs() < 1e-6, "{task} {name}: training {trained}, eval {scored}");
    }
    assert_eq!(evaluated["similar"]["kind"], "similarity");
}

/// A batch of queries of a few tokens and passages of up to fifty goes through the encoder in
/// groups of similar length (`tasks::batch`), and every output comes back to its row: with
/// dropout off, each step's loss equals that of a run that forwards every batch in one padded
/// piece (the feature cache's path, above the frozen bottom block it computes once).
#[test]
fn a_batch_forwarded_in_groups_of_similar_length_trains_as_one_forward() {
    let test = "a_batch_forwarded_in_groups_of_similar_length_trains_as_one_forward";
    let Some(s) = setup(test) else { return };
    let passages = s.dir.path().join("passages.csv");
    write_passages(&passages);
    let task = format!("passages={}", passages.display());
    let losses = |run: &str, extra: &[&str]| -> Vec<f64> {
        let out = s.out(run);
        let mut args = vec!["train", "-m", &s.model, "--task", &task, "--out", &out];
        args.extend(FAST);
        args.extend(["--max-steps", "8", "--log-every", "1", "--dropout", "0", "--warmup-steps", "0", "-q"]);
        args.extend(["--freeze", "embeddings", "--freeze", "layers:1"]);
        args.extend(extra);
        assert_ok(&bin().args(&args).output().unwrap());
        log_records(&out, "step").iter().map(|r| r["loss"]["passages"].as_f64().unwrap()).collect()
    };
    let (grouped, one_piece) = (losses("grouped", &["--no-feature-cache"]), losses("one-piece", &[]));
    assert_eq!((grouped.len(), one_piece.len()), (8, 8));
    for (step, (g, o)) in grouped.iter().zip(&one_piece).enumerate() {
        assert!((g - o).abs() < 1e-5, "step {}: loss {g} forwarded in groups, {o} in one piece", step + 1);
    }
}

/// Under `--precision bf16` the cache computes the training sentences' frozen states in bf16,
/// as the uncached training forward does (and dev sentences in fp32, as dev evaluation does),
/// so with dropout off the cached run still trains what the uncached one trains. Skipped,
/// loudly, on CPUs without bf16 instructions.
#[test]
fn in_bf16_the_feature_cache_trains_what_the_bf16_frozen_layers_train() {
    let test = "in_bf16_the_feature_cache_trains_what_the_bf16_frozen_layers_train";
    let Some(s) = setup(test) else { return };
    if !cpu_has_bf16(test) {
        return;
    }
    for (name, freeze) in
        [("backbone", &["--freeze", "backbone"][..]), ("layers", &["--freeze", "embeddings", "--freeze", "layers:1"])]
    {
        let mut extra = vec!["--epochs", "3", "--dropout", "0", "--warmup-steps", "0", "--precision", "bf16"];
        extra.extend_from_slice(freeze);
        let cached_run = format!("cached-{name}");
        let output = s.train(&cached_run, &extra);
        assert!(
            stderr(&output).contains("training sentences in bf16 and ")
                && stderr(&output).contains(" dev sentences in fp32"),
            "{name}: the cache does not say it holds bf16 training states:\n{}",
            stderr(&output)
        );
        extra.push("--no-feature-cache");
        let plain_run = format!("plain-{name}");
        s.train(&plain_run, &extra);
        let cached = weights(&Path::new(&s.out(&cached_run)).join("last"));
        let plain = weights(&Path::new(&s.out(&plain_run)).join("last"));
        let largest = cached
            .iter()
            .filter(|(tensor, _)| !tensor.ends_with("attention.self.key.bias"))
            .map(|(tensor, value)| f64::try_from((value - &plain[tensor]).abs().max()).unwrap())
            .fold(0.0, f64::max);
        eprintln!("{name}: cached and uncached bf16 runs agree to {largest:.1e} in every trained tensor");
        assert!(largest < 1e-5, "{name}: the cached and uncached bf16 runs differ by {largest}");
    }
}

/// With the backbone (or the embeddings and the bottom block) frozen, the feature cache
/// computes the frozen part once; with dropout off that is the same function as running it
/// every step, so both runs train the same weights (to float rounding), the frozen tensors
/// stay as the base model has them, and the cached run's checkpoint scores its dev sets as
/// its last evaluation did.
#[test]
fn the_feature_cache_trains_what_running_the_frozen_layers_every_step_trains() {
    let test = "the_feature_cache_trains_what_running_the_frozen_layers_every_step_trains";
    let Some(s) = setup(test) else { return };
    let base = weights(Path::new(&s.model));
    for (name, freeze) in
        [("backbone", &["--freeze", "backbone"][..]), ("layers", &["--freeze", "embeddings", "--freeze", "layers:1"])]
    {
        let mut extra = vec!["--epochs", "3", "--dropout", "0", "--warmup-steps", "0"];
        extra.extend_from_slice(freeze);
        let cached_run = format!("cached-{name}");
        let output = s.train(&cached_run, &extra);
        assert!(stderr(&output).contains("feature cache:"), "{name}: no cache was built:\n{}", stderr(&output));
        extra.push("--no-feature-cache");
        let plain_run = format!("plain-{name}");
        let output = s.train(&plain_run, &extra);
        assert!(!stderr(&output).contains("feature cache:"), "{name}: --no-feature-cache built a cache");

        let cached = weights(&Path::new(&s.out(&cached_run)).join("last"));
        let plain = weights(&Path::new(&s.out(&plain_run)).join("last"));
        let (mut moved, mut largest) = (0, 0.0f64);
        for (tensor, value) in &cached {
            let diff = f64::try_from((value - &plain[tensor]).abs().max()).unwrap();
            // An attention key's bias shifts every score of a query alike, which softmax
            // ignores: its gradient is zero up to rounding, and Adam turns that noise into
            // lr-sized steps, so it is the one tensor the two runs need not share.
            if tensor.ends_with("attention.self.key.bias") {
                continue;
            }
            largest = largest.max(diff);
            assert!(diff < 1e-5, "{name}: {tensor} differs by {diff}");
            let bare = tensor.strip_prefix("bert.").unwrap_or(tensor);
            match base.get(bare) {
                Some(initial) if frozen_by(freeze[1], tensor) || (freeze.len() > 2 && frozen_by(freeze[3], tensor)) => {
                    assert!(value.equal(initial), "{name}: frozen {tensor} changed")
                }
                Some(initial) => moved += usize::from(!value.equal(initial)),
                None => {}
            }
        }
        assert!(name == "backbone" || moved > 0, "{name}: no trainable backbone tensor moved");
        eprintln!("{name}: cached and uncached runs agree to {largest:.1e} in every trained tensor");

        let last_eval = log_records(&s.out(&cached_run), "eval").pop().unwrap();
        let eval = run(&[
            "eval",
            "-m",
            &format!("{}/last", s.out(&cached_run)),
            "--device",
            "cpu",
            "--json",
            "--task",
            &format!("topic={}", s.data.topic_dev.display()),
            "--task",
            &format!("mood={}", s.data.mood_dev.display()),
        ]);
        assert_ok(&eval);
        let metrics: serde_json::Value = serde_json::from_str(&stdout(&eval)).unwrap();
        for task in ["topic", "mood"] {
            assert_eq!(metrics["tasks"][task]["accuracy"], last_eval["tasks"][task]["accuracy"], "{name} {task}");
        }
    }
}

#[test]
fn predict_and_eval_read_a_csv_from_the_columns_its_task_was_trained_on() {
    let test = "predict_and_eval_read_a_csv_from_the_columns_its_task_was_trained_on";
    let Some(s) = setup(test) else { return };
    let mut rows = csv::Reader::from_path(&s.data.mood_train).unwrap();
    let rows: Vec<(String, String)> = rows.records().map(|r| r.unwrap()).map(|r| (r[0].into(), r[1].into())).collect();
    let train_csv = s.dir.path().join("reviews.csv");
    let mut w = csv::Writer::from_path(&train_csv).unwrap();
    w.write_record(["id", "review", "sentiment"]).unwrap();
    for (i, (text, label)) in rows.iter().enumerate() {
        w.write_record([&i.to_string(), text, label]).unwrap();
    }
    w.flush().unwrap();
    let out = s.out("run");
    let task = format!("mood={}", train_csv.display());
    let mut args = vec!["train", "-m", &s.model, "--task", &task, "--out", &out, "--max-steps", "2", "-q"];
    args.extend(["--text-column", "review", "--label-column", "sentiment"]);
    args.extend(FAST);
    assert_ok(&run(&args));

    // A file with the training column and a decoy `text` column: the training column wins.
    let input = s.dir.path().join("to_label.csv");
    let mut w = csv::Writer::from_path(&input).unwrap();
    w.write_record(["text", "review"]).unwrap();
    for (text, _) in &rows[..6] {
        w.write_record(["not this one", text]).unwrap();
    }
    w.flush().unwrap();
    let last = format!("{out}/last");
    let from_csv = run(&["predict", "-m", &last, "--task", "mood", "-q", "-i", input.to_str().unwrap()]);
    assert_ok(&from_csv);
    let mut by_argument = vec!["predict", "-m", &last, "--task", "mood", "-q"];
    by_argument.extend(rows[..6].iter().map(|(text, _)| text.as_str()));
    let by_argument = run(&by_argument);
    assert_ok(&by_argument);
    assert_eq!(stdout(&from_csv), stdout(&by_argument));
    // `--text-column` still chooses.
    let decoy =
        run(&["predict", "-m", &last, "--task", "mood", "-q", "-i", input.to_str().unwrap(), "--text-column", "text"]);
    assert_ok(&decoy);
    assert_eq!(stdout(&decoy).lines().count(), 6, "{}", stdout(&decoy));
    assert!(stdout(&decoy).lines().all(|l| l.contains("\"text\":\"not this one\"")), "{}", stdout(&decoy));
    // `eval` reads the training columns, and a file in text,label form as predict does.
    let plain = s.dir.path().join("plain.csv");
    std::fs::copy(&s.data.mood_dev, &plain).unwrap();
    let reviews = s.dir.path().join("reviews_dev.csv");
    std::fs::write(&reviews, std::fs::read_to_string(&plain).unwrap().replacen("text,label", "review,sentiment", 1))
        .unwrap();
    let scores: Vec<serde_json::Value> = [&plain, &reviews]
        .iter()
        .map(|file| {
            let out = run(&["eval", "-m", &last, "--task", &format!("mood={}", file.display()), "--json", "-q"]);
            assert_ok(&out);
            let mut report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
            report["tasks"]["mood"]["data"] = serde_json::Value::Null;
            report["tasks"]["mood"].clone()
        })
        .collect();
    assert_eq!(scores[0]["rows"], 24);
    assert_eq!(scores[0], scores[1]);
}

#[test]
fn pairs_whose_anchor_recurs_train_every_row_each_epoch_and_say_what_cannot_be_batched() {
    let test = "pairs_whose_anchor_recurs_train_every_row_each_epoch_and_say_what_cannot_be_batched";
    let Some(s) = setup(test) else { return };
    // 20 anchors x 3 positives, batch 32: a batch holds each anchor once, so an epoch is 3
    // batches of 20 (60 rows / 32 would give 2, leaving a third of the rows to the next).
    let pairs = s.dir.path().join("pairs.csv");
    let mut text = String::from("anchor,positive\n");
    for a in 0..20 {
        for p in 0..3 {
            text.push_str(&format!("question {a} about things,answer {p} to question {a}\n"));
        }
    }
    std::fs::write(&pairs, text).unwrap();
    let (out, plan) = (s.out("run"), s.out("plan.jsonl"));
    let task = format!("p={}", pairs.display());
    let mut args = vec!["train", "-m", &s.model, "--task", &task, "--out", &out, "--epochs", "1"];
    args.extend(["--save-batch-plan", &plan, "--device", "cpu", "--threads", "1", "--batch-size", "32"]);
    let output = run(&args);
    assert_ok(&output);
    let plan = std::fs::read_to_string(&plan).unwrap();
    let mut rows: Vec<u64> = plan
        .lines()
        .flat_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rows"].as_array().unwrap().clone())
        .map(|r| r.as_u64().unwrap())
        .collect();
    assert_eq!(plan.lines().count(), 3, "{plan}");
    rows.sort();
    assert_eq!(rows, (0..60).collect::<Vec<_>>());
    assert!(!stderr(&output).contains("a lone row"), "{}", stderr(&output));

    // One anchor in 12 of 14 rows: 12 batches, most of them one row, and the run says so.
    let hub = s.dir.path().join("hub.csv");
    let mut text = String::from("anchor,positive\n");
    for i in 0..14 {
        let anchor = if i < 12 { "the hub question".to_string() } else { format!("question {i}") };
        text.push_str(&format!("{anchor},answer {i}\n"));
    }
    std::fs::write(&hub, text).unwrap();
    let task = format!("p={}", hub.display());
    let out = s.out("hub");
    let args = ["train", "-m", &s.model, "--task", &task, "--out", &out, "--epochs", "1", "--batch-size", "8"];
    let output = run(&[&args[..], &["--device", "cpu", "--threads", "1"]].concat());
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains("note: task 'p': one text is in 12 of its 14 rows, and no batch holds a text twice, so a pass takes 12 batches, 10 of them a lone row"), "{said}");
    assert!(said.contains("12 optimizer steps (12 per epoch"), "{said}");
}

#[test]
fn a_loss_that_compares_rows_never_gets_a_lone_row_that_another_batch_can_spare() {
    let test = "a_loss_that_compares_rows_never_gets_a_lone_row_that_another_batch_can_spare";
    let Some(s) = setup(test) else { return };
    // 40 pairs at batch 13 would end each pass with a lone row (13 + 13 + 13 + 1), and one
    // anchor in 12 of 30 rows at batch 8 with 9 of them; rows from full batches join them.
    let write = |name: &str, rows: Vec<String>| {
        let path = s.dir.path().join(name);
        std::fs::write(&path, format!("anchor,positive\n{}\n", rows.join("\n"))).unwrap();
        path
    };
    let even = write("pairs40.csv", (0..40).map(|i| format!("question {i},answer {i}")).collect());
    let hub = write(
        "hub30.csv",
        (0..30)
            .map(|i| if i < 12 { format!("the hub,answer {i}") } else { format!("question {i},answer {i}") })
            .collect(),
    );
    for (file, batch, steps) in [(&even, "13", 4), (&hub, "8", 12)] {
        let (out, plan) = (s.out(batch), s.out(&format!("plan{batch}.jsonl")));
        let task = format!("p={}", file.display());
        let args = ["train", "-m", &s.model, "--task", &task, "--out", &out, "--epochs", "1", "--batch-size", batch];
        let output = run(&[&args[..], &["--save-batch-plan", &plan, "--device", "cpu", "--threads", "1"]].concat());
        assert_ok(&output);
        let sizes: Vec<usize> = std::fs::read_to_string(&plan)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["rows"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes.len(), steps);
        assert!(sizes.iter().all(|&n| n >= 2), "{sizes:?}");
        assert!(!stderr(&output).contains("lone row"), "{}", stderr(&output));
    }
}

/// Training on from a checkpoint keeps its token limit, as it keeps its pooling and
/// projection, unless --max-length says otherwise.
#[test]
fn training_on_from_a_checkpoint_keeps_its_token_limit() {
    let test = "training_on_from_a_checkpoint_keeps_its_token_limit";
    let Some(s) = setup(test) else { return };
    s.train("first", &["--max-steps", "1", "--max-length", "12", "-q"]);
    let last = format!("{}/last", s.out("first"));
    let max_length = |run: &str| -> u64 {
        let spec = std::fs::read_to_string(Path::new(&s.out(run)).join("last/sentence_mtl.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&spec).unwrap()["max_length"].as_u64().unwrap()
    };
    for (run, extra) in [("kept", vec![]), ("given", vec!["--max-length", "20"])] {
        let mut args = s.args(run, &[&["--max-steps", "1", "-q"], &extra[..]].concat());
        args[2] = last.clone();
        assert_ok(&bin().args(&args).output().unwrap());
    }
    assert_eq!((max_length("first"), max_length("kept"), max_length("given")), (12, 12, 20));
}

#[test]
fn a_head_whose_labels_changed_starts_new_and_the_run_says_why() {
    let test = "a_head_whose_labels_changed_starts_new_and_the_run_says_why";
    let Some(s) = setup(test) else { return };
    s.train("first", &["--max-steps", "2", "-q"]);
    // Fine-tune it on data named `mood` whose labels are the topic task's.
    let last = format!("{}/last", s.out("first"));
    let task = format!("mood={}", s.data.topic_train.display());
    let out = s.out("second");
    let args = ["train", "-m", &last, "--task", &task, "--out", &out, "--max-steps", "1"];
    let output = run(&[&args[..], FAST].concat());
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains(&format!("note: heads.mood starts new: task 'mood' of {last} has 2 label(s)")), "{said}");
    let dropped =
        format!("note: {last}'s head(s) of 'topic' are not kept: this run has no classification task of that name");
    assert!(said.contains(&dropped), "{said}");
    // A similarity task of the head's name has no head to keep it in: a note says so too.
    let task = format!("mood={}", s.data.similar_train.display());
    let out = s.out("similar");
    let args = ["train", "-m", &last, "--task", &task, "--out", &out, "--max-steps", "1"];
    let said = stderr(&run(&[&args[..], FAST].concat()));
    assert!(said.contains(&format!("note: {last}'s head(s) of 'topic', 'mood' are not kept")), "{said}");
    // The same labels keep the head, without a note.
    let task = format!("mood={}", s.data.mood_train.display());
    let out = s.out("third");
    let args = ["train", "-m", &last, "--task", &task, "--out", &out, "--max-steps", "1"];
    let output = run(&[&args[..], FAST].concat());
    assert_ok(&output);
    assert!(!stderr(&output).contains("starts new"), "{}", stderr(&output));
    // Another projection width: the head's input changes width, so it starts new (it used to
    // fail to load, blaming the checkpoint).
    let out = s.out("wider");
    let output = run(&[&args[..5], &["--out", &out, "--max-steps", "1", "--projection-dim", "16"], FAST].concat());
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains(&format!("note: heads.mood starts new: in {last} it reads 256-wide features, in this run 16-wide ones (--projection-dim)")), "{said}");
    // No projection, other pooling: both said, though nothing else changes.
    let out = s.out("plainer");
    let flags = ["--out", &out, "--max-steps", "1", "--projection-dim", "0", "--pooling", "cls"];
    let output = run(&[&args[..5], &flags, FAST].concat());
    assert_ok(&output);
    let said = stderr(&output);
    assert!(
        said.contains(&format!(
            "note: {last}'s projection (256 wide) is not kept (--projection-dim 0): the embeddings are the "
        )),
        "{said}"
    );
    assert!(said.contains(&format!("note: --pooling cls: {last} was trained with mean pooling, so training starts from embeddings it was not trained to give")), "{said}");
    // A small-data head reads the embeddings, normalised where the model normalises; a run
    // without small-data mode would feed it the features, so it starts new too. Where the
    // model does not normalise, embeddings and features are the same: the head is kept.
    let normalising = tempfile::tempdir().unwrap();
    let normalising = normalising_copy(Path::new(&s.model), normalising.path()).to_string_lossy().into_owned();
    for (name, model, starts_new) in [("normalising", &normalising, true), ("plain", &s.model, false)] {
        let small = s.out(&format!("small_{name}"));
        let small_args = ["train", "-m", model, "--task", &task, "--out", &small, "--max-steps", "2"];
        assert_ok(
            &run(&[&small_args[..], &["--small-data", "on", "--device", "cpu", "--threads", "1", "-q"]].concat()),
        );
        let small_last = format!("{small}/last");
        let out = s.out(&format!("after_small_{name}"));
        let output = run(&[
            &["train", "-m", &small_last, "--task", &task, "--out", &out, "--max-steps", "1"][..],
            FAST,
        ]
        .concat());
        assert_ok(&output);
        let said = stderr(&output);
        let note = said.contains("note: heads.mood starts new: in ")
            && said.contains("it reads the normalised embeddings (small-data mode), in this run the features");
        assert_eq!(note, starts_new, "{name}: {said}");
        assert_eq!(said.contains("starts new"), starts_new, "{name}: {said}");
    }
}

/// A frozen run caches every text its dev evaluations encode, a pairs dev file's negatives
/// included (they are candidates of the search): one more distinct negative, one more entry.
#[test]
fn the_feature_cache_holds_the_dev_negatives_too() {
    let test = "the_feature_cache_holds_the_dev_negatives_too";
    let Some(s) = setup(test) else { return };
    let pairs = std::fs::read_to_string(&s.data.match_dev).unwrap();
    let mut with_negatives = String::from("anchor,positive,negative\n");
    for (i, row) in pairs.lines().skip(1).enumerate() {
        with_negatives.push_str(&format!("{row},an unrelated remark number {i}\n"));
    }
    let negatives = s.dir.path().join("match_dev_negatives.csv");
    std::fs::write(&negatives, with_negatives).unwrap();
    let entries = |dev: &Path, out: &str| -> usize {
        let task = format!("match={},{}", s.data.match_train.display(), dev.display());
        let mut args = vec!["train", "-m", &s.model, "--task", &task, "--device", "cpu", "--threads", "1"];
        let out = s.out(out);
        args.extend(["--freeze", "backbone", "--max-steps", "1", "--out", &out]);
        let output = run(&args);
        assert_ok(&output);
        let said = stderr(&output);
        let line = said.lines().find(|l| l.starts_with("feature cache: ")).unwrap_or_else(|| panic!("{said}"));
        let count = line.split(" distinct sentences").next().and_then(|head| head.split_whitespace().last()).unwrap();
        count.parse().unwrap_or_else(|_| panic!("{line}"))
    };
    let without = entries(&s.data.match_dev, "without");
    let with = entries(&negatives, "with");
    assert_eq!(with, without + pairs.lines().count() - 1, "the dev negatives are not all cached");
}

/// The training sentences' cached states are computed in batches of their own, so a dev set
/// beside them changes nothing a cached run trains. Inference batches of other shapes change
/// the last bits of MiniLM's sums (the tiny model's do not change), and did change the weights
/// when train and dev sentences were batched together.
#[test]
fn a_dev_set_does_not_change_what_a_cached_run_trains() {
    let test = "a_dev_set_does_not_change_what_a_cached_run_trains";
    let (Some(model), Some(data)) = (minilm(test), shared_data(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let first_rows = |from: &str, rows: usize, name: &str| {
        let text = std::fs::read_to_string(data.join(from)).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text.lines().take(rows + 1).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        path.display().to_string()
    };
    let (train, dev) =
        (first_rows("trec/train_split.csv", 300, "train.csv"), first_rows("trec/dev_split.csv", 100, "dev.csv"));
    let trained = |task: String, out: &str| {
        let out = dir.path().join(out);
        let (model, out_arg) = (model.to_str().unwrap(), out.to_str().unwrap());
        let flags = ["--freeze", "backbone", "--dropout", "0", "--epochs", "2", "--threads", "2", "-q"];
        let mut args = vec!["train", "-m", model, "--task", &task, "--out", out_arg, "--device", "cpu"];
        args.extend(flags);
        assert_ok(&bin().args(&args).output().unwrap());
        weights(&out.join("last"))
    };
    let with_dev = trained(format!("q={train},{dev}"), "with-dev");
    let without = trained(format!("q={train}"), "without");
    for (name, value) in &with_dev {
        assert!(value.equal(&without[name]), "{name} differs with a dev set");
    }
}

/// A bf16 run keeps its dev sentences' cache apart, in fp32: with no dev set at all that
/// cache is empty, and the run trains (it stopped with an internal error).
#[test]
fn a_bf16_run_with_a_feature_cache_and_no_dev_set_trains() {
    let test = "a_bf16_run_with_a_feature_cache_and_no_dev_set_trains";
    let Some(s) = setup(test) else { return };
    if !cpu_has_bf16(test) {
        return;
    }
    let topic = format!("topic={}", s.data.topic_train.display());
    for freeze in [&["--freeze", "backbone"][..], &["--freeze", "embeddings", "--freeze", "layers:1"]] {
        let out = s.out(&format!("run-{}", freeze.len()));
        let mut args = vec!["train", "-m", &s.model, "--task", &topic, "--device", "cpu", "--threads", "1"];
        args.extend(["--precision", "bf16", "--max-steps", "2", "--out", &out]);
        args.extend_from_slice(freeze);
        let output = run(&args);
        assert_ok(&output);
        assert!(stderr(&output).contains("training sentences in bf16"), "{}", stderr(&output));
    }
}

/// all-MiniLM-L6-v2 reads 256 tokens and training's default cuts at 128: a note says so, and
/// names the flag that keeps the model's limit; typing the flag silences it.
#[test]
fn a_default_max_length_below_the_models_own_is_said() {
    let test = "a_default_max_length_below_the_models_own_is_said";
    let Some(model) = minilm(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = write_toy_data(dir.path());
    let task = format!("topic={}", data.topic_train.display());
    let said = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let mut args = vec!["train", "-m", model.to_str().unwrap(), "--task", &task, "--out", out.to_str().unwrap()];
        args.extend(["--max-steps", "1", "--device", "cpu", "--threads", "1", "--small-data", "off"]);
        args.extend(extra);
        let output = run(&args);
        assert_ok(&output);
        stderr(&output)
    };
    let note = "note: texts are cut at 128 tokens (--max-length's default for training), where the model reads up to 256; the checkpoint keeps 128 for encode (--max-length 256 keeps the model's)";
    let default = said("default", &[]);
    assert!(default.contains(note), "{default}");
    let typed = said("typed", &["--max-length", "128"]);
    assert!(!typed.contains("--max-length's default"), "{typed}");
}

/// A model of 64 positions trains without `--max-length`: the default of 128 is capped at the
/// model's limit, as `encode` caps it, rather than refused as a value the user never typed.
#[test]
fn the_default_max_length_fits_a_model_of_few_positions() {
    let Some(s) = setup("the_default_max_length_fits_a_model_of_few_positions") else { return };
    let short = s.dir.path().join("tiny-bert-64");
    copy_dir(Path::new(&s.model), &short);
    let config_path = short.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = 64.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let weights_path = short.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&weights_path).unwrap();
    let (_, positions) = tensors.iter_mut().find(|(n, _)| n.ends_with("position_embeddings.weight")).unwrap();
    *positions = positions.narrow(0, 0, 64).contiguous();
    Tensor::write_safetensors(&tensors, &weights_path).unwrap();
    let out = s.out("short");
    let task = format!("topic={}", s.data.topic_train.display());
    let args = ["train", "-m", short.to_str().unwrap(), "--task", &task, "--out", &out, "--max-steps", "1"];
    let output = run(&[&args[..], &["--device", "cpu", "--threads", "1", "-q"]].concat());
    assert_ok(&output);
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("settings.json")).unwrap()).unwrap();
    assert_eq!(settings["settings"]["max_length"], 64);
}
