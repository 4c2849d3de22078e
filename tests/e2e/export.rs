//! `sentence-mtl export`: each format loads in the tool users already have and gives the
//! same numbers as `encode` and `predict` (sentence-transformers, transformers, TorchScript
//! in Python, and TorchScript through tch in Rust).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use tch::{CModule, IValue, Tensor};

use crate::common::*;
use crate::toy_data::train_toy_run;

/// A checkpoint of `model` trained for a few steps on the toy tasks (heads non-trivial).
fn checkpoint(model: &Path, dir: &Path, extra: &[&str]) -> PathBuf {
    let mut flags = vec!["--lr-heads", "1e-2"];
    flags.extend_from_slice(extra);
    train_toy_run(model, dir, "run", 4, &flags).1.join("best")
}

fn export(model: &Path, format: &str, out: &Path) {
    assert_ok(&run(&[
        "export",
        "-m",
        model.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
        "-q",
    ]));
    let card = std::fs::read_to_string(out.join("README.md")).expect("the export has no model card");
    // TorchScript's model.pt is no library's on the Hub (transformers would find no weights).
    let front = match format {
        "sentence-transformers" => "---\nlibrary_name: sentence-transformers\n",
        "hf" => "---\nlibrary_name: transformers\n",
        _ => "---\npipeline_tag: feature-extraction\ntags:\n- sentence-mtl\n- torchscript\n---\n",
    };
    assert!(card.starts_with(front), "{format}: the card has no Hub metadata: {card}");
}

fn real_sentences(data: &Path, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for file in ["sst2/dev.csv", "trec/dev_split.csv"] {
        let mut reader = csv::Reader::from_path(data.join(file)).unwrap();
        out.extend(reader.records().take(n / 2).map(|r| r.unwrap()[0].to_string()));
    }
    out
}

fn write_lines(dir: &Path, sentences: &[String]) -> PathBuf {
    let path = dir.join("sentences.txt");
    std::fs::write(&path, sentences.join("\n") + "\n").unwrap();
    path
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

/// Runs Python code in `dir` with JSON on stdin; returns its JSON.
fn python_in(python: &Path, dir: &Path, code: &str, input: &Value) -> Value {
    let script = dir.join("_check.py");
    std::fs::write(&script, code).unwrap();
    let out = {
        use std::io::Write;
        let mut child = Command::new(python)
            .arg(&script)
            .current_dir(dir)
            .env("HF_HUB_OFFLINE", "1")
            .env("TRANSFORMERS_OFFLINE", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    std::fs::remove_file(&script).unwrap();
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("newly initialized"), "transformers re-initialised weights:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `predict --all-scores` logits for every sentence, in label order.
fn predict_logits(model: &Path, task: &str, input: &Path) -> Vec<Vec<f64>> {
    let out = run(&[
        "predict",
        "-m",
        model.to_str().unwrap(),
        "--task",
        task,
        "--all-scores",
        "--device",
        "cpu",
        "-q",
        "-i",
        input.to_str().unwrap(),
    ]);
    assert_ok(&out);
    stdout(&out)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            v["logits"].as_object().unwrap().values().map(|x| x.as_f64().unwrap()).collect()
        })
        .collect()
}

fn encode_all(model: &Path, input: &Path) -> Vec<Vec<f64>> {
    let out = run(&["encode", "-m", model.to_str().unwrap(), "--device", "cpu", "-q", "-i", input.to_str().unwrap()]);
    assert_ok(&out);
    parse_jsonl_embeddings(&stdout(&out)).into_iter().map(|(_, e)| e).collect()
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

#[test]
fn sentence_transformers_loads_the_export_with_identical_embeddings() {
    let test = "sentence_transformers_loads_the_export_with_identical_embeddings";
    let (Some(python), Some(minilm), Some(data)) = (python(test), minilm(test), shared_data(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    // A real MiniLM checkpoint with a projection (Dense) and normalisation.
    let best = checkpoint(&minilm, dir.path(), &["--projection-dim", "96", "--max-steps", "2"]);
    let out = dir.path().join("st");
    export(&best, "sentence-transformers", &out);
    let sentences = real_sentences(&data, 120);
    let ours = encode_all(&best, &write_lines(dir.path(), &sentences));
    let st = python_in(
        &python,
        &out,
        r#"
import json, sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(".", device="cpu")
print(json.dumps(model.encode(json.load(sys.stdin), batch_size=32).tolist()))
"#,
        &json!(sentences),
    );
    let st = matrix(&st);
    let worst = ours.iter().zip(&st).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
    eprintln!("sentence-transformers export vs encode on {} sentences: worst cosine {worst:.7}", sentences.len());
    assert!(worst >= 0.9999, "worst cosine {worst}");
    // The values too: a cosine cannot see a Normalize module too many or too few.
    let diff = max_abs_diff(&ours, &st);
    assert!(diff <= 1e-5, "sentence-transformers export vs encode: max difference {diff}");
    assert_eq!(ours[0].len(), 96);
    // Its absence sends sentence-transformers 3 to the hub when the folder is named bare.
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join("config_sentence_transformers.json")).unwrap()).unwrap();
    assert_eq!(config["similarity_fn_name"], "cosine");

    // And back: sentence-mtl reads the exported folder's Dense module as its projection.
    let reread = encode_all(&out, &write_lines(dir.path(), &sentences));
    let diff = max_abs_diff(&ours, &reread);
    eprintln!("encode of the sentence-transformers export vs of the checkpoint: max difference {diff:.1e}");
    assert!(diff < 1e-5, "max difference {diff}");
}

/// A DistilBERT checkpoint whose tokenizer config names BertTokenizer (as the tiny model's
/// does, and some fine-tuned models' do): its export tells transformers' tokenizer to make no
/// token types, which sentence-transformers would pass to DistilBertModel, which takes none.
#[test]
fn sentence_transformers_loads_a_distilbert_export() {
    let test = "sentence_transformers_loads_a_distilbert_export";
    let (Some(python), Some(models)) = (python(test), tiny_models(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let best = checkpoint(&models.join("tiny-distilbert"), dir.path(), &[]);
    let out = dir.path().join("st");
    export(&best, "sentence-transformers", &out);
    let sentences: Vec<String> = ["a first sentence", "and another, longer one"].map(String::from).to_vec();
    let ours = encode_all(&best, &write_lines(dir.path(), &sentences));
    let code =
        "import json, sys, torch\ntorch.set_num_threads(1)\nfrom sentence_transformers import SentenceTransformer\n\
        print(json.dumps(SentenceTransformer('.', device='cpu').encode(json.load(sys.stdin)).tolist()))\n";
    let st = matrix(&python_in(&python, &out, code, &json!(sentences)));
    let diff = max_abs_diff(&ours, &st);
    assert!(diff < 1e-5, "max difference {diff}");
}

/// A checkpoint without heads or projection (a similarity task alone) exports an empty but
/// valid `heads.safetensors`, which Python's safetensors and sentence-mtl both read.
#[test]
fn hf_export_of_a_model_without_heads_reads_back() {
    let test = "hf_export_of_a_model_without_heads_reads_back";
    let Some(python) = python(test) else { return };
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = crate::toy_data::write_toy_data(dir.path());
    let run_dir = dir.path().join("run");
    let task = format!("similar={}", data.similar_train.display());
    let model = models.join("tiny-bert");
    let (model, run_dir) = (model.to_str().unwrap(), run_dir.to_str().unwrap());
    assert_ok(&run(&[
        "train",
        "-m",
        model,
        "--task",
        &task,
        "--projection-dim",
        "0",
        "--max-steps",
        "2",
        "--max-length",
        "12",
        "--out",
        run_dir,
        "-q",
    ]));
    let last = Path::new(run_dir).join("last");
    let out = dir.path().join("hf");
    export(&last, "hf", &out);
    // The tokenizer cuts where the checkpoint does (transformers' `truncation=True` without a
    // length cuts at `model_max_length`), not at the base model's limit.
    let script = "from safetensors.torch import load_file\nfrom transformers import AutoTokenizer\nimport json\n\
        tok = AutoTokenizer.from_pretrained('.')\n\
        ids = tok('a sentence with many more words than twelve tokens can hold at all', truncation=True)['input_ids']\n\
        print(json.dumps([len(load_file('heads.safetensors')), tok.model_max_length, len(ids)]))\n";
    let loaded = python_in(&python, &out, script, &json!(null));
    assert_eq!(loaded, json!([0, 12, 12]));
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("This model has no classification heads"), "{readme}");
    let encode = |m: &Path| {
        let encoded = run(&["encode", "-m", m.to_str().unwrap(), "-q", "a sentence"]);
        assert_ok(&encoded);
        stdout(&encoded)
    };
    assert_eq!(encode(&out), encode(&last));
}

/// A model folder without `tokenizer_config.json` whose `tokenizer.json` keeps case: transformers
/// lower-cases all the same (it rebuilds the normaliser from its own defaults), and so do
/// `encode` and the export, which also keeps the checkpoint's length limit.
#[test]
fn export_of_a_model_without_tokenizer_config_tokenizes_as_encode_does() {
    let test = "export_of_a_model_without_tokenizer_config_tokenizes_as_encode_does";
    let Some(python) = python(test) else { return };
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cased = dir.path().join("cased");
    copy_dir(&models.join("tiny-bert"), &cased);
    std::fs::remove_file(cased.join("tokenizer_config.json")).unwrap();
    let tokenizer_json = cased.join("tokenizer.json");
    let mut tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(&tokenizer_json).unwrap()).unwrap();
    tokenizer["normalizer"]["lowercase"] = json!(false);
    tokenizer["normalizer"]["strip_accents"] = json!(false);
    std::fs::write(&tokenizer_json, tokenizer.to_string()).unwrap();
    let best = checkpoint(&cased, dir.path(), &["--max-length", "12"]);
    let out = dir.path().join("st");
    export(&best, "sentence-transformers", &out);
    let script = "from transformers import AutoTokenizer\nimport json\n\
        tok = AutoTokenizer.from_pretrained('.')\n\
        words = 'Paris Is A City In France And many more words than twelve tokens hold'\n\
        print(json.dumps([tok.model_max_length, len(tok(words, truncation=True)['input_ids']), tok.tokenize('Paris')]))\n";
    let read = python_in(&python, &out, script, &json!(null));
    assert_eq!(read[0], json!(12), "{read}");
    assert_eq!(read[1], json!(12), "{read}");
    assert_eq!(read[2], json!(["paris"]), "{read}");
    let words = write_lines(dir.path(), &["Paris".to_string(), "paris".to_string()]);
    let (at_export, at_checkpoint) = (encode_all(&out, &words), encode_all(&best, &words));
    assert_eq!(at_export, at_checkpoint, "encode of the export and of the checkpoint");
    assert_eq!(at_checkpoint[0], at_checkpoint[1], "encode lower-cases");
}

#[test]
fn hf_export_readme_python_rebuilds_the_classifier_and_sentence_mtl_reads_it_back() {
    let test = "hf_export_readme_python_rebuilds_the_classifier_and_sentence_mtl_reads_it_back";
    let Some(python) = python(test) else { return };
    let Some(models) = tiny_models(test) else { return };
    // The third: a model that normalises, trained in small-data mode, whose heads read the
    // normalised embeddings (spec::HeadInput).
    let normalising = tempfile::tempdir().unwrap();
    let normalising = normalising_copy(&models.join("tiny-distilbert"), normalising.path());
    for (backbone, folder, pooling, small_data) in [
        ("tiny-distilbert", models.join("tiny-distilbert"), "mean", "off"),
        ("tiny-bert", models.join("tiny-bert"), "max", "off"),
        ("tiny-distilbert normalising", normalising, "mean", "on"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let best = checkpoint(&folder, dir.path(), &["--pooling", pooling, "--small-data", small_data]);
        let out = dir.path().join("hf");
        export(&best, "hf", &out);
        let tasks: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tasks.json")).unwrap()).unwrap();
        let head_input = if small_data == "on" { "embedding" } else { "features" };
        assert_eq!(tasks["tasks"][0]["head_input"], head_input, "{backbone}: {tasks}");
        let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
        let lines = readme.split("```python\n").nth(1).unwrap().split("```").next().unwrap();
        assert!(lines.lines().count() <= 15, "the README's Python is meant to be short:\n{lines}");
        let sentences: Vec<String> =
            ["football again today", "i feel wonderful", "a much longer sentence about the storm and the rain", "x"]
                .map(String::from)
                .to_vec();
        let driver = format!("{lines}\nimport sys\ntexts = json.load(sys.stdin)\nprint(json.dumps({{t['name']: logits(texts, t['name']).tolist() for t in spec['tasks']}}))\n");
        let python_logits = python_in(&python, &out, &driver, &json!(sentences));
        let input = write_lines(dir.path(), &sentences);
        for task in ["topic", "mood"] {
            let diff = max_abs_diff(&matrix(&python_logits[task]), &predict_logits(&best, task, &input));
            eprintln!("{backbone} ({pooling} pooling) {task}: README Python vs predict, max |logit diff| {diff:.2e}");
            assert!(diff <= 1e-5, "{task}: logits differ by {diff}");
            // sentence-mtl reads the export back whole: projection, normalisation and heads.
            let diff = max_abs_diff(&predict_logits(&out, task, &input), &predict_logits(&best, task, &input));
            assert!(diff <= 1e-6, "{backbone} {task}: predict of the export and of the checkpoint differ by {diff}");
        }
        let diff = max_abs_diff(&encode_all(&out, &input), &encode_all(&best, &input));
        assert!(diff <= 1e-6, "{backbone}: encode of the export and of the checkpoint differ by {diff}");
    }
}

/// An hf export keeps the CSV columns each task was trained on, so that `predict` and `eval`
/// of the export read the files the checkpoint reads.
#[test]
fn hf_export_reads_the_columns_its_tasks_were_trained_on() {
    let test = "hf_export_reads_the_columns_its_tasks_were_trained_on";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..24).map(|i| format!("sentence number {i},{}\n", ["yes", "no"][i % 2])).collect();
    let data = dir.path().join("own.csv");
    std::fs::write(&data, format!("sentence,verdict\n{rows}")).unwrap();
    let (model, data) = (models.join("tiny-bert"), data.to_str().unwrap().to_string());
    let run_dir = dir.path().join("run");
    let args =
        ["train", "-m", model.to_str().unwrap(), "--task", &format!("own={data}"), "--text-column", "own=sentence"];
    let flags =
        ["--label-column", "own=verdict", "--max-steps", "2", "--device", "cpu", "--threads", "1", "-q", "--out"];
    assert_ok(&run(&[&args[..], &flags[..], &[run_dir.to_str().unwrap()]].concat()));
    let out = dir.path().join("hf");
    export(&run_dir.join("last"), "hf", &out);
    let predicted = run(&["predict", "-m", out.to_str().unwrap(), "--task", "own", "-i", &data, "-q"]);
    assert_ok(&predicted);
    assert_eq!(stdout(&predicted).lines().count(), 24);
    assert_ok(&run(&["eval", "-m", out.to_str().unwrap(), "--task", &format!("own={data}"), "--json", "-q"]));
    // Trained further, its checkpoint still names the base model its backbone came from.
    let further = dir.path().join("further");
    let args =
        ["train", "-m", out.to_str().unwrap(), "--task", &format!("own={data}"), "--text-column", "own=sentence"];
    assert_ok(&run(&[&args[..], &flags[..], &[further.to_str().unwrap()]].concat()));
    let spec = std::fs::read_to_string(further.join("last/sentence_mtl.json")).unwrap();
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let base = model.canonicalize().unwrap();
    assert_eq!(spec["base_model"].as_str().map(Path::new), Some(base.as_path()), "{spec}");
}

/// A model trained further from a sentence-transformers export names the base model its
/// backbone came from, which the export records for it, and keeps the export's token limit.
#[test]
fn sentence_transformers_export_trained_further_names_its_base_model() {
    let test = "sentence_transformers_export_trained_further_names_its_base_model";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..24).map(|i| format!("sentence number {i},{}\n", ["yes", "no"][i % 2])).collect();
    let data = dir.path().join("own.csv");
    std::fs::write(&data, format!("text,label\n{rows}")).unwrap();
    let (model, task) = (models.join("tiny-bert"), format!("own={}", data.display()));
    let train = |from: &Path, out: &Path, extra: &[&str]| {
        let args = ["train", "-m", from.to_str().unwrap(), "--task", &task, "--max-steps", "2", "--device", "cpu"];
        let out = ["--threads", "1", "--out", out.to_str().unwrap()];
        let output = run(&[&args[..], extra, &out[..]].concat());
        assert_ok(&output);
        stderr(&output)
    };
    let first = dir.path().join("first");
    train(&model, &first, &["--max-length", "40"]);
    let out = dir.path().join("st");
    export(&first.join("last"), "sentence-transformers", &out);
    let further = dir.path().join("further");
    let said = train(&out, &further, &[]);
    let spec: Value = serde_json::from_slice(&std::fs::read(further.join("last/sentence_mtl.json")).unwrap()).unwrap();
    assert_eq!(spec["max_length"], 40, "{spec}");
    let base = model.canonicalize().unwrap();
    assert_eq!(spec["base_model"].as_str().map(Path::new), Some(base.as_path()), "{spec}");
    let named = format!("model: {}, fine-tuned from {}", out.canonicalize().unwrap().display(), base.display());
    assert!(said.contains(&named), "{said}");
}

#[test]
fn torchscript_export_runs_in_python_and_rust_with_any_batch_shape() {
    let test = "torchscript_export_runs_in_python_and_rust_with_any_batch_shape";
    let Some(python) = python(test) else { return };
    let Some(models) = tiny_models(test) else { return };
    for backbone in ["tiny-bert", "tiny-distilbert"] {
        let dir = tempfile::tempdir().unwrap();
        let best = checkpoint(&models.join(backbone), dir.path(), &[]);
        let out = dir.path().join("ts");
        export(&best, "torchscript", &out);
        // Three sentences of different lengths: neither the batch size nor the padded
        // length of the example used for tracing.
        let sentences: Vec<String> =
            ["football again today", "i feel wonderful and happy about the lovely weather today", "x"]
                .map(String::from)
                .to_vec();
        let input = write_lines(dir.path(), &sentences);
        let embeddings = encode_all(&best, &input);
        let topic = predict_logits(&best, "topic", &input);
        let mood = predict_logits(&best, "mood", &input);

        let py = python_in(
            &python,
            &out,
            r#"
import json, sys, torch
from transformers import AutoTokenizer
tok, model = AutoTokenizer.from_pretrained("."), torch.jit.load("model.pt")
b = tok(json.load(sys.stdin), padding=True, truncation=True, max_length=128, return_tensors="pt")
embedding, topic, mood = model(b["input_ids"], b["attention_mask"])
# A device fixed in the graph would move a GPU's activations back to the CPU.
devices = [line.strip() for _, m in model.named_modules() if hasattr(m, "code") for line in m.code.splitlines() if "device" in line]
print(json.dumps({"embedding": embedding.tolist(), "topic": topic.tolist(), "mood": mood.tolist(), "ids": b["input_ids"].tolist(), "mask": b["attention_mask"].tolist(), "devices": devices}))
"#,
            &json!(sentences),
        );
        assert_eq!(py["devices"], json!([]), "{backbone}: the traced graph names a device");
        for (name, ours) in [("embedding", &embeddings), ("topic", &topic), ("mood", &mood)] {
            let diff = max_abs_diff(&matrix(&py[name]), ours);
            eprintln!("{backbone} torchscript in Python, {name}: max |diff| {diff:.2e}");
            assert!(diff <= 1e-5, "{backbone} {name} differs by {diff}");
        }

        // The same module through tch in Rust.
        let module = CModule::load(out.join("model.pt")).unwrap();
        let as_tensor = |v: &Value| {
            let rows: Vec<Vec<i64>> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect())
                .collect();
            Tensor::from_slice(&rows.concat()).view([rows.len() as i64, rows[0].len() as i64])
        };
        let outputs = tch::no_grad(|| {
            module.forward_is(&[IValue::Tensor(as_tensor(&py["ids"])), IValue::Tensor(as_tensor(&py["mask"]))])
        })
        .unwrap();
        let IValue::Tuple(outputs) = outputs else { panic!("model.pt does not return a tuple") };
        assert_eq!(outputs.len(), 3);
        for (value, ours) in outputs.iter().zip([&embeddings, &topic, &mood]) {
            let IValue::Tensor(t) = value else { panic!("not a tensor") };
            let got: Vec<Vec<f64>> = Vec::<Vec<f32>>::try_from(t)
                .unwrap()
                .into_iter()
                .map(|r| r.into_iter().map(f64::from).collect())
                .collect();
            let diff = max_abs_diff(&got, ours);
            assert!(diff <= 1e-5, "{backbone} via tch differs by {diff}");
        }
        let tasks: Value = serde_json::from_str(&std::fs::read_to_string(out.join("tasks.json")).unwrap()).unwrap();
        assert_eq!(tasks["outputs"], json!(["embedding", "logits:topic", "logits:mood"]));
    }
}

#[test]
fn export_replaces_only_an_earlier_export_and_only_with_force() {
    let test = "export_replaces_only_an_earlier_export_and_only_with_force";
    let Some(models) = tiny_models(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let best = checkpoint(&models.join("tiny-bert"), dir.path(), &[]);
    let out = dir.path().join("taken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep me").unwrap();
    let refused = run(&["export", "-m", best.to_str().unwrap(), "--format", "hf", "--out", out.to_str().unwrap()]);
    assert_clean_error(&refused, "exists and is not empty; pass --force to replace it");
    assert_eq!(std::fs::read_to_string(out.join("mine.txt")).unwrap(), "keep me");
    let force = |out: &Path, format: &str| {
        run(&[
            "export",
            "-m",
            best.to_str().unwrap(),
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
            "--force",
            "-q",
        ])
    };
    // --force replaces an earlier export, not a folder of the user's files nor a training run
    // (another run's: tests/e2e/bad_input.rs).
    let refused = force(&out, "hf");
    assert_clean_error(
        &refused,
        "holds files that are not a sentence-mtl export; --force replaces only an earlier export",
    );
    assert_eq!(std::fs::read_to_string(out.join("mine.txt")).unwrap(), "keep me");
    let run_dir = best.parent().unwrap();
    assert_clean_error(&force(run_dir, "hf"), "holds the model being exported");
    assert!(run_dir.join("settings.json").is_file() && best.is_dir());
    let earlier = dir.path().join("earlier");
    export(&best, "hf", &earlier);
    std::fs::create_dir(earlier.join(".git")).unwrap();
    assert_clean_error(&force(&earlier, "torchscript"), "is an earlier export with files added or changed (.git)");
    std::fs::remove_dir(earlier.join(".git")).unwrap();
    assert_ok(&force(&earlier, "sentence-transformers"));
    // Files put into a module folder, and a card edited as docs/usage.md suggests, are the
    // user's: --force stops for them too.
    std::fs::write(earlier.join("1_Pooling/NOTES.txt"), "mine").unwrap();
    let card = std::fs::read_to_string(earlier.join("README.md")).unwrap();
    std::fs::write(earlier.join("README.md"), card.replacen("---\n", "---\nlicense: apache-2.0\n", 1)).unwrap();
    assert_clean_error(
        &force(&earlier, "hf"),
        "is an earlier export with files added or changed (README.md, edited since it was exported, 1_Pooling/NOTES.txt)",
    );
    std::fs::write(earlier.join("README.md"), &card).unwrap();
    std::fs::remove_file(earlier.join("1_Pooling/NOTES.txt")).unwrap();
    // What sentence-transformers' `append(...).save` and transformers' `save_pretrained`
    // leave: a module folder of the user's, and weights saved over the exported ones.
    std::fs::create_dir(earlier.join("3_Dense")).unwrap();
    std::fs::write(earlier.join("3_Dense/model.safetensors"), "trained").unwrap();
    let weights = std::fs::read(earlier.join("model.safetensors")).unwrap();
    let mut tuned = weights.clone();
    *tuned.last_mut().unwrap() ^= 1;
    std::fs::write(earlier.join("model.safetensors"), &tuned).unwrap();
    assert_clean_error(&force(&earlier, "hf"), "files added or changed (3_Dense, model.safetensors)");
    std::fs::remove_dir_all(earlier.join("3_Dense")).unwrap();
    std::fs::write(earlier.join("model.safetensors"), &weights).unwrap();
    // A card whose last lines (the list of the exported files) were deleted is the user's.
    let unsealed = &card[..card.rfind("\n<!-- sentence-mtl export card ").expect("a sealed card")];
    std::fs::write(earlier.join("README.md"), unsealed).unwrap();
    assert_clean_error(&force(&earlier, "hf"), "which list the exported files, are gone");
    std::fs::write(earlier.join("README.md"), &card).unwrap();
    // A folder made private stays private; `DIR/.` is DIR.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&earlier, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_ok(&force(&earlier.join("."), "sentence-transformers"));
    assert_eq!(std::fs::metadata(&earlier).unwrap().permissions().mode() & 0o777, 0o700);
    // What an export killed mid-write left beside its folder (a process that has ended)
    // goes with the next export there; a dated copy of the user's stays.
    let mut ended = Command::new("true").spawn().unwrap();
    ended.wait().unwrap();
    let left = dir.path().join(format!(".earlier.new-{}", ended.id()));
    let dated = dir.path().join(".earlier.new-20240101");
    for folder in [&left, &dated] {
        std::fs::create_dir(folder).unwrap();
        std::fs::write(folder.join("model.pt"), "half").unwrap();
    }
    assert_ok(&force(&earlier, "torchscript"));
    assert!(earlier.join("model.pt").is_file() && !earlier.join("heads.safetensors").exists());
    assert!(!left.exists(), "an interrupted export's staging folder was left");
    assert!(dated.join("model.pt").is_file(), "a folder of the user's was taken for a staging folder");
}

/// A MiniLM checkpoint trained on a similarity and a pairs task (STS-B and pairs derived from
/// it) beside a classification head: its sentence-transformers export reproduces `encode` on
/// 100 real sentence pairs, and the model card lists every task with its kind, loss and dev
/// metric.
#[test]
fn sentence_transformers_export_of_embedding_tasks_reproduces_encode() {
    let test = "sentence_transformers_export_of_embedding_tasks_reproduces_encode";
    let (Some(python), Some(minilm), Some(data)) = (python(test), minilm(test), shared_data(test)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let stsb: Vec<csv::StringRecord> =
        csv::Reader::from_path(data.join("stsb/train.csv")).unwrap().records().map(|r| r.unwrap()).collect();
    let similar = dir.path().join("similar.csv");
    let mut text = String::from("sentence1,sentence2,score\n");
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for r in stsb.iter().take(64) {
        text.push_str(&format!("{},{},{}\n", quote(&r[0]), quote(&r[1]), &r[2]));
    }
    std::fs::write(&similar, &text).unwrap();
    let pairs = dir.path().join("pairs.csv");
    let mut text = String::from("anchor,positive\n");
    for r in stsb.iter().filter(|r| r[2].parse::<f64>().unwrap() >= 4.0).take(64) {
        text.push_str(&format!("{},{}\n", quote(&r[0]), quote(&r[1])));
    }
    std::fs::write(&pairs, &text).unwrap();
    let dev = data.join("stsb/dev.csv");
    let toy = crate::toy_data::write_toy_data(dir.path());
    let run_dir = dir.path().join("run");
    assert_ok(&run(&[
        "train",
        "-m",
        minilm.to_str().unwrap(),
        "--task",
        &format!("stsb={},{}", similar.display(), dev.display()),
        "--task",
        &format!("pairs={}", pairs.display()),
        "--task",
        &format!("topic={}", toy.topic_train.display()),
        "--out",
        run_dir.to_str().unwrap(),
        "--max-steps",
        "3",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "-q",
    ]));
    let best = run_dir.join("best");
    let out = dir.path().join("st");
    export(&best, "sentence-transformers", &out);
    let sentences: Vec<String> = csv::Reader::from_path(&dev)
        .unwrap()
        .records()
        .take(100)
        .flat_map(|r| {
            let r = r.unwrap();
            [r[0].to_string(), r[1].to_string()]
        })
        .collect();
    let ours = encode_all(&best, &write_lines(dir.path(), &sentences));
    let st = matrix(&python_in(
        &python,
        &out,
        r#"
import json, sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(".", device="cpu")
print(json.dumps(model.encode(json.load(sys.stdin), batch_size=32).tolist()))
"#,
        &json!(sentences),
    ));
    let worst = ours.iter().zip(&st).map(|(a, b)| cosine(a, b)).fold(1.0, f64::min);
    eprintln!("sentence-transformers export vs encode on 100 STS-B dev pairs: worst cosine {worst:.7}");
    assert!(worst >= 0.9999, "worst cosine {worst}");
    let diff = max_abs_diff(&ours, &st);
    assert!(diff <= 1e-5, "sentence-transformers export vs encode: max difference {diff}");

    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    for line in [
        "| stsb | similarity | cosent | scores ",
        "| pairs | pairs | multiple-negatives-ranking (scale 20) |",
        // 48 rows per class: small-data mode, which the card names.
        "| topic | classification | label-pair cosine and cross-entropy, head refitted by logistic regression | food, sport, weather |",
        "| stsb | similarity | Spearman | ",
    ] {
        assert!(card.contains(line), "the model card lacks {line:?}:\n{card}");
    }
    // The dev metrics come in the tasks table's order.
    let first_cells = |section: &str| -> Vec<String> {
        let body = card.split(section).nth(1).unwrap_or_default().split("\n## ").next().unwrap_or_default();
        let rows = body.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| task |"));
        rows.map(|l| l.split('|').nth(1).unwrap().trim().to_string()).collect()
    };
    let (tasks, metrics) = (first_cells("## Tasks"), first_cells("## Dev metrics"));
    assert!(!metrics.is_empty(), "{card}");
    assert_eq!(tasks.iter().filter(|t| metrics.contains(t)).collect::<Vec<_>>(), metrics.iter().collect::<Vec<_>>());
    // The precision the run used (`--precision auto` as it resolved), not the flag's value.
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(best.join("sentence_mtl.json")).unwrap()).unwrap();
    let used = spec["training"]["precision_used"].as_str().expect("the checkpoint records its precision");
    assert!(["fp32", "bf16"].contains(&used), "{used}");
    assert!(card.contains(&format!("; precision {used}\n")), "the model card lacks the precision {used}:\n{card}");
}
