//! `sentence-mtl encode` as a user runs it: inputs, outputs, pooling, and bad input.

use crate::common::*;

fn tiny_bert(test: &str) -> Option<String> {
    tiny_models(test).map(|d| d.join("tiny-bert").to_string_lossy().into_owned())
}

#[test]
fn padding_does_not_change_any_pooling() {
    let test = "padding_does_not_change_any_pooling";
    let Some(model) = tiny_bert(test) else { return };
    let sentences = ["short", "a considerably longer sentence that forces padding of the short one"];
    for pooling in ["mean", "cls", "max"] {
        let together =
            run(&["encode", "-m", &model, "--device", "cpu", "-q", "--pooling", pooling, sentences[0], sentences[1]]);
        assert_ok(&together);
        let together = parse_jsonl_embeddings(&stdout(&together));
        for (i, s) in sentences.iter().enumerate() {
            let alone = run(&["encode", "-m", &model, "--device", "cpu", "-q", "--pooling", pooling, s]);
            assert_ok(&alone);
            let alone = parse_jsonl_embeddings(&stdout(&alone));
            let diff = alone[0].1.iter().zip(&together[i].1).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(diff < 1e-5, "{pooling} pooling: sentence {i} changes by {diff} when batched with padding");
        }
    }
}

#[test]
fn normalize_flag_gives_unit_vectors() {
    let test = "normalize_flag_gives_unit_vectors";
    let Some(model) = tiny_bert(test) else { return };
    let raw = parse_jsonl_embeddings(&stdout(&run(&["encode", "-m", &model, "--device", "cpu", "-q", "hello there"])));
    let unit = parse_jsonl_embeddings(&stdout(&run(&[
        "encode",
        "-m",
        &model,
        "--device",
        "cpu",
        "-q",
        "--normalize",
        "hello there",
    ])));
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm(&unit[0].1) - 1.0).abs() < 1e-5);
    assert!((norm(&raw[0].1) - 1.0).abs() > 1e-3, "tiny model output is not already unit length");
    assert!(cosine(&raw[0].1, &unit[0].1) > 0.99999);
}

#[test]
fn stdin_csv_txt_and_output_formats_agree() {
    let test = "stdin_csv_txt_and_output_formats_agree";
    let Some(model) = tiny_bert(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("in.txt");
    std::fs::write(&txt, "first line\n\nsecond, with comma\r\n").unwrap();
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "id,sentence\n1,first line\n2,\"second, with comma\"\n").unwrap();

    let from_stdin =
        run_with_stdin(&["encode", "-m", &model, "--device", "cpu", "-q"], "first line\nsecond, with comma\n");
    assert_ok(&from_stdin);
    let from_stdin = parse_jsonl_embeddings(&stdout(&from_stdin));
    assert_eq!(from_stdin.len(), 2);

    // The blank line keeps its row, so that rows match input lines.
    let out_txt = dir.path().join("a.jsonl");
    let with_blank =
        run(&["encode", "-m", &model, "--device", "cpu", "-i", txt.to_str().unwrap(), "-o", out_txt.to_str().unwrap()]);
    assert_ok(&with_blank);
    assert!(stderr(&with_blank).contains("has 1 blank sentence, the first is line 2"), "{}", stderr(&with_blank));
    let blank_row = dir.path().join("blank_row.csv");
    std::fs::write(&blank_row, "text\nfirst\n\"\"\n").unwrap();
    let from_csv = run(&["encode", "-m", &model, "--device", "cpu", "-i", blank_row.to_str().unwrap()]);
    assert_ok(&from_csv);
    assert!(
        stderr(&from_csv).contains("has 1 blank sentence, the first is row 2 after the header"),
        "{}",
        stderr(&from_csv)
    );
    let rows = parse_jsonl_embeddings(&std::fs::read_to_string(&out_txt).unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1].0, "");
    assert_eq!([rows[0].clone(), rows[2].clone()], [from_stdin[0].clone(), from_stdin[1].clone()]);
    // Blank arguments are noted the same way.
    let blank_arguments = run(&["encode", "-m", &model, "--device", "cpu", "first line", " ", ""]);
    assert_ok(&blank_arguments);
    let said = stderr(&blank_arguments);
    assert!(said.contains("note: the arguments have 2 blank sentences, the first is argument 2"), "{said}");

    let out_csv = dir.path().join("b.csv");
    assert_ok(&run(&[
        "encode",
        "-m",
        &model,
        "--device",
        "cpu",
        "-q",
        "-i",
        csv.to_str().unwrap(),
        "--text-column",
        "sentence",
        "-o",
        out_csv.to_str().unwrap(),
    ]));
    let mut reader = csv::Reader::from_path(&out_csv).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "text");
    assert_eq!(&header[1], "dim_0");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(&rows[1][0], "second, with comma");
    let first: Vec<f64> = rows[0].iter().skip(1).map(|x| x.parse().unwrap()).collect();
    assert!(cosine(&first, &from_stdin[0].1) > 0.999999);

    let out_npy = dir.path().join("c.npy");
    assert_ok(&run(&[
        "encode",
        "-m",
        &model,
        "--device",
        "cpu",
        "-q",
        "-i",
        txt.to_str().unwrap(),
        "-o",
        out_npy.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(&out_npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    let dim = from_stdin[0].1.len();
    assert!(header.contains(&format!("'shape': (3, {dim})")), "{header}");
    let first = f32::from_le_bytes(bytes[10 + header_len..14 + header_len].try_into().unwrap());
    assert!((first as f64 - from_stdin[0].1[0]).abs() < 1e-6);
}

#[test]
fn similarity_matrix_is_printed_as_a_table() {
    let test = "similarity_matrix_is_printed_as_a_table";
    let Some(model) = minilm(test) else { return };
    let sentences =
        ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."];
    let model_arg = model.to_str().unwrap();
    let out =
        run(&[&["encode", "-m", model_arg, "--device", "cpu", "-q", "--similarity"][..], &sentences[..]].concat());
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("sentence") && lines[0].ends_with("[3]"));
    let cells = |line: &str| -> Vec<f64> {
        line.split_whitespace()
            .rev()
            .take(3)
            .map(|c| c.parse().unwrap())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    };
    let rows: Vec<Vec<f64>> = lines[1..].iter().map(|l| cells(l)).collect();
    // Each cell is the cosine of the two sentences' embeddings, as `encode` prints them.
    let plain = run(&[&["encode", "-m", model_arg, "--device", "cpu", "-q"][..], &sentences[..]].concat());
    assert_ok(&plain);
    let embeddings = parse_jsonl_embeddings(&stdout(&plain));
    for (i, row) in rows.iter().enumerate() {
        for (j, &cell) in row.iter().enumerate() {
            let expected = cosine(&embeddings[i].1, &embeddings[j].1);
            assert!(
                (cell - expected).abs() < 1e-3,
                "cell ({i}, {j}) is {cell}, the embeddings' cosine {expected}: {text}"
            );
        }
    }
    assert!(rows[0][1] > rows[0][2] + 0.3, "guitar/instrument should be closer than guitar/stocks: {text}");
}

/// On a CPU with bf16 instructions, `--precision bf16` (the transformer blocks in bf16) gives
/// all-MiniLM-L6-v2 embeddings within cosine 0.999 of fp32 on real sentences; `auto` picks it
/// there. Skipped, loudly, on CPUs without avx512_bf16 or amx_bf16.
#[test]
fn bf16_embeddings_agree_with_fp32_on_a_cpu_that_has_bf16() {
    let test = "bf16_embeddings_agree_with_fp32_on_a_cpu_that_has_bf16";
    if !cpu_has_bf16(test) {
        return;
    }
    let (Some(minilm), Some(data)) = (minilm(test), shared_data(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = csv::Reader::from_path(data.join("sst2/dev.csv"))
        .unwrap()
        .records()
        .take(200)
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    let input = dir.path().join("texts.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let embed = |precision: &str| {
        let out = run(&[
            "encode",
            "-m",
            minilm.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
            "--precision",
            precision,
            "-i",
            input.to_str().unwrap(),
        ]);
        assert_ok(&out);
        parse_jsonl_embeddings(&stdout(&out)).into_iter().map(|(_, e)| e).collect::<Vec<_>>()
    };
    let (fp32, bf16, auto) = (embed("fp32"), embed("bf16"), embed("auto"));
    let worst = fp32.iter().zip(&bf16).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
    eprintln!("bf16 against fp32 on {} SST-2 sentences: worst cosine {worst:.6}", texts.len());
    assert!(worst >= 0.999, "worst cosine {worst}");
    assert_eq!(auto, bf16, "--precision auto is not bf16 on this CPU");
}

/// Texts longer than the model's limit are truncated, as sentence-transformers truncates them,
/// and `encode` says how many (not with `--quiet`).
#[test]
fn truncated_texts_are_counted_in_a_note() {
    let test = "truncated_texts_are_counted_in_a_note";
    let Some(model) = tiny_bert(test) else { return };
    let long = "a sentence with rather more words than eight tokens can hold";
    let args = ["encode", "-m", &model, "--device", "cpu", "--max-length", "8", long, "short", long];
    let out = run(&args);
    assert_ok(&out);
    assert!(
        stderr(&out)
            .contains("note: 2 of 3 texts are longer than 8 tokens and truncated to that length (--max-length)"),
        "{}",
        stderr(&out)
    );
    let quiet = run(&[&args[..], &["-q"]].concat());
    assert_ok(&quiet);
    assert_eq!(stderr(&quiet), "");
    assert_eq!(stdout(&quiet), stdout(&out));
}

#[test]
fn a_reader_that_stops_early_ends_encode_quietly() {
    // `encode ... | head -n 1`: the closed pipe ends the process without an error message.
    let test = "a_reader_that_stops_early_ends_encode_quietly";
    let Some(model) = tiny_bert(test) else { return };
    let sentences: Vec<String> = (0..2000).map(|i| format!("sentence number {i}")).collect();
    let mut args = vec!["encode", "-m", &model, "--device", "cpu", "-q"];
    args.extend(sentences.iter().map(String::as_str));
    let mut child =
        bin().args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.is_empty(), "stderr after the reader closed the pipe: {err}");
}

/// `encode -o FILE 2>&1 | head -1`: stderr's reader is gone before the notes are written,
/// and FILE is written all the same (a closed stderr ends nothing; a closed stdout does).
#[test]
fn a_closed_stderr_does_not_lose_the_output_file() {
    let test = "a_closed_stderr_does_not_lose_the_output_file";
    let Some(model) = tiny_bert(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.jsonl"));
    // A blank line gets a note before encoding, and every run a summary after it.
    std::fs::write(&input, "one\n\nthree\n").unwrap();
    let args =
        ["encode", "-m", &model, "--device", "cpu", "-i", input.to_str().unwrap(), "-o", output.to_str().unwrap()];
    let mut child = bin().args(args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "encode with its stderr closed: {status:?}");
    assert_eq!(std::fs::read_to_string(&output).unwrap().lines().count(), 3);
}

/// `--pooling` other than the one a checkpoint was trained with gets a note (its projection
/// learned the other); the checkpoint's own gets none.
#[test]
fn a_pooling_other_than_the_trained_one_gets_a_note() {
    let test = "a_pooling_other_than_the_trained_one_gets_a_note";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_, run_dir) = crate::toy_data::train_toy_run(&models.join("tiny-bert"), dir.path(), "run", 1, &[]);
    let best = run_dir.join("best");
    let encode =
        |pooling: &str| run(&["encode", "-m", best.to_str().unwrap(), "--device", "cpu", "--pooling", pooling, "hi"]);
    let other = encode("cls");
    assert_ok(&other);
    let said = stderr(&other);
    assert!(said.contains("note: --pooling cls: this model was trained with mean pooling"), "{said}");
    let own = encode("mean");
    assert_ok(&own);
    assert!(!stderr(&own).contains("note: --pooling"), "{}", stderr(&own));
}

/// `--version` names the program, after any subcommand too; a bare `sentence-mtl` shows the
/// help and fails (exit 1, as bad input does).
#[test]
fn version_and_a_bare_command_behave_as_documented() {
    for args in [&["--version"][..], &["encode", "--version"], &["train", "--version"]] {
        let out = run(args);
        assert_ok(&out);
        assert!(
            stdout(&out).starts_with(&format!("sentence-mtl {} (libtorch ", env!("CARGO_PKG_VERSION"))),
            "{args:?}: {}",
            stdout(&out)
        );
    }
    let bare = run(&[]);
    assert_eq!(bare.status.code(), Some(1));
    assert!(stderr(&bare).contains("Usage: sentence-mtl <COMMAND>"), "{}", stderr(&bare));
}

/// A full disk under stdout is an error naming stdout, not a panic (`print!` panics on a
/// failed write): for embeddings, for the similarity table and for `eval`'s report.
#[test]
fn a_failed_write_to_stdout_is_a_clean_error() {
    let test = "a_failed_write_to_stdout_is_a_clean_error";
    let Some(model) = tiny_bert(test) else { return };
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        skipped(test, "this machine has no /dev/full");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, "sentence1,sentence2,score\na cat,a dog,1\na car,a bus,3\nred,blue,2\n").unwrap();
    let task = format!("pairs={}", pairs.display());
    for args in [
        vec!["encode", "-m", &model, "--device", "cpu", "-q", "a sentence"],
        vec!["encode", "-m", &model, "--device", "cpu", "-q", "--similarity", "one", "two"],
        vec!["eval", "-m", &model, "--device", "cpu", "-q", "--task", &task],
    ] {
        let out = bin().args(&args).stdout(full.try_clone().unwrap()).output().unwrap();
        assert_clean_error(&out, "cannot write to stdout: No space left on device");
    }
}
