//! `sentence-mtl eval`: reports checked against scikit-learn, files, and bad input.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;
use crate::toy_data::train_toy_run;

/// A barely trained toy checkpoint: predictions are a mix of right and wrong, so every
/// metric is non-trivial.
fn half_trained(test: &str) -> Option<(tempfile::TempDir, PathBuf, crate::toy_data::ToyData)> {
    let model = tiny_models(test)?.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = train_toy_run(&model, dir.path(), "run", 6, &["--lr-heads", "3e-3"]);
    Some((dir, run, data))
}

/// The tiny BERT, and a temporary folder holding `text` as the file `name`.
fn tiny_bert_and_file(test: &str, name: &str, text: &str) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let model = tiny_models(test)?.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    Some((dir, model, file))
}

/// The tiny BERT's `eval` report (its folder, in a temporary folder kept alive by the first
/// value) of one task `name` whose file holds `rows`.
fn eval_report_of(test: &str, name: &str, rows: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let (dir, model, file) = tiny_bert_and_file(test, "task.csv", rows)?;
    let out = dir.path().join("report");
    let task = format!("{name}={}", file.display());
    let args = [
        "eval",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--task",
        &task,
        "--out",
        out.to_str().unwrap(),
    ];
    assert_ok(&run_args(&args));
    Some((dir, out))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn metrics_json_equals_scikit_learn() {
    let test = "metrics_json_equals_scikit_learn";
    let Some(python) = python(test) else { return };
    let Some((dir, run, data)) = half_trained(test) else { return };
    let out = dir.path().join("report");
    let eval = run_args(&[
        "eval",
        "-m",
        run.join("best").to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--task",
        &format!("topic={}", data.topic_dev.display()),
        "--task",
        &format!("mood={}", data.mood_dev.display()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&eval);
    let metrics = read_json(&out.join("metrics.json"));
    let mut checked = 0;
    for task in ["topic", "mood"] {
        let ours = &metrics["tasks"][task];
        let labels: Vec<String> = ours["confusion_matrix"]["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        let mut args = vec![
            reference_script("sklearn_report.py"),
            out.join(format!("predictions_{task}.csv")).to_string_lossy().into_owned(),
        ];
        args.extend(labels.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sk = python_json(&python, &args, &Value::Null);
        let close = |a: &Value, b: &Value, what: &str| {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-9, "{task} {what}: ours {a}, scikit-learn {b}");
        };
        close(&ours["accuracy"], &sk["accuracy"], "accuracy");
        close(&ours["macro_f1"], &sk["report"]["macro avg"]["f1-score"], "macro F1");
        close(&ours["weighted_f1"], &sk["report"]["weighted avg"]["f1-score"], "weighted F1");
        for avg in ["macro", "weighted"] {
            for m in ["precision", "recall", "f1"] {
                let sk_key = if m == "f1" { "f1-score" } else { m };
                close(
                    &ours[format!("{avg}_avg")][m],
                    &sk["report"][format!("{avg} avg")][sk_key],
                    &format!("{avg} {m}"),
                );
            }
        }
        for label in &labels {
            for m in ["precision", "recall", "f1", "support"] {
                let sk_key = if m == "f1" { "f1-score" } else { m };
                close(&ours["per_class"][label][m], &sk["report"][label][sk_key], &format!("{label} {m}"));
                checked += 1;
            }
        }
        assert_eq!(ours["confusion_matrix"]["matrix"], sk["confusion_matrix"], "{task} confusion matrix");
        let accuracy = ours["accuracy"].as_f64().unwrap();
        eprintln!("{task}: accuracy {accuracy:.3} (partly trained, so metrics are non-trivial)");
        // A model that predicts one class everywhere, or every row right, would leave most
        // of scikit-learn's cases (zero division, mixed rows) untested.
        let predicted_classes = ours["confusion_matrix"]["matrix"].as_array().unwrap().iter().fold(
            vec![0u64; labels.len()],
            |mut sums, row| {
                for (c, n) in row.as_array().unwrap().iter().enumerate() {
                    sums[c] += n.as_u64().unwrap();
                }
                sums
            },
        );
        assert!(0.0 < accuracy && accuracy < 1.0, "{task}: accuracy {accuracy}");
        assert!(predicted_classes.iter().filter(|&&n| n > 0).count() >= 2, "{task}: {predicted_classes:?}");
    }
    assert!(checked >= 20);
}

fn run_args(args: &[&str]) -> std::process::Output {
    run(args)
}

#[test]
fn eval_writes_every_file_and_prints_sklearn_style_tables() {
    let test = "eval_writes_every_file_and_prints_sklearn_style_tables";
    let Some((dir, run, data)) = half_trained(test) else { return };
    let out = dir.path().join("report");
    let eval = run_args(&[
        "eval",
        "-m",
        run.join("best").to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--task",
        &format!("mood={}", data.mood_dev.display()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&eval);
    let text = stdout(&eval);
    for expected in [
        "precision  recall  f1-score  support",
        "macro avg",
        "weighted avg",
        "confusion matrix (rows: true, columns: predicted)",
        "true \\ predicted  negative  positive",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for file in ["metrics.json", "confusion_mood.csv", "confusion_mood.png", "predictions_mood.csv", "curves.png"] {
        let path = out.join(file);
        assert!(path.is_file(), "{file} missing");
        if file.ends_with(".png") {
            assert_eq!(&std::fs::read(&path).unwrap()[..8], b"\x89PNG\r\n\x1a\n", "{file} is not a PNG");
        }
    }
    let predictions = std::fs::read_to_string(out.join("predictions_mood.csv")).unwrap();
    let dev = std::fs::read_to_string(&data.mood_dev).unwrap();
    assert!(predictions.starts_with("text,label,predicted,probability,line\n"));
    let first_dev_text = dev.lines().nth(1).unwrap().split(',').next().unwrap();
    assert!(predictions.lines().nth(1).unwrap().starts_with(first_dev_text), "predictions not in input order");

    let json = run_args(&[
        "eval",
        "-m",
        run.join("best").to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--json",
        "--task",
        &format!("mood={}", data.mood_dev.display()),
    ]);
    assert_ok(&json);
    let parsed: Value = serde_json::from_str(&stdout(&json)).expect("--json prints JSON");
    assert_eq!(parsed["tasks"]["mood"]["rows"], 24);
}

#[test]
fn unknown_labels_are_listed_or_skipped_and_counted() {
    let test = "unknown_labels_are_listed_or_skipped_and_counted";
    let Some((dir, run, _)) = half_trained(test) else { return };
    let csv = dir.path().join("odd.csv");
    std::fs::write(&csv, "text,label\ni feel happy,positive\nthat was fun,amused\nso sad,negative\nhaha,amused\n")
        .unwrap();
    let model = run.join("best");
    let task = format!("mood={}", csv.display());
    let err = run_args(&["eval", "-m", model.to_str().unwrap(), "--device", "cpu", "--task", &task]);
    assert_clean_error(&err, "'amused' (2 rows, first at line 3)");
    assert!(stderr(&err).contains("--unknown-labels skip"), "the error names the way out");
    let out = dir.path().join("skip");
    let ok = run_args(&[
        "eval",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--task",
        &task,
        "--unknown-labels",
        "skip",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&ok);
    assert!(stdout(&ok).contains("skipped 2 row(s)"), "{}", stdout(&ok));
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["tasks"]["mood"]["rows"], 2);
    assert_eq!(metrics["tasks"]["mood"]["skipped_unknown_labels"]["rows"], 2);
    assert_eq!(metrics["tasks"]["mood"]["skipped_unknown_labels"]["labels"]["amused"], 2);
    // The predictions name their lines in the file, so they join back to it.
    let predictions = std::fs::read_to_string(out.join("predictions_mood.csv")).unwrap();
    let lines: Vec<&str> = predictions.lines().skip(1).map(|row| row.rsplit(',').next().unwrap()).collect();
    assert_eq!(lines, ["2", "4"], "{predictions}");
}

/// `eval` of a similarity and a pairs file on a plain model (no such tasks: the embeddings are
/// scored): Spearman and Pearson equal scipy's on the written predictions file, and MRR@10 and
/// recall@1/@10 equal a plain Python computation from `encode`'s embeddings.
#[test]
fn similarity_and_retrieval_metrics_equal_scipy_and_plain_python() {
    let test = "similarity_and_retrieval_metrics_equal_scipy_and_plain_python";
    let Some(python) = python(test) else { return };
    let Some(models) = tiny_models(test) else { return };
    let model = models.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let data = crate::toy_data::write_toy_data(dir.path());
    // The pairs again with hard negatives, which join the candidates as distractors: new texts
    // (some repeated) and other rows' positives.
    let rows: Vec<[String; 2]> = csv::Reader::from_path(&data.match_dev)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            [r[0].to_string(), r[1].to_string()]
        })
        .collect();
    let mut with_negatives = String::from("anchor,positive,negative\n");
    for (i, [anchor, positive]) in rows.iter().enumerate() {
        let negative = if i % 2 == 0 {
            format!("an unrelated note number {}", i % 5)
        } else {
            rows[(i + 7) % rows.len()][1].clone()
        };
        with_negatives.push_str(&format!("{anchor},{positive},{negative}\n"));
    }
    let negatives_file = dir.path().join("match_negatives.csv");
    std::fs::write(&negatives_file, with_negatives).unwrap();
    let out = dir.path().join("report");
    let eval = run_args(&[
        "eval",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--task",
        &format!("similar={}", data.similar_dev.display()),
        "--task",
        &format!("match={}", data.match_dev.display()),
        "--task",
        &format!("hard={}", negatives_file.display()),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ok(&eval);
    let metrics = read_json(&out.join("metrics.json"));
    let close = |ours: &Value, theirs: &Value, what: &str| {
        let (a, b) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-9, "{what}: ours {a}, reference {b}");
    };

    let predictions = out.join("predictions_similar.csv");
    let scipy =
        python_json(&python, &[&reference_script("scipy_correlation.py"), predictions.to_str().unwrap()], &Value::Null);
    let similar = &metrics["tasks"]["similar"];
    close(&similar["spearman"], &scipy["spearman"], "Spearman");
    close(&similar["pearson"], &scipy["pearson"], "Pearson");
    assert!(out.join("similarity_similar.png").is_file());

    // Every text of the pairs files, encoded once, for the Python computation.
    let negatives = std::fs::read_to_string(&negatives_file).unwrap();
    let mut texts: Vec<&str> = negatives.lines().skip(1).flat_map(|l| l.split(',')).collect();
    let similar_rows: Vec<Vec<String>> = csv::Reader::from_path(out.join("predictions_similar.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    texts.extend(similar_rows.iter().flat_map(|row| [row[0].as_str(), row[1].as_str()]));
    texts.sort();
    texts.dedup();
    let texts_file = dir.path().join("texts.txt");
    std::fs::write(&texts_file, texts.join("\n") + "\n").unwrap();
    let embeddings = dir.path().join("embeddings.jsonl");
    let encode = run_args(&[
        "encode",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--input",
        texts_file.to_str().unwrap(),
        "--output",
        embeddings.to_str().unwrap(),
    ]);
    assert_ok(&encode);
    // The cosine column scipy read is the cosine of what `encode` gives each sentence.
    let embedded: std::collections::HashMap<String, Vec<f64>> = std::fs::read_to_string(&embeddings)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["text"].as_str().unwrap().to_string(), serde_json::from_value(v["embedding"].clone()).unwrap()))
        .collect();
    assert!(similar_rows.len() > 10);
    for row in &similar_rows {
        let (a, b) = (&embedded[&row[0]], &embedded[&row[1]]);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cosine = dot / (norm(a) * norm(b));
        let written: f64 = row[3].parse().unwrap();
        assert!((written - cosine).abs() < 1e-5, "{row:?}: cosine of encode's embeddings {cosine}");
    }
    for (task, file) in [("match", &data.match_dev), ("hard", &negatives_file)] {
        let plain = python_json(
            &python,
            &[&reference_script("retrieval_metrics.py"), file.to_str().unwrap(), embeddings.to_str().unwrap()],
            &Value::Null,
        );
        let matched = &metrics["tasks"][task];
        for name in ["mrr_at_10", "recall_at_1", "recall_at_10"] {
            close(&matched[name], &plain[name], &format!("{task} {name}"));
        }
        assert_eq!((&matched["queries"], &matched["candidates"]), (&plain["queries"], &plain["candidates"]));
        let written: Vec<Vec<String>> = csv::Reader::from_path(out.join(format!("predictions_{task}.csv")))
            .unwrap()
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect();
        let expected: Vec<Vec<String>> = serde_json::from_value(plain["predictions"].clone()).unwrap();
        assert_eq!(written, expected, "{task}: predictions file");
    }
    let (matched, hard) = (&metrics["tasks"]["match"], &metrics["tasks"]["hard"]);
    assert!(hard["candidates"].as_u64() > matched["candidates"].as_u64(), "the negatives added no candidates");
    eprintln!(
        "Spearman {} Pearson {} MRR@10 {} recall@1 {}: equal to the references",
        similar["spearman"], similar["pearson"], matched["mrr_at_10"], matched["recall_at_1"]
    );
}

/// Texts longer than `--max-length` are cut, as in `encode`; `eval` says so per task, in a
/// note and in `metrics.json` (not with `--quiet`, where only the file says it).
#[test]
fn truncated_texts_are_counted_per_task() {
    let test = "truncated_texts_are_counted_per_task";
    let Some(models) = tiny_models(test) else { return };
    let model = models.join("tiny-bert");
    let dir = tempfile::tempdir().unwrap();
    let long = |n: usize| format!("sentence {n} with rather more words than six tokens can hold");
    let similar = dir.path().join("similar.csv");
    let rows = format!("sentence1,sentence2,score\n{},short one,1.0\nshort two,{},4.0\n", long(1), long(2));
    std::fs::write(&similar, rows).unwrap();
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, format!("anchor,positive\nfirst,{}\nsecond,answer\nthird,reply\n", long(3))).unwrap();
    let (similar, pairs) = (format!("similar={}", similar.display()), format!("match={}", pairs.display()));
    let out = dir.path().join("report");
    let args = [
        "eval",
        "-m",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--max-length",
        "6",
        "--task",
        &similar,
        "--task",
        &pairs,
        "--out",
        out.to_str().unwrap(),
    ];
    let eval = run_args(&args);
    assert_ok(&eval);
    let said = stderr(&eval);
    let note = |task: &str, cut: &str| {
        format!("note: task '{task}': {cut} longer than 6 tokens and truncated to that length (--max-length)")
    };
    assert!(said.contains(&note("similar", "2 of 4 texts are")), "{said}");
    assert!(said.contains(&note("match", "1 of 6 texts is")), "{said}");
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["truncated_texts"], serde_json::json!({"similar": 2, "match": 1}));
    let quiet = run_args(&[&args[..], &["-q"]].concat());
    assert_ok(&quiet);
    assert_eq!(stderr(&quiet), "");
}

/// A new report replaces the files an earlier one wrote, its tasks' files included when
/// they are no longer evaluated, and nothing else: files of the user's own whose names merely
/// start like a report's stay.
#[test]
fn a_new_report_replaces_the_earlier_one_and_keeps_the_users_files() {
    let test = "a_new_report_replaces_the_earlier_one_and_keeps_the_users_files";
    let Some((dir, run, data)) = half_trained(test) else { return };
    let out = dir.path().join("report");
    let eval = |tasks: &[String]| {
        let model = run.join("best");
        let mut args = vec!["eval", "-m", model.to_str().unwrap(), "--device", "cpu", "-q"];
        for task in tasks {
            args.extend(["--task", task]);
        }
        args.extend(["--out", out.to_str().unwrap()]);
        assert_ok(&run_args(&args));
    };
    let topic = format!("topic={}", data.topic_dev.display());
    let mood = format!("mood={}", data.mood_dev.display());
    eval(&[topic.clone(), mood.clone()]);
    assert!(out.join("confusion_topic.png").is_file());
    let own = [
        "similarity_notes.txt",
        "confusion_matrix_from_sklearn.xlsx",
        "predictions_mood.csv.bak",
        "similarity_topic.csv",
        // A name a report of another kind of task would write.
        "similarity_mood.png",
    ];
    for name in own {
        std::fs::write(out.join(name), "mine").unwrap();
    }
    eval(&[mood]);
    for name in own {
        assert_eq!(std::fs::read_to_string(out.join(name)).unwrap(), "mine", "{name} was touched");
    }
    for gone in ["confusion_topic.png", "confusion_topic.csv", "predictions_topic.csv"] {
        assert!(!out.join(gone).exists(), "{gone} of the earlier report stayed");
    }
    let metrics = read_json(&out.join("metrics.json"));
    assert_eq!(metrics["tasks"].as_object().unwrap().keys().collect::<Vec<_>>(), ["mood"]);
    assert!(out.join("predictions_mood.csv").is_file() && out.join("curves.png").is_file());
    let listed: Vec<&str> = metrics["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(listed, ["confusion_mood.csv", "confusion_mood.png", "predictions_mood.csv", "curves.png"]);
}

/// Candidates the model sees as one input (here texts that differ by a space the tokenizer
/// drops) are one candidate: apart, they would tie, and the tie rule would rank the second
/// query's positive behind the first query's copy of it.
#[test]
fn candidates_that_are_one_input_to_the_model_are_one_candidate() {
    let test = "candidates_that_are_one_input_to_the_model_are_one_candidate";
    let rows = "anchor,positive\nwhere is the tower,Paris\n\"where is the tower \",\"Paris \"\nwhere is the colosseum,Rome\nwhich ocean is largest,Pacific\n";
    let Some((_dir, out)) = eval_report_of(test, "p", rows) else { return };
    assert_eq!(read_json(&out.join("metrics.json"))["tasks"]["p"]["candidates"], 3);
    let ranks: Vec<String> = csv::Reader::from_path(out.join("predictions_p.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[2].to_string())
        .collect();
    assert_eq!(ranks[0], ranks[1], "the same query and positive, but for a space: {ranks:?}");
}

/// Identical sentence pairs tie at a cosine of 1, as in sentence-transformers' evaluator:
/// float32 rounding puts some at 1.0000001, which would rank them apart and move Spearman.
#[test]
fn identical_pairs_tie_at_a_cosine_of_one() {
    let test = "identical_pairs_tie_at_a_cosine_of_one";
    let rows = "sentence1,sentence2,score\nA woman is playing the piano.,Someone is playing a piano.,4\nA woman is playing the piano.,A man is fixing a bicycle.,1\nA cat sleeps.,A cat sleeps.,5\nThe sky is blue.,The sky is blue.,5\nStocks fell sharply today.,The market dropped.,3\nThe train is late.,The train is late.,2\nRain is falling.,It is sunny.,0\n";
    let Some((_dir, out)) = eval_report_of(test, "s", rows) else { return };
    let cosines: Vec<(bool, f64)> = csv::Reader::from_path(out.join("predictions_s.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0] == r[1], r[3].parse().unwrap())
        })
        .collect();
    assert!(cosines.iter().all(|&(_, c)| c <= 1.0), "{cosines:?}");
    assert!(cosines.iter().filter(|(same, _)| *same).all(|&(_, c)| c == 1.0), "{cosines:?}");
}

/// A file whose header fits two kinds is scored as `--task-kind` says, as train reads it.
#[test]
fn task_kind_chooses_for_a_header_that_fits_two_kinds() {
    let test = "task_kind_chooses_for_a_header_that_fits_two_kinds";
    let rows = "sentence1,sentence2,score,anchor,positive\na cat sat,a cat sits,4.5,a cat sat,a cat sits\na dog ran,the sky is blue,0.5,a dog ran,a dog runs\nrain falls,it rains,4,rain falls,it rains\n";
    let Some((_dir, model, both)) = tiny_bert_and_file(test, "both.csv", rows) else { return };
    let task = format!("b={}", both.display());
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "-m", model.to_str().unwrap(), "--device", "cpu", "-q", "--json", "--task", &task];
        args.extend(extra);
        run_args(&args)
    };
    assert_clean_error(
        &eval(&[]),
        "fits several task kinds (similarity, pairs); choose one with --task-kind NAME=KIND",
    );
    for kind in ["similarity", "pairs"] {
        let scored = eval(&["--task-kind", &format!("b={kind}")]);
        assert_ok(&scored);
        let metrics: Value = serde_json::from_str(&stdout(&scored)).unwrap();
        assert_eq!(metrics["tasks"]["b"]["kind"], kind);
    }
}

/// A flag that changes nothing for the tasks given says so, as train's inert flags do.
#[test]
fn unknown_labels_skip_without_a_classification_task_says_it_does_nothing() {
    let test = "unknown_labels_skip_without_a_classification_task_says_it_does_nothing";
    let rows = "anchor,positive\na cat sat,a cat sits\na dog ran,a dog runs\n";
    let Some((_dir, model, pairs)) = tiny_bert_and_file(test, "pairs.csv", rows) else { return };
    let task = format!("p={}", pairs.display());
    let args = ["eval", "-m", model.to_str().unwrap(), "--device", "cpu", "--task", &task, "--unknown-labels", "skip"];
    let scored = run_args(&args);
    assert_ok(&scored);
    let said = stderr(&scored);
    assert!(
        said.contains("note: --unknown-labels skip has no effect: no task here is a classification task"),
        "{said}"
    );
}

/// Numbers that read as a bug without their convention get a note: classes absent from the
/// file count 0 in macro averages (scikit-learn's with every class given), and a correlation
/// with a constant is undefined (scipy's NaN) and reported as 0.
#[test]
fn absent_classes_and_undefined_correlations_are_explained() {
    let test = "absent_classes_and_undefined_correlations_are_explained";
    let Some((dir, run, _)) = half_trained(test) else { return };
    // One row: of the three topics, at least one has no row and is not predicted.
    let one_row = dir.path().join("one_row.csv");
    std::fs::write(&one_row, "text,label\nthe match went to extra time,sport\n").unwrap();
    let same = dir.path().join("same.csv");
    std::fs::write(&same, "sentence1,sentence2,score\na cat,a cat,1\na dog,a dog,2\nthe sun,the sun,3.5\n").unwrap();
    let checkpoint = run.join("best");
    let (topic, similar) = (format!("topic={}", one_row.display()), format!("same={}", same.display()));
    let args = ["eval", "-m", checkpoint.to_str().unwrap(), "--device", "cpu", "--task", &topic, "--task", &similar];
    let output = run_args(&args);
    assert_ok(&output);
    let said = stderr(&output);
    assert!(said.contains("of the model's 3 classes ("), "{said}");
    assert!(
        said.contains("count 0 in the macro averages, as in scikit-learn's classification_report given every class"),
        "{said}"
    );
    assert!(
        said.contains("note: task 'same': every pair's cosine similarity is 1.0000, so the correlations are undefined"),
        "{said}"
    );
}
