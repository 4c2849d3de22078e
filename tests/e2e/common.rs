//! Helpers shared by the end-to-end tests: the binary, the reference Python, test models.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `sentence-mtl` binary built for this test run.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentence-mtl"));
    // Tests run in parallel on small machines: keep each process to one libtorch thread.
    cmd.env("OMP_NUM_THREADS", "1");
    // The hub tests serve on 127.0.0.1, which a proxy from the caller's environment would miss.
    for proxy in ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
        cmd.env_remove(proxy);
    }
    cmd.env_remove("TRANSFORMERS_OFFLINE").env_remove("HF_HUB_OFFLINE");
    cmd
}

/// Runs the binary and returns its output; never panics on failure exit codes.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("cannot start sentence-mtl")
}

pub fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sentence-mtl");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a run succeeded, showing its stderr otherwise.
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "sentence-mtl failed ({:?}):\n{}", o.status, stderr(o));
}

/// Asserts a run failed the way users should see failures: non-zero exit, exactly one
/// `error:` line on stderr that contains `expected`, and no panic or backtrace.
pub fn assert_clean_error(o: &Output, expected: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr:\n{err}");
    assert_eq!(o.status.code(), Some(1), "expected exit code 1 (error), stderr:\n{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error") && !err.contains("RUST_BACKTRACE"),
        "panic:\n{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got:\n{err}");
    assert!(errors[0].contains(expected), "error line lacks {expected:?}:\n{err}");
}

/// Something a test needs (Python venv, real weights, shared data) is missing. With
/// SENTENCE_MTL_REQUIRE_ALL=1 (set by scripts/test.sh, hence CI) that is a failure;
/// otherwise the test is skipped, loudly.
pub fn missing(test: &str, what: &str) {
    if std::env::var("SENTENCE_MTL_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{test}: {what} is missing (run scripts/setup.sh --reference)");
    }
    skipped(test, &format!("{what} is missing (run scripts/setup.sh --reference)"));
}

/// Says, loudly, that `test` checked nothing here and why, also in the list scripts/test.sh
/// (hence CI) prints at its end ([`sentence_mtl::test_skipped`]).
pub fn skipped(test: &str, why: &str) {
    sentence_mtl::test_skipped(test, why);
}

/// Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX); if not, the test says,
/// loudly, that it is skipped.
pub fn cpu_has_bf16(test: &str) -> bool {
    match sentence_mtl::precision::cpu_bf16_support() {
        Ok(()) => true,
        Err(missing) => {
            skipped(test, &format!("this CPU lacks {missing}"));
            false
        }
    }
}

pub fn python(test: &str) -> Option<PathBuf> {
    let python = root().join(".venv/bin/python");
    if python.is_file() {
        Some(python)
    } else {
        missing(test, "the reference Python venv (.venv)");
        None
    }
}

/// The real all-MiniLM-L6-v2 folder unpacked by setup.sh.
pub fn minilm(test: &str) -> Option<PathBuf> {
    let dir = root().join("models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        missing(test, "models/all-MiniLM-L6-v2");
        None
    }
}

/// `../shared/data` beside the checkout.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = root().join("../shared/data");
    if dir.join("sst2/dev.csv").is_file() {
        Some(dir)
    } else {
        missing(test, "../shared/data");
        None
    }
}

/// Runs a reference script from scripts/reference with JSON on stdin; returns its JSON.
pub fn python_json(python: &Path, args: &[&str], input: &serde_json::Value) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start python");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("python printed no JSON")
}

pub fn reference_script(name: &str) -> String {
    root().join("scripts/reference").join(name).to_string_lossy().into_owned()
}

/// Tiny random `tiny-distilbert/` and `tiny-bert/` written by transformers' save_pretrained,
/// made once per test process. None (after a loud skip) without the venv or MiniLM's vocab.
pub fn tiny_models(test: &str) -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let python = python(test)?;
    let vocab_dir = minilm(test)?;
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("sentence-mtl-tiny-").tempdir().unwrap().keep();
        let out = Command::new(&python)
            .arg(reference_script("make_tiny_models.py"))
            .arg(&dir)
            .arg(&vocab_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "make_tiny_models.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Some(dir)
    })
    .as_deref()
}

/// Copies a model folder so a test can damage its copy.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Parses `encode`'s JSONL output into (text, embedding) pairs.
pub fn parse_jsonl_embeddings(text: &str) -> Vec<(String, Vec<f64>)> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let emb = v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            (v["text"].as_str().unwrap().to_string(), emb)
        })
        .collect()
}

/// The checkpoint's head of `task` is small-data mode's refit on its final body: the minimum
/// of scikit-learn's objective at C = 1 (mean cross-entropy + |W|² / 2n, bias unpenalised) over
/// the checkpoint's own `encode` output for `train_csv` (`text,label`), which is what such a
/// head reads. At the minimum autograd's gradient vanishes; a head trained by steps is not there.
pub fn assert_head_is_the_refit(checkpoint: &Path, task: &str, train_csv: &Path) {
    use tch::{Kind, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("embeddings.npy");
    let (model, input, output) = (checkpoint.to_str().unwrap(), train_csv.to_str().unwrap(), npy.to_str().unwrap());
    assert_ok(&run(&["encode", "-m", model, "--input", input, "--output", output, "--device", "cpu", "-q"]));
    let x = Tensor::read_npy(&npy).unwrap().to_kind(Kind::Double);
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("sentence_mtl.json")).unwrap()).unwrap();
    let labels: Vec<String> = spec["tasks"].as_array().unwrap().iter().find(|t| t["name"] == task).unwrap()["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let classes: Vec<i64> = std::fs::read_to_string(train_csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| labels.iter().position(|l| l == line.rsplit_once(',').unwrap().1).unwrap() as i64)
        .collect();
    let tensors = Tensor::read_safetensors(checkpoint.join("model.safetensors")).unwrap();
    let find = |name: String| tensors.iter().find(|(n, _)| *n == name).unwrap().1.to_kind(Kind::Double);
    let weight = find(format!("heads.{task}.weight")).set_requires_grad(true);
    let bias = find(format!("heads.{task}.bias")).set_requires_grad(true);
    let n = classes.len() as f64;
    let loss = (x.matmul(&weight.tr()) + &bias).cross_entropy_for_logits(&Tensor::from_slice(&classes))
        + weight.square().sum(Kind::Double) / (2.0 * n);
    loss.backward();
    let worst = f64::try_from(weight.grad().abs().max().maximum(&bias.grad().abs().max())).unwrap();
    assert!(worst < 1e-4, "{task}'s head is not the refit: gradient entry {worst:e} at it");
}

/// `model` as a sentence-transformers folder whose pipeline ends in Normalize.
pub fn normalising_copy(model: &Path, into: &Path) -> PathBuf {
    for entry in std::fs::read_dir(model).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(into.join("1_Pooling")).unwrap();
    std::fs::write(into.join("1_Pooling/config.json"), r#"{"pooling_mode_mean_tokens": true}"#).unwrap();
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]);
    std::fs::write(into.join("modules.json"), modules.to_string()).unwrap();
    into.to_path_buf()
}
