//! Nothing lost: interrupted runs resume to the same weights, `kill -9` at any moment leaves
//! a loadable checkpoint, and a diverging loss stops cleanly. Real processes, real signals.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::common::*;
use crate::toy_data::write_toy_data;

struct Fixture {
    args: Vec<String>,
    dir: tempfile::TempDir,
}

fn fixture(test: &str, steps: usize, extra: &[&str]) -> Option<Fixture> {
    fixture_of_tasks(test, steps, extra, false)
}

/// The toy classification tasks, and with `embedding_tasks` the similarity and pairs ones too.
fn fixture_of_tasks(test: &str, steps: usize, extra: &[&str], embedding_tasks: bool) -> Option<Fixture> {
    let model = tiny_models(test)?.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let data = write_toy_data(dir.path());
    let mut args: Vec<String> = vec!["train".into(), "-m".into(), model.to_string_lossy().into()];
    args.extend(data.task_args());
    if embedding_tasks {
        args.extend(data.embedding_task_args());
    }
    args.extend(
        [
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
            "--log-every",
            "1",
            "--eval-every",
            "25",
            "-q",
            "--max-steps",
        ]
        .map(String::from),
    );
    args.push(steps.to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    Some(Fixture { args, dir })
}

impl Fixture {
    fn out(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    fn spawn(&self, run: &str) -> Child {
        let mut args = self.args.clone();
        args.extend(["--out".to_string(), self.out(run)]);
        bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn run_to_end(&self, run: &str) {
        let mut args = self.args.clone();
        args.extend(["--out".to_string(), self.out(run)]);
        assert_ok(&bin().args(&args).output().unwrap());
    }
}

/// Waits until the run has logged at least `windows` logging windows.
fn wait_for_windows(run: &str, windows: usize, child: &mut Child) {
    let log = Path::new(run).join("train_log.jsonl");
    let started = Instant::now();
    loop {
        let logged = std::fs::read_to_string(&log).map(|t| t.matches("\"type\":\"step\"").count()).unwrap_or(0);
        if logged >= windows {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("training ended ({status}) before {windows} logging windows");
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no progress in {run}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn weights(checkpoint: &str) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(Path::new(checkpoint).join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn assert_same_weights(a: &str, b: &str) {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs (max |diff| {})", f64::try_from((x - y).abs().max()).unwrap());
    }
}

fn interrupt_and_resume(test: &str, signal: i32, expected_code: i32) {
    interrupt_and_resume_tasks(test, signal, expected_code, false)
}

fn interrupt_and_resume_tasks(test: &str, signal: i32, expected_code: i32, embedding_tasks: bool) {
    interrupt_and_resume_run(test, signal, expected_code, embedding_tasks, 150, &[])
}

/// Trains `steps` steps straight, and again stopped by `signal` after step 32 and resumed:
/// both end with the same weights, and the same log of losses.
fn interrupt_and_resume_run(
    test: &str,
    signal: i32,
    expected_code: i32,
    embedding_tasks: bool,
    steps: usize,
    extra: &[&str],
) {
    let Some(mut f) = fixture_of_tasks(test, steps, extra, embedding_tasks) else { return };
    // Logging windows of 4 steps, so that the stop falls inside one.
    let log_every = f.args.iter().position(|a| a == "--log-every").unwrap() + 1;
    f.args[log_every] = "4".into();
    f.run_to_end("straight");
    let mut child = f.spawn("interrupted");
    wait_for_windows(&f.out("interrupted"), 32 / 4, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let mut stderr = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        stderr.push_str(&line.unwrap());
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(expected_code), "stderr:\n{stderr}");
    assert!(stderr.contains("saved a resumable checkpoint"), "{stderr}");
    assert!(stderr.contains(&format!("sentence-mtl train --resume {}", f.out("interrupted"))), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&f.out("interrupted")).join("last/trainer_state.json")).unwrap(),
    )
    .unwrap();
    let stopped_at = state["step"].as_u64().unwrap();
    assert!((30..steps as u64).contains(&stopped_at), "stopped at step {stopped_at}");
    let resumed = bin().args(["train", "--resume", &f.out("interrupted")]).output().unwrap();
    assert_ok(&resumed);
    let said = String::from_utf8_lossy(&resumed.stdout);
    assert!(said.contains(&format!("resumed at step {stopped_at} and trained to step {steps} in")), "{said}");
    let log = std::fs::read_to_string(Path::new(&f.out("interrupted")).join("train_log.jsonl")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!((summary["type"].as_str(), summary["resumed_from"].as_u64()), (Some("summary"), Some(stopped_at)));
    // The log's windows, read back, are the uninterrupted run's: the same steps, losses and
    // gradient norms (a window cut by the stop goes on in the resumed run).
    let windows = |run: &str| -> Vec<serde_json::Value> {
        let log = std::fs::read_to_string(Path::new(run).join("train_log.jsonl")).unwrap();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["type"] == "step")
            .map(|r| serde_json::json!([r["step"], r["loss"], r["grad_norm"]]))
            .collect()
    };
    assert_eq!(windows(&f.out("interrupted")), windows(&f.out("straight")), "the resumed run's log differs");
    assert_same_weights(&format!("{}/last", f.out("straight")), &format!("{}/last", f.out("interrupted")));
    assert_same_weights(&format!("{}/best", f.out("straight")), &format!("{}/best", f.out("interrupted")));
    eprintln!("stopped at step {stopped_at}, resumed: final weights bit-identical to the uninterrupted run");
}

#[test]
fn ctrl_c_saves_and_resume_reaches_bit_identical_weights() {
    interrupt_and_resume("ctrl_c_saves_and_resume_reaches_bit_identical_weights", libc::SIGINT, 130);
}

/// Similarity and pairs tasks resume exactly too: the pairs task's no-duplicate batches come
/// from the saved sampler state.
#[test]
fn resume_with_similarity_and_pairs_tasks_reaches_bit_identical_weights() {
    interrupt_and_resume_tasks(
        "resume_with_similarity_and_pairs_tasks_reaches_bit_identical_weights",
        libc::SIGINT,
        130,
        true,
    );
}

/// A run with a frozen backbone trains from its feature cache, which a resumed run builds
/// again; it still ends bit-identical to the uninterrupted run.
#[test]
fn resume_of_a_feature_cached_run_reaches_bit_identical_weights() {
    let test = "resume_of_a_feature_cached_run_reaches_bit_identical_weights";
    // Cached steps take a millisecond or two: enough of them that the signal lands mid-run.
    interrupt_and_resume_run(test, libc::SIGINT, 130, false, 3000, &["--freeze", "backbone", "--eval-every", "500"]);
}

#[test]
fn sigterm_saves_and_resume_reaches_bit_identical_weights() {
    interrupt_and_resume("sigterm_saves_and_resume_reaches_bit_identical_weights", libc::SIGTERM, 143);
}

/// A run started with relative data paths resumes from any folder: settings.json records the
/// folder it started in.
#[test]
fn a_run_started_with_relative_paths_resumes_from_another_folder() {
    let test = "a_run_started_with_relative_paths_resumes_from_another_folder";
    let Some(f) = fixture(test, 150, &[]) else { return };
    let prefix = format!("{}/", f.dir.path().display());
    let mut args: Vec<String> = f.args.iter().map(|a| a.replace(&prefix, "")).collect();
    assert!(args.iter().any(|a| a.starts_with("topic=topic")), "{args:?}");
    args.extend(["--out".to_string(), "run".to_string()]);
    let mut child =
        bin().args(&args).current_dir(f.dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_windows(&f.out("run"), 30, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // Checkpoints record where their data was, the same before a resume and after.
    let recorded_data = || {
        let spec = std::fs::read_to_string(Path::new(&f.out("run")).join("last/sentence_mtl.json")).unwrap();
        let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
        spec["training"]["tasks"][0]["train"].as_str().unwrap().to_string()
    };
    let before = recorded_data();
    let folder = f.dir.path().canonicalize().unwrap();
    assert!(Path::new(&before).starts_with(&folder) && before.contains("topic"), "{before}");
    let elsewhere = tempfile::tempdir().unwrap();
    let resumed =
        bin().args(["train", "--resume", &f.out("run"), "-q"]).current_dir(elsewhere.path()).output().unwrap();
    assert_ok(&resumed);
    assert_eq!(recorded_data(), before);
}

/// A run that a process is training is refused to a second one: a resume, and a new run
/// with --overwrite over it (their logs and saves would interleave).
#[test]
fn a_run_in_progress_is_refused_to_a_second_process() {
    let test = "a_run_in_progress_is_refused_to_a_second_process";
    let Some(f) = fixture(test, 100_000, &[]) else { return };
    let mut child = f.spawn("busy");
    let in_use = format!("run directory {} is in use: another sentence-mtl process is training it", f.out("busy"));
    // Before its first save (every 25 steps) the run is in use, not unresumable.
    wait_for_windows(&f.out("busy"), 2, &mut child);
    assert!(!Path::new(&f.out("busy")).join("last").exists());
    assert_clean_error(&bin().args(["train", "--resume", &f.out("busy"), "-q"]).output().unwrap(), &in_use);
    // Past its first save, so that a resume would otherwise be possible.
    wait_for_windows(&f.out("busy"), 30, &mut child);
    assert!(Path::new(&f.out("busy")).join("last/trainer_state.json").is_file());
    assert_clean_error(&bin().args(["train", "--resume", &f.out("busy"), "-q"]).output().unwrap(), &in_use);
    let mut again = f.args.clone();
    again.extend(["--out".to_string(), f.out("busy"), "--overwrite".to_string()]);
    assert_clean_error(&bin().args(&again).output().unwrap(), &in_use);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn kill_9_at_any_moment_leaves_a_loadable_checkpoint() {
    let test = "kill_9_at_any_moment_leaves_a_loadable_checkpoint";
    let Some(f) = fixture(test, 120, &["--save-every", "1"]) else { return };
    f.run_to_end("straight");
    let run = f.out("killed");
    let mut child = f.spawn("killed");
    // Kill it several times at different points, mostly in the middle of a save (one per
    // step), resuming in between.
    for (round, after_steps) in [5usize, 23, 41, 77].into_iter().enumerate() {
        wait_for_windows(&run, after_steps, &mut child);
        std::thread::sleep(Duration::from_millis(3 * round as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let last = format!("{run}/last");
        let encoded = bin().args(["encode", "-m", &last, "--device", "cpu", "-q", "still loadable"]).output().unwrap();
        assert_ok(&encoded);
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{last}/trainer_state.json")).unwrap()).unwrap();
        assert!(state["step"].as_u64().unwrap() >= 1);
        let args = ["train".to_string(), "--resume".into(), run.clone(), "-q".into()];
        if round == 3 {
            // The last round runs to the end.
            assert_ok(&bin().args(&args).output().unwrap());
            break;
        }
        child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    }
    let leftovers: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left behind: {leftovers:?}");
    assert_same_weights(&format!("{}/last", f.out("straight")), &format!("{run}/last"));
    // The log tells the run once: what a killed process logged past its last save is replaced.
    let logged_steps = |run: &str| -> Vec<u64> {
        let log = std::fs::read_to_string(Path::new(run).join("train_log.jsonl")).unwrap();
        let records = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        records.filter(|r| r["type"] == "step").map(|r| r["step"].as_u64().unwrap()).collect()
    };
    assert_eq!(logged_steps(&f.out("straight")), logged_steps(&run));
}

/// In small-data mode, scores are of the refitted heads, but a mid-run `last/` holds the
/// trained heads training goes on from: it records no scores, which would not be its own.
#[test]
fn a_mid_run_last_in_small_data_mode_records_no_scores_of_other_heads() {
    let test = "a_mid_run_last_in_small_data_mode_records_no_scores_of_other_heads";
    let Some(f) = fixture(test, 100_000, &["--small-data", "on"]) else { return };
    let run = f.out("run");
    let mut child = f.spawn("run");
    let state = Path::new(&run).join("last/trainer_state.json");
    let started = Instant::now();
    while !state.is_file() {
        assert!(child.try_wait().unwrap().is_none(), "training ended before its first save");
        assert!(started.elapsed() < Duration::from_secs(60), "no save in {run}");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&run).join("last/sentence_mtl.json")).unwrap())
            .unwrap();
    assert!(spec.get("metrics").is_none_or(|m| m.is_null()), "last/ claims scores: {}", spec["metrics"]);
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&run).join("best/sentence_mtl.json")).unwrap())
            .unwrap();
    assert!(best["metrics"]["tasks"].is_object(), "best/ keeps the refitted heads' scores: {best}");
}

/// `--overwrite` into a folder of the user's own files writes the run among them and touches
/// none of theirs, even folders named like a save's staging (`.best.keep/`, `.last.2023/`).
#[test]
fn overwrite_keeps_the_users_own_folders_named_like_staging() {
    let test = "overwrite_keeps_the_users_own_folders_named_like_staging";
    let Some(f) = fixture(test, 2, &["--overwrite"]) else { return };
    let out = Path::new(&f.out("mine")).to_path_buf();
    for folder in [".best.keep", ".last.2023", ".last.new-notapid"] {
        std::fs::create_dir_all(out.join(folder)).unwrap();
        std::fs::write(out.join(folder).join("notes.txt"), "mine").unwrap();
    }
    f.run_to_end("mine");
    for folder in [".best.keep", ".last.2023", ".last.new-notapid"] {
        assert_eq!(std::fs::read_to_string(out.join(folder).join("notes.txt")).unwrap(), "mine", "{folder}");
    }
    assert!(out.join("best").is_dir() && out.join("last").is_dir());
}

/// With rates far too high the weights overflow within a few steps. The run stops at the
/// first sign (a loss, a gradient norm, or outputs of the weights about to be saved) and the
/// checkpoint it names gives finite embeddings.
#[test]
fn diverging_training_stops_and_keeps_the_last_good_checkpoint() {
    let test = "diverging_training_stops_and_keeps_the_last_good_checkpoint";
    let rates = ["--lr-backbone", "1e4", "--lr-projection", "1e4", "--lr-heads", "1e4", "--warmup-steps", "0"];
    let Some(f) = fixture(test, 50, &[&["--save-every", "1"][..], &rates].concat()) else { return };
    let mut args = f.args.clone();
    args.extend(["--out".to_string(), f.out("nan")]);
    let out = bin().args(&args).output().unwrap();
    assert_clean_error(&out, "training stopped: ");
    assert!(stderr(&out).contains("the last good checkpoint is"), "{}", stderr(&out));
    let last = format!("{}/last", f.out("nan"));
    let encoded = bin().args(["encode", "-m", &last, "--device", "cpu", "-q", "fine"]).output().unwrap();
    assert_ok(&encoded);
    assert!(!stdout(&encoded).contains("null"), "the kept checkpoint gives finite embeddings: {}", stdout(&encoded));
}

/// `--overwrite` sets the replaced run aside until the new one first saves: a run that fails
/// before (a --max-length the model cannot take at start, gradients that overflow at the
/// first step) gives it back whole, and an empty folder the user made stays.
#[test]
fn a_run_that_fails_before_saving_gives_back_the_run_it_was_to_overwrite() {
    let test = "a_run_that_fails_before_saving_gives_back_the_run_it_was_to_overwrite";
    let Some(f) = fixture(test, 3, &[]) else { return };
    f.run_to_end("run");
    let before = weights(&format!("{}/best", f.out("run")));
    let log = std::fs::read_to_string(Path::new(&f.out("run")).join("train_log.jsonl")).unwrap();
    let failures =
        [(&["--max-length", "100000"][..], "--max-length"), (&["--task-weight", "topic=1e30"], "gradient norm")];
    for (flags, error) in failures {
        for out in [f.out("run"), f.out("empty")] {
            std::fs::create_dir_all(&out).unwrap();
            let mut args = f.args.clone();
            args.extend(["--out", &out, "--overwrite"].map(String::from));
            args.extend(flags.iter().map(|s| s.to_string()));
            assert_clean_error(&bin().args(&args).output().unwrap(), error);
        }
    }
    let after = weights(&format!("{}/best", f.out("run")));
    assert!(after.len() == before.len() && after.iter().zip(&before).all(|((_, a), (_, b))| a.equal(b)));
    assert_eq!(std::fs::read_to_string(Path::new(&f.out("run")).join("train_log.jsonl")).unwrap(), log);
    assert!(Path::new(&f.out("run")).join("last/trainer_state.json").is_file(), "last/ is back, resumable");
    let left: Vec<String> = std::fs::read_dir(f.out("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.starts_with(".replaced")), "{left:?}");
    assert!(Path::new(&f.out("empty")).is_dir(), "the user's empty folder stays");
    // A start that goes through replaces it.
    let mut args = f.args.clone();
    args.extend(["--out", &f.out("run"), "--overwrite", "--max-steps", "1"].map(String::from));
    assert_ok(&bin().args(&args).output().unwrap());
    let left: Vec<String> = std::fs::read_dir(f.out("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.iter().any(|n| n.starts_with(".replaced")), "{left:?}");
}

/// A signal before the first step (here while 200,000 rows are tokenized and their features
/// cached) ends the process at once and undoes what the new run did: its files go, so that
/// the same command starts again without `--overwrite`, and a run it was to overwrite comes
/// back.
#[test]
fn a_signal_during_start_up_leaves_no_run_behind() {
    use std::os::unix::process::ExitStatusExt;
    let test = "a_signal_during_start_up_leaves_no_run_behind";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("big.csv");
    let rows: String =
        (0..200_000).map(|i| format!("sentence {i} about the weather,{}\n", ["sun", "rain"][i % 2])).collect();
    std::fs::write(&data, format!("text,label\n{rows}")).unwrap();
    let model = models.join("tiny-bert");
    let task = format!("big={}", data.display());
    let interrupt_start = |out: &Path, extra: &[&str]| {
        let args = ["train", "-m", model.to_str().unwrap(), "--task", &task, "--freeze", "backbone", "--device", "cpu"];
        let mut child = bin()
            .args(args)
            .args(["--threads", "1", "--max-steps", "5", "--out", out.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let written = || std::fs::read_to_string(out.join("settings.json")).is_ok_and(|t| t.contains("command_line"));
        while !written() {
            assert!(child.try_wait().unwrap().is_none(), "training ended before it wrote its settings");
            assert!(started.elapsed() < Duration::from_secs(60), "no settings.json in {}", out.display());
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let output = child.wait_with_output().unwrap();
        assert_eq!(output.status.signal(), Some(libc::SIGINT), "{}", stderr(&output));
        assert!(stderr(&output).contains("interrupted before training started"), "{}", stderr(&output));
    };
    let out = dir.path().join("run");
    interrupt_start(&out, &[]);
    assert!(!out.exists(), "the unstarted run left {:?}", std::fs::read_dir(&out).map(|d| d.count()));

    let old = dir.path().join("old");
    std::fs::create_dir_all(old.join("best")).unwrap();
    std::fs::write(old.join("best/model.safetensors"), "old weights").unwrap();
    let old_settings = r#"{"settings": {"old": true}, "version": "0.1.0"}"#;
    std::fs::write(old.join("settings.json"), old_settings).unwrap();
    interrupt_start(&old, &["--overwrite"]);
    assert_eq!(std::fs::read_to_string(old.join("best/model.safetensors")).unwrap(), "old weights");
    assert_eq!(std::fs::read_to_string(old.join("settings.json")).unwrap(), old_settings);
    assert_eq!(std::fs::read_dir(&old).unwrap().count(), 2, "only the old run is left");
}

/// Gradients can overflow while every loss stays finite (a huge task weight): clipping then
/// scales the step to nothing, so the run stops as for a loss, naming the step and the task.
#[test]
fn a_gradient_norm_that_is_not_finite_stops_the_run() {
    let test = "a_gradient_norm_that_is_not_finite_stops_the_run";
    let Some(f) = fixture(test, 50, &["--task-weight", "topic=1e30"]) else { return };
    let mut args = f.args.clone();
    args.extend(["--out".to_string(), f.out("overflow")]);
    let out = bin().args(&args).output().unwrap();
    assert_clean_error(&out, "training stopped: the gradient norm became inf at step ");
    assert!(stderr(&out).contains(", on a batch of task 'topic' (a --task-weight"), "{}", stderr(&out));
}

/// Losses are read back once per logging window, not every step: a loss that diverges inside
/// a window of 25 steps is still found at its own step, the one a window of 1 step reports.
#[test]
fn a_loss_that_diverges_inside_a_logging_window_is_found_at_its_step() {
    let test = "a_loss_that_diverges_inside_a_logging_window_is_found_at_its_step";
    let rates = ["--lr-backbone", "1e12", "--lr-projection", "1e12", "--lr-heads", "1e12", "--warmup-steps", "0"];
    let Some(f) = fixture(test, 50, &rates) else { return };
    let step_named = |log_every: &str, run: &str| {
        let mut args = f.args.clone();
        args.extend(["--log-every", log_every, "--out", &f.out(run)].map(String::from));
        let out = bin().args(&args).output().unwrap();
        assert_clean_error(&out, "became NaN at step");
        let err = stderr(&out);
        let at = err.split("at step ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        assert!(err.contains("no checkpoint had been saved yet"), "{err}");
        at
    };
    let every_step = step_named("1", "each");
    assert_eq!(step_named("25", "window"), every_step);
    assert!(every_step.parse::<usize>().unwrap() < 25, "the loss diverged at step {every_step}, not inside the window");
}

/// A resume whose data file changed since the run started names the file.
#[test]
fn a_resume_names_the_data_file_that_changed() {
    let test = "a_resume_names_the_data_file_that_changed";
    let Some(f) = fixture(test, 100_000, &[]) else { return };
    let mut child = f.spawn("run");
    wait_for_windows(&f.out("run"), 30, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let mood = f.dir.path().join("mood_train.csv");
    let mut text = std::fs::read_to_string(&mood).unwrap();
    text.push_str("one more row,positive\n");
    std::fs::write(&mood, text).unwrap();
    let resumed = bin().args(["train", "--resume", &f.out("run"), "-q"]).output().unwrap();
    let expected = format!("{} changed since this run started (its size or content differs)", mood.display());
    assert_clean_error(&resumed, &expected);
}

/// Ctrl-C before an `--overwrite` run's first save gives the replaced run back, whether the
/// run stops after its step (one signal) or quits at once (two).
#[test]
fn a_stop_before_the_first_save_gives_back_the_run_overwrite_replaced() {
    let test = "a_stop_before_the_first_save_gives_back_the_run_overwrite_replaced";
    let Some(f) = fixture(test, 6, &[]) else { return };
    f.run_to_end("run");
    let best = Path::new(&f.out("run")).join("best/model.safetensors");
    let before = std::fs::read(&best).unwrap();
    let settings_before = std::fs::read(Path::new(&f.out("run")).join("settings.json")).unwrap();
    for signals in [1, 2] {
        let mut args: Vec<String> = f.args.iter().filter(|a| *a != "-q").cloned().collect();
        let steps = args.iter().position(|a| a == "--max-steps").unwrap() + 1;
        args[steps] = "100000".into();
        args.extend(["--eval-every".into(), "100000".into(), "--overwrite".into(), "--out".into(), f.out("run")]);
        let mut child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut said = String::new();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        // The plan line comes as the steps start; no save comes before step 100000.
        for line in lines.by_ref() {
            let line = line.unwrap();
            said += &line;
            if line.starts_with("training: 100000 optimizer steps") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        // Two different signals, which the kernel cannot merge into one.
        for signal in [libc::SIGINT, libc::SIGTERM].into_iter().take(signals) {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
        for line in lines {
            said += &line.unwrap();
        }
        let status = child.wait().unwrap();
        if signals == 1 {
            assert_eq!(status.code(), Some(130), "{said}");
            assert!(
                said.contains(
                    "before this run's first save: nothing was saved, and the run --overwrite replaced is back in"
                ),
                "{said}"
            );
        }
        assert_eq!(
            std::fs::read(&best).unwrap(),
            before,
            "{signals} signal(s): the replaced run's best/ is not back: {said}"
        );
        assert_eq!(std::fs::read(Path::new(&f.out("run")).join("settings.json")).unwrap(), settings_before);
        let names: Vec<String> = std::fs::read_dir(f.out("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{signals} signal(s) left {names:?}: {said}");
    }
}

/// A signal during the last step's evaluation finds nothing left to resume: the run finishes.
#[test]
fn a_signal_at_the_last_step_lets_the_run_finish() {
    let test = "a_signal_at_the_last_step_lets_the_run_finish";
    let Some(f) = fixture(test, 1, &[]) else { return };
    // A dev set long enough that the signal lands during its evaluation.
    let dev = f.dir.path().join("long_dev.csv");
    let rows: String = (0..40_000).map(|i| format!("a rather long sentence number {i} about sport,sport\n")).collect();
    std::fs::write(&dev, format!("text,label\n{rows}")).unwrap();
    let mut args: Vec<String> = f.args.iter().filter(|a| *a != "-q").cloned().collect();
    let topic = args.iter().position(|a| a.starts_with("topic=")).unwrap();
    args[topic] = format!("{},{}", args[topic].split(',').next().unwrap(), dev.display());
    args.extend(["--out".into(), f.out("run")]);
    let mut child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said += &line;
        said.push('\n');
        if line.starts_with("training: 1 optimizer step") {
            break;
        }
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    for line in lines {
        said += &line.unwrap();
        said.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{said}");
    assert!(said.contains("SIGINT (Ctrl-C) came at the last step: the run finishes"), "{said}");
    let log = std::fs::read_to_string(Path::new(&f.out("run")).join("train_log.jsonl")).unwrap();
    assert!(log.lines().last().unwrap().contains("\"type\":\"summary\""), "{log}");
}

/// A closed terminal (SIGHUP) stops after a save as Ctrl-C does; under `nohup`, which
/// ignores it, the run goes on.
#[test]
fn a_hang_up_saves_unless_the_run_ignores_it() {
    use std::os::unix::process::CommandExt;
    let test = "a_hang_up_saves_unless_the_run_ignores_it";
    let Some(f) = fixture(test, 100_000, &[]) else { return };
    let mut child = f.spawn("hung-up");
    wait_for_windows(&f.out("hung-up"), 5, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(128 + libc::SIGHUP), "{said}");
    assert!(said.contains("stopped by SIGHUP (its terminal closed) after step"), "{said}");
    assert!(Path::new(&f.out("hung-up")).join("last/trainer_state.json").is_file(), "{said}");

    let mut args = f.args.clone();
    args.extend(["--out".to_string(), f.out("nohup")]);
    let mut command = bin();
    command.args(&args).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: only signal(), which is async-signal-safe, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        })
    };
    let mut child = command.spawn().unwrap();
    wait_for_windows(&f.out("nohup"), 5, &mut child);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    wait_for_windows(&f.out("nohup"), 15, &mut child);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
}

/// The first Ctrl-C says at once what it does, before the step ends; `--quiet` silences it.
#[test]
fn ctrl_c_says_what_it_does() {
    let test = "ctrl_c_says_what_it_does";
    let Some(f) = fixture(test, 100_000, &[]) else { return };
    let mut args: Vec<String> = f.args.iter().filter(|a| *a != "-q").cloned().collect();
    args.extend(["--out".to_string(), f.out("run")]);
    let mut child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_windows(&f.out("run"), 30, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let said = String::from_utf8_lossy(&output.stderr);
    let announced =
        said.find("stopping after this step to save a resumable last/ (a second Ctrl-C or signal quits at once");
    let stopped = said.find("stopped by SIGINT (Ctrl-C) after step");
    assert!(announced.is_some() && announced < stopped, "{said}");
}

/// `train 2>&1 | tee log` and Ctrl-C: the terminal's Ctrl-C ends `tee` too, so every message
/// after it goes to a closed pipe. The run must still stop after a save, not die of SIGPIPE
/// on its first message (nor before, when whatever read its messages goes away mid-run).
#[test]
fn a_closed_pipe_for_messages_does_not_stop_training() {
    let test = "a_closed_pipe_for_messages_does_not_stop_training";
    let Some(f) = fixture(test, 100_000, &[]) else { return };
    let mut args: Vec<String> = f.args.iter().filter(|a| *a != "-q").cloned().collect();
    args.extend(["--out".to_string(), f.out("run")]);
    let mut child = bin().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    wait_for_windows(&f.out("run"), 30, &mut child);
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status}");
    let state = std::fs::read_to_string(Path::new(&f.out("run")).join("last/trainer_state.json")).unwrap();
    assert!(state.starts_with("{\"step\":"), "{state}");
}
