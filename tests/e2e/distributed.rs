//! Data-parallel launches on Gloo over 127.0.0.1: two real processes with the variables
//! torchrun sets, against one process on the same data. Two ranks reproduce the one-process
//! run, sharded inference equals one process's exactly (stdin read by rank 0 alone), a
//! killed rank stops the other with its number and the run resumes, and ranks started
//! differently are refused, for training and for inference.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::common::*;
use crate::toy_data::{write_toy_data, ToyData};

/// A port nobody listens on now (the OS's choice for a socket just closed).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Rank `rank` of a `world`-process launch through `port`, as torchrun starts it.
fn rank_command(args: &[String], rank: usize, world: usize, port: u16) -> Command {
    let mut cmd = bin();
    cmd.args(args)
        .env("WORLD_SIZE", world.to_string())
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string());
    cmd
}

fn spawn_ranks(args: &[String], world: usize) -> Vec<Child> {
    let port = free_port();
    (0..world)
        .map(|rank| {
            rank_command(args, rank, world, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect()
}

/// Runs `args` as a `world`-process launch; every rank's output, in rank order.
fn launch(args: &[String], world: usize) -> Vec<Output> {
    spawn_ranks(args, world).into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// `encode` with `model` on one CPU thread, waiting `dist_timeout` s for the other ranks.
fn encode_args(model: &Path, dist_timeout: u64) -> Vec<String> {
    let mut args = strings(&["encode", "-m", model.to_str().unwrap(), "--device", "cpu", "--threads", "1"]);
    args.extend(["--dist-timeout".to_string(), dist_timeout.to_string()]);
    args
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `train` on the toy data: one classification task (`topic`) and one similarity task
/// (`similar`, cosine-MSE: a loss that is a mean over rows, as the equality needs), no dropout.
fn train_args(model: &Path, data: &ToyData, out: &Path, steps: usize, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&["train", "-m", model.to_str().unwrap()]);
    args.push("--task".into());
    args.push(format!("topic={},{}", data.topic_train.display(), data.topic_dev.display()));
    args.push("--task".into());
    args.push(format!("similar={},{}", data.similar_train.display(), data.similar_dev.display()));
    args.extend(strings(&[
        "--similarity-loss",
        "cosine-mse",
        "--dropout",
        "0",
        "--batch-size",
        "32",
        // Not higher: an attention key bias has a true gradient of zero (softmax cancels it),
        // so its computed gradient is rounding noise, which Adam's normalisation turns into
        // real steps that two exact runs do not share (at 1e-3 they drifted 6e-6 apart there).
        "--lr-backbone",
        "3e-4",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--small-data",
        "off",
        "--dist-timeout",
        "30",
        "-q",
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
    ]));
    args.push(steps.to_string());
    args.extend(strings(extra));
    args
}

/// Every logged mean loss of a run's `train_log.jsonl`, named by step and task.
fn logged_losses(run: &Path) -> Vec<(String, f64)> {
    let log = std::fs::read_to_string(run.join("train_log.jsonl")).unwrap();
    let records = log.lines().map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap());
    let steps = records.filter(|r| r["type"] == "step");
    let losses = steps.flat_map(|r| {
        let step = r["step"].clone();
        let by_task = r["loss"].as_object().unwrap().clone();
        by_task.into_iter().map(move |(task, loss)| (format!("step {step} {task}"), loss.as_f64().unwrap()))
    });
    losses.collect()
}

fn weights(checkpoint: &Path) -> Vec<(String, Tensor)> {
    let mut w = Tensor::read_safetensors(checkpoint.join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn max_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    assert_eq!(a.iter().map(|(n, _)| n).collect::<Vec<_>>(), b.iter().map(|(n, _)| n).collect::<Vec<_>>());
    a.iter().zip(b).map(|((_, x), (_, y))| f64::try_from((x - y).abs().max()).unwrap()).fold(0.0, f64::max)
}

struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
    data: ToyData,
}

fn setup(test: &str) -> Option<Setup> {
    let model = tiny_models(test)?.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let data = write_toy_data(dir.path());
    Some(Setup { dir, model, data })
}

fn assert_all_ok(outputs: &[Output]) {
    for (rank, o) in outputs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank} failed ({:?}):\n{}", o.status, stderr(o));
    }
}

#[test]
fn two_ranks_reproduce_one_process_and_predict_the_same() {
    let Some(s) = setup("two_ranks_reproduce_one_process_and_predict_the_same") else { return };
    let (one, two) = (s.dir.path().join("one"), s.dir.path().join("two"));
    assert_ok(&bin().args(train_args(&s.model, &s.data, &one, 20, &[])).output().unwrap());
    let outputs = launch(&train_args(&s.model, &s.data, &two, 20, &[]), 2);
    assert_all_ok(&outputs);
    assert!(stdout(&outputs[0]).contains("trained to step 20"), "{}", stdout(&outputs[0]));
    assert_eq!((stdout(&outputs[1]), stderr(&outputs[1])), (String::new(), String::new()), "rank 1 printed");

    let difference = max_difference(&weights(&one.join("last")), &weights(&two.join("last")));
    assert!(difference < 1e-5, "2 ranks vs 1 process after 20 steps: max |difference| {difference:e}");
    // The ranks' losses, summed once per logging window, are the whole batches' losses.
    let (logged_one, logged_two) = (logged_losses(&one), logged_losses(&two));
    assert_eq!(logged_one.len(), logged_two.len(), "{logged_one:?}\n{logged_two:?}");
    assert!(logged_one.len() >= 4, "{logged_one:?}");
    for ((what, a), (_, b)) in logged_one.iter().zip(&logged_two) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{what}: 1 process {a}, 2 ranks {b}");
    }
    // Sanity: the weights did move, so the equality above is not trivially true.
    let start = Tensor::read_safetensors(s.model.join("model.safetensors")).unwrap();
    let trained = weights(&one.join("last"));
    let (name, before) = start.iter().find(|(n, _)| n.ends_with("word_embeddings.weight")).unwrap();
    let after = &trained.iter().find(|(n, _)| n.ends_with(name.as_str())).unwrap().1;
    assert!(f64::try_from((before - after).abs().max()).unwrap() > 1e-3, "training did not change {name}");

    let predict = |dir: &Path| {
        let out = run(&[
            "predict",
            "-m",
            dir.join("best").to_str().unwrap(),
            "-t",
            "topic",
            "--input",
            s.data.topic_dev.to_str().unwrap(),
            "--format",
            "csv",
            "--device",
            "cpu",
        ]);
        assert_ok(&out);
        stdout(&out)
    };
    let (labels_one, labels_two) = (predict(&one), predict(&two));
    let label_column =
        |text: &str| text.lines().map(|l| l.split(',').nth(1).unwrap_or("").to_string()).collect::<Vec<_>>();
    assert_eq!(label_column(&labels_one), label_column(&labels_two));
}

/// With accumulation, the first batch of a step (one task) only accumulates locally and the
/// last (the other task) carries the all-reduce: the first task's head is summed without a
/// gradient from that backward.
#[test]
fn two_ranks_reproduce_one_process_with_accumulated_batches_of_both_tasks() {
    let Some(s) = setup("two_ranks_reproduce_one_process_with_accumulated_batches_of_both_tasks") else { return };
    let (one, two) = (s.dir.path().join("one"), s.dir.path().join("two"));
    let accumulate = ["--grad-accum", "2"];
    assert_ok(&bin().args(train_args(&s.model, &s.data, &one, 10, &accumulate)).output().unwrap());
    let outputs = launch(&train_args(&s.model, &s.data, &two, 10, &accumulate), 2);
    assert_all_ok(&outputs);
    let difference = max_difference(&weights(&one.join("last")), &weights(&two.join("last")));
    assert!(difference < 1e-5, "2 ranks vs 1 process, --grad-accum 2, after 10 steps: max |difference| {difference:e}");
}

#[test]
fn sharded_inference_equals_one_process_exactly() {
    let Some(s) = setup("sharded_inference_equals_one_process_exactly") else { return };
    let run = s.dir.path().join("run");
    assert_ok(&bin().args(train_args(&s.model, &s.data, &run, 10, &[])).output().unwrap());
    let best = run.join("best");
    let common = |command: &str| {
        strings(&[command, "-m", best.to_str().unwrap(), "--device", "cpu", "--threads", "1", "--batch-size", "5"])
    };
    let mut eval = common("eval");
    for (name, file) in [("topic", &s.data.topic_dev), ("similar", &s.data.similar_dev), ("match", &s.data.match_dev)] {
        eval.push("--task".into());
        eval.push(format!("{name}={}", file.display()));
    }
    eval.push("--json".into());
    let mut predict = common("predict");
    predict.extend(strings(&["-t", "topic", "--all-scores", "--input", s.data.topic_dev.to_str().unwrap()]));
    let mut encode = common("encode");
    encode.extend(strings(&["--input", s.data.mood_dev.to_str().unwrap(), "--format", "jsonl"]));

    for args in [&eval, &predict, &encode] {
        let one = bin().args(args).output().unwrap();
        assert_ok(&one);
        let ranks = launch(args, 2);
        assert_all_ok(&ranks);
        assert!(stdout(&ranks[1]).is_empty(), "rank 1 wrote output for {}", args[0]);
        if args[0] == "eval" {
            let tasks = |o: &Output| serde_json::from_str::<serde_json::Value>(&stdout(o)).unwrap()["tasks"].clone();
            assert_eq!(tasks(&one), tasks(&ranks[0]), "eval: 2 ranks differ from 1 process");
        } else {
            assert_eq!(stdout(&one), stdout(&ranks[0]), "{}: 2 ranks differ from 1 process", args[0]);
        }
    }
    // The ranks must name the same tasks: each runs its own heads, and their rows are summed.
    let renamed: Vec<String> = eval.iter().map(|a| a.replace("similar=", "alike=")).collect();
    for (rank, out) in launch_each(&[eval.clone(), renamed]).iter().enumerate() {
        assert_clean_error(
            out,
            &format!("rank {rank}: the ranks were started with different settings: rank 1's --task differs from rank 0's (topic, alike, match against topic, similar, match)"),
        );
    }
    // And read the same files: rank 0 reports with its own scores and labels, so a file that
    // differs only in a score is refused as one that differs in a text is.
    let rows = std::fs::read_to_string(&s.data.similar_dev).unwrap();
    let (header, body) = rows.split_once('\n').unwrap();
    let (first, rest) = body.split_once('\n').unwrap();
    let (texts, score) = first.rsplit_once(',').unwrap();
    let other_score = if score.trim() == "0" { "1" } else { "0" };
    for (file, changed) in
        [("other_text.csv", format!("changed {body}")), ("other_score.csv", format!("{texts},{other_score}\n{rest}"))]
    {
        let other = s.dir.path().join(file);
        std::fs::write(&other, format!("{header}\n{changed}")).unwrap();
        let elsewhere: Vec<String> = eval
            .iter()
            .map(|a| a.replace(&s.data.similar_dev.display().to_string(), &other.display().to_string()))
            .collect();
        for (rank, out) in launch_each(&[eval.clone(), elsewhere]).iter().enumerate() {
            assert_clean_error(
                out,
                &format!("rank {rank}: the ranks were started with different settings: rank 1's --task files' content differs from rank 0's"),
            );
        }
    }
}

/// The ranks of a launch share one stdin (one file offset, as a pipe would be): rank 0 alone
/// reads it, and ranks given different batching for inference are refused, as `train` refuses
/// different settings (they used to sum rows of different batch plans, silently).
#[test]
fn stdin_goes_through_rank_0_and_ranks_with_other_batches_are_refused() {
    let Some(s) = setup("stdin_goes_through_rank_0_and_ranks_with_other_batches_are_refused") else { return };
    let lines: String = (0..200).map(|i| format!("sentence number {i} about football\n")).collect();
    let text = s.dir.path().join("lines.txt");
    std::fs::write(&text, lines).unwrap();
    let encode = |batch: usize| {
        encode_args(&s.model, 20).into_iter().chain(["--batch-size".to_string(), batch.to_string()]).collect::<Vec<_>>()
    };
    let one = bin().args(encode(5)).arg("--input").arg(&text).output().unwrap();
    assert_ok(&one);
    let shared_stdin = std::fs::File::open(&text).unwrap();
    let port = free_port();
    let ranks: Vec<Output> = (0..2)
        .map(|rank| {
            rank_command(&encode(5), rank, 2, port)
                .stdin(shared_stdin.try_clone().unwrap())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect::<Vec<Child>>()
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert_all_ok(&ranks);
    assert_eq!(stdout(&one), stdout(&ranks[0]), "2 ranks reading stdin differ from 1 process reading the file");

    let port = free_port();
    let refused: Vec<Child> = [5, 7]
        .iter()
        .enumerate()
        .map(|(rank, &batch)| {
            let mut args = encode(batch);
            args.extend(["--input".to_string(), text.to_string_lossy().into_owned()]);
            rank_command(&args, rank, 2, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (rank, child) in refused.into_iter().enumerate() {
        assert_clean_error(
            &child.wait_with_output().unwrap(),
            &format!("rank {rank}: the ranks were started with different settings: rank 1's --batch-size or --batch-tokens differs from rank 0's (--batch-size 7 against --batch-size 5)"),
        );
    }
}

/// Client connections to `port` on this machine (ESTABLISHED rows of /proc/net/tcp{,6} whose
/// remote port it is; the store listens on IPv6): a launch's ranks connected to its store.
fn store_clients(port: u16) -> usize {
    let table = ["/proc/net/tcp", "/proc/net/tcp6"].map(|f| std::fs::read_to_string(f).unwrap_or_default()).concat();
    let remote_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            fields.len() > 3 && fields[2].ends_with(&remote_port) && fields[3] == "01"
        })
        .count()
}

/// Two launches given one MASTER_PORT: the second one's rank 0 cannot listen there and its
/// rank 1, which reaches the first launch's store, is refused before it joins that group;
/// the first launch (held waiting for rank 0's stdin meanwhile) still finishes.
#[test]
fn a_second_launch_on_a_busy_port_is_refused_and_the_first_finishes() {
    let Some(s) = setup("a_second_launch_on_a_busy_port_is_refused_and_the_first_finishes") else { return };
    let text = s.dir.path().join("lines.txt");
    std::fs::write(&text, "the first sentence\nthe second sentence\nthe third\n").unwrap();
    let encode = encode_args(&s.model, 60);
    let port = free_port();
    let mut first: Vec<Child> = (0..2)
        .map(|rank| {
            let stdin = if rank == 0 { Stdio::piped() } else { Stdio::null() };
            rank_command(&encode, rank, 2, port)
                .stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store_clients(port) < 2 {
        assert!(Instant::now() < deadline, "the first launch's ranks did not connect to port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1)); // the second rank counts itself in just after connecting

    let mut second_args = encode.clone();
    second_args.extend(["--input".to_string(), text.to_string_lossy().into_owned()]);
    let second: Vec<Child> = (0..2)
        .map(|rank| {
            rank_command(&second_args, rank, 2, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let expected = [
        format!("rank 0: MASTER_PORT {port} is in use on 127.0.0.1"),
        format!("rank 1: another launch is using MASTER_PORT {port} (3 processes have joined its store, more than WORLD_SIZE=2)"),
    ];
    for (child, expected) in second.into_iter().zip(&expected) {
        assert_clean_error(&child.wait_with_output().unwrap(), expected);
    }

    use std::io::Write;
    first[0].stdin.take().unwrap().write_all(std::fs::read(&text).unwrap().as_slice()).unwrap();
    let first: Vec<Output> = first.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    assert_all_ok(&first);
    assert!(stdout(&first[0]).contains("the third"), "rank 0 of the first launch:\n{}", stdout(&first[0]));
}

/// A program on MASTER_PORT that answers anything with an HTTP error is named as not a store
/// (its reply, read as a count of processes, once passed for "another launch").
#[test]
fn a_port_that_answers_but_is_no_store_is_named() {
    let Some(s) = setup("a_port_that_answers_but_is_no_store_is_named") else { return };
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut client in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while matches!(client.read(&mut buffer), Ok(n) if n > 0) {
                    let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
                }
            });
        }
    });
    let out = rank_command(&encode_args(&s.model, 5), 1, 2, port).arg("hi").output().unwrap();
    assert_clean_error(
        &out,
        &format!("rank 1: cannot join the process group at 127.0.0.1:{port}: no c10d store answers there"),
    );
}

/// GLOO_SOCKET_IFNAME picks Gloo's network interface, as for PyTorch (here loopback, the
/// one interface every machine has); one this machine lacks is named before joining.
#[test]
fn gloo_socket_ifname_is_honoured_and_checked() {
    let Some(s) = setup("gloo_socket_ifname_is_honoured_and_checked") else { return };
    let mut encode = encode_args(&s.model, 20);
    encode.extend(strings(&["first sentence", "second sentence", "third"]));
    let port = free_port();
    let ranks: Vec<Output> = (0..2)
        .map(|rank| {
            let mut command = rank_command(&encode, rank, 2, port);
            command.env("GLOO_SOCKET_IFNAME", "lo").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect::<Vec<Child>>()
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert_all_ok(&ranks);
    assert_eq!(stdout(&ranks[0]), stdout(&bin().args(&encode).output().unwrap()));
    let out = rank_command(&encode, 0, 2, free_port()).env("GLOO_SOCKET_IFNAME", "lo,nosuch9").output().unwrap();
    assert_clean_error(
        &out,
        "environment variable GLOO_SOCKET_IFNAME=lo,nosuch9: this machine has no network interface nosuch9 (it has ",
    );
}

#[test]
fn a_killed_rank_stops_the_other_naming_it_and_the_run_resumes() {
    let Some(s) = setup("a_killed_rank_stops_the_other_naming_it_and_the_run_resumes") else { return };
    let dir = s.dir.path().join("run");
    let args = train_args(&s.model, &s.data, &dir, 100_000, &["--save-every", "5", "--dist-timeout", "20"]);
    let mut ranks = spawn_ranks(&args, 2);
    let state = dir.join("last/trainer_state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    ranks[1].kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    let survivor = ranks.remove(0).wait_with_output().unwrap();
    let took = killed_at.elapsed();
    let _ = ranks[0].wait();
    assert_clean_error(&survivor, "rank 0: ");
    assert!(stderr(&survivor).contains("rank 1 stopped, cannot be reached, or is still busy"), "{}", stderr(&survivor));
    let hint = format!("the run's last complete checkpoint is {}", dir.join("last").display());
    assert!(stderr(&survivor).contains(&hint), "{}", stderr(&survivor));
    assert!(!stderr(&survivor).contains(".cc:"), "C++ source location in the message: {}", stderr(&survivor));
    assert!(took < Duration::from_secs(20 + 15), "rank 0 took {took:?} to stop");

    // The last complete checkpoint loads.
    let predicted =
        run(&["predict", "-m", dir.join("last").to_str().unwrap(), "-t", "topic", "football", "--device", "cpu"]);
    assert_ok(&predicted);
    // One process may not continue what two started.
    let alone = run(&["train", "--resume", dir.to_str().unwrap(), "-q"]);
    assert_clean_error(&alone, "was trained by 2 processes; resume it with the same number (WORLD_SIZE=2), not 1");
    // Two do, to the end (a short end: the run's own --max-steps is far away, so a new run
    // would be needed to change it; resuming checks that the state and rendezvous work).
    let resumed_from: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let mut resumed =
        spawn_ranks(&strings(&["train", "--resume", dir.to_str().unwrap(), "-q", "--dist-timeout", "20"]), 2);
    let later = Instant::now() + Duration::from_secs(120);
    loop {
        let step: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&state).unwrap_or_default()).unwrap_or_default();
        if step["step"].as_u64() > resumed_from["step"].as_u64().map(|s| s + 10) {
            break;
        }
        assert!(Instant::now() < later, "the resumed run made no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in &mut resumed {
        child.kill().unwrap();
        let _ = child.wait();
    }
}

#[test]
fn ranks_started_with_different_settings_are_refused() {
    let Some(s) = setup("ranks_started_with_different_settings_are_refused") else { return };
    let run = s.dir.path().join("run");
    // Each rank's own data files and flags.
    let refused = |ranks: [(&ToyData, &[&str]); 2], expected: &str| {
        let port = free_port();
        let ranks: Vec<Child> = ranks
            .iter()
            .enumerate()
            .map(|(rank, (data, flags))| {
                let mut args = train_args(&s.model, data, &run, 5, flags);
                args.retain(|a| a != "-q"); // rank 0's overview must not show
                if flags.contains(&"--batch-tokens") {
                    let at = args.iter().position(|a| a == "--batch-size").unwrap();
                    args.drain(at..at + 2);
                }
                rank_command(&args, rank, 2, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
            })
            .collect();
        for (rank, child) in ranks.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert_clean_error(
                &out,
                &format!("rank {rank}: the ranks were started with different settings: {expected}"),
            );
            // Refused before rank 0's overview, which would read as a run that started.
            assert!(!stderr(&out).contains("trainable parameters"), "rank {rank}:\n{}", stderr(&out));
        }
        assert!(!run.exists(), "a refused launch left its run directory behind");
    };
    let data = &s.data;
    refused(
        [(data, &["--batch-size", "16"]), (data, &["--batch-size", "32"])],
        "rank 1's --batch-size differs from rank 0's (32 against 16)",
    );
    // A flag given to one rank only (its setting absent from the other's list).
    refused(
        [(data, &[]), (data, &["--batch-tokens", "512"])],
        "rank 1's --batch-tokens differs from rank 0's (512 against not given)",
    );
    // A task more: the ranks' lists of settings differ in length, which an all-gather of
    // their values position by position would not survive (Gloo aborted the process).
    let more = format!("more={}", data.topic_train.display());
    refused([(data, &[]), (data, &["--task", &more])], "rank 1 has task 'more' training file, which rank 0 has not");
    // A data file is compared by its bytes: another path to the same bytes is the same file
    // (nodes may hold copies in different places), one more row is not.
    let copied = s.dir.path().join("copy.csv");
    std::fs::copy(&data.topic_train, &copied).unwrap();
    let elsewhere = ToyData { topic_train: copied.clone(), ..data.clone() };
    let bytes = std::fs::metadata(&copied).unwrap().len();
    std::fs::write(s.dir.path().join("longer.csv"), std::fs::read_to_string(&copied).unwrap() + "one more row,sport\n")
        .unwrap();
    let longer = ToyData { topic_train: s.dir.path().join("longer.csv"), ..data.clone() };
    refused(
        [(data, &[]), (&longer, &[])],
        &format!("rank 1's task 'topic' training file differs from rank 0's ({} bytes, fnv1a ", bytes + 19),
    );
    let port = free_port();
    let ranks: Vec<Child> = [data, &elsewhere]
        .iter()
        .enumerate()
        .map(|(rank, d)| {
            let args = train_args(&s.model, d, &run, 2, &[]);
            rank_command(&args, rank, 2, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    assert_all_ok(&ranks.into_iter().map(|c| c.wait_with_output().unwrap()).collect::<Vec<_>>());
}

/// Each rank of a launch, as each `args`, through one port; their outputs in rank order.
fn launch_each(args: &[Vec<String>]) -> Vec<Output> {
    let port = free_port();
    let ranks: Vec<Child> = args
        .iter()
        .enumerate()
        .map(|(rank, a)| {
            rank_command(a, rank, args.len(), port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    ranks.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// Each rank loads its own copy of the model, which may lie elsewhere (a node-local disk):
/// copies are compared by content. Inference refuses a copy whose weights differ (its rows
/// would be mixed into the output); training accepts it, as it gives every rank rank 0's.
#[test]
fn ranks_compare_their_models_by_content_not_by_path() {
    let Some(s) = setup("ranks_compare_their_models_by_content_not_by_path") else { return };
    let copy = s.dir.path().join("elsewhere").join("model");
    copy_dir(&s.model, &copy);
    let lines: String = (0..40).map(|i| format!("sentence number {i} about football\n")).collect();
    let text = s.dir.path().join("lines.txt");
    std::fs::write(&text, lines).unwrap();
    let encode = |model: &Path| {
        let mut args = encode_args(model, 20);
        args.extend(["--input".to_string(), text.to_string_lossy().into_owned()]);
        args
    };
    let one = bin().args(encode(&s.model)).output().unwrap();
    assert_ok(&one);
    let ranks = launch_each(&[encode(&s.model), encode(&copy)]);
    assert_all_ok(&ranks);
    assert_eq!(stdout(&one), stdout(&ranks[0]), "a copy at another path changed the output");
    // Rank 0 writes the one output: another --output per rank (as for job-array shards) is
    // refused rather than silently not written.
    let to = |model: &Path, file: &str| -> Vec<String> {
        let file = s.dir.path().join(file).to_string_lossy().into_owned();
        encode(model).into_iter().chain(["--output".to_string(), file]).collect()
    };
    for (rank, out) in launch_each(&[to(&s.model, "out0.npy"), to(&copy, "out1.npy")]).iter().enumerate() {
        assert_clean_error(
            out,
            &format!("rank {rank}: the ranks were started with different settings: rank 1's --output differs from rank 0's ("),
        );
    }
    // A flag that changes the model's spec is named as that flag, not as another model.
    let shorter: Vec<String> = encode(&copy).into_iter().chain(strings(&["--max-length", "16"])).collect();
    for (rank, out) in launch_each(&[encode(&s.model), shorter]).iter().enumerate() {
        assert_clean_error(
            out,
            &format!("rank {rank}: the ranks were started with different settings: rank 1's --max-length differs from rank 0's (16 against "),
        );
    }

    let weights = copy.join("model.safetensors");
    let mut tensors = Tensor::read_safetensors(&weights).unwrap();
    // A weight the forward uses (not the pooler, nor an integer buffer such as position ids).
    let (_, used) = tensors
        .iter_mut()
        .find(|(name, t)| name.contains("layer.0.") && name.ends_with(".weight") && t.kind() == tch::Kind::Float)
        .expect("a first block's weight");
    let _ = used.g_add_scalar_(1e-3);
    Tensor::write_safetensors(&tensors, &weights).unwrap();
    for (rank, out) in launch_each(&[encode(&s.model), encode(&copy)]).iter().enumerate() {
        assert_clean_error(
            out,
            &format!("rank {rank}: the ranks were started with different settings: rank 1's --model differs from rank 0's (content fnv1a "),
        );
    }
    let train = |model: &Path, run: &str| train_args(model, &s.data, &s.dir.path().join(run), 2, &[]);
    assert_all_ok(&launch_each(&[train(&s.model, "run"), train(&copy, "run")]));

    // Training refuses a copy that tokenises differently, and copies whose folders pool
    // differently (without --pooling each rank's folder says how): they are other functions.
    let other_vocabulary = s.dir.path().join("other-vocabulary");
    copy_dir(&s.model, &other_vocabulary);
    // The same number of tokens (more would not fit the embedding table), one of them another.
    let vocabulary = std::fs::read_to_string(other_vocabulary.join("vocab.txt")).unwrap();
    let mut tokens: Vec<&str> = vocabulary.lines().collect();
    let replaced = std::mem::replace(tokens.last_mut().unwrap(), "zzzextra").to_string();
    std::fs::write(other_vocabulary.join("vocab.txt"), tokens.join("\n") + "\n").unwrap();
    // tokenizer.json too, which would otherwise disagree with vocab.txt (a load error).
    let tokenizer_json = other_vocabulary.join("tokenizer.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tokenizer_json).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    let id = vocab.remove(&replaced).unwrap();
    vocab.insert("zzzextra".into(), id);
    std::fs::write(&tokenizer_json, json.to_string()).unwrap();
    let pooled_by = |mode: &str| {
        let dir = s.dir.path().join(format!("pooled-by-{mode}"));
        copy_dir(&s.model, &dir);
        let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
        std::fs::write(dir.join("modules.json"), modules).unwrap();
        std::fs::create_dir(dir.join("1_Pooling")).unwrap();
        std::fs::write(dir.join("1_Pooling/config.json"), format!(r#"{{"pooling_mode_{mode}": true}}"#)).unwrap();
        dir
    };
    let refusals = [
        (s.model.clone(), other_vocabulary, "--model differs from rank 0's (config, vocabulary and shapes fnv1a "),
        (
            pooled_by("mean_tokens"),
            pooled_by("cls_token"),
            "pooling (--pooling, else the model folder's) differs from rank 0's (cls against mean)",
        ),
    ];
    for (i, (first, second, expected)) in refusals.iter().enumerate() {
        let run = format!("refused-{i}");
        for (rank, out) in launch_each(&[train(first, &run), train(second, &run)]).iter().enumerate() {
            let said = format!("rank {rank}: the ranks were started with different settings: rank 1's {expected}");
            assert_clean_error(out, &said);
        }
    }
}

/// Ranks given different WORLD_SIZE values: each says so, the waiting rank 0 too (rank 1
/// leaves the reason in the store), instead of a handshake timeout.
#[test]
fn ranks_started_with_different_world_sizes_are_refused() {
    let Some(s) = setup("ranks_started_with_different_world_sizes_are_refused") else { return };
    let mut args = encode_args(&s.model, 5);
    args.push("hello".into());
    let port = free_port();
    let ranks: Vec<Child> = [2, 3]
        .iter()
        .enumerate()
        .map(|(rank, &world)| {
            rank_command(&args, rank, world, port).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (rank, child) in ranks.into_iter().enumerate() {
        assert_clean_error(
            &child.wait_with_output().unwrap(),
            &format!("rank {rank}: the ranks were started with different WORLD_SIZE: rank 1 was started with WORLD_SIZE=3, rank 0 with WORLD_SIZE=2"),
        );
    }
}

/// A rank 0 of another build (imitated by torch's own TCPStore, holding what that rank 0 would
/// write) refuses rank 1 before Gloo's handshake, where ranks of other versions abort, and
/// leaves the reason in the store for rank 0.
#[test]
fn a_rank_of_another_build_is_refused() {
    let test = "a_rank_of_another_build_is_refused";
    let (Some(s), Some(python)) = (setup(test), python(test)) else { return };
    // c10d's store protocol differs between torch versions: the store must be this binary's.
    let release = env!("SENTENCE_MTL_LIBTORCH_VERSION").split('+').next().unwrap_or_default();
    let Some(mut imitation) = python_of_torch(&python, release) else {
        skipped(
            test,
            &format!("no torch {release} for the store (`scripts/build-for-torch.sh --cuda {release}` installs one)"),
        );
        return;
    };
    let port = free_port();
    let other_build = "sentence-mtl 0.0.1 (libtorch 2.4.0, without NCCL)";
    let rank0 = format!(
        "import datetime, torch.distributed as d\n\
         s = d.TCPStore('127.0.0.1', {port}, 2, True, timeout=datetime.timedelta(seconds=60), wait_for_workers=False)\n\
         s.add('smtl/joined', 1)\n\
         s.set('smtl/world_size', '2')\n\
         s.set('smtl/build', '{other_build}')\n\
         s.wait(['smtl/refused'])\n\
         print(s.get('smtl/refused').decode())\n"
    );
    let imitation = imitation.args(["-c", &rank0]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut args = encode_args(&s.model, 20);
    args.push("hello".into());
    let rank1 = rank_command(&args, 1, 2, port).output().unwrap();
    let refusal = format!("rank 1 runs sentence-mtl {}, rank 0 runs {other_build}", version_of_binary());
    assert_clean_error(
        &rank1,
        &format!(
            "rank 1: the ranks run different builds of sentence-mtl: {refusal}; install the same one on every machine"
        ),
    );
    let imitation = imitation.wait_with_output().unwrap();
    assert!(imitation.status.success(), "{}", String::from_utf8_lossy(&imitation.stderr));
    assert_eq!(String::from_utf8_lossy(&imitation.stdout).trim(), format!("4{refusal}"));
}

/// What `--version` prints after the name.
fn version_of_binary() -> String {
    let out = bin().arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().strip_prefix("sentence-mtl ").unwrap().to_string()
}

/// Resuming a data-parallel run continues it exactly: 2 ranks stopped by SIGTERM after their
/// first save and resumed end with the weights of 2 ranks that ran without a stop.
#[test]
fn a_resumed_two_rank_run_ends_where_an_uninterrupted_one_does() {
    let Some(s) = setup("a_resumed_two_rank_run_ends_where_an_uninterrupted_one_does") else { return };
    let (whole, parts) = (s.dir.path().join("whole"), s.dir.path().join("parts"));
    let extra = ["--eval-every", "100", "--save-every", "20"];
    assert_all_ok(&launch(&train_args(&s.model, &s.data, &whole, 200, &extra), 2));
    // The same run stopped by SIGTERM after its first save, then resumed.
    let mut ranks = spawn_ranks(&train_args(&s.model, &s.data, &parts, 200, &extra), 2);
    let state = parts.join("last/trainer_state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in &ranks {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let stopped: Vec<Output> = ranks.drain(..).map(|c| c.wait_with_output().unwrap()).collect();
    for (rank, out) in stopped.iter().enumerate() {
        assert_eq!(out.status.code(), Some(143), "rank {rank} did not stop on SIGTERM:\n{}", stderr(out));
    }
    // The program as it was run (here the test binary's path).
    let program = env!("CARGO_BIN_EXE_sentence-mtl");
    let hint = format!("continue with the same launch of 2 processes, each running: {program} train --resume");
    assert!(stderr(&stopped[0]).contains(&hint), "{}", stderr(&stopped[0]));
    assert!(stderr(&stopped[1]).is_empty(), "rank 1 printed: {}", stderr(&stopped[1]));
    assert_all_ok(&launch(&strings(&["train", "--resume", parts.to_str().unwrap(), "-q"]), 2));
    let difference = max_difference(&weights(&whole.join("last")), &weights(&parts.join("last")));
    assert_eq!(difference, 0.0, "resumed 2-rank run differs from the uninterrupted one");
}

/// torchrun (`python -m torch.distributed.run`) of a torch whose version is `release`.
fn torchrun_of(python: &Path, release: &str) -> Option<Command> {
    let mut torchrun = python_of_torch(python, release)?;
    torchrun.args(["-m", "torch.distributed.run"]);
    Some(torchrun)
}

/// Python with a torch whose version is `release`: the venv's own, or the one
/// `scripts/build-for-torch.sh --cuda VERSION` installs beside it (importable only with its
/// CUDA libraries, hence --cuda).
fn python_of_torch(python: &Path, release: &str) -> Option<Command> {
    let python_with = |pythonpath: Option<&Path>| {
        let mut cmd = Command::new(python);
        if let Some(path) = pythonpath {
            cmd.env("PYTHONPATH", path);
        }
        cmd
    };
    let torch_release = |pythonpath: Option<&Path>| {
        let out =
            python_with(pythonpath).args(["-c", "import importlib.metadata as m; print(m.version('torch'))"]).output();
        out.ok().map(|out| stdout(&out).trim().split('+').next().unwrap_or_default().to_string())
    };
    let beside = root().join(format!(".venv/torch-{release}"));
    let pythonpath = if torch_release(None).as_deref() == Some(release) {
        None
    } else if beside.join(".with-cuda").is_file() && torch_release(Some(&beside)).as_deref() == Some(release) {
        Some(beside.as_path())
    } else {
        return None;
    };
    Some(python_with(pythonpath))
}

/// `torchrun --no-python` launches it as PyTorch users launch their scripts: torchrun's agent
/// serves the rendezvous store, and the workers find it from the variables torchrun sets.
/// c10d's store protocol differs between torch versions (a 2.15 worker cannot join a 2.4
/// agent), so torchrun must come from the torch this binary is built on.
#[test]
fn torchrun_launches_it() {
    let test = "torchrun_launches_it";
    let Some(s) = setup(test) else { return };
    let Some(python) = python(test) else { return };
    // The libtorch this binary (and this test) is built on: "2.15.0" of "2.15.0+cu132".
    let release = env!("SENTENCE_MTL_LIBTORCH_VERSION").split('+').next().unwrap_or_default();
    let Some(mut torchrun) = torchrun_of(&python, release) else {
        skipped(
            test,
            &format!("no torch {release} for torchrun (this binary's libtorch; `scripts/build-for-torch.sh --cuda {release}` installs one)"),
        );
        return;
    };
    let run = s.dir.path().join("run");
    let mut args = vec![
        "--no-python".to_string(),
        "--nproc-per-node".into(),
        "2".into(),
        "--master-port".into(),
        free_port().to_string(),
        env!("CARGO_BIN_EXE_sentence-mtl").into(),
    ];
    args.extend(train_args(&s.model, &s.data, &run, 6, &[]));
    let out = torchrun.args(&args).env("OMP_NUM_THREADS", "1").output().unwrap();
    assert!(out.status.success(), "torchrun failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains("trained to step 6"), "{}", stdout(&out));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last/trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["world_size"], 2);
}

/// `--gather-across-ranks`: a pairs task's in-batch negatives come from both ranks, with the
/// gradients back to the rank that computed each, so 2 ranks train what 1 process trains; without
/// it each rank contrasts its own half only (PyTorch DDP's semantics) and the weights differ.
#[test]
fn gathered_negatives_make_two_ranks_train_what_one_process_trains() {
    let Some(s) = setup("gathered_negatives_make_two_ranks_train_what_one_process_trains") else { return };
    let pairs_task = format!("match={},{}", s.data.match_train.display(), s.data.match_dev.display());
    let args = |out: &Path, extra: &[&str]| {
        let mut args = train_args(&s.model, &s.data, out, 12, extra);
        args.extend(["--task".to_string(), pairs_task.clone()]);
        args
    };
    let one = s.dir.path().join("one");
    assert_ok(&bin().args(args(&one, &[])).output().unwrap());
    let gathered = s.dir.path().join("gathered");
    assert_all_ok(&launch(&args(&gathered, &["--gather-across-ranks"]), 2));
    let local = s.dir.path().join("local");
    assert_all_ok(&launch(&args(&local, &[]), 2));

    let reference = weights(&one.join("last"));
    let with_gather = max_difference(&reference, &weights(&gathered.join("last")));
    assert!(with_gather < 1e-5, "gathered negatives, 2 ranks vs 1 process: max |difference| {with_gather:e}");
    let without = max_difference(&reference, &weights(&local.join("last")));
    eprintln!("max |difference| from 1 process: gathered {with_gather:e}, each rank's own {without:e}");
    assert!(without > 1e-4, "each rank's own negatives should train differently: {without:e}");

    // A task weight of 0 leaves the pairs task's loss reported as it is, not as 0 / 0.
    let unweighted = s.dir.path().join("unweighted");
    assert_all_ok(&launch(&args(&unweighted, &["--gather-across-ranks", "--task-weight", "match=0"]), 2));
    let log = std::fs::read_to_string(unweighted.join("train_log.jsonl")).unwrap();
    assert!(!log.contains("NaN") && !log.contains("null"), "{log}");
}

/// A pairs batch that leaves a rank one row trains nothing there (no in-batch negative):
/// refused on every rank, unless --gather-across-ranks gives each rank the whole batch.
#[test]
fn a_pairs_batch_of_one_row_per_rank_is_refused_without_gathering() {
    let Some(s) = setup("a_pairs_batch_of_one_row_per_rank_is_refused_without_gathering") else { return };
    let pairs_task = format!("match={}", s.data.match_train.display());
    let args = |out: &Path, extra: &[&str]| {
        let mut args = train_args(&s.model, &s.data, out, 2, &["--batch-size", "3"]);
        args.extend(["--task".to_string(), pairs_task.clone()]);
        args.extend(strings(extra));
        args
    };
    let refused = s.dir.path().join("refused");
    for out in &launch(&args(&refused, &[]), 2) {
        assert_clean_error(
            out,
            "--batch-size 3 over 2 ranks gives some ranks only 1 row of each batch of task 'match'",
        );
    }
    assert!(!refused.exists(), "a refused launch left its run directory behind");
    assert_all_ok(&launch(&args(&s.dir.path().join("gathered"), &["--gather-across-ranks"]), 2));
}

/// Pairs whose anchors are few (labels as anchors) make batches of as many rows as anchors:
/// with 2 anchors over 2 ranks, some rank's share is a lone row, which is refused on every
/// rank before training; so is a similarity task of too few rows.
#[test]
fn pairs_whose_batches_cannot_give_each_rank_two_rows_are_refused() {
    let Some(s) = setup("pairs_whose_batches_cannot_give_each_rank_two_rows_are_refused") else { return };
    let file = s.dir.path().join("two_anchors.csv");
    let rows: Vec<String> = (0..40).map(|i| format!("label {},text number {i}", i % 2)).collect();
    std::fs::write(&file, format!("anchor,positive\n{}\n", rows.join("\n"))).unwrap();
    let out = s.dir.path().join("refused");
    let mut args = strings(&["train", "-m", s.model.to_str().unwrap(), "--task"]);
    args.push(format!("p={}", file.display()));
    args.extend(strings(&["--out", out.to_str().unwrap(), "--max-steps", "2", "--batch-size", "8", "--threads", "1"]));
    args.extend(strings(&["--device", "cpu", "--dist-timeout", "60", "-q"]));
    for output in &launch(&args, 2) {
        assert_clean_error(output, "two_anchors.csv: no batch holds a text twice, so its batches hold at most 2 rows, fewer than 2 for each of the 2 ranks");
    }
    assert!(!out.exists(), "a refused launch left its run directory behind");
    // A CoSENT similarity task keeps no texts apart: its 3 rows are what is too few.
    std::fs::write(&file, "sentence1,sentence2,score\na cat,a dog,1\na car,a bus,3\nrain,snow,2\n").unwrap();
    for output in &launch(&args, 2) {
        assert_clean_error(output, "two_anchors.csv: its rows make batches of at most 3 rows, fewer than 2 for each of the 2 ranks: some rank's share would be a lone row, whose loss is 0; run fewer ranks, or give it more rows");
    }
}

/// Small-data mode's refit in a data-parallel run: every rank fits from the gathered
/// embeddings and takes rank 0's head (a rank that did not would hang the broadcast), and
/// the saved head is the refit on the final body.
#[test]
fn two_ranks_refit_the_small_data_heads() {
    let Some(s) = setup("two_ranks_refit_the_small_data_heads") else { return };
    let out = s.dir.path().join("two");
    assert_all_ok(&launch(&train_args(&s.model, &s.data, &out, 8, &["--small-data", "on"]), 2));
    assert_head_is_the_refit(&out.join("last"), "topic", &s.data.topic_train);
}
